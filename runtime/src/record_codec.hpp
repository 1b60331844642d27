#pragma once

// Encoding of twin records from parts, shared by `encode(twin_record)` and the records
// of active twins, which keep their reported properties in another shape.

#include <string>

#include "twin/runtime/record.hpp"

namespace twin::runtime {

/// Everything of a record except its reported properties.
struct record_frame {
  const twin_id& id;
  const std::string& type;
  twin_kind kind;
  const twin_id& parent;
  const std::vector<child_state>& children;
  const std::vector<relationship>& relationships;
  const value_map& desired;
  const std::vector<alert_state>& alerts;
  uint64_t version;
  int64_t created_ms;
  int64_t updated_ms;
};

/// One reported property; its metadata (time and source) is written if it has a source.
struct reported_entry {
  const std::string* name = nullptr;
  const value* v = nullptr;
  int64_t updated_ms = 0;
  const std::string* source = nullptr;
};

/// Encodes a record as a packed Cap'n Proto message.
std::string encode(const record_frame& frame, const reported_entry* reported, size_t count);

} // namespace twin::runtime
