// Who may call a real twind on 127.0.0.1: the admin token it makes at its first start, the
// tokens twinctl makes, lists and revokes with it, what a token of each scope may do through
// twinctl, the addresses that keep failing, the metrics token, and --no-auth.

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "event_reader.hpp"
#include "gauge_model.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "stop_node.hpp"
#include "test_support.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// twind serving the gauge type with `args`, and no admin token given: it makes its own.
std::unique_ptr<process> start_plain_node(const temp_dir& dir, std::vector<std::string> args) {
  std::filesystem::create_directories(dir.sub("models"));
  std::ofstream{dir.sub("models/gauge.json")} << gauge_model;
  std::vector<std::string> argv{TWIND_PATH, "--data-dir", dir.sub("data"), "--models",
                                dir.sub("models"), "--metrics-port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<process>(argv);
}

std::string read_token(const std::string& path) {
  std::string text;
  std::ifstream{path} >> text;
  return text;
}

std::string without_newline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  return s;
}

TEST(security, a_node_makes_its_admin_token_at_first_start_and_asks_every_caller_for_one) {
  temp_dir dir;
  int port = free_port();
  auto node = start_plain_node(dir, {"--http-port", std::to_string(port)});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node->stderr_text();
  auto file = dir.sub("data/admin.token");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0) << node->stderr_text();
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(node->stderr_text().find(file), std::string::npos) << node->stderr_text();
  auto admin = read_token(file);
  ASSERT_FALSE(admin.empty());
  EXPECT_EQ(node->stderr_text().find(admin.substr(21)), std::string::npos)
    << "the log shows the secret";

  http_client none{port, ""};
  auto refused = none.call("GET", "/v1/twins");
  EXPECT_EQ(refused.status, 401u) << refused.body;
  EXPECT_EQ(refused.headers["www-authenticate"], R"(Bearer realm="twind")");
  EXPECT_EQ(json::parse(refused.body)["error"]["code"], "unauthorized");
  EXPECT_EQ(none.call("GET", "/healthz").status, 200u);  // probes need none
  http_client wrong{port, "twn_0123456789abcdef_" + std::string(43, 'w')};
  auto bad = wrong.call("GET", "/v1/twins");
  EXPECT_EQ(bad.status, 401u);
  EXPECT_EQ(bad.headers["www-authenticate"], R"(Bearer realm="twind", error="invalid_token")");

  // twinctl finds the token in --token-file, TWIN_TOKEN or --token; with none, exit 7.
  EXPECT_EQ(run_twinctl(port, {"put", "p:g1", "--type", "gauge"}, "").code, 7);
  auto put = run_twinctl(port, {"--token-file", file, "put", "p:g1", "--type", "gauge"}, "");
  ASSERT_EQ(put.code, 0) << put.err;
  auto by_env = run_to_end({"/usr/bin/env", "TWIN_TOKEN=" + admin, TWINCTL_PATH, "--server",
                            "http://127.0.0.1:" + std::to_string(port), "put", "q:g1",
                            "--type", "gauge"});
  ASSERT_EQ(by_env.code, 0) << by_env.err;

  // A reader of namespace p: its twins only, reads only.
  auto made = run_twinctl(port, {"token", "create", "dashboards", "--role", "reader",
                                 "--namespaces", "p"},
                          admin);
  ASSERT_EQ(made.code, 0) << made.err;
  auto reader = without_newline(made.out);
  ASSERT_EQ(reader.rfind("twn_", 0), 0u) << made.out;
  EXPECT_NE(made.err.find("reader"), std::string::npos) << made.err;
  EXPECT_EQ(run_twinctl(port, {"get", "p:g1"}, reader).code, 0);
  EXPECT_EQ(run_twinctl(port, {"get", "q:g1"}, reader).code, 3);  // does not exist for it
  auto query = run_twinctl(port, {"--json", "query"}, reader);
  ASSERT_EQ(query.code, 0) << query.err;
  auto items = json::parse(query.out)["items"];
  ASSERT_EQ(items.size(), 1u) << query.out;
  EXPECT_EQ(items[0]["id"], "p:g1");
  auto write = run_twinctl(port, {"patch", "p:g1", "--properties", R"({"level": 3})"}, reader);
  EXPECT_EQ(write.code, 7);
  EXPECT_NE(write.err.find("forbidden"), std::string::npos) << write.err;
  EXPECT_EQ(run_twinctl(port, {"token", "list"}, reader).code, 7);

  // The list names both tokens and shows no secret.
  auto listed = run_twinctl(port, {"token", "list"}, admin);
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_NE(listed.out.find("dashboards"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("admin"), std::string::npos) << listed.out;
  EXPECT_EQ(listed.out.find(reader.substr(21)), std::string::npos);
  EXPECT_EQ(listed.out.find(admin.substr(21)), std::string::npos);
  auto id = reader.substr(4, 16);
  auto revoked = run_twinctl(port, {"token", "revoke", id}, admin);
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_EQ(run_twinctl(port, {"get", "p:g1"}, reader).code, 7);

  // The audit log names who did what, refused or not, and never a secret.
  auto audit = run_twinctl(port, {"--json", "audit"}, admin);
  ASSERT_EQ(audit.code, 0) << audit.err;
  EXPECT_EQ(audit.out.find(admin.substr(21)), std::string::npos);
  EXPECT_EQ(audit.out.find(reader.substr(21)), std::string::npos);
  auto entries = json::parse(audit.out)["items"];
  auto has = [&](const std::string& method, const std::string& path, int status,
                 const std::string& token_name) {
    return std::any_of(entries.begin(), entries.end(), [&](const json& e) {
      return e["method"] == method && e["path"] == path && e["status"] == status
             && (token_name.empty() ? e["token"].is_null()
                                    : e["token"].is_object() && e["token"]["name"] == token_name);
    });
  };
  EXPECT_TRUE(has("GET", "/v1/twins", 401, "")) << audit.out;
  EXPECT_TRUE(has("PUT", "/v1/twins/p:g1", 201, "admin")) << audit.out;
  EXPECT_TRUE(has("PATCH", "/v1/twins/p:g1", 403, "dashboards")) << audit.out;
  EXPECT_TRUE(has("POST", "/v1/tokens", 201, "admin")) << audit.out;
  EXPECT_TRUE(has("DELETE", "/v1/tokens/" + id, 204, "admin")) << audit.out;
  EXPECT_FALSE(has("GET", "/v1/twins/p:g1", 200, "dashboards")) << "reads are not recorded";
  auto table = run_twinctl(port, {"audit", "--twin", "p:g1"}, admin);
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("TIME ", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("dashboards ("), std::string::npos) << table.out;

  // After a restart: the same admin token, no other made, the revocation kept.
  stop_node(node);
  node = start_plain_node(dir, {"--http-port", std::to_string(port)});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node->stderr_text();
  EXPECT_EQ(read_token(file), admin);
  EXPECT_EQ(run_twinctl(port, {"get", "p:g1"}, reader).code, 7);
  auto again = run_twinctl(port, {"--json", "token", "list"}, admin);
  ASSERT_EQ(again.code, 0) << again.err;
  auto tokens = json::parse(again.out)["items"];
  ASSERT_EQ(tokens.size(), 2u) << again.out;
  EXPECT_EQ(tokens[1]["state"], "revoked");
  stop_node(node);
}

