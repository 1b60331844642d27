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
//   (a) to (c) keep one copy of each shard; (d) to (f), in cluster_bench_replication.cpp,
//   measure what the second copy costs and gives; (g), in cluster_bench_tls.cpp, what TLS
//   between members costs.
//
//   build/bin/cluster_bench [--updates N] [--clients C] [--kills K] [--parts abcdef]

#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "cluster_harness.hpp"
#include "http_client.hpp"

namespace twin::bench {
namespace {

using namespace std::chrono_literals;

/// Parts (a) to (c) measure the cost of sharding: one copy of each shard.
const std::vector<std::string> one_copy{"--replication-factor", "1"};

void bench_forwarding(const std::string& dir, size_t updates, int clients) {
  cluster c{dir + "/a", 1024, one_copy};
  c.start(0);
  c.start(1);
  if (!c.balanced(2, 30s))
    throw std::runtime_error("(a): the members did not share the shards");
  // Twins owned by member 0 (local to it) and by member 1 (forwarded by member 0).
  auto owners = c.owners();
  auto local = ids_owned_by(owners, "node-0", 1000);
  auto remote = ids_owned_by(owners, "node-1", 1000);
  if (local.size() < 1000 || remote.size() < 1000)
    throw std::runtime_error("(a): the shard table does not name both members");
  auto all = local;
  all.insert(all.end(), remote.begin(), remote.end());
  send_all(c.members()[0].http, puts(all), "PUT", clients);
  auto phase = [&](const std::vector<std::string>& twins, int conns) {
    auto patches = patches_of(twins, updates);
    auto cpu0 = c.cpu();
    auto t0 = clock_type::now();
    auto ok = send_all(c.members()[0].http, patches, "PATCH", conns);
    auto secs = seconds_since(t0);
    auto cpu = c.cpu() - cpu0;
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
  cluster c{dir + "/b", 8, one_copy};
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
  cluster c{dir + "/c", 1024, one_copy};
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
} // namespace twin::bench

int main(int argc, char** argv) {
  CLI::App app{"cluster_bench: the cost of a cluster on this machine"};
  size_t updates = 20'000;
  int clients = 8;
  std::string dir = "/tmp/cluster_bench";
  int kills = 10;
  std::string parts = "abcdefg";
  app.add_option("--updates", updates, "Updates per phase of (a), (d) and (g)")
    ->capture_default_str();
  app.add_option("--clients", clients, "HTTP connections")->capture_default_str();
  app.add_option("--dir", dir, "Scratch directory (wiped)")->capture_default_str();
  app.add_option("--kills", kills, "Members killed in turn in (e)")->capture_default_str();
  app.add_option("--parts", parts, "Which parts to run (of a to g)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure as it comes
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  std::printf("cluster_bench on %u cores: etcd and twind members (one actor thread each) on "
              "loopback\n", std::thread::hardware_concurrency());
  using namespace twin::bench;
  auto runs = [&](char part) { return parts.find(part) != std::string::npos; };
  try {
    if (runs('a'))
      bench_forwarding(dir, updates, clients);
    if (runs('b'))
      bench_handoff(dir, clients);
    if (runs('c'))
      bench_join(dir, clients);
    if (runs('d'))
      bench_replication_cost(dir, updates, clients);
    if (runs('e'))
      bench_failover(dir, kills);
    if (runs('f'))
      bench_catch_up(dir, clients);
    if (runs('g'))
      bench_peer_tls(dir, updates, clients);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cluster_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
