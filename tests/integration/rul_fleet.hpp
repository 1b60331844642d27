#pragma once

// A fleet of engines run to failure, for the tests of remaining useful life over HTTP:
// their model, and their telemetry.

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "test_support.hpp"

namespace twin::test {

/// An engine whose RUL its type learns from the history of its wear and temperature.
inline const char* engine_model = R"({
  "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:engine;1", "@type": "Interface",
  "contents": [
    {"@type": "Telemetry", "name": "wear", "schema": "double"},
    {"@type": "Telemetry", "name": "temp", "schema": "double"},
    {"@type": "Telemetry", "name": "vibration", "schema": "double"}],
  "twin": {"kind": "component", "history": ["wear", "temp"], "rul": true}})";

/// Makes engine `id` through `c` and posts one sample a second from `t0` of a life of
/// `life` s until `left` s before its end: its wear rises to 1 over its last 100 s and its
/// temperature follows, with noise.
inline void feed_engine(http_client& c, const std::string& id, int life, int left,
                        std::mt19937_64& rng, int64_t t0) {
  using nlohmann::json;
  ASSERT_EQ(c.call("PUT", "/v1/twins/" + id, R"({"type":"engine"})", json_type).status, 201u);
  std::normal_distribution<double> noise{0, 0.01};
  json batch = json::array();
  for (int t = 0; t <= life - left; ++t) {
    double wear = std::clamp(1 - (life - t) / 100.0, 0.0, 1.0);
    batch.push_back({{"twin", id},
                     {"ts", t0 + t * 1000},
                     {"values", {{"wear", wear + noise(rng)}, {"temp", 40 + 10 * wear + 10 * noise(rng)}}}});
    if (batch.size() == 100 || t == life - left) {
      auto r = c.call("POST", "/v1/telemetry", batch.dump(), json_type);
      ASSERT_EQ(r.status, 202u) << r.body;
      ASSERT_EQ(json::parse(r.body)["rejected"], 0) << r.body;
      batch = json::array();
    }
  }
}

} // namespace twin::test
