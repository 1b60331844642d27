// The HTTP API of a real twind process on 127.0.0.1: the twin routes, conditional
// requests, and the error statuses of bad requests, each of which changes nothing.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_node_test.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class http_test : public gauge_node_test {
protected:
  std::vector<std::string> extra_args() override {
    metrics_port_ = free_port();
    return {"--metrics-port", std::to_string(metrics_port_), "--http-max-body", "4096"};
  }

  json get_json(const std::string& id) {
    auto r = client_->call("GET", "/v1/twins/" + id);
    EXPECT_EQ(r.status, 200u) << r.body;
    return r.status == 200 ? json::parse(r.body) : json{};
  }

  /// The error code of an error answer, checking its shape.
  static std::string error_code(const http_reply& r) {
    auto doc = json::parse(r.body, nullptr, false);
    if (doc.is_discarded() || !doc.contains("error") || !doc["error"].contains("code")
        || !doc["error"]["code"].is_string() || !doc["error"].contains("message"))
      return "(not the error shape: " + r.body + ")";
    return doc["error"]["code"].get<std::string>();
  }

  int metrics_port_ = 0;
};

TEST_F(http_test, health_answers_get_only) {
  auto h = client_->call("GET", "/healthz");
  EXPECT_EQ(h.status, 200u);
  EXPECT_EQ(json::parse(h.body)["status"], "ok");
  EXPECT_EQ(client_->call("POST", "/healthz").status, 405u);
  EXPECT_EQ(client_->call("POST", "/readyz").status, 405u);
}

TEST_F(http_test, puts_gets_patches_and_deletes_a_twin_over_one_connection) {
  auto created = put("t:g1", {{"type", "gauge"}, {"properties", {{"level", 40.5}}}});
  ASSERT_EQ(created.status, 201u) << created.body;
  EXPECT_EQ(created.headers["etag"], "\"1\"");
  EXPECT_EQ(created.headers["location"], "/v1/twins/t:g1");
  EXPECT_EQ(json::parse(created.body)["created"], true);

  auto replaced = put("t:g1", {{"type", "gauge"}, {"properties", {{"level", 41.0}}},
                               {"desired", {{"target", 50.0}}}});
  ASSERT_EQ(replaced.status, 200u) << replaced.body;
  EXPECT_TRUE(client_->reused());

  auto r = client_->call("GET", "/v1/twins/t:g1");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers["etag"], "\"2\"");
  EXPECT_EQ(r.headers["content-type"], "application/json");
  auto twin = json::parse(r.body);
  EXPECT_EQ(twin["id"], "t:g1");
  EXPECT_EQ(twin["type"], "gauge");
  EXPECT_EQ(twin["kind"], "component");
  EXPECT_EQ(twin["properties"]["level"], 41.0);
  EXPECT_EQ(twin["desired"]["target"], 50.0);
  EXPECT_EQ(twin["delta"]["target"], 50.0);
  EXPECT_EQ(twin["version"], 2);

  // A merge patch: null deletes, other keys stay.
  auto patched = client_->call("PATCH", "/v1/twins/t:g1",
                               json{{"properties", {{"label", "north"}}},
                                    {"desired", {{"target", nullptr}}}}
                                 .dump(),
                               {{"Content-Type", "application/merge-patch+json"}});
  ASSERT_EQ(patched.status, 200u) << patched.body;
  EXPECT_EQ(patched.headers["etag"], "\"3\"");
  twin = get_json("t:g1");
  EXPECT_EQ(twin["properties"]["label"], "north");
  EXPECT_EQ(twin["properties"]["level"], 41.0);
  EXPECT_FALSE(twin["desired"].contains("target"));

  auto removed = client_->call("DELETE", "/v1/twins/t:g1");
  EXPECT_EQ(removed.status, 204u) << removed.body;
  auto gone = client_->call("GET", "/v1/twins/t:g1");
  EXPECT_EQ(gone.status, 404u);
  EXPECT_EQ(error_code(gone), "not_found");
}

