// What-if scenarios against a real twind: POST /v1/scenarios on a subtree of twins whose
// types declare dynamics, and what it refuses; the live twins never change.

#include <signal.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "process.hpp"
#include "test_support.hpp"

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

class scenario_http_test : public ::testing::Test {
protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.sub("models"));
    std::ofstream{dir_.sub("models/heater.json")} << heater_model;
    std::ofstream{dir_.sub("models/room.json")} << room_model;
    port_ = free_port();
    node_ = std::make_unique<process>(std::vector<std::string>{
      TWIND_PATH, "--data-dir", dir_.sub("data"), "--models", dir_.sub("models"), "--bind",
      "127.0.0.1", "--http-port", std::to_string(port_), "--metrics-port", "0"});
    ASSERT_TRUE(wait_for_200(port_, "/readyz", 20s)) << node_->stderr_text();
    client_ = std::make_unique<http_client>(port_);
  }
  void TearDown() override {
    client_.reset();
    node_->signal(SIGTERM);
    EXPECT_EQ(node_->wait(30s), 0) << node_->stderr_text();
  }
  http_reply post(const json& body) {
    return client_->call("POST", "/v1/scenarios", body.dump(), json_type);
  }

  temp_dir dir_;
  int port_ = 0;
  std::unique_ptr<process> node_;
  std::unique_ptr<http_client> client_;
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
