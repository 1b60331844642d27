#pragma once

// The fixture of the MQTT tests: a real Mosquitto broker and a real twind serving the
// gauge type (with twin t:g1), both on 127.0.0.1 ports of their own, started before each
// test and stopped after it.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_model.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "stop_node.hpp"
#include "test_support.hpp"

namespace twin::test {

inline std::string mosquitto_path() {
  for (const char* p : {"/usr/sbin/mosquitto", "/usr/bin/mosquitto"})
    if (std::filesystem::exists(p))
      return p;
  return {};
}

/// Starts a Mosquitto broker on 127.0.0.1:`port` with its configuration in `dir`, and
/// waits until it listens. It keeps what a session has not acknowledged, however much;
/// `extra` lines replace `allow_anonymous true`. As root it stays root (its own user could
/// not read the test's files).
inline std::unique_ptr<process> start_mosquitto(const temp_dir& dir, int port,
                                                const std::string& extra = {}) {
  std::ofstream{dir.sub("mosquitto.conf")}
    << "listener " << port << " 127.0.0.1\npersistence false\nmax_queued_messages 0\n"
    << (::geteuid() == 0 ? "user root\n" : "")
    << (extra.empty() ? "allow_anonymous true\n" : extra);
  auto broker = std::make_unique<process>(
    std::vector<std::string>{mosquitto_path(), "-c", dir.sub("mosquitto.conf")});
  EXPECT_TRUE(eventually([&] {
    int fd = connect_loopback(port);
    if (fd >= 0)
      ::close(fd);
    return fd >= 0;
  })) << broker->stderr_text();
  return broker;
}

class mqtt_node_test : public ::testing::Test {
protected:
  using json = nlohmann::json;

  /// twind's arguments beyond the gauge node's, the ports and the broker's URL.
  virtual std::vector<std::string> node_args() { return {"--mqtt-client-id", "twind-test"}; }

  void SetUp() override {
    using namespace std::chrono_literals;
    auto broker = mosquitto_path();
    if (broker.empty())
      GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the MQTT tests did not run";
    broker_port_ = free_port();
    ASSERT_NO_FATAL_FAILURE(start_broker());
    http_port_ = free_port();
    metrics_port_ = free_port();
    ASSERT_NO_FATAL_FAILURE(start_node());
    ASSERT_EQ(client_->call("PUT", "/v1/twins/t:g1",
                            json{{"type", "gauge"}, {"properties", {{"level", 1.0}}}}.dump(),
                            json_type)
                .status,
              201u);
  }

  void TearDown() override {
    stop_node();
    stop_broker();
  }

  void start_broker() { broker_ = start_mosquitto(dir_, broker_port_); }

  void stop_broker() {
    using namespace std::chrono_literals;
    if (broker_) {
      broker_->signal(SIGTERM);
      broker_->wait(10s);
      broker_.reset();
    }
  }

  std::string broker_url() const { return "tcp://127.0.0.1:" + std::to_string(broker_port_); }

  void start_node() {
    using namespace std::chrono_literals;
    std::vector<std::string> args{"--metrics-port", std::to_string(metrics_port_), "--mqtt-url",
                                  broker_url()};
    for (auto& a : node_args())
      args.push_back(a);
    node_ = start_gauge_node(dir_, http_port_, args);
    ASSERT_TRUE(wait_for_200(http_port_, "/readyz", 20s)) << node_->stderr_text();
    client_ = std::make_unique<http_client>(http_port_);
  }

  void stop_node() {
    client_.reset();
    test::stop_node(node_);
  }

  json twin(const std::string& id) {
    auto r = client_->call("GET", "/v1/twins/" + id);
    return r.status == 200 ? json::parse(r.body) : json{};
  }

  /// The value of a sample of /metrics, e.g. `twin_mqtt_connected`; -1 if absent.
  double metric(const std::string& sample) { return metric_value(metrics_port_, sample); }

  /// The MQTT messages counted with `result`.
  double mqtt_result(const std::string& result) {
    return metric(R"(twin_ingest_messages_total{source="mqtt",result=")" + result + "\"}");
  }

  temp_dir dir_;
  int broker_port_ = 0;
  int http_port_ = 0;
  int metrics_port_ = 0;
  std::unique_ptr<process> broker_;
  std::unique_ptr<process> node_;
  std::unique_ptr<http_client> client_;
};

} // namespace twin::test