TEST_F(http_test, conditional_requests_fail_on_a_stale_version_and_change_nothing) {
  ASSERT_EQ(put("t:g2", {{"type", "gauge"}}).status, 201u);
  auto with = [](std::string etag) {
    auto h = json_type;
    h["If-Match"] = std::move(etag);
    return h;
  };
  auto stale = client_->call("PATCH", "/v1/twins/t:g2",
                             json{{"properties", {{"level", 5.0}}}}.dump(), with("\"7\""));
  EXPECT_EQ(stale.status, 412u) << stale.body;
  EXPECT_EQ(error_code(stale), "version_conflict");
  EXPECT_EQ(put("t:g2", {{"type", "gauge"}}, with("\"9\"")).status, 412u);
  EXPECT_EQ(client_->call("DELETE", "/v1/twins/t:g2", {}, {{"If-Match", "\"3\""}}).status, 412u);
  auto create_only = json_type;
  create_only["If-None-Match"] = "*";
  EXPECT_EQ(put("t:g2", {{"type", "gauge"}}, create_only).status, 412u);
  EXPECT_EQ(get_json("t:g2")["version"], 1);

  auto fresh = client_->call("PATCH", "/v1/twins/t:g2",
                             json{{"properties", {{"level", 5.0}}}}.dump(), with("\"1\""));
  EXPECT_EQ(fresh.status, 200u) << fresh.body;
  EXPECT_EQ(fresh.headers["etag"], "\"2\"");
  auto malformed = client_->call("PATCH", "/v1/twins/t:g2", "{}", with("7"));
  EXPECT_EQ(malformed.status, 400u);
  EXPECT_EQ(put("t:g3", {{"type", "gauge"}}, create_only).status, 201u);

  // No twin has version 0, and a missing twin matches no ETag; * matches any version.
  EXPECT_EQ(put("t:g9", {{"type", "gauge"}}, with("\"0\"")).status, 412u);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:g9").status, 404u);
  EXPECT_EQ(client_->call("DELETE", "/v1/twins/t:g9", {}, {{"If-Match", "\"1\""}}).status,
            412u);
  EXPECT_EQ(client_->call("PATCH", "/v1/twins/t:g9", "{}", with("*")).status, 412u);
  EXPECT_EQ(client_->call("PATCH", "/v1/twins/t:g2", "{}", with("*")).status, 200u);
}

