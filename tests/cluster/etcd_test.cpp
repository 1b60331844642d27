// The etcd client against a real etcd: keys, transactions, leases and watches, and what
// it says when etcd cannot be reached.

#include <mutex>

#include "etcd.hpp"
#include "etcd_server.hpp"
#include "test_certs.hpp"
#include "twin/cluster/errc.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using namespace std::chrono_literals;

class etcd_test : public etcd_test_base {
protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(etcd_test_base::SetUp());
    if (server_)
      client_ = std::make_unique<etcd::client>(server_->url(), 2s);
  }

  std::unique_ptr<etcd::client> client_;
};

TEST_F(etcd_test, keys_and_prefixes_round_trip_as_bytes) {
  std::string binary{"\0\x01\xff value", 9};
  auto rev = client_->put("/t/a", binary);
  ASSERT_TRUE(rev) << runtime::error_message(rev.error());
  ASSERT_TRUE(client_->put("/t/b", "2"));
  ASSERT_TRUE(client_->put("/u/c", "3"));
  auto a = client_->get("/t/a");
  ASSERT_TRUE(a);
  ASSERT_EQ(a->kvs.size(), 1u);
  EXPECT_EQ(a->kvs[0].value, binary);
  EXPECT_EQ(a->kvs[0].mod_revision, *rev);
  auto t = client_->get_prefix("/t/");
  ASSERT_EQ(t->kvs.size(), 2u);
  EXPECT_EQ(t->kvs[1].key, "/t/b");
  EXPECT_EQ(*client_->del("/t/", etcd::prefix_end("/t/")), 2);
  EXPECT_TRUE(client_->get_prefix("/t/")->kvs.empty());
  EXPECT_TRUE(client_->get("/missing")->kvs.empty());
}

TEST_F(etcd_test, a_transaction_sets_a_key_only_if_it_is_as_read) {
  auto create = [&](const std::string& value) {
    return client_->txn({etcd::compare::mod_is("/lock", 0)}, {etcd::op::put("/lock", value)},
                        {etcd::op::get("/lock")});
  };
  auto first = create("a");
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->succeeded);
  auto second = create("b");
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->reads.size(), 1u);
  EXPECT_EQ(second->reads[0].kvs.at(0).value, "a");
  // Compare-and-set on the revision it was read at.
  auto rev = second->reads[0].kvs[0].mod_revision;
  auto cas = client_->txn({etcd::compare::mod_is("/lock", rev)}, {etcd::op::put("/lock", "c")});
  EXPECT_TRUE(cas->succeeded);
  auto stale = client_->txn({etcd::compare::mod_is("/lock", rev)}, {etcd::op::put("/lock", "d")});
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(client_->get("/lock")->kvs[0].value, "c");
}

TEST_F(etcd_test, keys_of_a_lease_live_while_it_is_kept_alive) {
  auto lease = client_->grant(2);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->ttl, 2);
  ASSERT_TRUE(client_->put("/members/n1", "up", lease->id));
  for (int i = 0; i < 4; ++i) {  // 3 s: longer than the TTL
    std::this_thread::sleep_for(750ms);
    EXPECT_GT(*client_->keep_alive(lease->id), 0);
  }
  EXPECT_EQ(client_->get("/members/n1")->kvs.size(), 1u);
  EXPECT_EQ(client_->get("/members/n1")->kvs[0].lease, lease->id);
  ASSERT_FALSE(client_->revoke(lease->id));
  EXPECT_TRUE(client_->get("/members/n1")->kvs.empty());
  EXPECT_EQ(*client_->keep_alive(lease->id), 0);  // gone
}

TEST_F(etcd_test, a_watch_delivers_changes_in_order_across_an_etcd_restart) {
  std::mutex mtx;
  std::vector<std::string> seen;
  auto start = client_->put("/w/x", "0");
  ASSERT_TRUE(start);
  etcd::watch w{server_->url(), "/w/", *start,
                [&](std::vector<etcd::event> events, int64_t) {
                  std::lock_guard<std::mutex> guard{mtx};
                  for (auto& e : events)
                    seen.push_back((e.deleted ? "-" : "+") + e.kv.key + "=" + e.kv.value);
                },
                [] {}};
  ASSERT_TRUE(client_->put("/w/y", "1"));
  ASSERT_TRUE(client_->put("/other", "not watched"));
  ASSERT_TRUE(client_->del("/w/x"));
  auto count = [&] {
    std::lock_guard<std::mutex> guard{mtx};
    return seen.size();
  };
  ASSERT_TRUE(eventually([&] { return count() == 3; }));
  server_->kill();
  ASSERT_NO_FATAL_FAILURE(server_->start());
  ASSERT_TRUE(eventually([&] { return static_cast<bool>(client_->put("/w/z", "2")); }));
  ASSERT_TRUE(eventually([&] { return count() == 4; }, 10s));
  std::lock_guard<std::mutex> guard{mtx};
  EXPECT_EQ(seen, (std::vector<std::string>{"+/w/x=0", "+/w/y=1", "-/w/x=", "+/w/z=2"}));
}

