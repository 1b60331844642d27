// cluster_bench: what a cluster costs on this machine, with real processes on loopback: an
// etcd and twind members. This machine has 2 cores, so it measures cost, not scale.
//
//   (a) CPU time of the members per update (PATCH over HTTP, acknowledged once durable)
//       sent to a member that owns the twin, and to one that forwards it to the owner,
//       in the same run, with C and 4 C clients          [target: forwarded <= 2 x local]
//   (b) handoff of a shard of 10,000 twins: 8 shards, 80,000 twins, 3 members; a fourth
//       joins and takes 2 shards               [target: <= 1 s per shard]
//   (c) a fourth member joining 3 that hold 100,000 twins in 1,024 shards: time until it
//       owns its share
//
//   build/bin/cluster_bench [--updates N] [--clients C] [--parts abc]

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include "http_client.hpp"
#include "process.hpp"
#include "twin/runtime/shard.hpp"

namespace {

using namespace twin;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// User and system CPU seconds of process `pid` so far.
double cpu_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  std::istringstream fields{text.substr(text.rfind(')') + 2)};
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i)
    if (i == 14 || i == 15)
      ticks += std::stod(f);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
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

/// An etcd and twind members in a directory of their own.
class cluster {
public:
  cluster(std::string dir, uint32_t shards) : dir_(std::move(dir)), shards_(shards) {
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
  ~cluster() {
    for (auto& m : members_)
      stop(m);
    etcd_->signal(SIGTERM);
    etcd_->wait(10s);
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  struct member {
    int http = test::free_port();
    int metrics = test::free_port();
    int port = test::free_port();
    std::unique_ptr<test::process> proc;
  };

  /// Starts member `i` and waits until it is ready.
  member& start(size_t i) {
    members_.resize(std::max(members_.size(), i + 1));
    auto& m = members_[i];
    auto n = std::to_string(i);
    m.proc = std::make_unique<test::process>(std::vector<std::string>{
      TWIND_PATH, "--data-dir", dir_ + "/n" + n, "--node-id", "node-" + n, "--models", dir_,
      "--http-port", std::to_string(m.http), "--metrics-port", std::to_string(m.metrics),
      "--cluster-etcd", etcd_url_, "--cluster-port", std::to_string(m.port), "--shards",
      std::to_string(shards_), "--log-level", "warn", "--threads", "1"});
    if (!test::wait_for_200(m.metrics, "/readyz", 60s))
      throw std::runtime_error("member " + n + " did not start: " + m.proc->stderr_text());
    return m;
  }

  void stop(member& m) {
    if (m.proc) {
      m.proc->signal(SIGTERM);
      m.proc->wait(60s);
      m.proc.reset();
    }
  }

  json status() {
    test::http_client c{members_.at(0).http};
    auto r = c.call("GET", "/v1/cluster");
    return r.status == 200 ? json::parse(r.body) : json{};
  }

  /// Waits until `n` members share the shards within one of each other, none moving.
  bool balanced(size_t n, std::chrono::milliseconds timeout) {
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

  /// The owner of each shard, by the table.
  std::vector<std::string> owners() {
    std::vector<std::string> out(shards_);
    auto table = status();
    for (const auto& e : table["shard_table"])
      out[e["shard"].get<size_t>()] = e["owner"].get<std::string>();
    return out;
  }

  std::vector<member>& members() { return members_; }
  uint32_t shards() const { return shards_; }

private:
  std::string dir_;
  uint32_t shards_;
  std::string etcd_url_;
  std::unique_ptr<test::process> etcd_;
  std::vector<member> members_;
};

/// Sends `requests` (method, target, body) over `clients` connections to port `port`;
/// returns how many were answered 2xx.
size_t send_all(int port, const std::vector<std::pair<std::string, std::string>>& requests,
                const std::string& method, int clients) {
  std::atomic<size_t> next{0}, ok{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&] {
      test::http_client h{port};
      for (size_t i; (i = next++) < requests.size();) {
        auto r = h.call(method, requests[i].first, requests[i].second,
                        {{"Content-Type", method == "PATCH" ? "application/merge-patch+json"
                                                             : "application/json"}});
        if (r.status >= 200 && r.status < 300)
          ++ok;
      }
    });
  for (auto& t : threads)
    t.join();
  return ok;
}

std::vector<std::pair<std::string, std::string>> puts(const std::vector<std::string>& ids) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& id : ids)
    out.emplace_back("/v1/twins/" + id, R"({"type":"item","properties":{"n":0}})");
  return out;
}

