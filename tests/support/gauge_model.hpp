#pragma once

// The twin type that the integration tests load from a model file: a gauge with a level
// reported by its device (0 to 100), a label and a writable target.

#include <map>
#include <string>

namespace twin::test {

inline const char* gauge_model = R"({
  "@context": "dtmi:dtdl:context;3",
  "@id": "dtmi:test:gauge;1",
  "@type": "Interface",
  "contents": [
    {"@type": "Telemetry", "name": "level", "schema": "double", "minimum": 0, "maximum": 100},
    {"@type": "Property", "name": "label", "schema": "string"},
    {"@type": "Property", "name": "target", "schema": "double", "writable": true}
  ],
  "twin": {"kind": "component"}
})";

inline const std::map<std::string, std::string> json_type{
  {"Content-Type", "application/json"}};

} // namespace twin::test
