// A cluster of real twind members on loopback: any member serves any twin, queries and
// history reach every member's twins, twins on different members compose, every member
// streams the whole cluster's changes, devices reach their twins wherever they live, and a
// RUL model fitted through one member serves the twins of all.

#include <filesystem>
#include <iostream>
#include <numeric>
#include <set>
#include <thread>

#include "cluster_fixture.hpp"
#include "event_reader.hpp"
#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"
#include "rul_fleet.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST_F(cluster_test, twins_made_through_one_member_are_served_and_composed_by_all) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  // Balanced: 1,024 shards over 3 members.
  auto status = json::parse(at(1).call("GET", "/v1/cluster").body);
  for (const auto& m : status["members"]) {
    EXPECT_GE(m["shards"].get<int>(), 341);
    EXPECT_LE(m["shards"].get<int>(), 342);
    EXPECT_EQ(m["state"], "up");
  }
  EXPECT_EQ(status["shard_table"].size(), 1024u);
  constexpr int lines = 24;
  ASSERT_EQ(at(1).call("PUT", "/v1/twins/f:plant", json{{"type", "plant"}}.dump(), json_type).status,
            201u);
  for (int i = 0; i < lines; ++i) {
    auto body = json{{"type", "line"},
                     {"parent", "f:plant"},
                     {"properties", {{"product", "P" + std::to_string(i)}}}};
    auto r = at(0).call("PUT", "/v1/twins/f:line-" + std::to_string(i), body.dump(), json_type);
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  for (int i = 0; i < lines; ++i)
    for (size_t n : {1, 2}) {
      auto r = at(n).call("GET", "/v1/twins/f:line-" + std::to_string(i));
      ASSERT_EQ(r.status, 200u) << r.body;
      EXPECT_EQ(json::parse(r.body)["properties"]["product"], "P" + std::to_string(i));
    }
  auto patched = at(2).call("PATCH", "/v1/twins/f:line-5",
                            json{{"properties", {{"product", "Q5"}}}}.dump(),
                            {{"Content-Type", "application/merge-patch+json"}});
  ASSERT_EQ(patched.status, 200u) << patched.body;
  EXPECT_EQ(json::parse(at(0).call("GET", "/v1/twins/f:line-5").body)["properties"]["product"],
            "Q5");
  // Queries gather every member's twins, in id order, page by page.
  for (size_t n : {0, 1, 2}) {
    std::vector<std::string> ids;
    std::string cursor;
    for (int pages = 0; pages < 20; ++pages) {
      auto r = at(n).call("GET", "/v1/twins?type=line&limit=5" + (cursor.empty() ? "" : "&cursor=" + cursor));
      ASSERT_EQ(r.status, 200u) << r.body;
      auto j = json::parse(r.body);
      for (const auto& item : j["items"])
        ids.push_back(item["id"]);
      if (j["cursor"].is_null())
        break;
      cursor = j["cursor"];
    }
    EXPECT_EQ(ids.size(), static_cast<size_t>(lines)) << "through member " << n;
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  }
  auto where = json::parse(at(1).call("GET", "/v1/twins?type=line&where=product%20%3D%3D%20%22Q5%22").body);
  ASSERT_EQ(where["items"].size(), 1u);
  EXPECT_EQ(where["items"][0]["id"], "f:line-5");
  // Every member's part of the query takes its filters: the id's prefix, the namespace.
  auto prefixed =
    json::parse(at(2).call("GET", "/v1/twins?type=line&prefix=f%3Aline-1&limit=50").body);
  ASSERT_TRUE(prefixed["items"].is_array()) << prefixed;
  for (const auto& item : prefixed["items"])
    EXPECT_EQ(item["id"].get<std::string>().rfind("f:line-1", 0), 0u) << item["id"];
  EXPECT_EQ(prefixed["items"].size(), 11u);  // f:line-1 and f:line-10 to f:line-19
  EXPECT_TRUE(json::parse(at(0).call("GET", "/v1/twins?namespace=g").body)["items"].empty());
  // Relationships and parents change through any member, and are found through all.
  auto related = at(0).call(
    "PATCH", "/v1/twins/f:plant",
    json{{"relationships", {{{"name", "contains"}, {"target", "f:line-3"}}}}}.dump(),
    {{"Content-Type", "application/merge-patch+json"}});
  ASSERT_EQ(related.status, 200u) << related.body;
  for (size_t n : {0, 1, 2}) {
    auto found = json::parse(at(n).call("GET", "/v1/twins?related=contains:f:line-3").body);
    ASSERT_EQ(found["items"].size(), 1u) << "through member " << n << ": " << found;
    EXPECT_EQ(found["items"][0]["id"], "f:plant");
  }
  auto pointed = at(2).call("DELETE", "/v1/twins/f:line-3");
  EXPECT_EQ(pointed.status, 409u) << pointed.body;
  // A type uploaded through one member is every member's, for twins on any of them.
  auto uploaded = at(0).call("PUT", "/v1/types/conveyor", R"({"@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:factory:conveyor;1", "@type": "Interface",
    "contents": [{"@type": "Telemetry", "name": "speed", "schema": "double"}],
    "twin": {"kind": "asset"}})", json_type);
  ASSERT_EQ(uploaded.status, 201u) << uploaded.body;
  for (size_t n : {1, 2})
    EXPECT_TRUE(eventually([&] { return at(n).call("GET", "/v1/types/conveyor").status == 200; }))
      << "member " << n;
  for (int i = 0; i < 6; ++i) {  // over the members' shards
    auto made = at(static_cast<size_t>(i % 3))
                  .call("PUT", "/v1/twins/f:conveyor-" + std::to_string(i),
                        json{{"type", "conveyor"}, {"properties", {{"speed", 1.5}}}}.dump(),
                        json_type);
    EXPECT_EQ(made.status, 201u) << made.body;
  }
  // History comes from each twin's owner, through any member.
  for (int i = 0; i < lines; ++i) {
    auto path = "/v1/twins/f:line-" + std::to_string(i) + "/history?property=max_temperature";
    auto r = at(static_cast<size_t>(i % 3)).call("GET", path);
    EXPECT_EQ(r.status, 200u) << r.body;
    // The owner's errors keep their code on the way back.
    auto no = at(static_cast<size_t>(i % 3))
                .call("GET", "/v1/twins/f:line-" + std::to_string(i) + "/history?property=product");
    EXPECT_EQ(no.status, 422u) << no.body;
  }
  EXPECT_EQ(at(1).call("GET", "/v1/twins/f:nothing/history?property=x").status, 404u);
  // The plant lives on one member, its lines on all three: it counts them all.
  ASSERT_TRUE(eventually([&] {
    auto r = at(2).call("GET", "/v1/twins/f:plant");
    return r.status == 200 && json::parse(r.body)["properties"].value("lines", 0) == lines;
  }));
  EXPECT_EQ(json::parse(at(0).call("GET", "/v1/twins/f:plant").body)["children"].size(),
            static_cast<size_t>(lines));
  // Requests went between the members; their metrics pass Prometheus' linter.
  double forwarded = 0;
  for (auto& m : members_)
    forwarded += metric_value(m.metrics, "twin_cluster_forwarded_total");
  EXPECT_GT(forwarded, lines);
  http_client scrape{members_[1].metrics};
  auto text = scrape.call("GET", "/metrics").body;
  EXPECT_NE(text.find("twin_cluster_members{state=\"up\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("twin_cluster_shards_unserved 0"), std::string::npos);
  if (auto problems = promtool_problems(text)) {
    EXPECT_EQ(*problems, "") << text;
  }
}

/// GET /v1/events on any member streams the whole cluster's changes, each twin's in
/// version order with none missing, also while a joining member takes shards (and their
/// twins) from the others.
TEST_F(cluster_test, every_member_streams_the_whole_clusters_changes_in_version_order) {
  members_.resize(4);
  ASSERT_NO_FATAL_FAILURE(start_cluster(3));
  constexpr int twins = 24;
  auto id = [](int i) { return "e:k" + std::to_string(i); };
  // Two streams, read while the twins change: what each heard of each twin, in order.
  struct stream {
    stream(int port, std::string p) : prefix(std::move(p)), reader(port, "?prefix=" + prefix) {}
    std::string prefix;
    event_reader reader;
    std::map<std::string, std::vector<uint64_t>> seen;
    std::string other;  ///< an event that is not a change (none expected)
  };
  std::vector<std::unique_ptr<stream>> streams;
  streams.push_back(std::make_unique<stream>(members_[0].http, "e:"));
  streams.push_back(std::make_unique<stream>(members_[2].http, "e:k1"));  // e:k1, e:k10-19
  for (auto& st : streams)
    ASSERT_EQ(st->reader.head().rfind("HTTP/1.1 200", 0), 0u);
  std::mutex mtx;
  std::map<std::string, uint64_t> last;  ///< each twin's last version, once writes ended
  auto heard_all = [&](const stream& st) {
    if (last.empty())
      return false;
    for (const auto& [twin, v] : last)
      if (twin.rfind(st.prefix, 0) == 0
          && (st.seen.count(twin) == 0 || st.seen.at(twin).back() < v))
        return false;
    return true;
  };
  std::vector<std::thread> readers;
  for (auto& st : streams)
    readers.emplace_back([&, s = st.get()] {
      for (;;) {
        auto ev = s->reader.next();  // null after 10 s without one
        std::lock_guard<std::mutex> guard{mtx};
        if (ev.is_null() || ev["event"] != "changed") {
          s->other = ev.dump();
          return;
        }
        s->seen[ev["data"]["id"]].push_back(ev["data"]["version"]);
        if (heard_all(*s))
          return;
      }
    });
  for (int i = 0; i < twins; ++i) {
    auto r = at(1).call("PUT", "/v1/twins/" + id(i),
                        json{{"type", "counter"}, {"properties", {{"count", 0}}}}.dump(), json_type);
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  std::atomic<bool> stop{false};
  std::atomic<int> patched{0};
  std::thread writer{[&] {
    std::vector<std::unique_ptr<http_client>> clients;
    for (int m = 0; m < 3; ++m)
      clients.push_back(std::make_unique<http_client>(members_[m].http));
    for (int n = 0; !stop && n < 100'000; ++n) {
      auto r = clients[n % 3]->call("PATCH", "/v1/twins/" + id(n % twins),
                                    json{{"properties", {{"count", n}}}}.dump(),
                                    {{"Content-Type", "application/merge-patch+json"}});
      if (r.status == 200)
        ++patched;
    }
  }};
  std::this_thread::sleep_for(1s);
  EXPECT_NO_FATAL_FAILURE(start(3));  // a fourth member joins: shards move while twins change
  EXPECT_NO_FATAL_FAILURE(wait_for_balance(4));
  std::this_thread::sleep_for(1s);
  stop = true;
  writer.join();
  {
    std::lock_guard<std::mutex> guard{mtx};
    for (int i = 0; i < twins; ++i)
      last[id(i)] = json::parse(at(3).call("GET", "/v1/twins/" + id(i)).body)["version"];
  }
  // One more change wakes a reader that heard everything before `last` was known.
  at(0).call("PUT", "/v1/twins/e:k1z", json{{"type", "counter"}}.dump(), json_type);
  for (auto& r : readers)
    r.join();
  EXPECT_GT(patched.load(), 100);
  for (auto& st : streams) {
    EXPECT_EQ(st->other, "") << "the stream of " << st->prefix << " ended";
    for (const auto& [twin, v] : last) {
      if (twin.rfind(st->prefix, 0) != 0) {
        EXPECT_EQ(st->seen.count(twin), 0u) << twin << " does not start with " << st->prefix;
        continue;
      }
      std::vector<uint64_t> every(v);
      std::iota(every.begin(), every.end(), 1);
      EXPECT_EQ(st->seen[twin], every) << twin << " in the stream of " << st->prefix;
    }
  }
  // The member that joined streams the others' changes too.
  event_reader fresh{members_[3].http, "?prefix=e:k"};
  ASSERT_EQ(fresh.head().rfind("HTTP/1.1 200", 0), 0u);
  for (int i = 0; i < twins; ++i) {
    auto r = at(0).call("PATCH", "/v1/twins/" + id(i), json{{"properties", {{"count", -1}}}}.dump(),
                        {{"Content-Type", "application/merge-patch+json"}});
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  std::set<std::string> heard;
  for (int i = 0; i < twins; ++i) {
    auto ev = fresh.next();
    ASSERT_FALSE(ev.is_null()) << "after " << heard.size() << " events";
    EXPECT_EQ(ev["data"]["version"], last[ev["data"]["id"]] + 1);
    heard.insert(ev["data"]["id"].get<std::string>());
  }
  EXPECT_EQ(heard.size(), static_cast<size_t>(twins));
}

/// Devices publish to one broker; the members share its subscription, and each message
/// reaches its twin whichever member takes it and wherever the twin lives.
TEST_F(cluster_test, telemetry_through_a_shared_subscription_reaches_twins_on_every_member) {
  if (mosquitto_path().empty())
    GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the test did not run";
  int broker_port = free_port();
  auto broker = start_mosquitto(dir_, broker_port);
  // The client id is made per member from its node id.
  ASSERT_NO_FATAL_FAILURE(start_cluster(
    2, {"--mqtt-url", "tcp://127.0.0.1:" + std::to_string(broker_port), "--mqtt-shared-group",
        "twind"}));
  constexpr int twins = 20;
  for (int c = 0; c < twins; ++c) {
    auto r = at(0).call("PUT", "/v1/twins/c:m" + std::to_string(c),
                        json{{"type", "counter"}}.dump(), json_type);
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  for (int c = 0; c < twins; ++c) {
    auto sent = run_to_end({"/usr/bin/mosquitto_pub", "-p", std::to_string(broker_port), "-q", "1",
                            "-t", "twins/c:m" + std::to_string(c) + "/telemetry",
                            "-m", json{{"level", c + 0.5}}.dump()});
    ASSERT_EQ(sent.code, 0) << sent.err;
  }
  for (int c = 0; c < twins; ++c)
    EXPECT_TRUE(eventually([&] {
      auto r = at(1).call("GET", "/v1/twins/c:m" + std::to_string(c));
      return r.status == 200 && json::parse(r.body)["properties"].value("level", -1.0) == c + 0.5;
    })) << "twin c:m" << c;
  // Both members took messages from the shared subscription, and passed some on.
  double accepted = 0, forwarded = 0;
  for (auto& m : members_) {
    auto took = metric_value(m.metrics, R"(twin_ingest_messages_total{source="mqtt",result="accepted"})");
    EXPECT_GT(took, 0);
    accepted += took;
    forwarded += metric_value(m.metrics, "twin_cluster_forwarded_total");
  }
  EXPECT_EQ(accepted, twins);
  EXPECT_GT(forwarded, 0);
  // Desired states and commands go to the devices from each twin's owner, whichever
  // member took them.
  device robots{broker_port, {"twins/+/desired", "twins/+/commands/+"}};
  constexpr int n = 16;
  auto robot = [](int i) { return "r:r" + std::to_string(i); };
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(at(0).call("PUT", "/v1/twins/" + robot(i), json{{"type", "robot"}}.dump(),
                         json_type).status, 201u);
    auto r = at(1).call("PATCH", "/v1/twins/" + robot(i),
                        json{{"desired", {{"cycle_time_s", 10 + i}}}}.dump(),
                        {{"Content-Type", "application/merge-patch+json"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    r = at(0).call("POST", "/v1/twins/" + robot(i) + "/commands/stop", "{}", json_type);
    ASSERT_EQ(r.status, 202u) << r.body;
  }
  for (int i = 0; i < n; ++i) {
    auto topic = "twins/" + robot(i);
    EXPECT_TRUE(eventually([&] {
      auto m = robots.on(topic + "/desired");
      return !m.empty() && json::parse(m.back().payload).value("cycle_time_s", 0.0) == 10 + i;
    })) << topic;
    EXPECT_TRUE(eventually([&] { return robots.on(topic + "/commands/stop").size() == 1; }))
      << topic;
  }
  for (auto& m : members_)  // each member published for the robots it owns
    EXPECT_GT(metric_value(m.metrics, "twin_mqtt_published_total"), 0);
}

TEST_F(cluster_test, a_member_configured_with_another_shard_count_or_copies_is_refused) {
  members_.resize(2);
  ASSERT_NO_FATAL_FAILURE(start(0));
  auto r = run_to_end(args(1, {"--shards", "2048"}), {}, 30s);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("has 1024 shards; this node is configured for 2048"), std::string::npos)
    << r.err;
  std::filesystem::remove_all(dir_.sub("n1"));  // it keeps the shard count it was made with
  r = run_to_end(args(1, {"--replication-factor", "3"}), {}, 30s);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("keeps 2 copies of each shard; this node is configured for 3"),
            std::string::npos)
    << r.err;
}

TEST_F(cluster_test, a_token_made_through_one_member_holds_on_every_member_until_revoked) {
  ASSERT_NO_FATAL_FAILURE(start_cluster(2));
  auto made = at(1).call("POST", "/v1/tokens",
                         json{{"name", "line c"}, {"role", "writer"}, {"namespaces", {"c"}}}.dump(),
                         json_type);
  ASSERT_EQ(made.status, 201u) << made.body;
  auto token = json::parse(made.body)["token"].get<std::string>();
  auto id = json::parse(made.body)["id"].get<std::string>();
  http_client via0{members_[0].http, token};
  http_client via1{members_[1].http, token};
  ASSERT_TRUE(eventually([&] { return via0.call("GET", "/v1/cluster").status == 200; }, 10s))
    << "member 0 knows the token";
  for (int i = 0; i < 6; ++i) {  // twins of both members' shards
    auto r = via0.call("PUT", "/v1/twins/c:t" + std::to_string(i), R"({"type":"line"})",
                       json_type);
    EXPECT_EQ(r.status, 201u) << r.body;
  }
  EXPECT_EQ(via1.call("PUT", "/v1/twins/d:t0", R"({"type":"line"})", json_type).status, 404u);
  EXPECT_EQ(at(0).call("GET", "/v1/twins/d:t0").status, 404u) << "nothing was made";
  // Revoked through member 0, the token is refused by member 1 within seconds.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(at(0).call("DELETE", "/v1/tokens/" + id).status, 204u);
  ASSERT_TRUE(eventually([&] { return via1.call("GET", "/v1/twins/c:t0").status == 401; }, 5s));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - t0);
  EXPECT_LT(took.count(), 5000);
  std::cout << "revoked through one member, refused by the other " << took.count()
            << " ms after the revocation was asked for\n";
}

TEST_F(cluster_test, a_rul_model_fitted_through_one_member_serves_the_twins_of_every_member) {
  std::filesystem::create_directories(dir_.sub("models"));
  std::ofstream{dir_.sub("models/engine.json")} << engine_model;
  ASSERT_NO_FATAL_FAILURE(start_cluster(2));
  std::mt19937_64 rng{3};
  int64_t t0 = now_ms() - 3'600'000;
  for (int i = 0; i < 8; ++i)  // spread over both members' shards
    ASSERT_NO_FATAL_FAILURE(feed_engine(at(0), "fleet:" + std::to_string(i), 150 + 15 * i, 0, rng, t0));
  auto fit = at(1).call("POST", "/v1/types/engine/rul",
                        json{{"twins", {{"prefix", "fleet:"}}}, {"inputs", {"wear", "temp"}},
                             {"cap_s", 60}}.dump(),
                        json_type);
  ASSERT_EQ(fit.status, 201u) << fit.body;
  EXPECT_EQ(json::parse(fit.body)["fit"]["twins"], 8) << "the history of every member's twins";
  auto version_at = [&](size_t i) {
    auto r = at(i).call("GET", "/v1/types/engine/rul");
    return r.status == 200 ? json::parse(r.body)["version"].get<int>() : 0;
  };
  ASSERT_TRUE(eventually([&] { return version_at(0) == 1; }, 10s)) << "member 0 follows";
  // Twins on either member show their life left.
  for (int i = 0; i < 6; ++i) {
    auto id = "live:" + std::to_string(i);
    ASSERT_NO_FATAL_FAILURE(feed_engine(at(0), id, 200 + 10 * i, 30, rng, t0));
    auto shown = json::parse(at(1).call("GET", "/v1/twins/" + id).body)["properties"];
    ASSERT_TRUE(shown.contains("rul_s")) << id << ": " << shown;
    EXPECT_NEAR(shown["rul_s"].get<double>(), 30, 6) << id;
  }
  // A member started again reads the model from the cluster; a removal reaches every one.
  members_[0].proc->signal(SIGTERM);
  EXPECT_EQ(members_[0].proc->wait(30s), 0);
  ASSERT_NO_FATAL_FAILURE(start(0));
  EXPECT_EQ(version_at(0), 1);
  EXPECT_EQ(at(0).call("DELETE", "/v1/types/engine/rul").status, 204u);
  ASSERT_TRUE(eventually([&] { return version_at(1) == 0; }, 10s)) << "member 1 follows";
}

} // namespace
} // namespace twin::test