TEST_F(etcd_test, an_unreachable_etcd_is_reported_and_the_next_endpoint_is_tried) {
  auto dead = "http://127.0.0.1:" + std::to_string(free_port());
  etcd::client nowhere{dead, 1s};
  auto r = nowhere.get("/x");
  ASSERT_FALSE(r);
  EXPECT_EQ(cluster::error_code(r.error()), cluster_errc::etcd_unavailable);
  EXPECT_NE(runtime::error_message(r.error()).find("127.0.0.1"), std::string::npos);
  etcd::client failover{dead + "," + server_->url(), 1s};
  EXPECT_TRUE(failover.put("/x", "1"));
  EXPECT_TRUE(failover.get("/x"));
  EXPECT_GE(failover.failures(), 1u);
  for (const char* bad : {"127.0.0.1:2379", "ftp://h:1", "http://nohost", "http://h:1/path"})
    EXPECT_EQ(cluster::error_code(etcd::client::check_endpoints(bad)), cluster_errc::config_mismatch)
      << bad;
  EXPECT_FALSE(etcd::client::check_endpoints("http://a:1,http://b:2"));
  EXPECT_FALSE(etcd::client::check_endpoints("https://a:1"));  // the system's CAs
}

TEST(etcd_tls, a_client_speaks_https_with_its_certificate_and_checks_etcds) {
  if (etcd_path().empty())
    GTEST_SKIP() << "ETCD IS NOT INSTALLED: run scripts/setup; the etcd tests did not run";
  temp_dir dir;
  ASSERT_TRUE(make_test_certs(dir.path())) << "openssl cannot make the test certificates";
  etcd_server server{dir.sub("etcd"), dir.path()};
  ASSERT_NO_FATAL_FAILURE(server.start());
  etcd::client c{server.where(), 2s};
  auto start = c.put("/s/a", "1");
  ASSERT_TRUE(start) << runtime::error_message(start.error());
  std::mutex mtx;
  std::vector<std::string> seen;
  etcd::watch w{server.where(), "/s/", *start + 1,
                [&](std::vector<etcd::event> events, int64_t) {
                  std::lock_guard<std::mutex> guard{mtx};
                  for (auto& e : events)
                    seen.push_back(e.kv.key + "=" + e.kv.value);
                },
                [] {}};
  ASSERT_TRUE(c.put("/s/b", "2"));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> guard{mtx};
    return seen == std::vector<std::string>{"/s/b=2"};
  }));
  // Without a certificate etcd refuses; trusting another authority, the client does.
  etcd::endpoints bare{server.url(), dir.sub("ca.pem"), "", ""};
  auto refused = etcd::client{bare, 2s}.get("/s/a");
  ASSERT_FALSE(refused);
  EXPECT_EQ(cluster::error_code(refused.error()), cluster_errc::etcd_unavailable);
  etcd::endpoints wary{server.url(), dir.sub("other.pem"), dir.sub("client.pem"),
                       dir.sub("client.key")};
  auto distrusted = etcd::client{wary, 2s}.get("/s/a");
  ASSERT_FALSE(distrusted);
  EXPECT_NE(runtime::error_message(distrusted.error()).find("certificate verify failed"),
            std::string::npos)
    << runtime::error_message(distrusted.error());
  // Files that cannot be used are a clear error before anything is sent.
  etcd::endpoints missing{server.url(), dir.sub("missing.pem"), "", ""};
  auto bad = etcd::client::check_endpoints(missing);
  ASSERT_TRUE(bad);
  EXPECT_NE(runtime::error_message(bad).find("etcd TLS: cannot use the CA"), std::string::npos);
}

} // namespace
} // namespace twin::test
