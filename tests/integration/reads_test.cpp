// The reads across twins of a real twind process on 127.0.0.1: queries with paging,
// property history, commands, and the change stream (server-sent events), including a
// consumer that reads nothing while the node takes a burst of telemetry.

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "event_reader.hpp"
#include "gauge_node_test.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class reads_test : public gauge_node_test {
protected:
  std::vector<std::string> extra_args() override {
    return {"--metrics-port", "0", "--http-event-buffer", "64"};
  }

  json get_json(const std::string& target, unsigned status = 200) {
    auto r = client_->call("GET", target);
    EXPECT_EQ(r.status, status) << target << ": " << r.body;
    auto doc = json::parse(r.body, nullptr, false);
    return doc.is_discarded() ? json{} : doc;
  }

  /// Sends telemetry items [{"twin", "ts"?, "values"}]; expects every one accepted.
  void telemetry(const json& items) {
    auto r = client_->call("POST", "/v1/telemetry", items.dump(), json_type);
    ASSERT_EQ(r.status, 202u) << r.body;
    ASSERT_EQ(json::parse(r.body)["rejected"], 0) << r.body;
  }
};

TEST_F(reads_test, a_query_pages_through_the_matching_twins_with_an_opaque_cursor) {
  ASSERT_EQ(put("q:root", {{"type", "gauge"}}).status, 201u);
  for (int i = 0; i < 25; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "q:g%02d", i);
    json body{{"type", "gauge"}, {"properties", {{"label", i % 2 ? "odd" : "even"}}}};
    if (i < 10)
      body["parent"] = "q:root";
    ASSERT_EQ(put(name, body).status, 201u);
    telemetry(json::array({{{"twin", name}, {"values", {{"level", i * 4}}}}}));
  }
  // "where" over properties, URL-encoded, paged by 4.
  std::vector<std::string> seen;
  const std::string query =
    "/v1/twins?type=gauge&where=level%20%3E%3D%2040%20and%20label%20%3D%20%22odd%22&limit=4";
  std::string target = query;
  for (int pages = 0; pages < 10; ++pages) {
    auto doc = get_json(target);
    ASSERT_TRUE(doc.contains("items") && doc["items"].is_array()) << doc.dump();
    EXPECT_LE(doc["items"].size(), 4u);
    for (const auto& t : doc["items"]) {
      seen.push_back(t["id"]);
      EXPECT_EQ(t["properties"]["label"], "odd");
      EXPECT_GE(t["properties"]["level"].get<double>(), 40);
    }
    if (doc["cursor"].is_null())
      break;
    target = query + "&cursor=" + doc["cursor"].get<std::string>();
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"q:g11", "q:g13", "q:g15", "q:g17", "q:g19",
                                            "q:g21", "q:g23"}));
  // Children of a parent; kinds; nothing that matches is an empty page.
  EXPECT_EQ(get_json("/v1/twins?parent=q:root&limit=100")["items"].size(), 10u);
  EXPECT_EQ(get_json("/v1/twins?kind=component&limit=100")["items"].size(), 26u);
  auto none = get_json("/v1/twins?kind=process");
  EXPECT_TRUE(none["items"].empty());
  EXPECT_TRUE(none["cursor"].is_null());
  // Bad parameters are refused with the reason.
  auto bad = client_->call("GET", "/v1/twins?where=level%20%3E");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_NE(bad.body.find("invalid_argument"), std::string::npos) << bad.body;
}

