// Two twind members that speak TLS to each other (--peer-cert, --peer-key, --peer-ca),
// with certificates the test makes with openssl: requests cross between them and writes
// are copied to the follower over TLS, both of their ports take only a client that shows a
// certificate of the cluster's authority; a member with half of the flags does not start,
// and one that speaks plain text to a TLS cluster is refused.

#include <string>
#include <vector>

#include "cluster_fixture.hpp"
#include "test_certs.hpp"
#include "tls_probe.hpp"

namespace twin::test {
namespace {

using json = nlohmann::json;

class cluster_tls_test : public cluster_test {
protected:
  void SetUp() override {
    cluster_test::SetUp();
    if (IsSkipped())
      return;
    ASSERT_TRUE(make_test_certs(dir_.path()));
  }

  /// Member `i`'s flags: TLS between members with the test authority's certificate, and
  /// its replication port.
  std::vector<std::string> peer_args(size_t i) {
    replication_ports_.resize(std::max(replication_ports_.size(), i + 1));
    replication_ports_[i] = free_port();
    return {"--peer-cert", dir_.sub("server.pem"), "--peer-key", dir_.sub("server.key"),
            "--peer-ca", dir_.sub("ca.pem"), "--replication-factor", "2",
            "--replication-port", std::to_string(replication_ports_[i])};
  }

  bool takes(int port, const std::string& cert, const std::string& key) {
    return tls_port_takes(port, dir_.sub("ca.pem"), cert.empty() ? "" : dir_.sub(cert),
                          key.empty() ? "" : dir_.sub(key));
  }

  std::vector<int> replication_ports_;
};

TEST_F(cluster_tls_test, members_speak_tls_to_each_other_and_take_no_one_else) {
  ASSERT_NO_FATAL_FAILURE(start(0, peer_args(0)));
  ASSERT_NO_FATAL_FAILURE(start(1, peer_args(1)));
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(2));
  // Each write is acknowledged once both members hold it (R = 2): every one crossed.
  constexpr int n = 40;
  ASSERT_NO_FATAL_FAILURE(make_counters(n));
  for (int c = 0; c < n; ++c) {
    auto path = "/v1/twins/c:n" + std::to_string(c);
    auto r = at(1).call("PATCH", path, json{{"properties", {{"count", c}}}}.dump(),
                        {{"Content-Type", "application/merge-patch+json"}});
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  for (int c = 0; c < n; ++c)
    for (size_t i : {0, 1}) {
      auto r = at(i).call("GET", "/v1/twins/c:n" + std::to_string(c));
      ASSERT_EQ(r.status, 200u) << r.body;
      EXPECT_EQ(json::parse(r.body)["properties"]["count"], c);
    }
  double forwarded = 0, frames = 0, failures = 0;
  for (auto& m : members_) {
    forwarded += metric_value(m.metrics, "twin_cluster_forwarded_total");
    frames += metric_value(m.metrics, "twin_replication_link_frames_total");
    failures += metric_value(m.metrics, "twin_replication_link_failures_total");
  }
  EXPECT_GT(forwarded, 0);
  EXPECT_GE(frames, 2 * n);  // batches and their confirmations
  EXPECT_EQ(failures, 0);
  // Both ports of a member speak TLS, to clients with a certificate of the authority only.
  for (int port : {members_[1].cluster, replication_ports_[1]}) {
    EXPECT_TRUE(takes(port, "client.pem", "client.key")) << port;
    EXPECT_FALSE(takes(port, "", "")) << port;
    EXPECT_FALSE(takes(port, "other.pem", "other.key")) << port;
  }
  // Those refused clients cut nothing: the members still forward and copy every write.
  for (int c = 0; c < n; ++c) {
    auto r = at(0).call("PATCH", "/v1/twins/c:n" + std::to_string(c),
                        json{{"properties", {{"count", c + 1}}}}.dump(),
                        {{"Content-Type", "application/merge-patch+json"}});
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  double down = 0;
  for (auto& m : members_)
    down += metric_value(m.metrics, "twin_replication_link_failures_total");
  EXPECT_EQ(down, 0);
}

TEST_F(cluster_tls_test, a_member_that_speaks_otherwise_than_the_live_members_is_refused) {
  ASSERT_NO_FATAL_FAILURE(start(0, peer_args(0)));
  members_.resize(2);
  auto plain = run_to_end(args(1), {}, std::chrono::seconds{30});
  EXPECT_NE(plain.code, 0);
  EXPECT_NE(plain.err.find("member node-0 of cluster 'twin' speaks TLS to the others and this "
                           "node plain text"),
            std::string::npos)
    << plain.err;
  EXPECT_EQ(at(0).call("GET", "/v1/cluster").status, 200u);
  EXPECT_EQ(json::parse(at(0).call("GET", "/v1/cluster").body)["members"].size(), 1u);
}

TEST_F(cluster_tls_test, a_member_without_all_of_its_tls_files_does_not_start) {
  members_.resize(1);
  auto half = args(0, {"--peer-cert", dir_.sub("server.pem"), "--peer-ca", dir_.sub("ca.pem")});
  auto r = run_to_end(half, {}, std::chrono::seconds{20});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--peer-cert, --peer-key and --peer-ca go together"), std::string::npos)
    << r.err;
  auto wrong_key = args(0, {"--peer-cert", dir_.sub("server.pem"), "--peer-key",
                            dir_.sub("other.key"), "--peer-ca", dir_.sub("ca.pem")});
  r = run_to_end(wrong_key, {}, std::chrono::seconds{20});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("other.key"), std::string::npos) << r.err;
}

} // namespace
} // namespace twin::test
