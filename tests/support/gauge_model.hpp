#pragma once

// The twin type that the integration tests load from a model file: a gauge with a level
// reported by its device (0 to 100, its history kept), a label, a writable target, the
// command reset and a relationship `feeds` to another gauge; and a twind serving it.

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "http_client.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {

inline const char* gauge_model = R"({
  "@context": "dtmi:dtdl:context;3",
  "@id": "dtmi:test:gauge;1",
  "@type": "Interface",
  "contents": [
    {"@type": "Telemetry", "name": "level", "schema": "double", "minimum": 0, "maximum": 100},
    {"@type": "Property", "name": "label", "schema": "string"},
    {"@type": "Property", "name": "target", "schema": "double", "writable": true},
    {"@type": "Command", "name": "reset"},
    {"@type": "Relationship", "name": "feeds", "target": "dtmi:test:gauge;1"}
  ],
  "twin": {"kind": "component", "history": ["level"]}
})";

/// Starts twind with the gauge type (its model file written to `dir`/models), data in
/// `dir`/data, the HTTP API on 127.0.0.1:`http_port`, and `extra` arguments. The caller
/// waits for /readyz.
inline std::unique_ptr<process> start_gauge_node(const temp_dir& dir, int http_port,
                                                 std::vector<std::string> extra = {}) {
  std::filesystem::create_directories(dir.sub("models"));
  std::ofstream{dir.sub("models/gauge.json")} << gauge_model;
  std::vector<std::string> argv{TWIND_PATH,        "--data-dir", dir.sub("data"),
                                "--models",        dir.sub("models"), "--bind",
                                "127.0.0.1",       "--http-port", std::to_string(http_port)};
  for (auto& a : admin_token_args(dir.path()))
    argv.push_back(std::move(a));
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<process>(argv);
}

} // namespace twin::test
