// twinctl against a real twind on 127.0.0.1: each command's output, its --json answer and
// its exit code.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_node_test.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "twinctl_run.hpp"
#include "test_support.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class twinctl_test : public gauge_node_test {
protected:
  /// Runs twinctl with `args` against the node; waits at most 20 s.
  run_result twinctl(std::vector<std::string> args, int port = 0) {
    return run_twinctl(port ? port : port_, args);
  }

};

TEST_F(twinctl_test, lists_the_anomalies_a_twin_found) {
  // A node of its own, with a type that watches its level (warming up on 5 samples).
  temp_dir dir;
  std::filesystem::create_directories(dir.sub("models"));
  std::ofstream{dir.sub("models/probe.json")} << R"({
    "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:probe;1", "@type": "Interface",
    "contents": [{"@type": "Telemetry", "name": "level", "schema": "double"}],
    "twin": {"kind": "component", "anomaly": {"level": {"warmup": 5, "hold": 2}}}})";
  int port = free_port();
  process node{{TWIND_PATH, "--data-dir", dir.sub("data"), "--models", dir.sub("models"),
                "--bind", "127.0.0.1", "--http-port", std::to_string(port), "--metrics-port",
                "0", "--admin-token-file", admin_token_args(dir.path())[1]}};
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node.stderr_text();
  ASSERT_EQ(twinctl({"put", "p:1", "--type", "probe"}, port).code, 0);
  http_client c{port};
  json items = json::array();
  for (int i = 0; i < 8; ++i)
    items.push_back({{"twin", "p:1"}, {"ts", 1'700'000'000'000 + i * 1000},
                     {"values", {{"level", i == 7 ? 50.0 : 10.0 + i % 2}}}});
  ASSERT_EQ(c.call("POST", "/v1/telemetry", items.dump(), json_type).status, 202u);

  auto listed = twinctl({"anomalies", "p:1"}, port);
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_EQ(listed.out.rfind("TIME ", 0), 0u) << listed.out;
  // The warm-up saw 10 and 11, each in the middle of a level an eighth of their range wide.
  EXPECT_NE(listed.out.find("2023-11-14T22:13:27.000Z  level"), std::string::npos) << listed.out;
  // Rounded to three decimals; --json keeps every digit.
  EXPECT_NE(listed.out.find("9.938 .. 11.062"), std::string::npos) << listed.out;
  auto as_json = json::parse(twinctl({"--json", "anomalies", "p:1", "--property", "level"}, port).out);
  ASSERT_EQ(as_json["items"].size(), 1u);
  EXPECT_EQ(as_json["items"][0]["ts"], 1'700'000'007'000);
  auto later = json::parse(
    twinctl({"--json", "anomalies", "p:1", "--from", "2023-11-14T22:13:28Z"}, port).out);
  EXPECT_TRUE(later["items"].empty());
  EXPECT_EQ(twinctl({"anomalies", "p:1", "--property", "nothing"}, port).code, 5);
  EXPECT_EQ(twinctl({"anomalies", "p:1", "--from", "yesterday"}, port).code, 5);
  node.signal(SIGTERM);
  EXPECT_EQ(node.wait(30s), 0) << node.stderr_text();
}

