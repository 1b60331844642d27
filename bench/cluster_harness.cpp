#include "cluster_harness.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "http_client.hpp"
#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::bench {

using namespace std::chrono_literals;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

namespace {

/// The name and the user and system CPU seconds of a /proc `stat` file.
std::pair<std::string, double> read_stat(const std::string& path) {
  std::ifstream in{path};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  auto open = text.find('('), close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos)
    return {};
  std::istringstream fields{text.substr(close + 2)};
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i)
    if (i == 14 || i == 15)
      ticks += std::stod(f);
  return {text.substr(open + 1, close - open - 1),
          ticks / static_cast<double>(sysconf(_SC_CLK_TCK))};
}

} // namespace

double cpu_of(pid_t pid) {
  return read_stat("/proc/" + std::to_string(pid) + "/stat").second;
}

std::map<std::string, double> cpu_by_thread(pid_t pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  auto dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator{dir, ec}) {
    auto [name, seconds] = read_stat(task.path().string() + "/stat");
    if (!name.empty())
      out[name] += seconds;
  }
  return out;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto end = clock_type::now() + timeout;
  while (clock_type::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

cluster::cluster(std::string dir, uint32_t shards, std::vector<std::string> extra)
  : dir_(std::move(dir)), shards_(shards), extra_(std::move(extra)) {
  mkdir(dir_.c_str(), 0755);
  std::ofstream{dir_ + "/item.json"} << R"({"@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:bench:item;1", "@type": "Interface",
    "contents": [{"@type": "Property", "name": "n", "schema": "integer", "writable": true}],
    "twin": {"kind": "component"}})";
  int client = test::free_port();
  int peer = test::free_port();
  etcd_url_ = "http://127.0.0.1:" + std::to_string(client);
  auto peer_url = "http://127.0.0.1:" + std::to_string(peer);
  etcd_ = std::make_unique<test::process>(std::vector<std::string>{
    "/usr/bin/etcd", "--data-dir", dir_ + "/etcd", "--listen-client-urls", etcd_url_,
    "--advertise-client-urls", etcd_url_, "--listen-peer-urls", peer_url,
    "--initial-advertise-peer-urls", peer_url, "--initial-cluster", "default=" + peer_url,
    "--name", "default", "--log-level", "error"});
}

cluster::~cluster() {
  for (size_t i = 0; i < members_.size(); ++i)
    stop(i);
  etcd_->signal(SIGTERM);
  etcd_->wait(10s);
  std::system(("rm -rf '" + dir_ + "'").c_str());
}

std::string cluster::data_dir(size_t i) const { return dir_ + "/n" + std::to_string(i); }

cluster::member& cluster::start(size_t i) {
  members_.resize(std::max(members_.size(), i + 1));
  auto& m = members_[i];
  auto n = std::to_string(i);
  std::vector<std::string> argv{
    TWIND_PATH, "--data-dir", data_dir(i), "--node-id", "node-" + n, "--models", dir_,
    "--http-port", std::to_string(m.http), "--metrics-port", std::to_string(m.metrics),
    "--cluster-etcd", etcd_url_, "--cluster-port", std::to_string(m.port), "--shards",
    std::to_string(shards_), "--log-level", "warn", "--threads", "1"};
  auto token = test::admin_token_args(dir_);
  argv.insert(argv.end(), token.begin(), token.end());
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  m.proc = std::make_unique<test::process>(std::move(argv));
  if (!test::wait_for_200(m.metrics, "/readyz", 60s))
    throw std::runtime_error("member " + n + " did not start: " + m.proc->stderr_text());
  return m;
}

void cluster::stop(size_t i) {
  auto& m = members_.at(i);
  if (m.proc) {
    m.proc->signal(SIGTERM);
    m.proc->wait(60s);
    m.proc.reset();
  }
}

void cluster::kill(size_t i) {
  auto& m = members_.at(i);
  m.proc->signal(SIGKILL);
  m.proc->wait(10s);
  m.proc.reset();
}

