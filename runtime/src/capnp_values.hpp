#pragma once

// Values, entries and enums between the runtime's types and their Cap'n Proto form
// (schemas/twin.capnp), for the record codec and the request codec. Private to the runtime.

#include <string>

#include <capnp/list.h>

#include "twin/runtime/record.hpp"
#include "twin/runtime/value.hpp"
#include "twin/schema/twin.capnp.h"

namespace twin::runtime::capn {

inline kj::StringPtr text(const std::string& s) {
  return kj::StringPtr{s.c_str(), s.size()};
}

inline std::string str(capnp::Text::Reader t) {
  return std::string{t.cStr(), t.size()};
}

void write_value(schema::Value::Builder out, const value& x);
void write_entries(capnp::List<schema::Entry>::Builder out, const value_map& m);
value read_value(schema::Value::Reader in);
value_map read_entries(capnp::List<schema::Entry>::Reader in);

inline schema::Severity to_schema(severity x) {
  return static_cast<schema::Severity>(static_cast<uint16_t>(x));
}

/// A severity; one added by a newer version reads as ok.
inline severity from_schema(schema::Severity x) {
  auto v = static_cast<uint16_t>(x);
  return v <= 2 ? static_cast<severity>(v) : severity::ok;
}

inline schema::Kind to_schema(twin_kind x) {
  return static_cast<schema::Kind>(static_cast<uint16_t>(x));
}

/// A kind; one added by a newer version reads as component.
inline twin_kind from_schema(schema::Kind x) {
  auto v = static_cast<uint16_t>(x);
  return v <= 3 ? static_cast<twin_kind>(v) : twin_kind::component;
}

} // namespace twin::runtime::capn
