// What SREs run a node by, against real twind processes: /metrics linted by promtool and
// scraped by a real Prometheus server, the operations port, JSON logs, named threads, and the
// Prometheus files of docker/ (rules, their unit tests, the scrape configuration).

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_node_test.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string docker_dir = SOURCE_DIR "/docker";

bool installed(const char* path) {
  return ::access(path, X_OK) == 0;
}

/// The families a /metrics answer declares (its "# TYPE" lines), with their types.
std::map<std::string, std::string> families_of(const std::string& exposition) {
  std::map<std::string, std::string> out;
  std::istringstream in{exposition};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words{line};
    std::string hash, what, name, type;
    if (words >> hash >> what >> name >> type && hash == "#" && what == "TYPE")
      out[name] = type;
  }
  return out;
}

std::string url_encode(const std::string& s) {
  std::string out;
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class sre_test : public gauge_node_test {
protected:
  std::vector<std::string> extra_args() override {
    metrics_port_ = free_port();
    return {"--metrics-port", std::to_string(metrics_port_)};
  }

  std::string scrape() {
    http_client m{metrics_port_};
    auto r = m.call("GET", "/metrics");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }

  /// Sends `n` telemetry items that each change t:g1's level; all are accepted.
  void send_changes(int n, double from) {
    json items = json::array();
    for (int i = 0; i < n; ++i)
      items.push_back({{"twin", "t:g1"}, {"values", {{"level", std::fmod(from + i, 100.0)}}}});
    auto r = client_->call("POST", "/v1/telemetry", items.dump(), json_type);
    ASSERT_EQ(r.status, 202u) << r.body;
    ASSERT_EQ(json::parse(r.body)["accepted"], n) << r.body;
  }

  int metrics_port_ = 0;
};

TEST_F(sre_test, metrics_pass_promtool_and_cover_every_layer) {
  auto fresh = promtool_problems(scrape());  // a node that has seen nothing yet
  if (!fresh)
    GTEST_SKIP() << "PROMTOOL IS NOT INSTALLED: run scripts/setup; the metrics were not linted";
  EXPECT_EQ(*fresh, "");
  ASSERT_EQ(put("t:g1", {{"type", "gauge"}}).status, 201u);
  ASSERT_NO_FATAL_FAILURE(send_changes(5, 10.5));
  auto bad = client_->call("POST", "/v1/telemetry",
                           R"([{"twin": "t:g1", "values": {"level": 500}}])", json_type);
  ASSERT_EQ(bad.status, 202u);
  auto text = scrape();
  auto families = families_of(text);
  // The list the README states: twins, activations, messages, updates and their latency, store
  // writes, RocksDB figures, ingest by source and result, HTTP by route and code with
  // latency, alerts, build, process CPU and memory.
  for (const char* name :
       {"twin_twins_active", "twin_twins_stored", "twin_activations_total",
        "twin_passivations_total", "twin_messages_total", "twin_updates_total",
        "twin_update_latency_seconds", "twin_requests_rejected_total",
        "twin_store_write_batches_total", "twin_store_write_batch_records",
        "twin_store_write_duration_seconds", "twin_store_keys", "twin_store_memtable_bytes",
        "twin_store_pending_compaction_bytes", "twin_store_write_stalls_total",
        "twin_store_write_stopped", "twin_ingest_messages_total", "twin_http_requests_total",
        "twin_http_request_duration_seconds", "twin_alerts_active", "twin_build_info",
        "process_cpu_seconds_total", "process_resident_memory_bytes",
        "twin_memory_limit_bytes"})
    EXPECT_EQ(families.count(name), 1u) << name << "\n" << text;
  for (const auto& [name, type] : families) {
    // The node's own families, and the process's under the standard names (docs/metrics.md).
    EXPECT_TRUE(name.rfind("twin_", 0) == 0 || name.rfind("process_", 0) == 0) << name;
    EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name << " has no help";
    if (type == "counter") {
      EXPECT_EQ(name.substr(name.size() - 6), "_total") << name;
    }
  }
  // Bounded labels only: no twin id is ever a label value.
  EXPECT_EQ(text.find("t:g1"), std::string::npos) << text;
  for (const char* sample :
       {R"(twin_ingest_messages_total{source="http",result="accepted"} 5)",
        R"(twin_ingest_messages_total{source="http",result="rejected"} 1)",
        R"(twin_messages_total{kind="telemetry"} 6)", "\ntwin_requests_rejected_total 1\n",
        "\ntwin_updates_total 6\n",  // the put and five changes
        "\ntwin_update_latency_seconds_count 6\n", "\ntwin_twins_stored 1\n",
        R"(twin_store_keys{column_family="twins"})",
        R"(twin_alerts_active{severity="critical"} 0)"})
    EXPECT_NE(text.find(sample), std::string::npos) << sample << "\n" << text;
  EXPECT_EQ(promtool_problems(text), "") << text;
}

TEST_F(sre_test, the_metrics_port_serves_health_and_readiness_and_nothing_else) {
  http_client ops{metrics_port_};
  EXPECT_EQ(ops.call("GET", "/healthz").status, 200u);
  auto ready = ops.call("GET", "/readyz");
  ASSERT_EQ(ready.status, 200u) << ready.body;
  auto body = json::parse(ready.body);
  EXPECT_EQ(body["status"], "ready");
  for (const char* check : {"node", "store", "models"})
    EXPECT_EQ(body["checks"][check]["ok"], true) << check << ": " << ready.body;
  EXPECT_EQ(body["checks"]["models"]["detail"], "1 twin types");
  EXPECT_FALSE(body["checks"].contains("mqtt")) << "no broker is configured";
  ASSERT_EQ(put("t:g1", {{"type", "gauge"}}).status, 201u);
  auto twin = ops.call("GET", "/v1/twins/t:g1");
  EXPECT_EQ(twin.status, 404u);
  EXPECT_EQ(json::parse(twin.body)["error"]["message"], "no route /v1/twins/t:g1");
  EXPECT_EQ(ops.call("POST", "/metrics").status, 405u);
  EXPECT_EQ(client_->call("GET", "/metrics").status, 404u) << "the API port serves no metrics";
}

/// `top -H` shows what each of the node's threads is: the HTTP front door, the group
/// commit and the actor workers by name.
TEST_F(sre_test, the_threads_have_names_top_shows) {
  std::set<std::string> names;
  auto tasks = "/proc/" + std::to_string(node_->pid()) + "/task";
  for (const auto& task : std::filesystem::directory_iterator{tasks}) {
    std::ifstream in{task.path() / "comm"};
    std::string name;
    std::getline(in, name);
    names.insert(name);
  }
  for (const char* expected : {"twin.http", "twin.store", "caf.worker", "twin.sweeper"})
    EXPECT_EQ(names.count(expected), 1u) << expected;
}

TEST_F(sre_test, a_real_prometheus_scrapes_the_node_and_computes_its_update_rate) {
  const char* prometheus = "/usr/bin/prometheus";
  if (!installed(prometheus))
    GTEST_SKIP() << "PROMETHEUS IS NOT INSTALLED: run scripts/setup; the scrape was not tested";
  ASSERT_EQ(put("t:g1", {{"type", "gauge"}}).status, 201u);
  int port = free_port();
  // The project's rules are loaded too: each must evaluate against a real node.
  std::ofstream{dir_.sub("prometheus.yml")}
    << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
    << "rule_files: ['" << docker_dir << "/prometheus/rules.yml']\n"
    << "scrape_configs:\n  - job_name: twind\n    static_configs:\n"
    << "      - targets: ['127.0.0.1:" << metrics_port_ << "']\n";
  process server{{prometheus, "--config.file=" + dir_.sub("prometheus.yml"),
                  "--storage.tsdb.path=" + dir_.sub("tsdb"),
                  "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"}};
  ASSERT_TRUE(wait_for_200(port, "/-/ready", 30s)) << server.stderr_text();
  http_client api{port};
  auto query = [&](const std::string& promql, const std::string& time = {}) {
    auto r = api.call("GET", "/api/v1/query?query=" + url_encode(promql)
                               + (time.empty() ? "" : "&time=" + time));
    EXPECT_EQ(r.status, 200u) << promql << ": " << r.body;
    return r.status == 200 ? json::parse(r.body)["data"]["result"] : json::array();
  };
  auto value_of = [](const json& result) {
    return result.size() == 1 ? std::stod(result[0]["value"][1].get<std::string>()) : -1.0;
  };
  ASSERT_TRUE(eventually([&] { return value_of(query(R"(up{job="twind"})")) == 1; }, 30s))
    << server.stderr_text();

  // Known traffic between two scrapes: the count before it, then after it.
  double before = -1;
  ASSERT_TRUE(eventually([&] {
    before = value_of(query("twin_updates_total"));
    return before == 1;  // the put
  }));
  const int n = 240;
  ASSERT_NO_FATAL_FAILURE(send_changes(n, 0.25));
  ASSERT_TRUE(eventually([&] { return value_of(query("twin_updates_total")) == before + n; }));

  // The rate between the last sample before the traffic and the first after it, over
  // exactly the time between them (no extrapolation): n updates in that time.
  auto samples = query("twin_updates_total[1m]");
  ASSERT_EQ(samples.size(), 1u);
  double t_before = 0;
  double t_after = 0;
  for (const auto& s : samples[0]["values"]) {
    double t = s[0].get<double>();
    double v = std::stod(s[1].get<std::string>());
    if (v == before)
      t_before = t;
    else if (v == before + n && t_after == 0)
      t_after = t;
  }
  ASSERT_GT(t_before, 0) << samples.dump();
  ASSERT_GT(t_after, t_before) << samples.dump();
  auto ms = std::llround((t_after - t_before) * 1000);
  std::ostringstream at;
  at.precision(15);
  at << t_after;
  double rate = value_of(query("rate(twin_updates_total[" + std::to_string(ms) + "ms])", at.str()));
  EXPECT_NEAR(rate, n / (ms / 1000.0), 1e-6 * n) << samples.dump();
  EXPECT_EQ(value_of(query(R"(twin_ingest_messages_total{source="http",result="accepted"})")), n);

  // Every rule of docker/prometheus/rules.yml evaluated without error; none fires.
  json rules;
  ASSERT_TRUE(eventually([&] {
    auto r = api.call("GET", "/api/v1/rules");
    if (r.status != 200)
      return false;
    rules = json::parse(r.body)["data"]["groups"];
    for (const auto& g : rules)
      for (const auto& rule : g["rules"])
        if (rule.value("health", "") == "unknown")
          return false;
    return !rules.empty();
  }, 30s));
  size_t count = 0;
  for (const auto& g : rules)
    for (const auto& rule : g["rules"]) {
      ++count;
      EXPECT_EQ(rule["health"], "ok") << rule.dump();
      if (rule["type"] == "alerting") {
        EXPECT_EQ(rule["state"], "inactive") << rule.dump();
      }
    }
  EXPECT_GE(count, 10u);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(30s), 0) << server.stderr_text();
}

