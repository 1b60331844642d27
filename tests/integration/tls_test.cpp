// TLS with certificates the test makes with openssl: the HTTP API (curl and twinctl over
// https, a plain-text client refused, a certificate from another authority refused, mutual
// TLS), the metrics port over https, and a cluster member's etcd over https with a client
// certificate.

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etcd_server.hpp"
#include "gauge_model.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "stop_node.hpp"
#include "test_certs.hpp"
#include "test_support.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class tls_test : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(make_test_certs(dir_.path())) << "openssl cannot make the test certificates";
  }

  void start(std::vector<std::string> extra = {}) {
    port_ = free_port();
    metrics_ = free_port();
    std::vector<std::string> args{"--metrics-port", std::to_string(metrics_), "--tls-cert",
                                  dir_.sub("server.pem"), "--tls-key", dir_.sub("server.key")};
    args.insert(args.end(), extra.begin(), extra.end());
    node_ = start_gauge_node(dir_, port_, args);
    ASSERT_TRUE(wait_for_200(metrics_, "/readyz", 20s)) << node_->stderr_text();
  }

  void TearDown() override { stop_node(node_); }

  /// curl's exit code, and the status of the answer on a line.
  run_result curl(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{"/usr/bin/curl", "-sS", "-o", "/dev/null", "-w",
                                  "%{http_code}\n", "--max-time", "10", "-H",
                                  "Authorization: Bearer " + test_admin_token};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("https://127.0.0.1:" + std::to_string(port_) + path);
    return run_to_end(argv, {}, 20s);
  }

  run_result twinctl(const std::vector<std::string>& args, const std::string& ca) {
    std::vector<std::string> argv{TWINCTL_PATH, "--server",
                                  "https://127.0.0.1:" + std::to_string(port_), "--ca-file", ca,
                                  "--token", test_admin_token};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_to_end(argv, {}, 20s);
  }

  temp_dir dir_;
  int port_ = 0;
  int metrics_ = 0;
  std::unique_ptr<process> node_;
};

TEST_F(tls_test, the_api_speaks_https_only_and_twinctl_checks_whom_it_speaks_to) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto ok = curl("/v1/twins", {"--cacert", dir_.sub("ca.pem")});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(ok.out, "200\n");
  // Plain HTTP on the TLS port gets no answer; curl trusting another authority refuses.
  EXPECT_EQ(http_client{port_}.call("GET", "/v1/twins").status, 0u);
  EXPECT_NE(curl("/v1/twins", {"--cacert", dir_.sub("other.pem")}).code, 0);

  auto put = twinctl({"put", "t:g1", "--type", "gauge"}, dir_.sub("ca.pem"));
  ASSERT_EQ(put.code, 0) << put.err;
  auto got = twinctl({"--json", "get", "t:g1"}, dir_.sub("ca.pem"));
  ASSERT_EQ(got.code, 0) << got.err;
  EXPECT_EQ(json::parse(got.out)["version"], 1);
  // The change stream over TLS.
  process follow{{TWINCTL_PATH, "--server", "https://127.0.0.1:" + std::to_string(port_),
                  "--ca-file", dir_.sub("ca.pem"), "--token", test_admin_token, "--json",
                  "events", "--prefix", "t:g1", "--count", "1"}};
  bool heard = false;
  for (int level = 0; level < 100 && !heard; ++level) {
    twinctl({"telemetry", "send", "t:g1", "{\"level\": " + std::to_string(level) + "}"},
            dir_.sub("ca.pem"));
    heard = follow.wait(200ms).has_value();
  }
  ASSERT_TRUE(heard) << follow.stderr_text();
  auto line = follow.read_line(1s);
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("\"changed\""), std::string::npos) << *line;
  // A node whose certificate another authority signed is not spoken to (exit 2).
  auto wary = twinctl({"get", "t:g1"}, dir_.sub("other.pem"));
  EXPECT_EQ(wary.code, 2);
  EXPECT_NE(wary.err.find("certificate verify failed"), std::string::npos) << wary.err;
  auto missing = twinctl({"get", "t:g1"}, dir_.sub("missing.pem"));
  EXPECT_NE(missing.code, 0);
}

TEST_F(tls_test, with_mutual_tls_a_client_must_show_a_certificate_of_the_authority) {
  ASSERT_NO_FATAL_FAILURE(start({"--tls-client-ca", dir_.sub("ca.pem")}));
  EXPECT_NE(curl("/v1/twins", {"--cacert", dir_.sub("ca.pem")}).code, 0);
  EXPECT_NE(curl("/v1/twins", {"--cacert", dir_.sub("ca.pem"), "--cert", dir_.sub("other.pem"),
                               "--key", dir_.sub("other.key")})
              .code,
            0);
  auto ok = curl("/v1/twins", {"--cacert", dir_.sub("ca.pem"), "--cert", dir_.sub("client.pem"),
                               "--key", dir_.sub("client.key")});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(ok.out, "200\n");
  // The certificate does not stand for a token.
  auto no_token = run_to_end({"/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\n",
                              "--cacert", dir_.sub("ca.pem"), "--cert", dir_.sub("client.pem"),
                              "--key", dir_.sub("client.key"),
                              "https://127.0.0.1:" + std::to_string(port_) + "/v1/twins"});
  EXPECT_EQ(no_token.out, "401\n");
  // twinctl shows its certificate when given one.
  EXPECT_NE(twinctl({"query"}, dir_.sub("ca.pem")).code, 0);
  auto with_cert = twinctl({"--cert-file", dir_.sub("client.pem"), "--key-file",
                            dir_.sub("client.key"), "query"},
                           dir_.sub("ca.pem"));
  EXPECT_EQ(with_cert.code, 0) << with_cert.err;
}

