#pragma once

// The fixture of the tests against a real twind serving the gauge type on 127.0.0.1: the
// node is started before each test, with a client on its HTTP API, and stopped after it
// (it must exit cleanly).

#include <signal.h>

#include <chrono>
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

class gauge_node_test : public ::testing::Test {
protected:
  /// Arguments of twind beyond the data, the models and the HTTP port.
  virtual std::vector<std::string> extra_args() { return {"--metrics-port", "0"}; }

  void SetUp() override {
    using namespace std::chrono_literals;
    port_ = free_port();
    node_ = start_gauge_node(dir_, port_, extra_args());
    ASSERT_TRUE(wait_for_200(port_, "/readyz", 20s)) << node_->stderr_text();
    client_ = std::make_unique<http_client>(port_);
  }

  void TearDown() override {
    client_.reset();
    stop_node(node_);
  }

  http_reply put(const std::string& id, const nlohmann::json& body,
                 std::map<std::string, std::string> headers = json_type) {
    return client_->call("PUT", "/v1/twins/" + id, body.dump(), headers);
  }

  temp_dir dir_;
  int port_ = 0;
  std::unique_ptr<process> node_;
  std::unique_ptr<http_client> client_;
};

} // namespace twin::test
