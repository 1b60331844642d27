#include "twin/runtime/json.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

nlohmann::json to_json(const value& x) {
  switch (x.type()) {
    case value::kind::null: return nullptr;
    case value::kind::boolean: return x.as_bool();
    case value::kind::integer: return x.as_int();
    case value::kind::real:
      if (!std::isfinite(x.as_double()))
        return nullptr;
      return x.as_double();
    case value::kind::string: return x.as_string();
    case value::kind::list: {
      auto out = nlohmann::json::array();
      for (const auto& y : x.as_list())
        out.push_back(to_json(y));
      return out;
    }
    case value::kind::map: return to_json(x.as_map());
  }
  return nullptr;
}

nlohmann::json to_json(const value_map& x) {
  auto out = nlohmann::json::object();
  for (const auto& [k, v] : x)
    out[k] = to_json(v);
  return out;
}

caf::expected<value> value_from_json(const nlohmann::json& j, int max_depth) {
  if (max_depth < 0)
    return make_error(runtime_errc::invalid_argument, "JSON value nested too deeply");
  switch (j.type()) {
    case nlohmann::json::value_t::null: return value{};
    case nlohmann::json::value_t::boolean: return value{j.get<bool>()};
    case nlohmann::json::value_t::number_integer: return value{j.get<int64_t>()};
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX))
        return make_error(runtime_errc::invalid_argument, "integer beyond the int64 range");
      return value{static_cast<int64_t>(u)};
    }
    case nlohmann::json::value_t::number_float: {
      auto d = j.get<double>();
      if (!std::isfinite(d))  // e.g. 1e400
        return make_error(runtime_errc::invalid_argument, "number beyond the double range");
      return value{d};
    }
    case nlohmann::json::value_t::string: return value{j.get<std::string>()};
    case nlohmann::json::value_t::array: {
      value_list xs;
      xs.reserve(j.size());
      for (const auto& y : j) {
        auto v = value_from_json(y, max_depth - 1);
        if (!v)
          return v;
        xs.push_back(std::move(*v));
      }
      return value{std::move(xs)};
    }
    case nlohmann::json::value_t::object: {
      auto m = map_from_json(j, max_depth - 1);
      if (!m)
        return m.error();
      return value{std::move(*m)};
    }
    default: return make_error(runtime_errc::invalid_argument, "unsupported JSON value");
  }
}

caf::expected<value_map> map_from_json(const nlohmann::json& j, int max_depth) {
  if (!j.is_object())
    return make_error(runtime_errc::invalid_argument,
                      std::string{"expected a JSON object, got "} + j.type_name());
  value_map out;
  for (const auto& [k, v] : j.items()) {
    auto x = value_from_json(v, max_depth);
    if (!x)
      return x.error();
    out.emplace(k, std::move(*x));
  }
  return out;
}

caf::expected<nlohmann::json> parse_json(std::string_view text, const std::string& what,
                                         int depth) {
  if (nests_deeper_than(text, depth))
    return make_error(runtime_errc::invalid_argument,
                      what + " nests deeper than " + std::to_string(depth) + " levels");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: ...": the reason
    // without the library's tag.
    std::string why = e.what();
    if (auto tag = why.find("] "); tag != std::string::npos)
      why.erase(0, tag + 2);
    if (why.rfind("parse error ", 0) == 0)
      why.erase(0, 12);
    if (why.size() > 200)  // what was last read may be a long token of the input
      why = why.substr(0, 200) + "...";
    return make_error(runtime_errc::invalid_argument, what + " is not valid JSON: " + why);
  }
}