std::vector<std::string> ids(size_t n, const std::string& prefix) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i));
  return out;
}

double cpu_of_members(cluster& c) {
  double sum = 0;
  for (auto& m : c.members())
    if (m.proc)
      sum += cpu_of(m.proc->pid());
  return sum;
}

void bench_forwarding(const std::string& dir, size_t updates, int clients) {
  cluster c{dir + "/a", 1024};
  c.start(0);
  c.start(1);
  if (!c.balanced(2, 30s))
    throw std::runtime_error("(a): the members did not share the shards");
  auto owners = c.owners();
  // Twins owned by member 0 (local to it) and by member 1 (forwarded by member 0).
  std::vector<std::string> local, remote;
  for (size_t i = 0; i < 100'000 && (local.size() < 1000 || remote.size() < 1000); ++i) {
    auto id = "bench:t" + std::to_string(i);
    auto owner = owners[runtime::shard_of(*runtime::twin_id::parse(id), c.shards()).value()];
    auto& to = owner == "node-0" ? local : remote;
    if (to.size() < 1000 && !owner.empty())
      to.push_back(id);
  }
  if (local.size() < 1000 || remote.size() < 1000)
    throw std::runtime_error("(a): the shard table does not name both members");
  auto all = local;
  all.insert(all.end(), remote.begin(), remote.end());
  send_all(c.members()[0].http, puts(all), "PUT", clients);
  auto phase = [&](const std::vector<std::string>& twins, int conns) {
    std::vector<std::pair<std::string, std::string>> patches;
    for (size_t k = 0; k < updates; ++k)
      patches.emplace_back("/v1/twins/" + twins[k % twins.size()],
                           R"({"properties":{"n":)" + std::to_string(k) + "}}");
    auto cpu0 = cpu_of_members(c);
    auto t0 = clock_type::now();
    auto ok = send_all(c.members()[0].http, patches, "PATCH", conns);
    auto secs = seconds_since(t0);
    auto cpu = cpu_of_members(c) - cpu0;
    return std::tuple{cpu / static_cast<double>(ok) * 1e6, ok / secs, ok};
  };
  std::printf("(a) CPU of the members per update, %zu updates x 2 rounds:\n", updates);
  // With `clients` connections, then four times as many: the cost of a message between
  // members is shared by the requests that cross together.
  for (int conns : {clients, 4 * clients}) {
    // Alternating phases, so that a drift of the machine weighs on both alike.
    double local_us = 0, remote_us = 0, local_rate = 0, remote_rate = 0;
    for (int round = 0; round < 2; ++round) {
      auto [lu, lr, lo] = phase(local, conns);
      auto [ru, rr, ro] = phase(remote, conns);
      if (lo != updates || ro != updates)
        throw std::runtime_error("(a): updates failed");
      local_us += lu / 2;
      remote_us += ru / 2;
      local_rate += lr / 2;
      remote_rate += rr / 2;
    }
    std::printf("    %3d clients, to the owner: %6.1f us  (%6.0f updates/s)\n", conns, local_us,
                local_rate);
    std::printf("    %3d clients, forwarded:    %6.1f us  (%6.0f updates/s) = %.2f x   "
                "[target <= 2 x]\n",
                conns, remote_us, remote_rate, remote_us / local_us);
  }
}

