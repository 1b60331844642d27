// Twin types added and upgraded while a real twind runs, end to end through twinctl: a
// model with extends, an Enum, a dateTime and a relationship, its twins related and found
// by the relationship, an upgrade, a restart; and twins whose model is gone.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_node_test.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// A space, and a room that extends it: a use (an Enum), when it was last cleaned (a
/// dateTime) and the rooms it adjoins; version 2 adds its area.
std::string rooms(int version) {
  std::string area = version > 1 ? R"({"@type": "Property", "name": "area", "schema": "double"},)"
                                 : "";
  return R"([
  {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:b:Space;1", "@type": "Interface",
   "contents": [{"@type": "Property", "name": "label", "schema": "string"}]},
  {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:b:Room;)" + std::to_string(version) + R"(",
   "@type": "Interface", "extends": "dtmi:b:Space;1",
   "contents": [)" + area + R"(
     {"@type": "Property", "name": "use", "schema": {"@type": "Enum", "valueSchema": "string",
      "enumValues": [{"name": "office", "enumValue": "office"}, {"name": "lab", "enumValue": "lab"}]}},
     {"@type": "Property", "name": "cleaned", "schema": "dateTime"},
     {"@type": "Relationship", "name": "adjoins", "target": "dtmi:b:Room;)" + std::to_string(version)
         + R"("}]}
])";
}

class types_test : public gauge_node_test {
protected:
  run_result twinctl(std::vector<std::string> args) { return run_twinctl(port_, args); }

  std::string model_file(int version) {
    auto path = dir_.sub("rooms-" + std::to_string(version) + ".json");
    std::ofstream{path} << rooms(version);
    return path;
  }

  /// Stops the node and starts it again on the same data.
  void restart() {
    client_.reset();
    stop_node(node_);
    node_ = start_gauge_node(dir_, port_, extra_args());
    client_ = std::make_unique<http_client>(port_);
  }
};

TEST_F(types_test, a_model_uploaded_while_the_node_runs_serves_twins_and_is_upgraded) {
  auto added = twinctl({"model", "put", model_file(1)});
  ASSERT_EQ(added.code, 0) << added.err;
  EXPECT_EQ(added.out, "added Space\nadded Room\n");
  auto r1 = twinctl({"put", "b:r1", "--type", "Room", "--properties",
                     R"({"use": "lab", "cleaned": "2026-12-01T10:00:00Z", "label": "R1"})"});
  ASSERT_EQ(r1.code, 0) << r1.err;
  ASSERT_EQ(twinctl({"put", "b:r2", "--type", "dtmi:b:Room;1"}).code, 0);
  auto banana = twinctl({"put", "b:r3", "--type", "Room", "--properties", R"({"use": "banana"})"});
  EXPECT_EQ(banana.code, 5);
  EXPECT_NE(banana.err.find("use"), std::string::npos) << banana.err;
  auto yesterday = twinctl({"put", "b:r3", "--type", "Room", "--properties",
                            R"({"cleaned": "yesterday"})"});
  EXPECT_EQ(yesterday.code, 5);
  EXPECT_NE(yesterday.err.find("dateTime"), std::string::npos) << yesterday.err;

  ASSERT_EQ(twinctl({"relate", "b:r2", "adjoins", "b:r1"}).code, 0);
  auto found = twinctl({"--json", "query", "--related", "adjoins:b:r1"});
  ASSERT_EQ(found.code, 0) << found.err;
  ASSERT_EQ(json::parse(found.out)["items"].size(), 1u) << found.out;
  EXPECT_EQ(json::parse(found.out)["items"][0]["id"], "b:r2");
  auto not_a_room = twinctl({"relate", "b:r2", "adjoins", "t:nothing"});
  EXPECT_EQ(not_a_room.code, 5);

  // Version 2 adds the area; the twins take it without a restart.
  auto area = twinctl({"patch", "b:r1", "--properties", R"({"area": 20})"});
  EXPECT_EQ(area.code, 5) << "version 1 has no area";
  auto upgraded = twinctl({"model", "put", model_file(2), "--type", "Room"});
  ASSERT_EQ(upgraded.code, 0) << upgraded.err;
  EXPECT_EQ(upgraded.out, "upgraded Room\nunchanged Space\n");
  ASSERT_EQ(twinctl({"patch", "b:r1", "--properties", R"({"area": 20})"}).code, 0);
  EXPECT_EQ(twinctl({"model", "put", model_file(1)}).code, 5) << "not a higher version";

  auto check = [&] {
    auto shown = twinctl({"--json", "get", "b:r1"});
    ASSERT_EQ(shown.code, 0) << shown.err;
    auto twin = json::parse(shown.out);
    EXPECT_EQ(twin["properties"]["area"], 20);
    EXPECT_EQ(twin["properties"]["use"], "lab");
    EXPECT_EQ(twin["properties"]["cleaned"], "2026-12-01T10:00:00Z");
    auto type = twinctl({"types", "Room"});
    EXPECT_NE(type.out.find("dtmi:b:Room;2"), std::string::npos) << type.out;
    EXPECT_NE(type.out.find("area"), std::string::npos) << type.out;
    EXPECT_NE(type.out.find("enum (lab, office)"), std::string::npos) << type.out;
    auto incoming = twinctl({"relationships", "b:r1", "--incoming"});
    EXPECT_NE(incoming.out.find("b:r2"), std::string::npos) << incoming.out;
  };
  check();
  // The uploaded models are the node's own from now on.
  restart();
  ASSERT_TRUE(wait_for_200(port_, "/readyz", 20s)) << node_->stderr_text();
  check();
}