TEST_F(tls_test, with_metrics_tls_the_metrics_port_speaks_https_and_keeps_its_token) {
  port_ = free_port();
  metrics_ = free_port();
  std::ofstream{dir_.sub("metrics.token")} << "scrape-token-0123456789\n";
  node_ = start_gauge_node(dir_, port_,
                           {"--metrics-port", std::to_string(metrics_), "--tls-cert",
                            dir_.sub("server.pem"), "--tls-key", dir_.sub("server.key"),
                            "--metrics-tls", "--metrics-token-file", dir_.sub("metrics.token")});
  auto get = [&](const std::string& path, const std::string& token) {
    return run_to_end({"/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\n",
                       "--max-time", "5", "--cacert", dir_.sub("ca.pem"), "-H",
                       "Authorization: Bearer " + token,
                       "https://127.0.0.1:" + std::to_string(metrics_) + path},
                      {}, 10s);
  };
  ASSERT_TRUE(eventually([&] { return get("/readyz", "").out == "200\n"; }, 20s))
    << node_->stderr_text();
  EXPECT_EQ(http_client{metrics_}.call("GET", "/readyz").status, 0u);  // no plain text
  EXPECT_EQ(get("/metrics", "").out, "401\n");
  EXPECT_EQ(get("/metrics", "scrape-token-0123456789").out, "200\n");
  EXPECT_NE(node_->stderr_text().find("metrics on https://"), std::string::npos);
}

TEST_F(tls_test, metrics_tls_without_the_apis_certificate_is_refused) {
  port_ = free_port();
  node_ = start_gauge_node(dir_, port_, {"--metrics-port", "0", "--metrics-tls"});
  EXPECT_EQ(node_->wait(20s), 1);
  EXPECT_NE(node_->stderr_text().find("--metrics-tls takes the API's certificate"),
            std::string::npos)
    << node_->stderr_text();
  node_.reset();
}

TEST_F(tls_test, a_node_with_a_certificate_it_cannot_use_does_not_start) {
  port_ = free_port();
  node_ = start_gauge_node(dir_, port_, {"--metrics-port", "0", "--tls-cert",
                                         dir_.sub("server.pem"), "--tls-key",
                                         dir_.sub("missing.key")});
  EXPECT_EQ(node_->wait(20s), 1);
  EXPECT_NE(node_->stderr_text().find("TLS: cannot use the key"), std::string::npos)
    << node_->stderr_text();
  node_.reset();
}

TEST_F(tls_test, a_member_speaks_to_etcd_over_tls_with_its_certificate) {
  if (etcd_path().empty())
    GTEST_SKIP() << "ETCD IS NOT INSTALLED: run scripts/setup; the test did not run";
  etcd_server etcd{dir_.sub("etcd"), dir_.path()};
  ASSERT_NO_FATAL_FAILURE(etcd.start());
  port_ = free_port();
  metrics_ = free_port();
  node_ = start_gauge_node(
    dir_, port_,
    {"--metrics-port", std::to_string(metrics_), "--node-id", "node-1", "--cluster-etcd",
     etcd.url(), "--etcd-ca-file", dir_.sub("ca.pem"), "--etcd-cert-file",
     dir_.sub("client.pem"), "--etcd-key-file", dir_.sub("client.key"), "--cluster-port",
     std::to_string(free_port()), "--replication-factor", "1"});
  ASSERT_TRUE(wait_for_200(port_, "/readyz", 30s)) << node_->stderr_text();
  http_client api{port_};
  json cluster;
  ASSERT_TRUE(eventually(
    [&] {  // it takes every shard, through what it reads and writes in etcd
      cluster = json::parse(api.call("GET", "/v1/cluster").body, nullptr, false);
      return cluster.is_object() && cluster["members"].size() == 1
             && cluster["members"][0]["shards"] == 1024 && cluster["handoffs"].empty();
    },
    30s))
    << cluster;
  EXPECT_EQ(cluster["members"][0]["state"], "up");
  EXPECT_EQ(api.call("PUT", "/v1/twins/t:g1", R"({"type":"gauge"})", json_type).status, 201u);
  // What the member keeps in etcd is there, read over TLS.
  cluster::etcd::client reader{etcd.where(), 2s};
  auto members = reader.get_prefix("/twin/twin/members/");
  ASSERT_TRUE(members) << runtime::error_message(members.error());
  EXPECT_EQ(members->kvs.size(), 1u);
}

} // namespace
} // namespace twin::test