TEST(sre, the_prometheus_files_of_docker_pass_promtool_and_their_unit_tests) {
  if (!installed("/usr/bin/promtool"))
    GTEST_SKIP() << "PROMTOOL IS NOT INSTALLED: run scripts/setup; docker/ was not checked";
  auto dir = docker_dir + "/prometheus/";
  for (auto argv : std::vector<std::vector<std::string>>{
         {"/usr/bin/promtool", "check", "rules", dir + "rules.yml"},
         {"/usr/bin/promtool", "check", "config", dir + "prometheus.yml"},
         {"/usr/bin/promtool", "test", "rules", dir + "rules_test.yml"}}) {
    auto r = run_to_end(argv);
    EXPECT_EQ(r.code, 0) << argv[1] << " " << argv[2] << ":\n" << r.out << r.err;
  }
}

/// The compose file, read as a YAML document (Docker's engine does not run here): the
/// services it names, each member's cluster options, and Prometheus scraping each member.
TEST(sre, the_compose_file_runs_three_members_with_etcd_mosquitto_prometheus_and_grafana) {
  const char* check = R"(
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1] + "/compose.yaml"))
prom = yaml.safe_load(open(sys.argv[1] + "/prometheus/prometheus.yml"))
services = doc["services"]
want = {"etcd", "mosquitto", "twind-1", "twind-2", "twind-3", "prometheus", "grafana"}
assert want <= set(services), "services: %s" % sorted(services)
members = ["twind-1", "twind-2", "twind-3"]
ids, adverts = set(), set()
for m in members:
    s = services[m]
    args = s["command"]
    opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    assert opts["cluster-etcd"] == "http://etcd:2379", m
    assert opts["bind"] == "0.0.0.0", m
    ids.add(opts["node-id"]); adverts.add(opts["advertise"])
    assert opts["advertise"] == m + ":7700", m
    assert s["build"]["dockerfile"] == "docker/Dockerfile", m
    assert "etcd" in s["depends_on"], m