TEST_F(twinctl_test, lists_the_active_alerts_of_every_twin) {
  temp_dir dir;
  std::filesystem::create_directories(dir.sub("models"));
  std::ofstream{dir.sub("models/boiler.json")} << R"({
    "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:boiler;1", "@type": "Interface",
    "contents": [{"@type": "Telemetry", "name": "pressure", "schema": "double"}],
    "twin": {"kind": "component", "alerts": [
      {"name": "high", "when": "pressure > 5", "severity": "warning"},
      {"name": "burst", "when": "pressure > 9", "severity": "critical"}]}})";
  int port = free_port();
  process node{{TWIND_PATH, "--data-dir", dir.sub("data"), "--models", dir.sub("models"),
                "--bind", "127.0.0.1", "--http-port", std::to_string(port), "--metrics-port",
                "0", "--admin-token-file", admin_token_args(dir.path())[1]}};
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node.stderr_text();
  for (auto [id, pressure] : std::vector<std::pair<std::string, double>>{
         {"b:1", 6}, {"b:2", 10}, {"c:3", 1}}) {
    ASSERT_EQ(twinctl({"put", id, "--type", "boiler"}, port).code, 0);
    ASSERT_EQ(twinctl({"telemetry", "send", id, json{{"pressure", pressure}}.dump()}, port).code,
              0);
  }
  auto all = twinctl({"alerts"}, port);
  ASSERT_EQ(all.code, 0) << all.err;
  EXPECT_EQ(all.out.rfind("TWIN ", 0), 0u) << all.out;
  for (auto line : {"b:1   high   warning", "b:2   high   warning", "b:2   burst  critical"})
    EXPECT_NE(all.out.find(line), std::string::npos) << line << "\n" << all.out;
  EXPECT_EQ(all.out.find("c:3"), std::string::npos) << all.out;
  auto critical = json::parse(twinctl({"alerts", "--severity", "critical", "--json"}, port).out);
  ASSERT_EQ(critical["items"].size(), 1u) << critical;
  EXPECT_EQ(critical["items"][0]["twin"], "b:2");
  EXPECT_EQ(critical["items"][0]["alert"], "burst");
  EXPECT_EQ(critical["items"][0]["type"], "boiler");
  EXPECT_GT(critical["items"][0]["since"].get<int64_t>(), 1'700'000'000'000);
  EXPECT_TRUE(json::parse(twinctl({"--json", "alerts", "--namespace", "c"}, port).out)["items"]
                .empty());
  EXPECT_EQ(json::parse(twinctl({"--json", "alerts", "--prefix", "b:1"}, port).out)["items"].size(),
            1u);
  EXPECT_EQ(twinctl({"alerts", "--severity", "ok"}, port).code, 5);
}

TEST_F(twinctl_test, puts_patches_reports_shows_and_deletes_a_twin) {
  auto put = twinctl({"put", "t:g1", "--type", "gauge", "--properties", R"({"level": 10})"});
  ASSERT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(put.out, "created t:g1, version 1\n");

  auto patch = twinctl({"patch", "t:g1", "--desired", R"({"target": 40})", "--if-match", "1"});
  ASSERT_EQ(patch.code, 0) << patch.err;
  EXPECT_EQ(patch.out, "updated t:g1, version 2\n");
  ASSERT_EQ(twinctl({"put", "t:g9", "--type", "gauge"}).code, 0);
  auto replaced = twinctl({"put", "t:g9", "--type", "gauge", "--properties", R"({"level": 10})"});
  EXPECT_EQ(replaced.out, "replaced t:g9, version 2\n") << "a put is not a patch";

  auto sent = twinctl({"telemetry", "send", "t:g1", R"({"level": 55.5})"});
  ASSERT_EQ(sent.code, 0) << sent.err;
  EXPECT_EQ(sent.out, "applied to t:g1, version 3\n");

  auto shown = twinctl({"get", "t:g1"});
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_NE(shown.out.find("t:g1  type gauge  kind component  version 3"), std::string::npos)
    << shown.out;
  EXPECT_NE(shown.out.find("level"), std::string::npos);
  EXPECT_NE(shown.out.find("55.5"), std::string::npos);

  auto as_json = twinctl({"--json", "get", "t:g1"});
  ASSERT_EQ(as_json.code, 0) << as_json.err;
  auto doc = json::parse(as_json.out);
  EXPECT_EQ(doc["properties"]["level"], 55.5);
  EXPECT_EQ(doc["desired"]["target"], 40);
  EXPECT_EQ(doc["delta"]["target"], 40);

  auto deleted = twinctl({"delete", "t:g1", "--if-match", "3"});
  ASSERT_EQ(deleted.code, 0) << deleted.err;
  EXPECT_EQ(twinctl({"get", "t:g1"}).code, 3);
}

