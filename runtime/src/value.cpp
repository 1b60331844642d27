#include "twin/runtime/value.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace twin::runtime {

bool operator==(const value& a, const value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int())
      return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.type() != b.type())
    return false;
  switch (a.type()) {
    case value::kind::list: return a.as_list() == b.as_list();
    case value::kind::map: return a.as_map() == b.as_map();
    default: return a.data_ == b.data_;
  }
}

const char* to_string(value::kind x) {
  switch (x) {
    case value::kind::null: return "null";
    case value::kind::boolean: return "bool";
    case value::kind::integer: return "int";
    case value::kind::real: return "double";
    case value::kind::string: return "string";
    case value::kind::list: return "list";
    case value::kind::map: return "map";
  }
  return "?";
}

namespace {

void append_quoted(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void render(std::string& out, const value& x) {
  switch (x.type()) {
    case value::kind::null: out += "null"; break;
    case value::kind::boolean: out += x.as_bool() ? "true" : "false"; break;
    case value::kind::integer: out += std::to_string(x.as_int()); break;
    case value::kind::real: {
      if (!std::isfinite(x.as_double())) {
        out += "null";
        break;
      }
      // The shortest of %.15g and %.17g that reads back as the same double.
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.15g", x.as_double());
      if (std::strtod(buf, nullptr) != x.as_double())
        std::snprintf(buf, sizeof(buf), "%.17g", x.as_double());
      out += buf;
      break;
    }
    case value::kind::string: append_quoted(out, x.as_string()); break;
    case value::kind::list: {
      out += '[';
      bool first = true;
      for (const auto& y : x.as_list()) {
        if (!first)
          out += ',';
        first = false;
        render(out, y);
      }
      out += ']';
      break;
    }
    case value::kind::map: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : x.as_map()) {
        if (!first)
          out += ',';
        first = false;
        append_quoted(out, k);
        out += ':';
        render(out, v);
      }
      out += '}';
      break;
    }
  }
}

} // namespace

std::string to_string(const value& x) {
  std::string out;
  render(out, x);
  return out;
}

} // namespace twin::runtime