TEST_F(http_test, bad_requests_get_their_status_in_the_error_shape_and_change_nothing) {
  ASSERT_EQ(put("t:g4", {{"type", "gauge"}, {"properties", {{"level", 10.0}}}}).status, 201u);
  ASSERT_EQ(put("t:c1", {{"type", "gauge"}}).status, 201u);
  ASSERT_EQ(put("t:c2", {{"type", "gauge"}, {"parent", "t:c1"}}).status, 201u);
  struct bad_case {
    std::string method;
    std::string target;
    std::string body;
    std::map<std::string, std::string> headers;
    unsigned status;
    std::string code;
  };
  std::string deep = R"({"type":"gauge","properties":{"label":)" + std::string(60, '[')
                     + std::string(60, ']') + "}}";
  std::vector<bad_case> cases{
    {"PUT", "/v1/twins/t:g4", R"({"type":"gauge"})", {{"Content-Type", "text/plain"}}, 415,
     "unsupported_media_type"},
    {"PATCH", "/v1/twins/t:g4", "{}", {}, 415, "unsupported_media_type"},
    {"PUT", "/v1/twins/t:g4", R"({"type":)", json_type, 400, "invalid_argument"},
    {"PUT", "/v1/twins/t:g4", "[1,2]", json_type, 400, "invalid_argument"},
    {"PUT", "/v1/twins/t:g4", R"({"type":"gauge","color":"red"})", json_type, 400,
     "invalid_argument"},
    {"PUT", "/v1/twins/t:g4", R"({"properties":{}})", json_type, 400, "invalid_argument"},
    {"PUT", "/v1/twins/t:g4", deep, json_type, 400, "invalid_argument"},
    {"PUT", "/v1/twins/t:g4", R"({"type":"gauge","parent":"no colon"})", json_type, 400,
     "invalid_id"},
    {"PUT", "/v1/twins/t:g4", R"({"type":"valve"})", json_type, 422, "unknown_type"},
    {"PUT", "/v1/twins/t:g4", R"({"type":"gauge","properties":{"level":250}})", json_type, 422,
     "out_of_range"},
    {"PUT", "/v1/twins/t:g4", R"({"type":"gauge","properties":{"level":"high"}})", json_type,
     422, "type_mismatch"},
    {"PATCH", "/v1/twins/t:g4", R"({"properties":{"pressure":1}})", json_type, 422,
     "unknown_property"},
    {"PUT", "/v1/twins/t:g4", std::string(5000, ' ') + R"({"type":"gauge"})", json_type, 413,
     "payload_too_large"},
    {"GET", "/v1/twins/no-colon", "", {}, 400, "invalid_id"},
    {"GET", "/v1/twins/t:nobody", "", {}, 404, "not_found"},
    {"PATCH", "/v1/twins/t:nobody", "{}", json_type, 404, "not_found"},
    {"GET", "/v2/things", "", {}, 404, "not_found"},
    {"POST", "/v1/twins/t:g4", "{}", json_type, 405, "method_not_allowed"},
    {"PUT", "/v1/twins/t:c1", R"({"type":"gauge","parent":"t:c2"})", json_type, 409,
     "conflict"},
  };
  for (const auto& c : cases) {
    auto r = client_->call(c.method, c.target, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body.substr(0, 80)
                                  << " -> " << r.body;
    EXPECT_EQ(error_code(r), c.code) << c.method << " " << c.target;
    if (c.status == 405) {
      EXPECT_EQ(r.headers["allow"], "GET, PUT, PATCH, DELETE");
    }
  }
  auto twin = get_json("t:g4");
  EXPECT_EQ(twin["version"], 1);
  EXPECT_EQ(twin["properties"]["level"], 10.0);
  EXPECT_TRUE(get_json("t:c1")["parent"].is_null());
  EXPECT_EQ(client_->call("GET", "/v1/twins/t%3Ag4").status, 200u);  // an escaped ':'
}

/// Reads from `fd` until `text` has arrived (or 10 s passed); returns what was read.
std::string read_until(int fd, const std::string& text) {
  std::string got;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.find(text) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    auto n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

/// The head of a PUT of twin `id` that announces `length` body bytes and waits for 100.
std::string expecting_put(const std::string& id, size_t length) {
  return "PUT /v1/twins/" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bearer
         + "Content-Type: application/json\r\nExpect: 100-continue\r\n"
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

TEST_F(http_test, a_web_page_of_another_site_cannot_drive_a_twin) {
  ASSERT_EQ(put("g:1", {{"type", "gauge"}, {"desired", {{"target", 1}}}}).status, 201u);
  auto before = client_->call("GET", "/v1/twins/g:1");
  // What a page of http://evil can make a browser send, with or without DNS rebinding.
  const std::map<std::string, std::string> page{{"Content-Type", "text/plain"},
                                                {"Origin", "http://evil"}};
  auto rebound = page;
  rebound["Host"] = "evil";
  for (const auto& headers : {page, rebound}) {
    auto r = client_->call("POST", "/v1/twins/g:1/commands/reset", "", headers);
    EXPECT_EQ(r.status, 403u) << r.body;
    EXPECT_NE(r.body.find("forbidden_origin"), std::string::npos) << r.body;
  }
  auto json_page = json_type;
  json_page["Origin"] = "http://evil";
  EXPECT_EQ(client_->call("PATCH", "/v1/twins/g:1", R"({"desired":{"target":9}})", json_page)
              .status,
            403u);
  EXPECT_EQ(client_->call("DELETE", "/v1/twins/g:1", "", json_page).status, 403u);
  // Not from a page: a command still needs a JSON type, which no form can send.
  EXPECT_EQ(client_->call("POST", "/v1/twins/g:1/commands/reset", "",
                          {{"Content-Type", "text/plain"}})
              .status,
            415u);
  EXPECT_EQ(client_->call("GET", "/v1/twins/g:1").body, before.body) << "nothing changed";
  EXPECT_EQ(client_->call("POST", "/v1/twins/g:1/commands/reset", "", json_type).status, 202u);
}

TEST_F(http_test, a_client_that_expects_100_continue_is_told_to_send_its_body) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string body = R"({"type":"gauge"})";
  auto head = expecting_put("t:e1", body.size());
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  auto interim = read_until(fd, "\r\n\r\n");
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue", 0), 0u) << interim;
  ASSERT_EQ(send(fd, body.data(), body.size(), 0), static_cast<ssize_t>(body.size()));
  auto final_answer = read_until(fd, "}");
  EXPECT_EQ(final_answer.rfind("HTTP/1.1 201", 0), 0u) << final_answer;
  close(fd);
  EXPECT_EQ(get_json("t:e1")["version"], 1);

  // A body over the limit (4096 here) is refused before the client sends it.
  fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  head = expecting_put("t:e2", 5000);
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  auto refused = read_until(fd, "}");
  EXPECT_EQ(refused.rfind("HTTP/1.1 413", 0), 0u) << refused;
  close(fd);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:e2").status, 404u);
}

TEST_F(http_test, a_caller_without_a_good_token_is_refused_before_it_sends_its_body) {
  // It expects 100 before sending its body: it hears 401 instead, and nothing is made.
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  auto head = "PUT /v1/twins/t:sneaky HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              "Authorization: Bearer twn_0123456789abcdef_"
              + std::string(43, 'x') + "\r\nContent-Type: application/json\r\n"
                                        "Expect: 100-continue\r\nContent-Length: 3000\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  auto answer = read_until(fd, "}");
  EXPECT_EQ(answer.rfind("HTTP/1.1 401", 0), 0u) << answer;
  EXPECT_NE(answer.find("invalid_token"), std::string::npos) << answer;
  close(fd);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:sneaky").status, 404u);
}

TEST_F(http_test, a_client_that_sends_a_refused_body_whole_reads_the_413) {
  // Without expecting 100: the head and 2 MB of body in one go, over the 4096 limit. The
  // node answers 413 early and reads on (and drops) what comes, so the sending does not
  // fail on a reset and the answer can be read.
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string body(2u << 20, ' ');
  std::string head = "PUT /v1/twins/t:big HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bearer
                     + "Content-Type: application/json\r\nContent-Length: "
                     + std::to_string(body.size()) + "\r\n\r\n";
  auto all = head + body;
  size_t sent = 0;
  while (sent < all.size()) {
    auto n = send(fd, all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << "the node reset the connection after " << sent << " bytes";
    sent += static_cast<size_t>(n);
  }
  auto refused = read_until(fd, "}");
  EXPECT_EQ(refused.rfind("HTTP/1.1 413", 0), 0u) << refused;
  close(fd);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:big").status, 404u);
}

TEST_F(http_test, bytes_that_are_not_utf8_get_an_error_and_the_server_goes_on) {
  auto escaped = client_->call("GET", "/v1/twins/a:%FF%FE");
  EXPECT_EQ(escaped.status, 400u);
  EXPECT_EQ(error_code(escaped), "invalid_id");
  auto raw = client_->call("GET", "/\xff\xfe");
  EXPECT_EQ(raw.status, 404u);
  EXPECT_EQ(error_code(raw), "not_found");
  auto cut = "t:" + std::string(77, 'a') + "\xc3\xa9";  // its shown prefix splits the 'é'
  auto parent = put("t:u1", {{"type", "gauge"}, {"parent", cut}});
  EXPECT_EQ(parent.status, 400u) << parent.body;
  EXPECT_EQ(client_->call("GET", "/healthz").status, 200u);
}

TEST_F(http_test, a_telemetry_batch_answers_per_item_once_the_accepted_items_are_durable) {
  ASSERT_EQ(put("t:g5", {{"type", "gauge"}}).status, 201u);
  ASSERT_EQ(put("t:g6", {{"type", "gauge"}}).status, 201u);
  json batch = json::array({
    {{"twin", "t:g5"}, {"ts", 1700000000000}, {"values", {{"level", 12.5}}}},
    {{"twin", "t:g6"}, {"values", {{"level", 250}}}},         // out of range
    {{"twin", "t:nobody"}, {"values", {{"level", 1}}}},       // no such twin
    {{"twin", "no colon"}, {"values", {{"level", 1}}}},       // not an id
    {{"twin", "t:g6"}},                                       // no values
    42,                                                       // not an item
    {{"twin", "t:g6"}, {"values", {{"level", 7.0}}}, {"extra", 1}},
    {{"twin", "t:g6"}, {"ts", INT64_MAX}, {"values", {{"level", 3.0}}}},  // from the future
    {{"twin", "t:g6"}, {"values", {{"level", 99.0}}}},
  });
  auto r = client_->call("POST", "/v1/telemetry", batch.dump(), json_type);
  ASSERT_EQ(r.status, 202u) << r.body;
  auto answer = json::parse(r.body);
  EXPECT_EQ(answer["accepted"], 2);
  EXPECT_EQ(answer["rejected"], 7);
  auto& results = answer["results"];
  ASSERT_EQ(results.size(), batch.size());
  std::vector<std::string> codes;
  for (const auto& item : results)
    codes.push_back(item["ok"].get<bool>() ? "ok" : item["error"]["code"].get<std::string>());
  EXPECT_EQ(codes, (std::vector<std::string>{"ok", "out_of_range", "not_found", "invalid_id",
                                             "invalid_argument", "invalid_argument",
                                             "invalid_argument", "future_timestamp", "ok"}));
  EXPECT_EQ(results[0]["twin"], "t:g5");
  EXPECT_EQ(results[0]["version"], 2);
  // Acknowledged means applied: the values, their time and source are in the twins.
  auto g5 = get_json("t:g5");
  EXPECT_EQ(g5["properties"]["level"], 12.5);
  EXPECT_EQ(g5["metadata"]["level"]["updated"], 1700000000000);
  EXPECT_EQ(g5["metadata"]["level"]["source"], "http");
  auto g6 = get_json("t:g6");
  EXPECT_EQ(g6["properties"]["level"], 99.0);
  EXPECT_EQ(g6["version"], 2);

  auto empty = client_->call("POST", "/v1/telemetry", "[]", json_type);
  EXPECT_EQ(empty.status, 202u);
  EXPECT_EQ(json::parse(empty.body)["accepted"], 0);
  EXPECT_EQ(client_->call("POST", "/v1/telemetry", "{}", json_type).status, 400u);
  EXPECT_EQ(client_->call("POST", "/v1/telemetry", "[]").status, 415u);
  EXPECT_EQ(client_->call("GET", "/v1/telemetry").status, 405u);
}

TEST_F(http_test, metrics_count_requests_by_route_and_status_with_their_latency) {
  ASSERT_EQ(put("t:m1", {{"type", "gauge"}}).status, 201u);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:m1").status, 200u);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:m1").status, 200u);
  EXPECT_EQ(client_->call("GET", "/v1/twins/t:nobody").status, 404u);
  EXPECT_EQ(client_->call("GET", "/nowhere").status, 404u);
  http_client m{metrics_port_};
  auto scrape = m.call("GET", "/metrics");
  ASSERT_EQ(scrape.status, 200u);
  const auto& text = scrape.body;
  for (const char* sample :
       {R"(twin_http_requests_total{route="/v1/twins/{id}",code="201"} 1)",
        R"(twin_http_requests_total{route="/v1/twins/{id}",code="200"} 2)",
        R"(twin_http_requests_total{route="/v1/twins/{id}",code="404"} 1)",
        R"(twin_http_requests_total{route="other",code="404"} 1)",
        R"(twin_http_request_duration_seconds_count{route="/v1/twins/{id}"} 4)",
        R"(twin_http_request_duration_seconds_bucket{route="/v1/twins/{id}",le="+Inf"} 4)"})
    EXPECT_NE(text.find(sample), std::string::npos) << sample << "\n" << text;
  auto problems = promtool_problems(text);
  if (!problems)
    GTEST_SKIP() << "PROMTOOL IS NOT INSTALLED: run scripts/setup; the metrics were not linted";
  EXPECT_EQ(*problems, "") << text;
}

