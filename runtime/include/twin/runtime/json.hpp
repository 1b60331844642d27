#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "twin/runtime/record.hpp"
#include "twin/runtime/value.hpp"

namespace twin::runtime {

/// How deep a property value may nest.
constexpr int max_value_depth = 32;
/// How deep a request may nest: its object, a map of values ("properties", "values"),
/// then the values.
constexpr int max_document_depth = max_value_depth + 2;

/// Converts a value to JSON. Non-finite doubles become null.
nlohmann::json to_json(const value& x);
nlohmann::json to_json(const value_map& x);

/// Converts JSON to a value; returns `invalid_argument` if it nests deeper than
/// `max_depth` or holds an integer beyond int64 range.
caf::expected<value> value_from_json(const nlohmann::json& j,
                                     int max_depth = max_value_depth);
/// The same for a JSON object (e.g. "properties"); `invalid_argument` if not an object.
caf::expected<value_map> map_from_json(const nlohmann::json& j,
                                       int max_depth = max_value_depth);
/// The map under `key` of the object `doc` (absent or null: empty); `invalid_argument`
/// naming the key if it is not an object of values.
caf::expected<value_map> map_field(const nlohmann::json& doc, const char* key);
/// "properties" and "desired" of a put or patch request.
struct state_maps {
  value_map properties;
  value_map desired;
};
caf::expected<state_maps> state_fields(const nlohmann::json& doc);
/// "relationships" of a put request: `[{"name": text, "target": twin id}]` (absent or null:
/// none); `invalid_argument` or `invalid_id` saying what is wrong.
caf::expected<std::vector<relationship>> relationships_field(const nlohmann::json& doc);

/// Parses `text` (at most `depth` levels deep); `invalid_argument` naming `what` (e.g. "the
/// body") and saying where and why it is not JSON, e.g. "the body is not valid JSON: at
/// line 1, column 9: syntax error ..." or "... number overflow parsing '1e400'".
caf::expected<nlohmann::json> parse_json(std::string_view text, const std::string& what,
                                         int depth = max_document_depth);

/// Whether `text` nests arrays and objects deeper than `limit` (strings skipped). Checked
/// before parsing, so that a hostile document costs one pass and no deep tree.
bool nests_deeper_than(std::string_view text, int limit);

/// A time as ms since the epoch, from its text: ms since the epoch (an integer), or an
/// ISO 8601 date ("2024-05-01") or time with its zone ("2024-05-01T12:00:00.250Z",
/// "2024-05-01T14:00:00+02:00"). nullopt if it is neither.
std::optional<int64_t> parse_time(std::string_view text);

/// A sample time "ts": a positive integer (ms since the epoch) or an ISO 8601 time as a
/// string; null: none (0).
caf::expected<int64_t> ts_from_json(const nlohmann::json& j);

/// A device's telemetry message (MQTT): a JSON object of property values with an
/// optional "ts", a positive integer (ms since the epoch; 0 in `ts_ms` if absent).
struct device_telemetry {
  value_map values;
  int64_t ts_ms = 0;
};
/// Parses a device's telemetry message; `invalid_argument` saying what is wrong.
caf::expected<device_telemetry> device_telemetry_from_json(std::string_view payload);

/// An error as the API shows it: {"code": its runtime_errc name or "internal", "message"}.
nlohmann::json to_json(const caf::error& err);

/// Appends `s` to `out` as a JSON string: quoted, with quotes, backslashes and control
/// characters escaped and each byte that is not part of valid UTF-8 replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view s);

/// The twin as the API shows it: id, type, kind, parent, children, properties,
/// desired, delta, metadata, alerts, version, created, updated.
nlohmann::json to_json(const twin_record& rec);
/// The same document as `to_json(rec).dump()`, written straight to text without building
/// the tree first, several times faster (reads of single twins are the API's hottest
/// path). Doubles may be written in another but equal form; bytes that are not UTF-8
/// are replaced with U+FFFD.
std::string to_json_text(const twin_record& rec);

} // namespace twin::runtime
