#pragma once

// Encoding of twin records from parts, shared by `encode(twin_record)` and the records
// of active twins, which keep their reported properties in another shape.

#include <cstdint>
#include <string>
#include <vector>

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

/// A `twin_record` as the encoder's parts; it refers to the record.
struct record_view {
  explicit record_view(const twin_record& rec);
  record_frame frame;
  std::vector<reported_entry> reported;
};

/// The distinct sources of a record's reported properties in order of first use (a
/// record has one or a few), and each property's index among them.
class source_list {
public:
  void clear() { sources_.clear(); }
  uint32_t index_of(const std::string* s) {
    size_t i = 0;
    while (i < sources_.size() && sources_[i] != s && *sources_[i] != *s)
      ++i;
    if (i == sources_.size())
      sources_.push_back(s);
    return static_cast<uint32_t>(i);
  }
  const std::vector<const std::string*>& sources() const { return sources_; }

private:
  std::vector<const std::string*> sources_;
};

/// Encodes a record as a packed Cap'n Proto message: with `encode_flat` if it can, else
/// with the builder.
std::string encode(const record_frame& frame, const reported_entry* reported, size_t count);

/// Whether `encode_flat` can write the record: no children, relationships, desired
/// state or alerts, and no list or map values. Most twins (sensors, components) are so.
bool is_flat(const record_frame& frame, const reported_entry* reported, size_t count);

/// Encodes a record for which `is_flat` holds, word by word, as one segment. For a record
/// that fits the builder's first segment (4 KiB) the bytes are those of
/// `encode_with_builder`; a bigger one the builder splits into segments.
std::string encode_flat(const record_frame& frame, const reported_entry* reported,
                        size_t count, source_list& sources);

/// Encodes any record with the Cap'n Proto builder.
std::string encode_with_builder(const record_frame& frame, const reported_entry* reported,
                                size_t count, source_list& sources);

} // namespace twin::runtime
