#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <nlohmann/json.hpp>

#include "twin/runtime/value.hpp"

namespace twin::runtime {

struct value_schema;
using schema_ptr = std::shared_ptr<const value_schema>;

/// What the values of a property (or of a field, a map's values, an array's elements) may
/// be: a DTDL schema. Primitives map onto a value's kinds; dates, times and durations are
/// strings in their ISO 8601 forms; an Enum's values are its enumValues; an Object has
/// named fields; a Map has string keys and values of one schema; an Array elements of one.
struct value_schema {
  enum class kind : uint8_t {
    boolean,
    integer,      ///< integer, long, short, byte and the unsigned ones (with their ranges)
    real,         ///< double, float, decimal
    string,       ///< string, uuid, bytes (base64)
    date,         ///< "2024-05-01"
    date_time,    ///< "2024-05-01T12:00:00Z" (RFC 3339: a zone, fractions of a second)
    time,         ///< "12:00:00" (fractions of a second)
    duration,     ///< "PT1H30M", "P2DT3H" (ISO 8601)
    enumeration,  ///< one of `enum_values`, of `enum_kind` (integer or string)
    object,       ///< `fields`, each optional; none declared: any object
    map,          ///< string keys, values of `element`
    array,        ///< elements of `element`
  };
  kind k = kind::real;
  std::string id;    ///< the DTMI of a named schema; empty for an inline or primitive one
  std::string name;  ///< the DTDL name it was declared with ("long", "dateTime", ...)
  std::optional<double> min, max;  ///< of an integer (byte: -128 .. 127, ...)
  kind enum_kind = kind::string;
  std::vector<std::pair<std::string, value>> enum_values;  ///< name, enumValue
  std::vector<std::pair<std::string, schema_ptr>> fields;  ///< name, schema
  schema_ptr element;                                      ///< of a map or array

  /// The primitive schema named `name` in DTDL ("double", "dateTime", "unsignedByte", ...),
  /// nullptr if there is none of that name. Geospatial schemas ("point", "polygon", ...)
  /// are objects.
  static schema_ptr primitive(std::string_view name);
};

/// Checks `v`, the value of the property `path`, against `s`; the error (`type_mismatch`,
/// `out_of_range`, `unknown_property`) names the part of the value that is wrong, e.g.
/// "property 'lastKnownValue.timestamp' expects a dateTime ...". Null fields and map
/// values are accepted (they delete), null array elements are not.
caf::error check_schema(const value_schema& s, const value& v, const std::string& path);

/// The schema as an API shows it: {"type": "enum", "values": {...}}, {"type": "object",
/// "fields": {...}}, {"type": "map", "values": ...}, {"type": "array", "items": ...}, or
/// the primitive's name.
nlohmann::json to_json(const value_schema& s);

/// Whether `text` is an ISO 8601 duration ("P1Y2M3DT4H5M6.5S", "PT0S", "P3W").
bool valid_duration(std::string_view text);

} // namespace twin::runtime