TEST(security, an_event_stream_ends_when_its_token_is_revoked) {
  temp_dir dir;
  int port = free_port();
  auto node = start_gauge_node(dir, port, {"--metrics-port", "0"});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node->stderr_text();
  http_client admin{port};
  ASSERT_EQ(admin.call("PUT", "/v1/twins/p:g1", R"({"type":"gauge"})", json_type).status, 201u);
  auto made = admin.call("POST", "/v1/tokens", R"({"name":"watcher","role":"reader"})",
                         json_type);
  ASSERT_EQ(made.status, 201u) << made.body;
  auto token = json::parse(made.body)["token"].get<std::string>();
  event_reader stream{port, "?prefix=p:", 0, token};
  ASSERT_EQ(stream.head().rfind("HTTP/1.1 200", 0), 0u);
  ASSERT_EQ(admin.call("PATCH", "/v1/twins/p:g1", R"({"properties":{"level":1}})", json_type)
              .status,
            200u);
  EXPECT_EQ(stream.next()["event"], "changed");
  auto id = json::parse(made.body)["id"].get<std::string>();
  ASSERT_EQ(admin.call("DELETE", "/v1/tokens/" + id).status, 204u);
  // The next change is not sent: the stream says why and ends.
  ASSERT_EQ(admin.call("PATCH", "/v1/twins/p:g1", R"({"properties":{"level":2}})", json_type)
              .status,
            200u);
  EXPECT_EQ(stream.next()["event"], "unauthorized");
  EXPECT_TRUE(stream.next().is_null()) << "the stream went on";
  stop_node(node);
}