caf::expected<std::vector<relationship>> relationships_field(const nlohmann::json& doc) {
  std::vector<relationship> out;
  auto rels = doc.find("relationships");
  if (rels == doc.end() || rels->is_null())
    return out;
  if (!rels->is_array())
    return make_error(runtime_errc::invalid_argument, "\"relationships\" must be an array");
  for (const auto& r : *rels) {
    auto name = r.is_object() ? r.find("name") : r.end();
    auto target = r.is_object() ? r.find("target") : r.end();
    if (!r.is_object() || r.size() != 2 || name == r.end() || !name->is_string()
        || name->get<std::string>().empty() || target == r.end() || !target->is_string())
      return make_error(runtime_errc::invalid_argument,
                        "a relationship is {\"name\": text, \"target\": twin id}");
    auto t = twin_id::parse(target->get<std::string>());
    if (!t)
      return t.error();
    out.push_back(relationship{name->get<std::string>(), std::move(*t)});
  }
  return out;
}

bool nests_deeper_than(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit)
        return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

std::optional<int64_t> parse_time(std::string_view text) {
  auto fail = [] { return std::optional<int64_t>{}; };
  if (text.find('-', 1) == std::string_view::npos) {  // no date: ms
    int64_t n = 0;
    auto end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, n);
    if (ec != std::errc{} || ptr != end || n == INT64_MIN)
      return fail();
    return n;
  }
  size_t at = 0;
  // `n` digits at `at`, or -1.
  auto digits = [&](size_t n) {
    int v = 0;
    for (size_t i = 0; i < n; ++i, ++at) {
      if (at >= text.size() || !std::isdigit(static_cast<unsigned char>(text[at])))
        return -1;
      v = v * 10 + (text[at] - '0');
    }
    return v;
  };
  auto expect = [&](char c) { return at < text.size() && text[at++] == c; };
  int y = digits(4);
  int mo = expect('-') ? digits(2) : -1;
  int d = expect('-') ? digits(2) : -1;
  static constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] || (mo == 2 && d == 29 && !leap))
    return fail();
  int h = 0, mi = 0, sec = 0, offset_min = 0;
  int64_t ms = 0;
  if (at < text.size()) {
    if (text[at] != 'T' && text[at] != 't' && text[at] != ' ')
      return fail();
    ++at;
    h = digits(2);
    mi = expect(':') ? digits(2) : -1;
    sec = expect(':') ? digits(2) : -1;
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59)
      return fail();
    if (at < text.size() && text[at] == '.') {
      ++at;
      size_t first = at;
      for (int64_t scale = 100; at < text.size() && std::isdigit(static_cast<unsigned char>(text[at]));
           ++at, scale /= 10)
        ms += (text[at] - '0') * scale;
      if (at == first)
        return fail();
    }
    if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
      ++at;
    } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
      int sign = text[at++] == '-' ? -1 : 1;
      int oh = digits(2);
      int om = expect(':') ? digits(2) : -1;
      if (oh < 0 || oh > 23 || om < 0 || om > 59)
        return fail();
      offset_min = sign * (oh * 60 + om);
    } else {
      return fail();  // a time needs its zone
    }
  }
  if (at != text.size())
    return fail();
  // Days since 1970-01-01 of the proleptic Gregorian date (Howard Hinnant's days_from_civil).
  int yy = y - (mo <= 2 ? 1 : 0);
  int era = (yy >= 0 ? yy : yy - 399) / 400;
  int yoe = yy - era * 400;
  int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = int64_t{era} * 146097 + doe - 719468;
  return ((days * 24 + h) * 60 + mi - offset_min) * 60000 + int64_t{sec} * 1000 + ms;
}

caf::expected<int64_t> ts_from_json(const nlohmann::json& j) {
  if (j.is_null())
    return int64_t{0};
  if (j.is_number_integer()
      && (!j.is_number_unsigned() || j.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX))
      && j.get<int64_t>() > 0)
    return j.get<int64_t>();
  if (j.is_string())
    if (auto t = parse_time(j.get_ref<const std::string&>()); t && *t > 0)
      return *t;
  return make_error(runtime_errc::invalid_argument,
                    "\"ts\" must be a positive integer (ms since the epoch) or an ISO 8601 "
                    "time such as \"2024-05-01T12:00:00Z\"");
}