TEST_F(twinctl_test, moves_relates_lists_finds_and_deletes_linked_twins) {
  for (auto id : {"t:g1", "t:g2", "t:g3"})
    ASSERT_EQ(twinctl({"put", id, "--type", "gauge", "--properties", R"({"level": 5})"}).code, 0);
  auto moved = twinctl({"patch", "t:g2", "--parent", "t:g1"});
  ASSERT_EQ(moved.code, 0) << moved.err;
  EXPECT_EQ(moved.out, "updated t:g2, version 2\n");
  auto related = twinctl({"relate", "t:g3", "feeds", "t:g1"});
  ASSERT_EQ(related.code, 0) << related.err;
  EXPECT_EQ(related.out, "related t:g3 feeds -> t:g1, version 2\n");
  EXPECT_EQ(twinctl({"relate", "t:g3", "feeds", "t:g1"}).out, "t:g3 already has feeds -> t:g1\n");
  auto missing = twinctl({"relate", "t:g3", "feeds", "t:nothing"});
  EXPECT_EQ(missing.code, 5);
  EXPECT_NE(missing.err.find("its target t:nothing does not exist"), std::string::npos)
    << missing.err;

  auto shown = twinctl({"get", "t:g3"});
  EXPECT_NE(shown.out.find("relationships:\n  feeds -> t:g1\n"), std::string::npos) << shown.out;
  auto parent = twinctl({"get", "t:g2"});
  EXPECT_NE(parent.out.find("parent t:g1"), std::string::npos) << parent.out;
  EXPECT_NE(parent.out.find("5"), std::string::npos) << "a move keeps the values: " << parent.out;
  auto incoming = twinctl({"relationships", "t:g1", "--incoming"});
  ASSERT_EQ(incoming.code, 0) << incoming.err;
  EXPECT_NE(incoming.out.find("t:g3    feeds         t:g1"), std::string::npos) << incoming.out;
  auto found = twinctl({"--json", "query", "--related", "feeds:t:g1"});
  ASSERT_EQ(found.code, 0) << found.err;
  auto items = json::parse(found.out)["items"];
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["id"], "t:g3");

  auto refused = twinctl({"delete", "t:g1"});
  EXPECT_EQ(refused.code, 4);
  EXPECT_NE(refused.err.find("1 twin(s) point at t:g1 (t:g3 by 'feeds')"), std::string::npos)
    << refused.err;
  auto unrelated = twinctl({"unrelate", "t:g3", "feeds", "t:g1"});
  ASSERT_EQ(unrelated.code, 0) << unrelated.err;
  EXPECT_EQ(unrelated.out, "unrelated t:g3 feeds -> t:g1, version 3\n");
  auto parent_of = twinctl({"delete", "t:g1"});
  EXPECT_EQ(parent_of.code, 4);
  EXPECT_NE(parent_of.err.find("has 1 children (t:g2)"), std::string::npos) << parent_of.err;
  EXPECT_EQ(twinctl({"relate", "t:g3", "feeds", "t:g1"}).code, 0);
  auto detached = twinctl({"delete", "t:g1", "--detach"});
  ASSERT_EQ(detached.code, 0) << detached.err;
  EXPECT_EQ(twinctl({"--json", "relationships", "t:g3"}).out,
            "{\n  \"relationships\": [],\n  \"twin\": \"t:g3\"\n}\n");
  EXPECT_EQ(json::parse(twinctl({"--json", "get", "t:g2"}).out)["parent"], nullptr);

  ASSERT_EQ(twinctl({"patch", "t:g3", "--parent", "t:g2"}).code, 0);
  auto root = twinctl({"delete", "t:g2", "--cascade"});
  ASSERT_EQ(root.code, 0) << root.err;
  EXPECT_EQ(twinctl({"get", "t:g3"}).code, 3);
  EXPECT_EQ(twinctl({"delete", "t:g1", "--detach", "--cascade"}).code, 1);
}

