// What-if scenarios against a real twind: POST /v1/scenarios on a subtree of twins whose
// types declare dynamics, and what it refuses; the live twins never change.

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "models_node_test.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* heater_model = R"({
  "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:heater;1", "@type": "Interface",
  "contents": [
    {"@type": "Property", "name": "power", "schema": "double", "minimum": 0, "maximum": 10,
     "writable": true},
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
    {"@type": "Command", "name": "off"}],
  "twin": {"kind": "component",
           "dynamics": {"power": {"target": "desired.power", "lag": 1},
                        "temperature": {"target": "15 + 2 * power", "lag": 60}},
           "commands": [{"name": "off", "desired": {"power": 0}}],
           "alerts": [{"name": "hot", "when": "temperature > 30", "severity": "warning"}]}})";

constexpr const char* room_model = R"({
  "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:room;1", "@type": "Interface",
  "contents": [],
  "twin": {"kind": "asset",
           "aggregates": [{"name": "max_temperature", "function": "max",
                           "source": "temperature"}]}})";

class scenario_http_test : public models_node_test {
protected:
  std::map<std::string, std::string> models() const override {
    return {{"heater.json", heater_model}, {"room.json", room_model}};
  }
  http_reply post(const json& body) {
    return client_->call("POST", "/v1/scenarios", body.dump(), json_type);
  }
};

TEST_F(scenario_http_test, a_scenario_runs_a_copy_and_the_live_twins_stay_as_they_are) {
  auto put = [&](const std::string& id, const json& body) {
    auto r = client_->call("PUT", "/v1/twins/" + id, body.dump(), json_type);
    ASSERT_EQ(r.status, 201u) << r.body;
  };
  put("h:room", {{"type", "room"}});
  for (auto id : {"h:a", "h:b"})
    put(id, {{"type", "heater"}, {"parent", "h:room"},
             {"properties", {{"power", 2.0}, {"temperature", 19.0}}}, {"desired", {{"power", 2.0}}}});
  auto before = client_->call("GET", "/v1/twins/h:a");

  auto r = post({{"root", "h:room"},
                 {"horizon_s", 600},
                 {"step_s", 1},
                 {"changes", {{{"twin", "h:a"}, {"desired", {{"power", 8}}}},
                              {{"twin", "h:b"}, {"command", "off"}}}},
                 {"watch", {"h:a/temperature", "h:room/max_temperature", "h:b/temperature"}}});
  ASSERT_EQ(r.status, 200u) << r.body;
  auto doc = json::parse(r.body);
  EXPECT_EQ(doc["twins"], 3);
  EXPECT_EQ(doc["twin_steps"], 1800);
  ASSERT_EQ(doc["series"].size(), 3u);
  const auto& a = doc["series"][0]["points"];
  ASSERT_EQ(a.size(), 601u);
  EXPECT_EQ(a[0], json::array({0.0, 19.0}));
  EXPECT_NEAR(a[600][1].get<double>(), 31, 0.1);
  EXPECT_EQ(doc["series"][1]["points"][600], a[600]);
  EXPECT_NEAR(doc["series"][2]["points"][600][1].get<double>(), 15, 0.1);  // off: cools down
  ASSERT_EQ(doc["alerts"].size(), 1u);
  EXPECT_EQ(doc["alerts"][0]["twin"], "h:a");
  EXPECT_EQ(doc["alerts"][0]["alert"], "hot");
  EXPECT_EQ(doc["alerts"][0]["state"], "raised");
  EXPECT_NEAR(doc["alerts"][0]["t_s"].get<double>(), 149, 2);
  EXPECT_EQ(doc["final"]["h:a"]["health"], "warning");
  // The live twin is untouched: same version, same state.
  auto after = client_->call("GET", "/v1/twins/h:a");
  EXPECT_EQ(after.body, before.body);
}

TEST_F(scenario_http_test, an_optimisation_answers_the_best_set_points_and_their_scenario) {
  ASSERT_EQ(client_->call("PUT", "/v1/twins/h:room", R"({"type":"room"})", json_type).status,
            201u);
  for (auto id : {"h:a", "h:b"})
    ASSERT_EQ(client_->call("PUT", std::string{"/v1/twins/"} + id,
                            json{{"type", "heater"}, {"parent", "h:room"},
                                 {"properties", {{"power", 1.0}, {"temperature", 17.0}}}}
                              .dump(),
                            json_type)
                .status,
              201u);
  // The warmest room without a hot heater: each heater at most 7.5 (15 + 2 * 7.5 = 30).
  json body{{"root", "h:room"},
            {"horizon_s", 600},
            {"vary", {{{"twin", "h:a"}, {"desired", "power"}, {"min", 0}, {"max", 10}},
                      {{"twin", "h:b"}, {"desired", "power"}, {"min", 0}, {"max", 10}}}},
            {"objective", {{"series", "h:room/max_temperature"}, {"maximize", "final"}}},
            {"constraints", {{{"no_alert", "warning"}}}},
            {"max_evaluations", 50}};
  auto r = client_->call("POST", "/v1/scenarios/optimize", body.dump(), json_type);
  ASSERT_EQ(r.status, 200u) << r.body;
  auto doc = json::parse(r.body);
  EXPECT_TRUE(doc["feasible"].get<bool>());
  EXPECT_LE(doc["evaluations"].get<int>(), 50);
  ASSERT_EQ(doc["best"].size(), 2u);
  double best = std::max(doc["best"][0]["value"].get<double>(), doc["best"][1]["value"].get<double>());
  EXPECT_NEAR(best, 7.5, 0.1);
  EXPECT_NEAR(doc["objective"].get<double>(), 30, 0.3);
  EXPECT_TRUE(doc["scenario"]["alerts"].empty());
  EXPECT_EQ(doc["scenario"]["series"][0]["property"], "max_temperature");
  // twinctl prints the same from a file.
  std::ofstream{dir_.sub("optimize.json")} << body.dump();
  auto printed = run_twinctl(port_, {"scenario", "optimize", dir_.sub("optimize.json")});
  ASSERT_EQ(printed.code, 0) << printed.err;
  EXPECT_EQ(printed.out.rfind("TWIN ", 0), 0u) << printed.out;
  EXPECT_NE(printed.out.find("h:room/max_temperature"), std::string::npos) << printed.out;
  EXPECT_NE(printed.out.find("objective 30"), std::string::npos) << printed.out;
  // Bad objectives and budgets are refused.
  for (auto edit : {json{{"objective", {{"series", "h:room/max_temperature"}}}},
                    json{{"objective", {{"series", "h:room/max_temperature"}, {"maximize", "peak"}}}},
                    json{{"max_evaluations", 1}}, json{{"vary", json::array()}},
                    json{{"constraints", {{{"no_alert", "ok"}}}}}}) {
    auto bad = body;
    bad.update(edit);
    EXPECT_EQ(client_->call("POST", "/v1/scenarios/optimize", bad.dump(), json_type).status, 400u)
      << edit;
  }
}