TEST_F(reads_test, history_returns_the_samples_and_their_steps) {
  ASSERT_EQ(put("h:g", {{"type", "gauge"}}).status, 201u);
  json items = json::array();
  for (int i = 0; i < 30; ++i)
    items.push_back(
      {{"twin", "h:g"}, {"ts", 1'700'000'000'000 + i * 1000}, {"values", {{"level", i}}}});
  telemetry(items);
  auto doc = get_json("/v1/twins/h:g/history?property=level&from=1700000005000&to=1700000009000");
  ASSERT_EQ(doc["points"].size(), 5u) << doc.dump();
  EXPECT_EQ(doc["points"][0]["ts"], 1'700'000'005'000);
  EXPECT_EQ(doc["points"][0]["value"], 5.0);
  EXPECT_TRUE(doc["next_from"].is_null());
  auto steps = get_json("/v1/twins/h:g/history?property=level&step=10000");
  ASSERT_EQ(steps["buckets"].size(), 3u) << steps.dump();
  EXPECT_EQ(steps["buckets"][1]["ts"], 1'700'000'010'000);
  EXPECT_EQ(steps["buckets"][1]["count"], 10);
  EXPECT_EQ(steps["buckets"][1]["min"], 10.0);
  EXPECT_EQ(steps["buckets"][1]["avg"], 14.5);
  auto page = get_json("/v1/twins/h:g/history?property=level&limit=7");
  EXPECT_EQ(page["points"].size(), 7u);
  EXPECT_EQ(page["next_from"], 1'700'000'007'000);
  // The history survives a restart of the node.
  node_->signal(SIGTERM);
  ASSERT_EQ(node_->wait(30s), 0) << node_->stderr_text();
  node_ = start_gauge_node(dir_, port_, {"--metrics-port", "0"});
  ASSERT_TRUE(wait_for_200(*client_, "/readyz", 20s)) << node_->stderr_text();
  EXPECT_EQ(get_json("/v1/twins/h:g/history?property=level")["points"].size(), 30u);
  // A property without history, and a twin that does not exist.
  EXPECT_EQ(client_->call("GET", "/v1/twins/h:g/history?property=label").status, 422u);
  EXPECT_EQ(client_->call("GET", "/v1/twins/h:none/history?property=level").status, 404u);
}

TEST_F(reads_test, the_event_stream_shows_changes_in_version_order_and_commands) {
  ASSERT_EQ(put("e:g1", {{"type", "gauge"}}).status, 201u);
  event_reader events{port_, "?namespace=e&type=gauge"};
  ASSERT_GE(events.fd(), 0);
  auto head = events.head();
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_NE(head.find("text/event-stream"), std::string::npos) << head;
  ASSERT_EQ(put("other:g1", {{"type", "gauge"}}).status, 201u);  // another namespace
  for (int i = 1; i <= 5; ++i)
    telemetry(json::array({{{"twin", "e:g1"}, {"values", {{"level", i}}}}}));
  auto cmd = client_->call("POST", "/v1/twins/e:g1/commands/reset", R"({"hard":true})",
                           json_type);
  EXPECT_EQ(cmd.status, 202u) << cmd.body;
  // A command the type does not have is refused and not sent: no event comes of it.
  EXPECT_EQ(client_->call("POST", "/v1/twins/e:g1/commands/explode", "", json_type).status,
            400u);
  EXPECT_EQ(client_->call("DELETE", "/v1/twins/e:g1").status, 204u);
  for (int i = 1; i <= 5; ++i) {
    auto ev = events.next();
    ASSERT_FALSE(ev.is_null()) << "event " << i;
    EXPECT_EQ(ev["event"], "changed");
    EXPECT_EQ(ev["data"]["id"], "e:g1");
    EXPECT_EQ(ev["data"]["version"], i + 1);
    EXPECT_EQ(ev["data"]["properties"]["level"], static_cast<double>(i));
  }
  auto command = events.next();
  EXPECT_EQ(command["event"], "command");
  EXPECT_EQ(command["data"]["command"], "reset");
  EXPECT_EQ(command["data"]["args"]["hard"], true);
  auto deleted = events.next();
  EXPECT_EQ(deleted["event"], "deleted");
  EXPECT_EQ(deleted["data"]["version"], 7);
}

TEST_F(reads_test, a_stream_that_resumes_without_kept_events_is_told_to_read_again) {
  event_reader fresh{port_, "?namespace=e"};
  ASSERT_EQ(fresh.head().rfind("HTTP/1.1 200", 0), 0u);
  ASSERT_EQ(put("e:g1", {{"type", "gauge"}}).status, 201u);
  auto first = fresh.next();
  ASSERT_TRUE(first.contains("id")) << first;
  // This node keeps no events (--event-retention 0): it cannot resume after one.
  ASSERT_EQ(put("e:g2", {{"type", "gauge"}}).status, 201u);
  event_reader again{port_, "?namespace=e", 0, test_admin_token, first["id"]};
  ASSERT_EQ(again.head().rfind("HTTP/1.1 200", 0), 0u);
  auto reset = again.next();
  EXPECT_EQ(reset["event"], "reset") << reset;
}

class resuming_reads_test : public reads_test {
protected:
  std::vector<std::string> extra_args() override {
    return {"--metrics-port", "0", "--event-retention", "100"};
  }
};