caf::expected<device_telemetry> device_telemetry_from_json(std::string_view payload) {
  auto bad = [](std::string what) {
    return make_error(runtime_errc::invalid_argument, std::move(what));
  };
  auto parsed = parse_json(payload, "the payload");
  if (!parsed)
    return parsed.error();
  auto& doc = *parsed;
  if (!doc.is_object())
    return bad(std::string{"the payload must be a JSON object of property values, not "}
               + doc.type_name());
  device_telemetry out;
  if (auto ts = doc.find("ts"); ts != doc.end()) {
    auto t = ts_from_json(*ts);
    if (!t)
      return t.error();
    out.ts_ms = *t;
    doc.erase(ts);
  }
  auto values = map_from_json(doc);
  if (!values)
    return values.error();
  if (values->empty())
    return bad("the payload has no property values");
  out.values = std::move(*values);
  return out;
}

caf::expected<value_map> map_field(const nlohmann::json& doc, const char* key) {
  auto i = doc.find(key);
  if (i == doc.end() || i->is_null())
    return value_map{};
  auto m = map_from_json(*i);
  if (!m)
    return make_error(runtime_errc::invalid_argument,
                      std::string{"\""} + key + "\": " + error_message(m.error()));
  return m;
}

caf::expected<state_maps> state_fields(const nlohmann::json& doc) {
  auto p = map_field(doc, "properties");
  if (!p)
    return p.error();
  auto d = map_field(doc, "desired");
  if (!d)
    return d.error();
  return state_maps{std::move(*p), std::move(*d)};
}

nlohmann::json to_json(const caf::error& err) {
  auto code = error_code(err);
  return {{"code", code == runtime_errc::none ? "internal" : to_string(code)},
          {"message", error_message(err)}};
}

nlohmann::json to_json(const twin_record& rec) {
  nlohmann::json j;
  j["id"] = rec.id.str();
  j["type"] = rec.type;
  j["kind"] = to_string(rec.kind);
  j["parent"] = rec.parent.empty() ? nlohmann::json(nullptr) : nlohmann::json(rec.parent.str());
  auto children = nlohmann::json::array();
  for (const auto& c : rec.children)
    children.push_back(c.id.str());
  j["children"] = std::move(children);
  j["properties"] = to_json(rec.reported);
  j["desired"] = to_json(rec.desired);
  j["delta"] = to_json(delta(rec));
  auto meta = nlohmann::json::object();
  for (const auto& [k, m] : rec.metadata)
    meta[k] = {{"updated", m.updated_ms}, {"source", m.source}};
  j["metadata"] = std::move(meta);
  auto rels = nlohmann::json::array();
  for (const auto& r : rec.relationships)
    rels.push_back({{"name", r.name}, {"target", r.target.str()}});
  j["relationships"] = std::move(rels);
  auto alerts = nlohmann::json::array();
  for (const auto& a : rec.alerts)
    alerts.push_back({{"name", a.name}, {"severity", to_string(a.level)}, {"since", a.since_ms}});
  j["alerts"] = std::move(alerts);
  j["version"] = rec.version;
  j["created"] = rec.created_ms;
  j["updated"] = rec.updated_ms;
  return j;
}

namespace {

/// Appends JSON text to a string.
class json_writer {
public:
  explicit json_writer(std::string& out) : out_(out) {}

  void raw(std::string_view text) { out_ += text; }
  void key(std::string_view k) {
    string(k);
    out_ += ':';
  }
  template <class Int>
  void integer(Int x) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, x);
    out_.append(buf, r.ptr);
  }
  void real(double x) {
    if (!std::isfinite(x)) {
      out_ += "null";
      return;
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, x);
    std::string_view text{buf, static_cast<size_t>(r.ptr - buf)};
    out_ += text;
    if (text.find_first_of(".e") == std::string_view::npos)
      out_ += ".0";  // stays a double to whoever reads it
  }
  void string(std::string_view s);
  void value(const runtime::value& v);
  void map(const value_map& m) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : m) {
      if (!std::exchange(first, false))
        out_ += ',';
      key(k);
      value(v);
    }
    out_ += '}';
  }

