// Two copies of every shard (the default): counters incremented with compare-and-set
// through the members stay exact while a member is killed with -9 (its followers take its
// shards over), comes back, and another loses its data directory; a primary stopped until
// its lease ran out cannot get a write acknowledged, while the member that took its shard
// over serves it; a member that joins takes its share of the follower roles.

#include <filesystem>
#include <fstream>
#include <thread>

#include "counter_clients.hpp"
#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"
#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class replication_test : public cluster_test {
protected:
  /// Waits until every shard has all its copies in sync.
  void wait_for_replicas() {
    ASSERT_TRUE(eventually(
      [&] {
        auto r = at(0).call("GET", "/v1/cluster");
        if (r.status != 200)
          return false;
        auto j = json::parse(r.body);
        return j["replication"]["factor"] == 2 && j["replication"]["under_replicated"].empty()
               && j["unowned"] == 0;
      },
      30s));
  }

  /// The member that owns twin `id` now, as member `via` sees the table.
  std::string owner_of(const std::string& id, size_t via = 0) {
    auto j = json::parse(at(via).call("GET", "/v1/cluster").body);
    auto shard = runtime::shard_of(*runtime::twin_id::parse(id), j["shards"].get<uint32_t>());
    return j["shard_table"][shard.value()]["owner"].get<std::string>();
  }

  /// Whether every thread of process `pid` is stopped (by SIGSTOP).
  static bool all_threads_stopped(pid_t pid) {
    auto tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& task : std::filesystem::directory_iterator{tasks}) {
      std::ifstream in{task.path() / "stat"};
      std::string text{std::istreambuf_iterator<char>{in}, {}};
      auto state = text.find(") ");
      if (state == std::string::npos || (text[state + 2] != 'T' && text[state + 2] != 't'))
        return false;
    }
    return true;
  }

  /// Kills member `i` with -9.
  void kill(size_t i) {
    members_[i].proc->signal(SIGKILL);
    members_[i].proc->wait(10s);
    members_[i].proc.reset();
  }

  /// How long until every counter took an increment again after `since`.
  std::chrono::milliseconds until_all_served(counter_clients& clients, int counters) {
    auto before = clients.acked_each();
    auto t0 = std::chrono::steady_clock::now();
    eventually(
      [&] {
        auto now = clients.acked_each();
        for (int c = 0; c < counters; ++c)
          if (now[c] <= before[c])
            return false;
        return true;
      },
      30s);
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                                  - t0);
  }
};

TEST_F(replication_test, counters_stay_exact_through_kills_and_a_lost_data_directory) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());
  constexpr int counters = 16;
  ASSERT_NO_FATAL_FAILURE(make_counters(counters));
  std::atomic<int> down{-1};  ///< the member that is away, which gets no request
  counter_clients clients{counters, http_ports(), [&down](std::mt19937& rng) {
                            auto m = static_cast<int>(rng() % 3);
                            return m == down.load() ? -1 : m;
                          }};
  clients.start(3);
  std::this_thread::sleep_for(1500ms);

  // A member dies: its followers take its shards over, with every acknowledged change.
  down = 2;
  kill(2);
  auto failover = until_all_served(clients, counters);
  EXPECT_LT(failover, 10s) << "the killed member's counters were not served again in time";
  RecordProperty("failover_ms", static_cast<int>(failover.count()));
  ASSERT_NO_FATAL_FAILURE(start(2));  // it returns on its data, which is older now
  down = -1;
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(3));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());
  std::this_thread::sleep_for(1s);

  // Another dies and returns without its data: it copies its shards anew.
  down = 1;
  kill(1);
  std::filesystem::remove_all(dir_.sub("n1"));
  auto recovered = until_all_served(clients, counters);
  EXPECT_LT(recovered, 10s);
  RecordProperty("lost_disk_ms", static_cast<int>(recovered.count()));
  ASSERT_NO_FATAL_FAILURE(start(1));
  down = -1;
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(3));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());
  std::this_thread::sleep_for(1s);
  clients.stop();
  clients.check(at(1));  // through the member that lost its data
  EXPECT_GT(clients.acked(), 200);
  double failovers = 0;
  for (auto& m : members_)
    failovers += metric_value(m.metrics, "twin_replication_failovers_total");
  EXPECT_GT(failovers, 0);
  RecordProperty("acknowledged", clients.acked());
  RecordProperty("unknown", clients.unknown());
  RecordProperty("refused", clients.refused());
}