TEST_F(resuming_reads_test, a_stream_that_reconnects_gets_what_it_missed_then_what_comes) {
  ASSERT_EQ(put("r:g", {{"type", "gauge"}}).status, 201u);
  std::string last;
  {
    event_reader first{port_, "?namespace=r"};
    ASSERT_EQ(first.head().rfind("HTTP/1.1 200", 0), 0u);
    for (int i = 1; i <= 3; ++i)
      telemetry(json::array({{{"twin", "r:g"}, {"values", {{"level", i}}}}}));
    for (int i = 1; i <= 3; ++i) {
      auto ev = first.next();
      ASSERT_EQ(ev["data"]["properties"]["level"], static_cast<double>(i)) << ev;
      ASSERT_TRUE(ev.contains("id")) << ev;
      EXPECT_NE(ev["id"], last);
      last = ev["id"];
    }
  }  // the client goes away; changes go on
  for (int i = 4; i <= 5; ++i)
    telemetry(json::array({{{"twin", "r:g"}, {"values", {{"level", i}}}}}));
  event_reader resumed{port_, "?namespace=r", 0, test_admin_token, last};
  ASSERT_EQ(resumed.head().rfind("HTTP/1.1 200", 0), 0u);
  for (int i = 4; i <= 6; ++i) {
    if (i == 6)
      telemetry(json::array({{{"twin", "r:g"}, {"values", {{"level", i}}}}}));
    auto ev = resumed.next();
    ASSERT_EQ(ev["event"], "changed") << ev;
    EXPECT_EQ(ev["data"]["properties"]["level"], static_cast<double>(i)) << ev;
    last = ev["id"];
  }
  // Another node's id, or this node's before a restart: it cannot know what was missed.
  event_reader stranger{port_, "?namespace=r", 0, test_admin_token, "0123456789abcdef.3"};
  ASSERT_EQ(stranger.head().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(stranger.next()["event"], "reset");
  client_.reset();
  stop_node(node_);
  node_ = start_gauge_node(dir_, port_, extra_args());
  ASSERT_TRUE(wait_for_200(port_, "/readyz", 20s)) << node_->stderr_text();
  client_ = std::make_unique<http_client>(port_);
  event_reader after_restart{port_, "?namespace=r", 0, test_admin_token, last};
  ASSERT_EQ(after_restart.head().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(after_restart.next()["event"], "reset");
}

TEST_F(reads_test, a_consumer_that_reads_nothing_does_not_slow_ingestion_and_gets_lagged) {
  ASSERT_EQ(put("s:g", {{"type", "gauge"}}).status, 201u);
  event_reader slow{port_, "?prefix=s:", 4096};
  ASSERT_GE(slow.fd(), 0);
  ASSERT_EQ(slow.head().rfind("HTTP/1.1 200", 0), 0u);
  // 40,000 changes while the consumer reads nothing: far more than its socket and the
  // node's buffer of 64 events hold.
  for (int b = 0; b < 40; ++b) {
    json items = json::array();
    for (int i = 0; i < 1000; ++i)
      items.push_back({{"twin", "s:g"}, {"values", {{"level", (b * 1000 + i) % 100}}},
                       {"ts", 1'700'000'000'000 + b * 1000 + i}});
    telemetry(items);
  }
  EXPECT_EQ(get_json("/v1/twins/s:g")["version"], 40001);
  // The consumer gets what fit, in order, then "lagged", and the stream ends.
  json ev;
  uint64_t last = 0;
  int n = 0;
  for (; n < 100000; ++n) {
    ev = slow.next();
    if (ev.is_null() || ev["event"] != "changed")
      break;
    EXPECT_GT(ev["data"]["version"].get<uint64_t>(), last);
    last = ev["data"]["version"];
  }
  ASSERT_FALSE(ev.is_null()) << "the stream ended without a lagged event after " << n;
  EXPECT_EQ(ev["event"], "lagged");
  EXPECT_LT(last, 40001u);
  EXPECT_TRUE(slow.closed());
  // A new subscriber starts afresh.
  event_reader fresh{port_, "?prefix=s:"};
  ASSERT_EQ(fresh.head().rfind("HTTP/1.1 200", 0), 0u);
  telemetry(json::array({{{"twin", "s:g"}, {"values", {{"level", 1}}}}}));
  auto next = fresh.next();
  EXPECT_EQ(next["data"]["version"], 40002);
}

} // namespace
} // namespace twin::test
