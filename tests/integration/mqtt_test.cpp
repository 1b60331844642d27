// The MQTT device path of a real twind process through a real Mosquitto broker, both on
// 127.0.0.1 ports of their own: telemetry in, desired deltas out, bad messages dropped
// without stopping ingestion, and QoS 1 telemetry sent while the node was down.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_model.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "http_client.hpp"
#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using runtime::twin_id;

TEST(mqtt_topics, are_built_and_read_back_as_designed) {
  auto id = twin_id::trusted("factory:motor-1-2-3");
  EXPECT_EQ(ingest::telemetry_topic(id), "twins/factory:motor-1-2-3/telemetry");
  EXPECT_EQ(ingest::desired_topic(id), "twins/factory:motor-1-2-3/desired");
  EXPECT_EQ(ingest::command_topic(id, "stop"), "twins/factory:motor-1-2-3/commands/stop");
  EXPECT_EQ(*ingest::telemetry_topic_id(ingest::telemetry_topic(id)), id);
  twin_id heard;
  std::string command = "x";
  ASSERT_TRUE(ingest::parse_device_topic(ingest::desired_topic(id), heard, command));
  EXPECT_EQ(heard, id);
  EXPECT_EQ(command, "");
  ASSERT_TRUE(ingest::parse_device_topic(ingest::command_topic(id, "stop"), heard, command));
  EXPECT_EQ(command, "stop");
  for (auto bad : {"twins/factory:m/telemetry", "twins/Bad Id/desired", "twins/a:b/commands/",
                   "twins/a:b", "other/a:b/desired", "twins//desired"})
    EXPECT_FALSE(ingest::parse_device_topic(bad, heard, command)) << bad;
  for (auto bad : {"twins/a:b/desired", "twins//telemetry", "twins/Bad Id/telemetry",
                   "twins/a:b/telemetry/x"})
    EXPECT_FALSE(ingest::telemetry_topic_id(bad)) << bad;
}

class mqtt_test : public mqtt_node_test {};

TEST_F(mqtt_test, telemetry_reaches_the_twin_and_bad_messages_are_dropped) {
  device d{broker_port_};
  EXPECT_TRUE(eventually([&] { return metric("twin_mqtt_connected") == 1; }));
  // A sample time after the twin's creation (an older sample would not replace it).
  auto ts = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count();
  d.publish("twins/t:g1/telemetry", json{{"level", 42.5}, {"ts", ts}}.dump());
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 42.5; }));
  EXPECT_EQ(twin("t:g1")["metadata"]["level"]["updated"], ts);

  // Not JSON, not an object, a bad "ts", a bad id, an unknown twin, a value out of range,
  // a number beyond double, a payload over 64 KiB, then a QoS 0 message: nothing stops
  // the next one.
  d.publish("twins/t:g1/telemetry", "{not json");
  d.publish("twins/t:g1/telemetry", "[1, 2]");
  d.publish("twins/t:g1/telemetry", R"({"level": 5, "ts": "now"})");
  d.publish("twins/Bad Id/telemetry", R"({"level": 5})");
  d.publish("twins/t:nobody/telemetry", R"({"level": 5})");
  d.publish("twins/t:g1/telemetry", R"({"level": 500})");
  d.publish("twins/t:g1/telemetry", R"({"level": 1e400})");
  d.publish("twins/t:g1/telemetry", R"({"level": "x)" + std::string(70000, 'x') + R"("})");
  d.publish("twins/t:g1/telemetry", R"({"level": 7.25, "ts": null})", 0);
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 7.25; }));
  EXPECT_TRUE(eventually([&] {
    return metric(R"(twin_ingest_messages_total{source="mqtt",result="malformed"})") == 6
           && metric(R"(twin_ingest_messages_total{source="mqtt",result="rejected"})") == 2
           && metric(R"(twin_ingest_messages_total{source="mqtt",result="accepted"})") == 2;
  }));
  EXPECT_NE(node_->stderr_text().find("twins/t:g1/telemetry dropped"), std::string::npos);
  http_client m{metrics_port_};
  auto text = m.call("GET", "/metrics").body;
  auto problems = promtool_problems(text);
  if (!problems)
    GTEST_SKIP() << "PROMTOOL IS NOT INSTALLED: run scripts/setup; the metrics were not linted";
  EXPECT_EQ(*problems, "") << text;
}

