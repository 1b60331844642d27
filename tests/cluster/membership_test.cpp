// Membership in a real etcd: members see each other, a node configured otherwise or
// with a live member's id is refused, a restarted node gets a new incarnation, and a node
// whose lease runs out knows it by its own clock.

#include <atomic>
#include <csignal>

#include "etcd_server.hpp"
#include "membership.hpp"
#include "twin/cluster/errc.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using namespace std::chrono_literals;

class membership_test : public etcd_test_base {
protected:
  membership_options options(const std::string& node, std::chrono::seconds ttl = 2s) {
    membership_options o;
    o.etcd = server_->url();
    o.cluster = "test";
    o.node = *runtime::node_id::parse(node);
    o.cluster_address = "127.0.0.1:1";
    o.http_url = "http://127.0.0.1:2";
    o.ttl = ttl;
    return o;
  }
};

std::vector<std::string> ids(const std::vector<member>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms)
    out.push_back(m.id.str());
  return out;
}

TEST_F(membership_test, members_see_each_other_join_and_leave) {
  membership a{options("node-a"), {}, {}};
  ASSERT_FALSE(a.join());
  auto b = std::make_unique<membership>(options("node-b"), membership::members_fn{},
                                        std::function<void()>{});
  ASSERT_FALSE(b->join());
  EXPECT_GT(b->incarnation(), a.incarnation());
  ASSERT_TRUE(eventually([&] { return a.members().size() == 2; }));
  EXPECT_EQ(ids(a.members()), (std::vector<std::string>{"node-a", "node-b"}));
  auto mb = b->members();
  EXPECT_EQ(mb.at(1).incarnation, b->incarnation());
  EXPECT_EQ(mb.at(1).http_url, "http://127.0.0.1:2");
  EXPECT_TRUE(a.alive());
  b.reset();  // leaves
  ASSERT_TRUE(eventually([&] { return a.members().size() == 1; }));
}

TEST_F(membership_test, a_node_configured_otherwise_or_with_a_live_members_id_is_refused) {
  membership a{options("node-a"), {}, {}};
  ASSERT_FALSE(a.join());
  auto other = options("node-b");
  other.shard_count = 2048;
  membership b{other, {}, {}};
  auto err = b.join();
  EXPECT_EQ(cluster::error_code(err), cluster_errc::config_mismatch);
  EXPECT_NE(runtime::error_message(err).find("1024 shards"), std::string::npos);
  auto secure = options("node-c");  // TLS between members, where node-a speaks plain text
  secure.tls = true;
  membership c{secure, {}, {}};
  err = c.join();
  EXPECT_EQ(cluster::error_code(err), cluster_errc::config_mismatch);
  EXPECT_NE(runtime::error_message(err).find("member node-a of cluster 'test' speaks plain text"),
            std::string::npos)
    << runtime::error_message(err);
  membership twin_a{options("node-a", 1s), {}, {}};
  err = twin_a.join();  // waits out a lease of 1 s, but node-a keeps its own alive
  EXPECT_EQ(cluster::error_code(err), cluster_errc::config_mismatch);
  EXPECT_NE(runtime::error_message(err).find("already has node id 'node-a'"), std::string::npos);
}

TEST_F(membership_test, a_restarted_node_waits_out_its_old_lease_and_gets_a_new_incarnation) {
  // As after a kill -9: the key of the last incarnation lives until its lease runs out.
  etcd::client raw{server_->url(), 2s};
  auto old_lease = raw.grant(2);
  ASSERT_TRUE(old_lease);
  member old{*runtime::node_id::parse("node-a"), 0, "127.0.0.1:1", "http://x", "up"};
  auto old_rev = raw.put(keyspace{"test"}.member(old.id), encode_member(old), old_lease->id);
  ASSERT_TRUE(old_rev);
  auto t0 = std::chrono::steady_clock::now();
  membership a{options("node-a"), {}, {}};
  ASSERT_FALSE(a.join());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_GT(a.incarnation(), *old_rev);
}

TEST_F(membership_test, a_node_that_cannot_renew_its_lease_knows_by_its_own_clock) {
  std::atomic<bool> lost{false};
  membership a{options("node-a", 2s), {}, [&] { lost = true; }};
  ASSERT_FALSE(a.join());
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(a.alive());
  EXPECT_FALSE(lost.load());
  EXPECT_GE(a.renewals(), 1u);  // every third of the TTL
  auto t0 = std::chrono::steady_clock::now();
  server_->kill();
  ASSERT_TRUE(eventually([&] { return lost.load(); }, 5s));
  auto after = std::chrono::steady_clock::now() - t0;
  EXPECT_LE(after, 2500ms);  // no later than the TTL from the last renewal
  EXPECT_FALSE(a.alive());
}

} // namespace
} // namespace twin::test