TEST_F(replication_test, qos1_telemetry_through_the_broker_is_all_applied_through_a_kill) {
  if (mosquitto_path().empty())
    GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the test did not run";
  int broker_port = free_port();
  auto broker = start_mosquitto(dir_, broker_port);
  const std::vector<std::string> mqtt{
    "--mqtt-url", "tcp://127.0.0.1:" + std::to_string(broker_port), "--mqtt-shared-group", "twind"};
  ASSERT_NO_FATAL_FAILURE(start_cluster(3, mqtt));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());
  constexpr int twins = 600;
  auto id = [](int k) { return "c:q" + std::to_string(k); };
  for (int k = 0; k < twins; ++k)
    ASSERT_EQ(at(0).call("PUT", "/v1/twins/" + id(k), json{{"type", "counter"}}.dump(), json_type)
                .status,
              201u);

  // A device sends one reading to each twin (QoS 1: the broker has each one it
  // acknowledges) while a member is killed with -9, its followers take its shards over, and
  // it returns. The members take the readings through a shared subscription, on sessions
  // the broker keeps while they are away.
  std::atomic<int> published{0};
  std::thread sender{[&] {
    device d{broker_port};
    for (int k = 0; k < twins; ++k) {
      if (d.publish("twins/" + id(k) + "/telemetry", json{{"level", k + 0.5}}.dump()))
        ++published;
      std::this_thread::sleep_for(15ms);
    }
  }};
  std::this_thread::sleep_for(1s);
  kill(2);
  bool moved = eventually(  // its followers took its shards over
    [&] {
      auto r = at(0).call("GET", "/v1/cluster");
      if (r.status != 200)
        return false;
      for (const auto& e : json::parse(r.body)["shard_table"])
        if (e["owner"] == "node-2")
          return false;
      return true;
    },
    20s);
  sender.join();
  ASSERT_TRUE(moved);
  ASSERT_EQ(published, twins);
  ASSERT_NO_FATAL_FAILURE(start(2, mqtt));
  // Its shards move back to it while the members still retry readings they could not
  // apply meanwhile.
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(3));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());

  // Every reading is applied, read through the member that was killed.
  std::vector<int> missing;
  eventually(
    [&] {
      missing.clear();
      for (int k = 0; k < twins; ++k) {
        auto r = at(2).call("GET", "/v1/twins/" + id(k));
        if (r.status != 200 || json::parse(r.body)["properties"].value("level", -1.0) != k + 0.5)
          missing.push_back(k);
      }
      return missing.empty();
    },
    60s);
  EXPECT_TRUE(missing.empty()) << missing.size() << " readings are not applied, the first "
                               << (missing.empty() ? -1 : missing.front());
  double deferred = 0;
  double retries = 0;
  for (auto& m : members_) {
    deferred += metric_value(m.metrics,
                             R"(twin_ingest_messages_total{source="mqtt",result="deferred"})");
    retries += metric_value(m.metrics, "twin_mqtt_telemetry_retries_total");
  }
  RecordProperty("deferred", static_cast<int>(deferred));
  RecordProperty("retries", static_cast<int>(retries));
  // The readings for the killed member's twins waited in the members that took them,
  // while their sessions went on: none reconnected (which would have held up the
  // telemetry of every twin).
  EXPECT_GT(retries, 0);
  for (int i : {0, 1})
    EXPECT_EQ(metric_value(members_[i].metrics, "twin_mqtt_connections_total"), 1.0)
      << "member " << i << " reconnected to the broker";
}