TEST(security, an_address_that_keeps_failing_waits_even_with_a_good_token) {
  temp_dir dir;
  int port = free_port();
  auto node = start_gauge_node(dir, port, {"--metrics-port", "0", "--auth-failure-limit", "3"});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node->stderr_text();
  http_client good{port};
  http_client wrong{port, "twn_0123456789abcdef_" + std::string(43, 'w')};
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(wrong.call("GET", "/v1/twins").status, 401u);
  auto waiting = good.call("GET", "/v1/twins");
  EXPECT_EQ(waiting.status, 429u) << waiting.body;
  EXPECT_EQ(waiting.headers["retry-after"], "1");
  EXPECT_EQ(json::parse(waiting.body)["error"]["code"], "too_many_failures");
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(good.call("GET", "/v1/twins").status, 200u);
  stop_node(node);
}

TEST(security, the_metrics_port_asks_for_its_own_token_when_given_one) {
  temp_dir dir;
  int port = free_port();
  int metrics = free_port();
  std::string secret = "prometheus-scrape-secret-0123456789";
  std::ofstream{dir.sub("metrics.token")} << secret << '\n';
  auto node = start_gauge_node(dir, port,
                               {"--metrics-port", std::to_string(metrics), "--metrics-token-file",
                                dir.sub("metrics.token")});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node->stderr_text();
  http_client none{metrics, ""};
  EXPECT_EQ(none.call("GET", "/metrics").status, 401u);
  EXPECT_EQ(none.call("GET", "/healthz").status, 200u);
  EXPECT_EQ(none.call("GET", "/readyz").status, 200u);
  http_client admin_token{metrics};  // the API's token is not the metrics token
  EXPECT_EQ(admin_token.call("GET", "/metrics").status, 401u);
  http_client scraper{metrics, secret};
  auto scraped = scraper.call("GET", "/metrics");
  EXPECT_EQ(scraped.status, 200u);
  EXPECT_NE(scraped.body.find("twin_"), std::string::npos);
  // The API port serves no metrics, and tells a caller without a token nothing at all.
  EXPECT_EQ(http_client(port, "").call("GET", "/metrics").status, 401u);
  EXPECT_EQ(http_client(port).call("GET", "/metrics").status, 404u);
  stop_node(node);
}

TEST(security, authentication_is_off_only_when_asked_and_only_on_loopback) {
  temp_dir dir;
  int port = free_port();
  auto open = start_plain_node(dir, {"--http-port", std::to_string(port), "--bind", "0.0.0.0",
                                     "--no-auth"});
  EXPECT_EQ(open->wait(20s), 1);
  EXPECT_NE(open->stderr_text().find("--no-auth is refused"), std::string::npos)
    << open->stderr_text();
  auto local = start_plain_node(dir, {"--http-port", std::to_string(port), "--bind",
                                      "127.0.0.1", "--no-auth"});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << local->stderr_text();
  EXPECT_NE(local->stderr_text().find("authentication is off"), std::string::npos);
  http_client none{port, ""};
  auto put = none.call("PUT", "/v1/twins/p:g1", R"({"type":"gauge"})", json_type);
  EXPECT_EQ(put.status, 201u) << put.body;
  EXPECT_EQ(none.call("GET", "/v1/tokens").status, 501u);
  stop_node(local);
}

} // namespace
} // namespace twin::test