private:
  std::string& out_;
};

/// The length of the UTF-8 sequence at `s[i]`, 0 if it is not a valid one.
size_t utf8_length(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size())
    return 0;
  uint32_t cp = n == 1 ? c : c & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are not valid.
  static constexpr uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return n;
}

void json_writer::string(std::string_view s) {
  append_json_string(out_, s);
}

void json_writer::value(const runtime::value& v) {
  switch (v.type()) {
    case value::kind::null: out_ += "null"; break;
    case value::kind::boolean: out_ += v.as_bool() ? "true" : "false"; break;
    case value::kind::integer: integer(v.as_int()); break;
    case value::kind::real: real(v.as_double()); break;
    case value::kind::string: string(v.as_string()); break;
    case value::kind::list: {
      out_ += '[';
      bool first = true;
      for (const auto& x : v.as_list()) {
        if (!std::exchange(first, false))
          out_ += ',';
        value(x);
      }
      out_ += ']';
      break;
    }
    case value::kind::map: map(v.as_map()); break;
  }
}

} // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      size_t j = i + 1;
      while (j < s.size()) {
        auto d = static_cast<unsigned char>(s[j]);
        if (d < 0x20 || d >= 0x80 || d == '"' || d == '\\')
          break;
        ++j;
      }
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else if (auto n = utf8_length(s, i); n > 0) {
          out.append(s.data() + i, n);
          i += n;
          continue;
        } else {
          out += "\xef\xbf\xbd";  // U+FFFD for a byte that is not UTF-8
        }
    }
    ++i;
  }
  out += '"';
}

std::string to_json_text(const twin_record& rec) {
  // The keys in the order nlohmann's objects keep them: sorted.
  std::string out;
  out.reserve(512);
  json_writer w{out};
  w.raw("{\"alerts\":[");
  for (size_t i = 0; i < rec.alerts.size(); ++i) {
    const auto& a = rec.alerts[i];
    w.raw(i == 0 ? "{\"name\":" : ",{\"name\":");
    w.string(a.name);
    w.raw(",\"severity\":");
    w.string(to_string(a.level));
    w.raw(",\"since\":");
    w.integer(a.since_ms);
    w.raw("}");
  }
  w.raw("],\"children\":[");
  for (size_t i = 0; i < rec.children.size(); ++i) {
    if (i > 0)
      w.raw(",");
    w.string(rec.children[i].id.str());
  }
  w.raw("],\"created\":");
  w.integer(rec.created_ms);
  w.raw(",\"delta\":");
  w.map(delta(rec));
  w.raw(",\"desired\":");
  w.map(rec.desired);
  w.raw(",\"id\":");
  w.string(rec.id.str());
  w.raw(",\"kind\":");
  w.string(to_string(rec.kind));
  w.raw(",\"metadata\":{");
  bool first = true;
  for (const auto& [k, m] : rec.metadata) {
    if (!std::exchange(first, false))
      w.raw(",");
    w.key(k);
    w.raw("{\"source\":");
    w.string(m.source);
    w.raw(",\"updated\":");
    w.integer(m.updated_ms);
    w.raw("}");
  }
  w.raw("},\"parent\":");
  if (rec.parent.empty())
    w.raw("null");
  else
    w.string(rec.parent.str());
  w.raw(",\"properties\":");
  w.map(rec.reported);
  w.raw(",\"relationships\":[");
  for (size_t i = 0; i < rec.relationships.size(); ++i) {
    w.raw(i == 0 ? "{\"name\":" : ",{\"name\":");
    w.string(rec.relationships[i].name);
    w.raw(",\"target\":");
    w.string(rec.relationships[i].target.str());
    w.raw("}");
  }
  w.raw("],\"type\":");
  w.string(rec.type);
  w.raw(",\"updated\":");
  w.integer(rec.updated_ms);
  w.raw(",\"version\":");
  w.integer(rec.version);
  w.raw("}");
  return out;
}

} // namespace twin::runtime