TEST_F(scenario_http_test, twinctl_runs_and_compares_scenarios_from_files) {
  ASSERT_EQ(client_->call("PUT", "/v1/twins/h:room", R"({"type":"room"})", json_type).status,
            201u);
  ASSERT_EQ(client_->call("PUT", "/v1/twins/h:a",
                          R"({"type":"heater","parent":"h:room","properties":{"power":2,"temperature":19}})",
                          json_type)
              .status,
            201u);
  auto write = [&](const char* name, double power) {
    std::ofstream{dir_.sub(name)} << json{{"root", "h:room"},
                                          {"horizon_s", 600},
                                          {"changes", {{{"twin", "h:a"}, {"desired", {{"power", power}}}}}},
                                          {"watch", {"h:a/temperature"}}}
                                       .dump();
    return dir_.sub(name);
  };
  auto low = write("low.json", 2);
  auto high = write("high.json", 8);
  auto twinctl = [&](std::vector<std::string> args) {
    return run_twinctl(port_, args);
  };
  auto run = twinctl({"scenario", "run", high});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out.rfind("SERIES ", 0), 0u) << run.out;
  EXPECT_NE(run.out.find("h:a/temperature"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("h:a   hot"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("2 twins, 1200 twin-steps over 600 s"), std::string::npos) << run.out;
  auto compared = twinctl({"scenario", "compare", low, high});
  ASSERT_EQ(compared.code, 0) << compared.err;
  EXPECT_NE(compared.out.find("alerts raised / cleared  0 / 0"), std::string::npos) << compared.out;
  EXPECT_NE(compared.out.find("/ 19  "), std::string::npos) << compared.out;  // low: stays at 19
  auto as_json = json::parse(twinctl({"--json", "scenario", "compare", low, high}).out);
  ASSERT_EQ(as_json.size(), 2u);
  EXPECT_EQ(as_json[1]["alerts"][0]["alert"], "hot");
  EXPECT_EQ(twinctl({"scenario", "run", dir_.sub("missing.json")}).code, 1);
  auto broken = write("broken.json", 99);  // beyond the heater's range
  EXPECT_EQ(twinctl({"scenario", "run", broken}).code, 5);
}

TEST_F(scenario_http_test, bad_scenarios_get_a_clear_4xx) {
  ASSERT_EQ(client_->call("PUT", "/v1/twins/h:room", R"({"type":"room"})", json_type).status,
            201u);
  auto code = [&](const json& body) {
    auto r = post(body);
    return std::make_pair(r.status, json::parse(r.body, nullptr, false).value(
                                      "error", json::object()).value("message", std::string{}));
  };
  EXPECT_EQ(code({{"root", "h:none"}}).first, 404u);
  EXPECT_EQ(code({{"horizon_s", 10}}).first, 400u);  // no root
  EXPECT_EQ(code({{"root", "h:room"}, {"horizon_s", -1}}).first, 400u);
  EXPECT_EQ(code({{"root", "h:room"}, {"horizon_s", 1e9}}).first, 400u);
  EXPECT_EQ(code({{"root", "h:room"}, {"watch", {"h:room"}}}).first, 400u);
  EXPECT_EQ(code({{"root", "h:room"}, {"watch", {"h:room/nope"}}}).first, 400u);
  EXPECT_EQ(code({{"root", "h:room"}, {"changes", {{{"twin", "h:room"}}}}}).first, 400u);
  EXPECT_EQ(code({{"root", "h:room"}, {"colour", "red"}}).first, 400u);
  auto outside = code({{"root", "h:room"}, {"changes", {{{"twin", "h:x"}, {"command", "off"}}}}});
  EXPECT_EQ(outside.first, 400u);
  EXPECT_NE(outside.second.find("not in the subtree"), std::string::npos) << outside.second;
  EXPECT_EQ(client_->call("POST", "/v1/scenarios", "{}", {{"Content-Type", "text/plain"}}).status,
            415u);
  EXPECT_EQ(client_->call("GET", "/v1/scenarios").status, 405u);
}

} // namespace
} // namespace twin::test