TEST_F(mqtt_test, the_desired_delta_goes_to_the_device_retained_until_it_reports) {
  device d{broker_port_, {"twins/t:g1/desired"}};
  auto patched = client_->call("PATCH", "/v1/twins/t:g1", R"({"desired": {"target": 50}})",
                               {{"Content-Type", "application/merge-patch+json"}});
  ASSERT_EQ(patched.status, 200u) << patched.body;
  // (The device may first get the empty delta that the twin's creation left retained.)
  auto latest_is = [](device& who, const json& delta) {
    auto m = who.on("twins/t:g1/desired");
    return !m.empty() && json::parse(m.back().payload) == delta;
  };
  ASSERT_TRUE(eventually([&] { return latest_is(d, {{"target", 50.0}}); }));

  // A device that subscribes later gets the retained delta.
  device late{broker_port_, {"twins/t:g1/desired"}};
  ASSERT_TRUE(eventually([&] { return latest_is(late, {{"target", 50.0}}); }));
  EXPECT_TRUE(late.on("twins/t:g1/desired").back().retained);

  // The device reports the target: the delta is empty, and says so.
  d.publish("twins/t:g1/telemetry", R"({"target": 50})");
  ASSERT_TRUE(eventually([&] { return latest_is(d, json::object()); })) << twin("t:g1").dump();
  EXPECT_EQ(twin("t:g1")["delta"], json::object());
}

TEST_F(mqtt_test, qos1_telemetry_sent_while_the_node_was_down_is_applied_when_it_returns) {
  stop_node();
  {
    device d{broker_port_};
    for (int i = 1; i <= 20; ++i)
      d.publish("twins/t:g1/telemetry", json{{"level", static_cast<double>(i)}}.dump());
  }
  ASSERT_NO_FATAL_FAILURE(start_node());
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 20.0; }))
    << twin("t:g1").dump();
}

TEST_F(mqtt_test, the_node_reconnects_when_the_broker_restarts) {
  stop_broker();
  EXPECT_TRUE(eventually([&] { return metric("twin_mqtt_connected") == 0; }));
  // Alive, but not ready, and /readyz says why.
  auto ready = client_->call("GET", "/readyz");
  EXPECT_EQ(ready.status, 503u);
  auto body = json::parse(ready.body);
  EXPECT_EQ(body["checks"]["mqtt"]["ok"], false) << ready.body;
  EXPECT_EQ(body["checks"]["store"]["ok"], true) << ready.body;
  EXPECT_EQ(body["error"]["message"],
            "mqtt: not connected to tcp://127.0.0.1:" + std::to_string(broker_port_));
  EXPECT_EQ(client_->call("GET", "/healthz").status, 200u);
  ASSERT_NO_FATAL_FAILURE(start_broker());
  // The node retries after 100 ms, then at growing intervals (at most 10 s).
  ASSERT_TRUE(eventually([&] { return metric("twin_mqtt_connected") == 1; }, 20s));
  EXPECT_EQ(client_->call("GET", "/readyz").status, 200u);
  device d{broker_port_};
  d.publish("twins/t:g1/telemetry", R"({"level": 33})");
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 33; }));
  EXPECT_NE(node_->stderr_text().find("lost"), std::string::npos);
}

/// The names of `twin_` series (e.g. a histogram's `_bucket`, never the histogram's own
/// name) in `text`, leaving out the comments of the text format.
std::set<std::string> series_in(const std::string& text) {
  static const std::regex name{R"(\btwin_[a-z0-9_]+)"};
  std::set<std::string> out;
  std::istringstream lines{text};
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind("# HELP", 0) != 0 && line.rfind("# TYPE", 0) != 0)
      for (std::sregex_iterator it{line.begin(), line.end(), name}, end; it != end; ++it)
        out.insert(it->str());
  return out;
}