TEST_F(twinctl_test, exit_codes_say_what_went_wrong) {
  ASSERT_EQ(twinctl({"put", "t:g1", "--type", "gauge"}).code, 0);
  auto missing = twinctl({"get", "t:nobody"});
  EXPECT_EQ(missing.code, 3);
  EXPECT_NE(missing.err.find("not_found"), std::string::npos) << missing.err;
  auto stale = twinctl({"patch", "t:g1", "--desired", R"({"target": 1})", "--if-match", "7"});
  EXPECT_EQ(stale.code, 4);
  EXPECT_NE(stale.err.find("version_conflict"), std::string::npos) << stale.err;
  auto refused = twinctl({"telemetry", "send", "t:g1", R"({"level": 500})"});
  EXPECT_EQ(refused.code, 5);
  EXPECT_NE(refused.err.find("out_of_range"), std::string::npos) << refused.err;
  EXPECT_EQ(twinctl({"telemetry", "send", "t:nobody", R"({"level": 5})"}).code, 3);
  EXPECT_EQ(twinctl({"put", "t:g2", "--type", "gauge", "--properties", "[1]"}).code, 1);
  EXPECT_EQ(twinctl({"get"}).code, 1);
  EXPECT_EQ(twinctl({"get", "t:g1"}, free_port()).code, 2);
  {
    // A node that takes the connection and never answers: --timeout ends the wait.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(fd, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(twinctl({"--timeout", "1", "get", "t:g1"}, ntohs(a.sin_port)).code, 2);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
    ::close(fd);
  }
  EXPECT_EQ(twinctl({"patch", "t:g1"}).code, 1);  // nothing to patch
  // A put with --if-match 0 creates only.
  EXPECT_EQ(twinctl({"put", "t:g1", "--type", "gauge", "--if-match", "0"}).code, 4);
  EXPECT_EQ(twinctl({"put", "t:g3", "--type", "gauge", "--if-match", "0"}).code, 0);
  // The id is sent encoded: "t:g1?x" is an invalid id, not a request for t:g1.
  auto odd = twinctl({"get", "t:g1?x"});
  EXPECT_EQ(odd.code, 5);
  EXPECT_NE(odd.err.find("invalid_id"), std::string::npos) << odd.err;
  auto cluster = twinctl({"--json", "cluster", "status"});
  ASSERT_EQ(cluster.code, 0) << cluster.err;
  EXPECT_EQ(json::parse(cluster.out)["members"].size(), 1u);
  // Nothing the refused commands sent changed the twin.
  auto doc = json::parse(twinctl({"--json", "get", "t:g1"}).out);
  EXPECT_EQ(doc["version"], 1);
}

