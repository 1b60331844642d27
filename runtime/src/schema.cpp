#include "twin/runtime/schema.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace twin::runtime {

namespace {

using kind = value_schema::kind;

schema_ptr make(kind k, std::string name, std::optional<double> min = {},
                std::optional<double> max = {}) {
  auto s = std::make_shared<value_schema>();
  s->k = k;
  s->name = std::move(name);
  s->min = min;
  s->max = max;
  return s;
}

bool valid_date(std::string_view text) {
  return text.size() == 10 && parse_time(text).has_value();
}

bool valid_date_time(std::string_view text) {
  return text.size() > 10 && (text[10] == 'T' || text[10] == 't')
         && valid_date(text.substr(0, 10)) && parse_time(text).has_value();
}

/// "hh:mm:ss", optional fractions of a second and an optional zone: a time of a day.
bool valid_time(std::string_view text) {
  bool zone = !text.empty()
              && (text.back() == 'Z' || text.back() == 'z'
                  || text.find_first_of("+-") != std::string_view::npos);
  return text.size() >= 8 && text[2] == ':'
         && parse_time("1970-01-01T" + std::string{text} + (zone ? "" : "Z")).has_value();
}

/// The text of `v` in an error: short.
std::string shown(const value& v) {
  auto text = to_string(v);
  return text.size() > 80 ? text.substr(0, 80) + "..." : text;
}

const char* kind_name(kind k) {
  switch (k) {
    case kind::boolean: return "boolean";
    case kind::integer: return "integer";
    case kind::real: return "double";
    case kind::string: return "string";
    case kind::date: return "date";
    case kind::date_time: return "dateTime";
    case kind::time: return "time";
    case kind::duration: return "duration";
    case kind::enumeration: return "enum";
    case kind::object: return "object";
    case kind::map: return "map";
    case kind::array: return "array";
  }
  return "?";
}

} // namespace

schema_ptr value_schema::primitive(std::string_view name) {
  static const std::map<std::string_view, schema_ptr, std::less<>> known = [] {
    std::map<std::string_view, schema_ptr, std::less<>> m;
    m["boolean"] = make(kind::boolean, "boolean");
    m["integer"] = make(kind::integer, "integer", -2147483648.0, 2147483647.0);
    m["long"] = make(kind::integer, "long");
    m["short"] = make(kind::integer, "short", -32768.0, 32767.0);
    m["byte"] = make(kind::integer, "byte", -128.0, 127.0);
    m["unsignedByte"] = make(kind::integer, "unsignedByte", 0.0, 255.0);
    m["unsignedShort"] = make(kind::integer, "unsignedShort", 0.0, 65535.0);
    m["unsignedInteger"] = make(kind::integer, "unsignedInteger", 0.0, 4294967295.0);
    m["unsignedLong"] = make(kind::integer, "unsignedLong", 0.0);
    m["double"] = make(kind::real, "double");
    m["float"] = make(kind::real, "float");
    m["decimal"] = make(kind::real, "decimal");
    m["string"] = make(kind::string, "string");
    m["uuid"] = make(kind::string, "uuid");
    m["bytes"] = make(kind::string, "bytes");
    m["date"] = make(kind::date, "date");
    m["dateTime"] = make(kind::date_time, "dateTime");
    m["time"] = make(kind::time, "time");
    m["duration"] = make(kind::duration, "duration");
    // GeoJSON geometries: objects.
    for (auto geo : {"point", "multiPoint", "lineString", "multiLineString", "polygon",
                     "multiPolygon"})
      m[geo] = make(kind::object, geo);
    return m;
  }();
  auto i = known.find(name);
  return i == known.end() ? nullptr : i->second;
}

bool valid_duration(std::string_view text) {
  // P[nY][nM][nW][nD][T[nH][nM][n[.n]S]], at least one part, the last number of the
  // whole may have a fraction.
  if (text.size() < 2 || (text[0] != 'P' && text[0] != 'p'))
    return false;
  bool in_time = false;
  bool any = false;
  bool number = false;
  std::string_view date_units = "YMWD";
  std::string_view time_units = "HMS";
  for (size_t i = 1; i < text.size(); ++i) {
    char c = static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
    if (std::isdigit(static_cast<unsigned char>(c)) || ((c == '.' || c == ',') && number)) {
      number = true;
    } else if (c == 'T' && !in_time && !number) {
      in_time = true;
      if (i + 1 == text.size())
        return false;
    } else if (number && (in_time ? time_units : date_units).find(c) != std::string_view::npos) {
      number = false;
      any = true;
    } else {
      return false;
    }
  }
  return any && !number;
}