/// The mean of histogram `name` over `members`; -1 without a sample.
double mean_of(cluster& c, std::initializer_list<size_t> members, const std::string& name) {
  double sum = 0, n = 0;
  for (auto member : members) {
    test::http_client h{c.members()[member].metrics};
    auto text = h.call("GET", "/metrics").body;
    auto value = [&](const std::string& metric) {
      auto at = text.find("\n" + metric + " ");
      return at == std::string::npos ? 0.0 : std::stod(text.substr(at + metric.size() + 2));
    };
    sum += value(name + "_sum");
    n += value(name + "_count");
  }
  return n > 0 ? sum / n : -1;
}

/// Three members sharing `twins` twins made through the first; prints how long that took.
void fill(cluster& c, size_t twins, const char* label, int clients) {
  for (size_t i = 0; i < 3; ++i)
    c.start(i);
  if (!c.balanced(3, 30s))
    throw std::runtime_error(std::string{label} + ": the members did not share the shards");
  auto t0 = clock_type::now();
  auto prefix = std::string{"bench:"} + label[1] + "-";  // "(b)": bench:b-0, bench:b-1, ...
  auto made = send_all(c.members()[0].http, puts(ids(twins, prefix)), "PUT", clients);
  if (made != twins)
    throw std::runtime_error(std::string{label} + ": only " + std::to_string(made) + " of "
                             + std::to_string(twins) + " twins were made");
  std::printf("%s %zu twins in %u shards over 3 members (made in %.1f s, %zu ok)\n", label,
              twins, c.shards(), seconds_since(t0), made);
}

void bench_handoff(const std::string& dir, int clients) {
  cluster c{dir + "/b", 8};
  fill(c, 80'000, "(b)", clients);
  auto t0 = clock_type::now();
  c.start(3);
  bool done = c.balanced(4, 120s);
  auto secs = seconds_since(t0);
  std::printf("    a fourth member took its 2 shards of ~10,000 twins: %.2f s per shard "
              "(copy and take over)   [target <= 1 s]; all done %.1f s after it started%s\n",
              mean_of(c, {3}, "twin_handoff_duration_seconds"), secs,
              done ? "" : " (NOT balanced)");
  std::printf("    the shards' requests waited %.3f s (from the old owner's release to the "
              "new owner's taking over; it served them while they were copied)\n",
              mean_of(c, {0, 1, 2}, "twin_handoff_pause_seconds"));
}

void bench_join(const std::string& dir, int clients) {
  cluster c{dir + "/c", 1024};
  fill(c, 100'000, "(c)", clients);
  auto t0 = clock_type::now();
  c.start(3);
  auto started = seconds_since(t0);
  bool done = c.balanced(4, 120s);
  std::printf("    a fourth member owned its share (256 shards) %.1f s after it was started "
              "(ready after %.1f s; 2 s of that is the coordinator's settling)%s\n",
              seconds_since(t0), started, done ? "" : " (NOT balanced)");
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"cluster_bench: the cost of a cluster on this machine"};
  size_t updates = 20'000;
  int clients = 8;
  std::string dir = "/tmp/cluster_bench";
  std::string parts = "abc";
  app.add_option("--updates", updates, "Updates per phase of (a)")->capture_default_str();
  app.add_option("--clients", clients, "HTTP connections")->capture_default_str();
  app.add_option("--dir", dir, "Scratch directory (wiped)")->capture_default_str();
  app.add_option("--parts", parts, "Which parts to run (of a, b and c)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure as it comes
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  std::printf("cluster_bench on %u cores: etcd and twind members (one actor thread each) on "
              "loopback\n", std::thread::hardware_concurrency());
  try {
    if (parts.find('a') != std::string::npos)
      bench_forwarding(dir, updates, clients);
    if (parts.find('b') != std::string::npos)
      bench_handoff(dir, clients);
    if (parts.find('c') != std::string::npos)
      bench_join(dir, clients);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cluster_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
