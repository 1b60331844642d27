#pragma once

// Real twind members on loopback, with a real etcd the test starts on free ports: the
// fixture of the cluster's integration tests.

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etcd_server.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {

inline const char* counter_model = R"({
  "@context": "dtmi:dtdl:context;3",
  "@id": "dtmi:test:counter;1",
  "@type": "Interface",
  "contents": [{"@type": "Property", "name": "count", "schema": "integer", "writable": true},
               {"@type": "Telemetry", "name": "level", "schema": "double"}],
  "twin": {"kind": "component"}
})";

class cluster_test : public ::testing::Test {
protected:
  struct member {
    int http = free_port();
    int metrics = free_port();
    int cluster = free_port();
    std::unique_ptr<process> proc;
    std::unique_ptr<http_client> client;
  };

  void SetUp() override {
    if (etcd_path().empty())
      GTEST_SKIP() << "ETCD IS NOT INSTALLED: run scripts/setup; the cluster tests did not run";
    etcd_ = std::make_unique<etcd_server>(dir_.sub("etcd"));
    ASSERT_NO_FATAL_FAILURE(etcd_->start());
  }

  void TearDown() override {
    for (auto& m : members_)
      if (m.proc) {
        m.proc->signal(SIGTERM);
        m.proc->wait(std::chrono::seconds{10});
      }
  }

  std::vector<std::string> args(size_t i, std::vector<std::string> extra = {}) {
    auto& m = members_[i];
    if (!std::filesystem::exists(dir_.sub("models"))) {
      std::filesystem::copy(std::string{SOURCE_DIR} + "/examples/factory/models",
                            dir_.sub("models"));
      std::ofstream{dir_.sub("models/counter.json")} << counter_model;
    }
    std::vector<std::string> a{TWIND_PATH, "--data-dir", dir_.sub("n" + std::to_string(i)),
                               "--node-id", "node-" + std::to_string(i), "--models",
                               dir_.sub("models"),
                               "--http-port", std::to_string(m.http), "--metrics-port",
                               std::to_string(m.metrics), "--cluster-etcd", etcd_->url(),
                               "--cluster-port", std::to_string(m.cluster), "--cluster-lease",
                               "2"};
    auto token = admin_token_args(dir_.path());
    a.insert(a.end(), token.begin(), token.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  /// Starts member `i` (again), with `extra` arguments, and waits until it is ready.
  void start(size_t i, std::vector<std::string> extra = {}) {
    members_.resize(std::max(members_.size(), i + 1));
    auto& m = members_[i];
    m.proc = std::make_unique<process>(args(i, std::move(extra)));
    ASSERT_TRUE(wait_for_200(m.metrics, "/readyz", std::chrono::seconds{30})) << m.proc->stderr_text();
    m.client = std::make_unique<http_client>(m.http);
  }

  /// Starts members 0 to `n` - 1 (with `extra` arguments) and waits until they share the
  /// shards.
  void start_cluster(size_t n, const std::vector<std::string>& extra = {}) {
    for (size_t i = 0; i < n; ++i)
      ASSERT_NO_FATAL_FAILURE(start(i, extra));
    ASSERT_NO_FATAL_FAILURE(wait_for_balance(n));
  }

  /// Waits until no handoff is under way, the shards are balanced over `n` members and
  /// every member that runs is ready.
  void wait_for_balance(size_t n) {
    ASSERT_TRUE(eventually(
      [&] {
        auto r = members_[0].client->call("GET", "/v1/cluster");
        if (r.status != 200)
          return false;
        auto j = nlohmann::json::parse(r.body);
        if (j["members"].size() != n || !j["handoffs"].empty() || j["unowned"] != 0)
          return false;
        int lo = 1 << 30, hi = 0;
        for (const auto& m : j["members"]) {
          lo = std::min(lo, m["shards"].get<int>());
          hi = std::max(hi, m["shards"].get<int>());
        }
        for (auto& m : members_)
          if (m.proc && !wait_for_200(m.metrics, "/readyz", std::chrono::milliseconds{100}))
            return false;
        return hi - lo <= 1;
      },
      std::chrono::seconds{30}));
  }


  http_client& at(size_t i) { return *members_[i].client; }

  /// The HTTP ports of the members, up or not.
  std::vector<int> http_ports() const {
    std::vector<int> out;
    for (const auto& m : members_)
      out.push_back(m.http);
    return out;
  }

  /// Makes counters c:n0 to c:n<n - 1> at 0, through member 0.
  void make_counters(int n) {
    for (int c = 0; c < n; ++c) {
      auto r = at(0).call("PUT", "/v1/twins/c:n" + std::to_string(c),
                          nlohmann::json{{"type", "counter"}, {"properties", {{"count", 0}}}}.dump(),
                          json_type);
      ASSERT_EQ(r.status, 201u) << r.body;
    }
  }

  temp_dir dir_;
  std::unique_ptr<etcd_server> etcd_;
  std::vector<member> members_;
};

} // namespace twin::test