TEST_F(mqtt_test, the_dashboard_and_the_alert_rules_use_only_metrics_the_node_serves) {
  // With a broker and the HTTP API, the node serves every family it has.
  http_client m{metrics_port_};
  auto served = series_in(m.call("GET", "/metrics").body);
  ASSERT_GT(served.size(), 40u);
  for (const char* file :
       {"/docker/grafana/dashboards/twin-runtime.json", "/docker/prometheus/rules.yml"}) {
    std::ifstream in{std::string{SOURCE_DIR} + file};
    ASSERT_TRUE(in) << file;
    std::string text{std::istreambuf_iterator<char>{in}, {}};
    auto used = series_in(text);
    EXPECT_GT(used.size(), 5u) << file;
    for (const auto& n : used)
      EXPECT_EQ(served.count(n), 1u) << file << " uses " << n << ", which the node does not serve";
  }
}

TEST_F(mqtt_test, twinsim_drives_the_demo_plant_over_mqtt) {
  stop_node();
  auto broker = "tcp://127.0.0.1:" + std::to_string(broker_port_);
  node_ = std::make_unique<process>(std::vector<std::string>{
    FACTORY_PATH, "--demo", "--demo-lines", "1", "--demo-robots", "2", "--demo-motors", "2",
    "--data-dir", dir_.sub("demo"), "--bind", "127.0.0.1", "--http-port",
    std::to_string(http_port_), "--metrics-port", "0", "--mqtt-url", broker,
    "--admin-token-file", admin_token_args(dir_.path())[1]});
  ASSERT_TRUE(wait_for_200(http_port_, "/readyz", 20s)) << node_->stderr_text();
  client_ = std::make_unique<http_client>(http_port_);
  process sim{{TWINSIM_PATH, "--mqtt-url", broker, "--lines", "1", "--robots", "2", "--motors",
               "2", "--period-ms", "5"}};
  // The motors' reports come over MQTT, and roll up to the plant.
  ASSERT_TRUE(eventually([&] {
    auto m = twin("factory:motor-1-2-2");
    return m["metadata"]["temperature"]["source"] == "mqtt";
  })) << sim.stderr_text() << node_->stderr_text();
  EXPECT_TRUE(eventually([&] { return twin("factory:plant")["properties"].contains("power_kw"); }));
  // A desired rpm reaches the simulated motor, which then reports it.
  auto patched = client_->call("PATCH", "/v1/twins/factory:motor-1-2-2",
                               R"({"desired": {"rpm": 100}})", json_type);
  ASSERT_EQ(patched.status, 200u) << patched.body;
  EXPECT_TRUE(eventually([&] {
    return twin("factory:motor-1-2-2")["properties"]["rpm"] == 100.0;
  })) << twin("factory:motor-1-2-2").dump();
  // The robot's stop (a model file's command effect) stops each of its motors.
  auto stopped = client_->call("POST", "/v1/twins/factory:robot-1-2/commands/stop", "{}",
                               json_type);
  ASSERT_EQ(stopped.status, 202u) << stopped.body;
  for (const char* m : {"factory:motor-1-2-1", "factory:motor-1-2-2"})
    EXPECT_EQ(twin(m)["desired"]["rpm"], 0.0) << twin(m).dump();
  EXPECT_TRUE(eventually([&] {
    return twin("factory:motor-1-2-2")["properties"]["rpm"] == 0.0;
  })) << twin("factory:motor-1-2-2").dump();
  // A burst of commands and desired states while the motors report: the simulator keeps
  // reporting (what hears the broker and what publishes to it share the client's lock).
  {
    device d{broker_port_};
    for (int i = 0; i < 200; ++i) {
      d.publish("twins/factory:motor-1-1-1/commands/stop", "{}", 0);
      d.publish("twins/factory:motor-1-1-1/desired", R"({"rpm": 900})", 0);
    }
  }
  auto version = twin("factory:motor-1-2-2")["version"].get<int64_t>();
  EXPECT_TRUE(eventually([&] {
    return twin("factory:motor-1-2-2")["version"].get<int64_t>() > version + 20;
  }));
  sim.signal(SIGTERM);
  EXPECT_EQ(sim.wait(10s), 0) << sim.stderr_text();
}

} // namespace
} // namespace twin::test
