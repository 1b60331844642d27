#pragma once

// The fixture of the tests against a real twind serving the test's own model files on
// 127.0.0.1: the files are written, the node is started before each test with a client on
// its HTTP API, may be stopped and started again on the same data, and is stopped after
// the test (it must exit cleanly).

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "http_client.hpp"
#include "process.hpp"
#include "stop_node.hpp"
#include "test_support.hpp"

namespace twin::test {

class models_node_test : public ::testing::Test {
protected:
  /// The model files, by file name.
  virtual std::map<std::string, std::string> models() const = 0;

  void SetUp() override {
    std::filesystem::create_directories(dir_.sub("models"));
    for (const auto& [name, text] : models())
      std::ofstream{dir_.sub("models/" + name)} << text;
    start();
  }
  void TearDown() override { stop(); }

  void start() {
    using namespace std::chrono_literals;
    port_ = free_port();
    node_ = std::make_unique<process>(std::vector<std::string>{
      TWIND_PATH, "--data-dir", dir_.sub("data"), "--models", dir_.sub("models"), "--bind",
      "127.0.0.1", "--http-port", std::to_string(port_), "--metrics-port", "0",
      "--admin-token-file", admin_token_args(dir_.path())[1]});
    ASSERT_TRUE(wait_for_200(port_, "/readyz", 20s)) << node_->stderr_text();
    client_ = std::make_unique<http_client>(port_);
  }
  void stop() {
    client_.reset();
    stop_node(node_);
  }

  temp_dir dir_;
  int port_ = 0;
  std::unique_ptr<process> node_;
  std::unique_ptr<http_client> client_;
};

} // namespace twin::test
