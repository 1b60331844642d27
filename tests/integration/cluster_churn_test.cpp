// Members that come and go under load: a member killed with -9 takes its twins away until
// it returns with all of them; counters incremented with compare-and-set through members
// that join, drain, leave, return and are killed stay exact; a rolling restart of every
// member loses nothing and keeps serving; a drained member keeps no shard.

#include <atomic>
#include <thread>

#include "counter_clients.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST_F(cluster_test, without_copies_a_killed_members_twins_wait_for_it_and_come_back_whole) {
  const std::vector<std::string> one_copy{"--replication-factor", "1"};
  ASSERT_NO_FATAL_FAILURE(start_cluster(2, one_copy));
  constexpr int twins = 20;
  std::map<std::string, unsigned> versions;
  for (int i = 0; i < twins; ++i) {
    auto id = "f:line-" + std::to_string(i);
    auto r = at(0).call("PUT", "/v1/twins/" + id, json{{"type", "line"}}.dump(), json_type);
    ASSERT_EQ(r.status, 201u) << r.body;
    r = at(1).call("PATCH", "/v1/twins/" + id, json{{"properties", {{"product", id}}}}.dump(),
                   {{"Content-Type", "application/merge-patch+json"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    versions[id] = json::parse(r.body)["version"].get<unsigned>();
  }
  members_[1].proc->signal(SIGKILL);
  ASSERT_EQ(members_[1].proc->wait(10s), 128 + SIGKILL);
  members_[1].proc.reset();
  // Its twins are served by nobody (without replication nobody else has them); the
  // others' twins go on.
  int gone = 0;
  for (const auto& [id, v] : versions) {
    auto r = at(0).call("GET", "/v1/twins/" + id);
    if (r.status == 503) {
      ++gone;
    } else {
      EXPECT_EQ(r.status, 200u) << r.body;
    }
  }
  EXPECT_GT(gone, 0);
  EXPECT_LT(gone, twins);
  ASSERT_NO_FATAL_FAILURE(start(1, one_copy));
  for (const auto& [id, v] : versions) {
    ASSERT_TRUE(wait_for_200(*members_[0].client, "/v1/twins/" + id, 20s)) << id;
    auto r = json::parse(at(0).call("GET", "/v1/twins/" + id).body);
    EXPECT_EQ(r["version"].get<unsigned>(), v) << id;
    EXPECT_EQ(r["properties"]["product"], id);
  }
}

/// Several clients increment counters through random members while a member joins, one
/// drains and leaves (SIGTERM) and comes back, and one is killed with -9 and restarted on
/// its data. Were a twin ever active on two members, or a handoff to lose or repeat a write,
/// a counter would differ from the increments that were acknowledged.
TEST_F(cluster_test, counters_incremented_through_joins_leaves_and_kills_stay_exact) {
  members_.resize(4);
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  constexpr int counters = 16;
  ASSERT_NO_FATAL_FAILURE(make_counters(counters));
  auto ports = http_ports();
  // Any member, up or not a moment ago.
  counter_clients clients{counters, ports, [n = members_.size()](std::mt19937& rng) {
                            return static_cast<int>(rng() % n);
                          }};
  clients.start(3);
  auto pause = [] { std::this_thread::sleep_for(1500ms); };
  pause();
  ASSERT_NO_FATAL_FAILURE(start(3));  // a fourth member joins
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(4));
  pause();
  members_[2].proc->signal(SIGTERM);  // one drains and leaves
  EXPECT_EQ(members_[2].proc->wait(60s), 0);
  members_[2].proc.reset();
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(3));
  ASSERT_NO_FATAL_FAILURE(start(2));  // and comes back
  pause();
  members_[1].proc->signal(SIGKILL);  // one is killed and restarted on its data
  members_[1].proc->wait(10s);
  members_[1].proc.reset();
  pause();
  ASSERT_NO_FATAL_FAILURE(start(1));
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(4));
  pause();
  clients.stop();
  clients.check(at(0));
  EXPECT_GT(clients.acked(), 200);  // the writers got through
  RecordProperty("acknowledged", clients.acked());
  RecordProperty("unknown", clients.unknown());
  RecordProperty("refused", clients.refused());
}

/// Every member in turn is stopped (SIGTERM: it hands its shards to the others) and started
/// again on its data, while clients keep incrementing counters through the members that are
/// up, as a load balancer would send them: nothing acknowledged is lost, and the cluster
/// serves throughout.
TEST_F(cluster_test, a_rolling_restart_of_every_member_loses_nothing_and_keeps_serving) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  constexpr int counters = 16;
  ASSERT_NO_FATAL_FAILURE(make_counters(counters));
  auto ports = http_ports();
  std::atomic<int> down{-1};  ///< the member being restarted, which gets no request
  counter_clients clients{counters, ports, [&down](std::mt19937& rng) {
                            auto m = static_cast<int>(rng() % 3);
                            return m == down.load() ? -1 : m;
                          }};
  clients.start(3);
  std::this_thread::sleep_for(1s);
  for (int m = 0; m < 3; ++m) {
    down = m;
    members_[m].proc->signal(SIGTERM);
    EXPECT_EQ(members_[m].proc->wait(60s), 0) << "member " << m;
    members_[m].proc.reset();
    // While it is away, every counter is served: it handed its shards over before it left.
    auto before = clients.acked_each();
    std::this_thread::sleep_for(1s);
    auto after = clients.acked_each();
    for (int c = 0; c < counters; ++c)
      EXPECT_GT(after[c], before[c]) << "counter " << c << " while member " << m << " was away";
    ASSERT_NO_FATAL_FAILURE(start(m));
    ASSERT_NO_FATAL_FAILURE(wait_for_balance(3));
    down = -1;
    std::this_thread::sleep_for(500ms);
  }
  clients.stop();
  clients.check(at(0));
  RecordProperty("acknowledged", clients.acked());
  RecordProperty("unknown", clients.unknown());
  RecordProperty("refused", clients.refused());
}

TEST_F(cluster_test, a_drained_member_hands_its_shards_to_the_others_and_its_twins_stay) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  for (int i = 0; i < 30; ++i) {
    auto r = at(0).call("PUT", "/v1/twins/f:line-" + std::to_string(i),
                        json{{"type", "line"}, {"properties", {{"product", "P"}}}}.dump(),
                        json_type);
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  int port = members_[0].http;
  auto drained = run_twinctl(port, {"cluster", "drain", "node-2"});
  ASSERT_EQ(drained.code, 0) << drained.err;
  ASSERT_TRUE(eventually(
    [&] {
      auto j = json::parse(at(0).call("GET", "/v1/cluster").body);
      for (const auto& m : j["members"])
        if (m["node"] == "node-2")
          return m["state"] == "draining" && m["shards"] == 0 && j["handoffs"].empty();
      return false;
    },
    20s));
  EXPECT_EQ(metric_value(members_[2].metrics, "twin_shards_owned"), 0);
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(at(2).call("GET", "/v1/twins/f:line-" + std::to_string(i)).status, 200u);
  auto status = run_twinctl(port, {"cluster", "status"});
  EXPECT_EQ(status.code, 0);
  EXPECT_NE(status.out.find("draining"), std::string::npos) << status.out;
  auto unknown = run_twinctl(port, {"cluster", "drain", "node-9"});
  EXPECT_NE(unknown.code, 0);
  EXPECT_NE(unknown.err.find("no member"), std::string::npos) << unknown.err;
}

} // namespace
} // namespace twin::test