caf::error check_schema(const value_schema& s, const value& v, const std::string& path) {
  auto where = [&] { return "property '" + path + "'"; };
  auto mismatch = [&](const std::string& expected) {
    return make_error(runtime_errc::type_mismatch,
                      where() + " expects " + expected + ", got " + shown(v));
  };
  switch (s.k) {
    case kind::boolean:
      return v.is_bool() ? caf::error{} : mismatch("a boolean");
    case kind::integer: {
      if (!v.is_int() && !(v.is_double() && std::nearbyint(v.as_double()) == v.as_double()))
        return mismatch("an integer (" + s.name + ")");
      double x = v.as_double();
      if ((s.min && x < *s.min) || (s.max && x > *s.max))
        return make_error(runtime_errc::out_of_range,
                          where() + " = " + shown(v) + " is out of the range of " + s.name);
      return {};
    }
    case kind::real:
      if (!v.is_number())
        return mismatch("a number");
      if (!std::isfinite(v.as_double()))
        return make_error(runtime_errc::out_of_range, where() + " must be a finite number");
      return {};
    case kind::string:
      return v.is_string() ? caf::error{} : mismatch("a string");
    case kind::date:
      return v.is_string() && valid_date(v.as_string())
               ? caf::error{}
               : mismatch("a date such as \"2024-05-01\"");
    case kind::date_time:
      return v.is_string() && valid_date_time(v.as_string())
               ? caf::error{}
               : mismatch("a dateTime with its zone such as \"2024-05-01T12:00:00Z\"");
    case kind::time:
      return v.is_string() && valid_time(v.as_string())
               ? caf::error{}
               : mismatch("a time such as \"12:30:00\"");
    case kind::duration:
      return v.is_string() && valid_duration(v.as_string())
               ? caf::error{}
               : mismatch("an ISO 8601 duration such as \"PT1H30M\"");
    case kind::enumeration: {
      for (const auto& [name, x] : s.enum_values)
        if (x == v)
          return {};
      std::string names;
      for (const auto& [name, x] : s.enum_values)
        names += (names.empty() ? "" : ", ") + to_string(x);
      return make_error(runtime_errc::out_of_range,
                        where() + " must be one of " + names + ", not " + shown(v));
    }
    case kind::object: {
      if (!v.is_map())
        return mismatch("an object");
      if (s.fields.empty())
        return {};
      for (const auto& [key, x] : v.as_map()) {
        auto f = std::find_if(s.fields.begin(), s.fields.end(),
                              [&](const auto& field) { return field.first == key; });
        if (f == s.fields.end())
          return make_error(runtime_errc::unknown_property,
                            where() + " has no field '" + key + "'");
        if (!x.is_null())
          if (auto err = check_schema(*f->second, x, path + "." + key))
            return err;
      }
      return {};
    }
    case kind::map:
      if (!v.is_map())
        return mismatch("an object (a map)");
      for (const auto& [key, x] : v.as_map())
        if (!x.is_null())
          if (auto err = check_schema(*s.element, x, path + "." + key))
            return err;
      return {};
    case kind::array: {
      if (!v.is_list())
        return mismatch("an array");
      size_t i = 0;
      for (const auto& x : v.as_list()) {
        if (auto err = check_schema(*s.element, x, path + "[" + std::to_string(i) + "]"))
          return err;
        ++i;
      }
      return {};
    }
  }
  return {};
}

nlohmann::json to_json(const value_schema& s) {
  nlohmann::json out;
  switch (s.k) {
    case kind::enumeration: {
      auto values = nlohmann::json::object();
      for (const auto& [name, x] : s.enum_values)
        values[name] = to_json(x);
      out = {{"type", "enum"}, {"valueSchema", kind_name(s.enum_kind)}, {"values", values}};
      break;
    }
    case kind::object: {
      if (s.fields.empty())
        return s.name.empty() ? nlohmann::json("object") : nlohmann::json(s.name);
      auto fields = nlohmann::json::object();
      for (const auto& [name, f] : s.fields)
        fields[name] = to_json(*f);
      out = {{"type", "object"}, {"fields", fields}};
      break;
    }
    case kind::map:
      out = {{"type", "map"}, {"values", to_json(*s.element)}};
      break;
    case kind::array:
      out = {{"type", "array"}, {"items", to_json(*s.element)}};
      break;
    default:
      return s.name.empty() ? nlohmann::json(kind_name(s.k)) : nlohmann::json(s.name);
  }
  if (!s.id.empty())
    out["@id"] = s.id;
  return out;
}

} // namespace twin::runtime
