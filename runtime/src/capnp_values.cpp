#include "capnp_values.hpp"

namespace twin::runtime::capn {

void write_entries(capnp::List<schema::Entry>::Builder out, const value_map& m) {
  unsigned i = 0;
  for (const auto& [k, v] : m) {
    auto e = out[i++];
    e.setKey(text(k));
    write_value(e.initValue(), v);
  }
}

void write_value(schema::Value::Builder out, const value& x) {
  switch (x.type()) {
    case value::kind::null: out.setNull(); break;
    case value::kind::boolean: out.setBool(x.as_bool()); break;
    case value::kind::integer: out.setInt(x.as_int()); break;
    case value::kind::real: out.setDouble(x.as_double()); break;
    case value::kind::string: out.setString(text(x.as_string())); break;
    case value::kind::list: {
      const auto& xs = x.as_list();
      auto l = out.initList(static_cast<unsigned>(xs.size()));
      for (unsigned i = 0; i < xs.size(); ++i)
        write_value(l[i], xs[i]);
      break;
    }
    case value::kind::map: {
      const auto& m = x.as_map();
      write_entries(out.initMap(static_cast<unsigned>(m.size())), m);
      break;
    }
  }
}

value_map read_entries(capnp::List<schema::Entry>::Reader in) {
  value_map m;
  for (auto e : in)
    m.emplace(str(e.getKey()), read_value(e.getValue()));
  return m;
}

value read_value(schema::Value::Reader in) {
  switch (in.which()) {
    case schema::Value::NULL_: return value{};
    case schema::Value::BOOL: return value{in.getBool()};
    case schema::Value::INT: return value{static_cast<int64_t>(in.getInt())};
    case schema::Value::DOUBLE: return value{in.getDouble()};
    case schema::Value::STRING: return value{str(in.getString())};
    case schema::Value::LIST: {
      value_list xs;
      for (auto y : in.getList())
        xs.push_back(read_value(y));
      return value{std::move(xs)};
    }
    case schema::Value::MAP: return value{read_entries(in.getMap())};
  }
  return value{};  // a union member added by a newer version: read as null
}

} // namespace twin::runtime::capn