TEST_F(twinctl_test, options_go_anywhere_times_are_iso_and_commands_are_sent) {
  ASSERT_EQ(twinctl({"put", "t:g1", "--type", "gauge"}).code, 0);
  // --json after the command, as before it.
  auto after = twinctl({"get", "t:g1", "--json"});
  ASSERT_EQ(after.code, 0) << after.err;
  EXPECT_EQ(json::parse(after.out)["id"], "t:g1");
  auto version = twinctl({"--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_EQ(version.out.rfind("twinctl ", 0), 0u) << version.out;
  // Times in ISO 8601 where a time is taken: the sample's, history's range.
  ASSERT_EQ(twinctl({"telemetry", "send", "t:g1", R"({"level": 10.123456})", "--ts",
                     "2023-11-14T22:13:20Z"})
              .code,
            0);
  ASSERT_EQ(twinctl({"telemetry", "send", "t:g1", R"({"level": 20})", "--ts",
                     "2023-11-14T22:13:21.500Z"})
              .code,
            0);
  auto history = twinctl({"history", "t:g1", "--property", "level", "--from",
                          "2023-11-14T22:13:21Z", "--to", "2023-11-14T23:00:00+00:00"});
  ASSERT_EQ(history.code, 0) << history.err;
  EXPECT_NE(history.out.find("2023-11-14T22:13:21.500Z  20"), std::string::npos) << history.out;
  EXPECT_EQ(history.out.find("22:13:20"), std::string::npos) << history.out;
  auto steps = twinctl({"history", "t:g1", "--property", "level", "--step", "10000"});
  ASSERT_EQ(steps.code, 0) << steps.err;
  EXPECT_NE(steps.out.find("15.062"), std::string::npos) << "avg rounded: " << steps.out;
  EXPECT_EQ(steps.out.find("15.0617"), std::string::npos) << steps.out;
  auto both = twinctl({"--json", "history", "t:g1", "--property", "level,level"});
  ASSERT_EQ(both.code, 0) << both.err;
  EXPECT_EQ(json::parse(both.out)["points"].size(), 2u) << "the same property once";
  auto bad_time = twinctl({"history", "t:g1", "--property", "level", "--from", "15:24"});
  EXPECT_EQ(bad_time.code, 5);
  EXPECT_NE(bad_time.err.find("ms since the epoch or an ISO 8601 time"), std::string::npos)
    << bad_time.err;
  // Commands: sent and answered; an unknown one refused.
  auto sent = twinctl({"command", "t:g1", "reset"});
  EXPECT_EQ(sent.code, 0) << sent.err;
  EXPECT_EQ(sent.out.rfind("sent reset to t:g1", 0), 0u) << sent.out;
  EXPECT_EQ(twinctl({"command", "t:g1", "explode"}).code, 5);
  EXPECT_EQ(twinctl({"command", "t:g1", "reset", "[1]"}).code, 1);
  // A value JSON cannot hold is named as such, with where the JSON is wrong.
  auto huge = twinctl({"telemetry", "send", "t:g1", R"({"level": 1e400})"});
  EXPECT_EQ(huge.code, 1);
  EXPECT_NE(huge.err.find("number overflow parsing '1e400'"), std::string::npos) << huge.err;
  auto cut = twinctl({"telemetry", "send", "t:g1", R"({"level": )"});
  EXPECT_NE(cut.err.find("at line 1, column"), std::string::npos) << cut.err;
  // The types, and what one declares.
  auto types = twinctl({"types"});
  ASSERT_EQ(types.code, 0) << types.err;
  EXPECT_NE(types.out.find("gauge  component  dtmi:test:gauge;1"), std::string::npos) << types.out;
  auto gauge = twinctl({"types", "dtmi:test:gauge;1"});
  ASSERT_EQ(gauge.code, 0) << gauge.err;
  EXPECT_NE(gauge.out.find("target"), std::string::npos) << gauge.out;
  EXPECT_NE(gauge.out.find("commands:\n  reset"), std::string::npos) << gauge.out;
  auto typo = twinctl({"types", "guage"});
  EXPECT_EQ(typo.code, 3);
  EXPECT_NE(typo.err.find("did you mean 'gauge'?"), std::string::npos) << typo.err;
  // Each command's help speaks of itself.
  auto patch_help = twinctl({"patch", "--help"});
  EXPECT_EQ(patch_help.out.find("put"), std::string::npos) << patch_help.out;
}

TEST_F(twinctl_test, queries_reads_history_and_follows_events) {
  for (int i = 1; i <= 3; ++i) {
    auto id = "t:g" + std::to_string(i);
    ASSERT_EQ(twinctl({"put", id, "--type", "gauge"}).code, 0);
    for (int k = 0; k < 3; ++k)
      ASSERT_EQ(twinctl({"telemetry", "send", id, json{{"level", i * 10 + k}}.dump(), "--ts",
                         std::to_string(1'700'000'000'000 + k * 1000)})
                  .code,
                0);
  }
  auto query = twinctl({"query", "--type", "gauge", "--where", "level > 15", "--limit", "1"});
  ASSERT_EQ(query.code, 0) << query.err;
  EXPECT_EQ(query.out.rfind("ID ", 0), 0u) << query.out;
  EXPECT_NE(query.out.find("t:g2 "), std::string::npos) << query.out;
  EXPECT_EQ(query.out.find("t:g1 "), std::string::npos) << query.out;
  EXPECT_NE(query.out.find("more: --cursor "), std::string::npos) << query.out;
  auto all = json::parse(twinctl({"--json", "query", "--kind", "component"}).out);
  EXPECT_EQ(all["items"].size(), 3u);
  EXPECT_EQ(twinctl({"query", "--kind", "gadget"}).code, 5);

  auto history = twinctl({"history", "t:g2", "--property", "level"});
  ASSERT_EQ(history.code, 0) << history.err;
  EXPECT_EQ(history.out,
            "TIME                      VALUE\n2023-11-14T22:13:20.000Z  20\n"
            "2023-11-14T22:13:21.000Z  21\n2023-11-14T22:13:22.000Z  22\n");
  auto steps = json::parse(
    twinctl({"--json", "history", "t:g2", "--property", "level", "--step", "60000"}).out);
  ASSERT_EQ(steps["buckets"].size(), 1u);
  EXPECT_EQ(steps["buckets"][0]["max"], 22.0);
  EXPECT_EQ(twinctl({"history", "t:g2", "--property", "label"}).code, 5);

  // events follows the stream: twinctl prints each change as it comes, and stops after
  // --count. Changes are sent until it has subscribed and printed two.
  // t:g30 changes too: a prefix that ends a segment, and an id, leave it out.
  ASSERT_EQ(twinctl({"put", "t:g30", "--type", "gauge"}).code, 0);
  process follow{twinctl_argv(
    port_, {"--json", "events", "--prefix", "t:g3", "--segment", "--count", "2"})};
  process by_id{twinctl_argv(port_, {"events", "--id", "t:g3", "--count", "1", "--json"})};
  http_client c{port_};
  std::vector<json> seen;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  for (int level = 0; seen.size() < 2 && std::chrono::steady_clock::now() < deadline; ++level) {
    auto r = c.call("POST", "/v1/telemetry",
                    json::array({{{"twin", "t:g30"}, {"values", {{"level", level % 100}}}},
                                 {{"twin", "t:g3"}, {"values", {{"level", level % 100}}}}})
                      .dump(),
                    json_type);
    ASSERT_EQ(r.status, 202u);
    if (auto line = follow.read_line(100ms))
      seen.push_back(json::parse(*line));
  }
  ASSERT_EQ(seen.size(), 2u) << follow.stderr_text();
  EXPECT_EQ(seen[0]["event"], "changed");
  EXPECT_EQ(seen[0]["id"], "t:g3");
  EXPECT_EQ(seen[1]["id"], "t:g3");
  EXPECT_EQ(seen[1]["version"], seen[0]["version"].get<int>() + 1);
  EXPECT_EQ(follow.wait(10s), 0) << follow.stderr_text();
  std::optional<std::string> one;  // changes go on until it has subscribed and printed one
  for (int level = 0; !one && std::chrono::steady_clock::now() < deadline; ++level) {
    ASSERT_EQ(c.call("POST", "/v1/telemetry",
                     json::array({{{"twin", "t:g30"}, {"values", {{"level", 1}}}},
                                  {{"twin", "t:g3"}, {"values", {{"level", level % 100}}}}})
                       .dump(),
                     json_type)
                .status,
              202u);
    one = by_id.read_line(100ms);
  }
  ASSERT_TRUE(one) << by_id.stderr_text();
  EXPECT_EQ(json::parse(*one)["id"], "t:g3");
  EXPECT_EQ(by_id.wait(10s), 0) << by_id.stderr_text();
}

} // namespace
} // namespace twin::test