TEST_F(types_test, twins_whose_model_is_gone_are_reported_and_can_be_read_and_deleted) {
  ASSERT_EQ(put("t:g1", {{"type", "gauge"}, {"properties", {{"level", 7}}}}).status, 201u);
  ASSERT_EQ(put("t:g2", {{"type", "gauge"}}).status, 201u);
  std::filesystem::remove(dir_.sub("models/gauge.json"));
  std::filesystem::create_directories(dir_.sub("models"));
  client_.reset();
  stop_node(node_);
  std::vector<std::string> argv{TWIND_PATH,   "--data-dir", dir_.sub("data"), "--bind",
                                "127.0.0.1",  "--http-port", std::to_string(port_)};
  for (auto& a : admin_token_args(dir_.path()))
    argv.push_back(std::move(a));
  node_ = std::make_unique<process>(argv);
  client_ = std::make_unique<http_client>(port_);
  http_reply ready;
  ASSERT_TRUE(eventually([&] {
    try {
      ready = client_->call("GET", "/readyz");
      return ready.status == 503;
    } catch (const std::exception&) {
      return false;
    }
  })) << node_->stderr_text();
  EXPECT_NE(ready.body.find("twins have types no model defines ('gauge')"), std::string::npos)
    << ready.body;
  auto shown = twinctl({"--json", "get", "t:g1"});
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(json::parse(shown.out)["type_missing"], true);
  EXPECT_EQ(json::parse(shown.out)["properties"]["level"], 7);
  auto sent = twinctl({"telemetry", "send", "t:g1", R"({"level": 8})"});
  EXPECT_EQ(sent.code, 5);
  EXPECT_NE(sent.err.find("which no model of this node defines"), std::string::npos) << sent.err;
  EXPECT_NE(node_->stderr_text().find("twins have type 'gauge', which no model defines"),
            std::string::npos);
  ASSERT_EQ(twinctl({"delete", "t:g1"}).code, 0);
  ASSERT_EQ(twinctl({"delete", "t:g2"}).code, 0);
  EXPECT_TRUE(eventually([&] { return client_->call("GET", "/readyz").status == 200; }, 15s))
    << "ready once no twin has the type";
}

} // namespace
} // namespace twin::test