TEST_F(replication_test, a_primary_whose_lease_ran_out_cannot_acknowledge_a_write) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3, {"--replication-timeout", "2"}));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());
  ASSERT_NO_FATAL_FAILURE(make_counters(16));
  std::string id;
  for (int c = 0; c < 16 && id.empty(); ++c)
    if (owner_of("c:n" + std::to_string(c)) == "node-2")
      id = "c:n" + std::to_string(c);
  ASSERT_FALSE(id.empty()) << "no counter on node-2";
  auto path = "/v1/twins/" + id;
  auto version = json::parse(at(2).call("GET", path).body)["version"].get<int>();

  // node-2 stops (as if cut off) while a client writes to it; its lease runs out. The
  // write goes once every thread of it has stopped: before, it may still be acknowledged.
  members_[2].proc->signal(SIGSTOP);
  ASSERT_TRUE(eventually([&] { return all_threads_stopped(members_[2].proc->pid()); }, 5s));
  http_reply isolated;
  std::thread writer{[&] {
    http_client c{members_[2].http};
    isolated = c.call("PATCH", path, json{{"properties", {{"count", 1000000}}}}.dump(),
                      {{"Content-Type", "application/merge-patch+json"},
                       {"If-Match", "\"" + std::to_string(version) + "\""}});
  }};
  // Its follower takes the shard over and serves it.
  int increments = 0;
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (increments < 5 && std::chrono::steady_clock::now() < deadline) {
    auto read = at(0).call("GET", path);
    if (read.status != 200) {
      std::this_thread::sleep_for(100ms);
      continue;
    }
    auto twin = json::parse(read.body);
    auto r = at(0).call(
      "PATCH", path,
      json{{"properties", {{"count", twin["properties"]["count"].get<int>() + 1}}}}.dump(),
      {{"Content-Type", "application/merge-patch+json"},
       {"If-Match", "\"" + std::to_string(twin["version"].get<int>()) + "\""}});
    increments += r.status == 200 ? 1 : 0;
  }
  EXPECT_EQ(increments, 5) << "the new primary did not serve the shard";
  EXPECT_NE(owner_of(id), "node-2");
  members_[2].proc->signal(SIGCONT);
  writer.join();
  // The write that reached the cut-off primary was never acknowledged, and is nowhere.
  EXPECT_NE(isolated.status, 200u) << isolated.body;
  auto count = [&](size_t via) {
    return json::parse(at(via).call("GET", path).body)["properties"]["count"].get<int>();
  };
  EXPECT_EQ(count(0), increments);
  ASSERT_TRUE(wait_for_200(members_[2].metrics, "/readyz", 20s));
  ASSERT_TRUE(eventually([&] { return at(2).call("GET", path).status == 200; }, 20s));
  EXPECT_EQ(count(2), increments);  // it serves the new primary's, not its own older copy
}

/// A member that joins takes primaries by handoff, and its share of the follower roles by
/// extra copies that replace the busiest followers once whole: the roles end spread evenly,
/// every shard with its copies in sync, and every twin as it was.
TEST_F(replication_test, a_member_that_joins_takes_its_share_of_the_follower_roles) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  ASSERT_NO_FATAL_FAILURE(wait_for_replicas());
  constexpr int counters = 16;
  ASSERT_NO_FATAL_FAILURE(make_counters(counters));
  for (int c = 0; c < counters; ++c) {
    auto r = at(0).call("PATCH", "/v1/twins/c:n" + std::to_string(c),
                        json{{"properties", {{"count", c}}}}.dump(),
                        {{"Content-Type", "application/merge-patch+json"}});
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(start(3));
  ASSERT_NO_FATAL_FAILURE(wait_for_balance(4));
  json members;
  ASSERT_TRUE(eventually(
    [&] {
      auto j = json::parse(at(0).call("GET", "/v1/cluster").body);
      members = j["members"];
      int lo = 1 << 30, hi = 0, total = 0;
      for (const auto& m : members) {
        lo = std::min(lo, m["follows"].get<int>());
        hi = std::max(hi, m["follows"].get<int>());
        total += m["follows"].get<int>();
      }
      // One follower a shard (R = 2), spread within two roles of each other.
      return members.size() == 4 && j["replication"]["under_replicated"].empty()
             && total == j["shards"].get<int>() && hi - lo <= 2;
    },
    60s))
    << members.dump();
  RecordProperty("spread_ms", static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - t0)
                                                 .count()));
  for (int c = 0; c < counters; ++c) {
    auto r = at(3).call("GET", "/v1/twins/c:n" + std::to_string(c));
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(json::parse(r.body)["properties"]["count"], c);
  }
}

} // namespace
} // namespace twin::test