assert len(ids) == 3 and len(adverts) == 3
targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
assert sorted(targets) == [m + ":9464" for m in members], targets
docker = open(sys.argv[1] + "/Dockerfile").read()
assert "scripts/setup" in docker and "scripts/build" in docker
print("ok")
)";
  auto r = run_to_end({"/usr/bin/python3", "-c", check, docker_dir});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ok\n");
}

/// Docker Compose's own check of the compose file (its schema, anchors and build
/// contexts), which needs no engine.
TEST(sre, docker_compose_accepts_the_compose_file) {
  if (!std::filesystem::exists("/usr/bin/docker-compose"))
    GTEST_SKIP() << "DOCKER-COMPOSE IS NOT INSTALLED: run scripts/setup; the test did not run";
  auto r = run_to_end({"/usr/bin/docker-compose", "-f", docker_dir + "/compose.yaml", "config",
                       "--services"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines{r.out};
  std::set<std::string> services;
  for (std::string line; std::getline(lines, line);)
    services.insert(line);
  EXPECT_EQ(services, (std::set<std::string>{"etcd", "grafana", "mosquitto", "prometheus",
                                             "twind-1", "twind-2", "twind-3"}));
}

TEST(sre, json_logs_are_one_object_a_line) {
  temp_dir dir;
  int port = free_port();
  // A data directory whose name needs escaping and is not UTF-8, which the first lines
  // show: the byte that is not UTF-8 is shown as U+FFFD.
  std::string data = dir.sub("da\"ta\\x\xff");
  std::string shown = dir.sub("da\"ta\\x\xef\xbf\xbd");
  process node{{TWIND_PATH, "--data-dir", data, "--http-port", std::to_string(port),
                "--metrics-port", "0", "--log-format", "json", "--log-level", "debug",
                "--admin-token-file", admin_token_args(dir.path())[1]}};
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node.stderr_text();
  node.signal(SIGTERM);
  ASSERT_EQ(node.wait(30s), 0) << node.stderr_text();
  std::istringstream lines{node.stderr_text()};
  std::string line;
  std::set<std::string> messages;
  while (std::getline(lines, line)) {
    auto doc = json::parse(line, nullptr, false);
    ASSERT_TRUE(doc.is_object()) << line;
    EXPECT_TRUE(std::regex_match(doc.value("ts", ""),
                                 std::regex{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"}))
      << line;
    EXPECT_TRUE(std::set<std::string>({"trace", "debug", "info", "warning", "error", "critical"})
                  .count(doc.value("level", "")))
      << line;
    EXPECT_EQ(doc["logger"], "twind") << line;
    EXPECT_TRUE(doc["thread"].is_number()) << line;
    messages.insert(doc.value("msg", ""));
  }
  EXPECT_TRUE(messages.count("ready")) << node.stderr_text();
  EXPECT_TRUE(messages.count("stopped cleanly")) << node.stderr_text();
  bool named = false;
  for (const auto& m : messages)
    named = named || m.find("data " + shown + ",") != std::string::npos;
  EXPECT_TRUE(named) << "the data directory's name did not come through intact:\n"
                     << node.stderr_text();
}

} // namespace
} // namespace twin::test
