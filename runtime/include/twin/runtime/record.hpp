#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/twin_id.hpp"
#include "twin/runtime/value.hpp"

namespace twin::runtime {

/// Composition levels, ordered: a parent's kind is equal to or higher than its child's.
enum class twin_kind : uint8_t { component = 0, asset = 1, system = 2, process = 3 };

/// Alert severities, ordered; `ok` means no active alert.
enum class severity : uint8_t { ok = 0, warning = 1, critical = 2 };

const char* to_string(twin_kind x);
const char* to_string(severity x);
/// Parses "component", "asset", ...; false if `text` names no kind.
bool from_string(std::string_view text, twin_kind& out);
/// Parses "ok", "warning", "critical"; false otherwise.
bool from_string(std::string_view text, severity& out);

/// When and from where a reported property was last updated.
struct property_meta {
  int64_t updated_ms = 0;
  std::string source;
};

/// What a parent keeps of a child: its numbers and booleans and its health.
struct child_state {
  twin_id id;
  value_map values;
  severity health = severity::ok;
  std::string type;
};

struct relationship {
  std::string name;
  twin_id target;
};

struct alert_state {
  std::string name;
  severity level = severity::warning;
  int64_t since_ms = 0;
};

/// The persistent state of one twin (stored as schema::TwinRecord). A plain value type.
struct twin_record {
  twin_id id;
  std::string type;
  twin_kind kind = twin_kind::component;
  twin_id parent;  ///< empty: none
  std::vector<child_state> children;
  std::vector<relationship> relationships;
  value_map reported;
  value_map desired;
  std::map<std::string, property_meta, std::less<>> metadata;
  std::vector<alert_state> alerts;
  uint64_t version = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

/// The desired keys whose reported value differs (or is missing).
value_map delta(const twin_record& rec);

/// Encodes a record as a packed Cap'n Proto message.
std::string encode(const twin_record& rec);

/// Decodes what `encode` wrote; returns `runtime_errc::store_corrupt` on malformed bytes.
caf::expected<twin_record> decode_record(std::string_view bytes);

/// A history sample's value (null, a boolean, a number or a string) as the store keeps
/// it, and back; `store_corrupt` on malformed bytes.
std::string encode_sample(const value& v);
caf::expected<value> decode_sample(std::string_view bytes);

/// Milliseconds since the Unix epoch.
int64_t now_ms();

} // namespace twin::runtime