TEST_F(http_test, at_the_connection_cap_an_idle_connection_makes_room_and_busy_ones_do_not) {
  int port = free_port();
  process capped{{TWIND_PATH, "--data-dir", dir_.sub("capped"), "--metrics-port", "0", "--bind",
                  "127.0.0.1", "--http-port", std::to_string(port), "--http-max-connections",
                  "2", "--admin-token-file", admin_token_args(dir_.path())[1]}};
  ASSERT_TRUE(wait_for_200(port, "/healthz", 20s)) << capped.stderr_text();
  // Two kept-alive connections wait for their next request: a third one is served, and
  // the oldest of them is closed to make room.
  http_client a{port};
  http_client b{port};
  ASSERT_TRUE(wait_for_200(a, "/healthz", 10s) && wait_for_200(b, "/healthz", 10s));
  http_client c{port};
  EXPECT_EQ(c.call("GET", "/healthz").status, 200u);
  EXPECT_EQ(b.call("GET", "/healthz").status, 200u);
  EXPECT_TRUE(b.reused());
  EXPECT_EQ(a.call("GET", "/healthz").status, 200u);  // on a new connection
  EXPECT_FALSE(a.reused());
  // Two streams of events are busy, not idle: beyond them a connection is refused.
  std::vector<int> streams;
  for (int i = 0; i < 2; ++i) {
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    std::string req = "GET /v1/events HTTP/1.1\r\nHost: t\r\n" + bearer + "\r\n";
    ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    char head[64];
    ASSERT_GT(::read(fd, head, sizeof head), 0);  // the stream began
    streams.push_back(fd);
  }
  http_client d{port};
  auto refused = d.call("GET", "/healthz");
  EXPECT_EQ(refused.status, 503u);
  EXPECT_EQ(error_code(refused), "too_many_connections");
  EXPECT_EQ(refused.headers["retry-after"], "1");
  for (int fd : streams)
    ::close(fd);
  EXPECT_TRUE(wait_for_200(d, "/healthz", 10s));
  capped.signal(SIGTERM);
  EXPECT_EQ(capped.wait(30s), 0) << capped.stderr_text();
}

} // namespace
} // namespace twin::test