json cluster::status() {
  for (auto& m : members_) {
    if (!m.proc)
      continue;
    test::http_client c{m.http};
    auto r = c.call("GET", "/v1/cluster");
    if (r.status == 200)
      return json::parse(r.body);
  }
  return json{};
}

bool cluster::balanced(size_t n, std::chrono::milliseconds timeout) {
  return wait_until(
    [&] {
      auto j = status();
      if (j.is_null() || j["members"].size() != n || !j["handoffs"].empty()
          || j["unowned"] != 0)
        return false;
      int lo = 1 << 30, hi = 0;
      for (const auto& m : j["members"]) {
        lo = std::min(lo, m["shards"].get<int>());
        hi = std::max(hi, m["shards"].get<int>());
      }
      return hi - lo <= 1;
    },
    timeout);
}

bool cluster::replicated(std::chrono::milliseconds timeout) {
  return wait_until(
    [&] {
      auto j = status();
      return !j.is_null() && j["unowned"] == 0 && j["handoffs"].empty()
             && j["replication"]["under_replicated"].empty();
    },
    timeout);
}

std::vector<std::string> cluster::owners() {
  std::vector<std::string> out(shards_);
  auto table = status();
  for (const auto& e : table["shard_table"])
    out[e["shard"].get<size_t>()] = e["owner"].get<std::string>();
  return out;
}

double cluster::cpu() {
  double sum = 0;
  for (auto& m : members_)
    if (m.proc)
      sum += cpu_of(m.proc->pid());
  return sum;
}

std::map<std::string, double> cluster::cpu_by_thread(size_t i) {
  auto& m = members_.at(i);
  return m.proc ? bench::cpu_by_thread(m.proc->pid()) : std::map<std::string, double>{};
}

size_t send_all(int port, const std::vector<request>& requests, const std::string& method,
                int clients, std::vector<double>* latencies, std::chrono::microseconds think) {
  std::atomic<size_t> next{0}, ok{0};
  std::vector<std::vector<double>> each(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      test::http_client h{port};
      if (think.count() > 0)
        ::prctl(PR_SET_TIMERSLACK, 1UL);  // pauses as long as asked, not 50 us more
      for (size_t i; (i = next++) < requests.size();) {
        auto t0 = clock_type::now();
        auto r = h.call(method, requests[i].first, requests[i].second,
                        {{"Content-Type", method == "PATCH" ? "application/merge-patch+json"
                                                             : "application/json"}});
        if (r.status >= 200 && r.status < 300) {
          ++ok;
          if (latencies)
            each[static_cast<size_t>(c)].push_back(seconds_since(t0));
        }
        if (think.count() > 0)
          std::this_thread::sleep_for(think);
      }
    });
  for (auto& t : threads)
    t.join();
  if (latencies)
    for (auto& e : each)
      latencies->insert(latencies->end(), e.begin(), e.end());
  return ok;
}

std::vector<request> puts(const std::vector<std::string>& ids) {
  std::vector<request> out;
  for (const auto& id : ids)
    out.emplace_back("/v1/twins/" + id, R"({"type":"item","properties":{"n":0}})");
  return out;
}

std::vector<request> patches_of(const std::vector<std::string>& twins, size_t n) {
  std::vector<request> out;
  for (size_t k = 0; k < n; ++k)
    out.emplace_back("/v1/twins/" + twins[k % twins.size()],
                     R"({"properties":{"n":)" + std::to_string(k) + "}}");
  return out;
}

std::vector<std::string> ids(size_t n, const std::string& prefix) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i));
  return out;
}

std::vector<std::string> ids_owned_by(const std::vector<std::string>& owners,
                                      const std::string& owner, size_t n) {
  std::vector<std::string> out;
  auto shards = static_cast<uint32_t>(owners.size());
  for (size_t i = 0; i < 1'000'000 && out.size() < n; ++i) {
    auto id = "bench:t" + std::to_string(i);
    if (owners[runtime::shard_of(*runtime::twin_id::parse(id), shards).value()] == owner)
      out.push_back(id);
  }
  return out;
}

} // namespace twin::bench
