// cluster_bench's replication parts: what the second copy of each shard costs, and what it
// gives when a member dies.
//
//   (d) updates to the twins member 0 leads, with one copy of each shard and with two, in
//       the same run: throughput, p99 latency, CPU of the members per update
//                          [target: R=2 <= 1.5 x the CPU of R=1, >= 0.6 x its throughput]
//   (e) kill -9 of a member, in turn, K times: the time until every shard acknowledges a
//       write again                                    [target: median and max <= 5 s]
//   (f) a member that lost its data directory returns: the rate at which it copies the
//       shards again (twins/s)

#include <algorithm>
#include <cstdio>
#include <thread>

#include "cluster_harness.hpp"
#include "http_client.hpp"
#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::bench {
namespace {

using namespace std::chrono_literals;

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  auto k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

/// Two members, `extra` arguments, 1,000 twins that member 0 leads made through it.
std::vector<std::string> two_members_and_twins(cluster& c) {
  c.start(0);
  c.start(1);
  if (!c.balanced(2, 30s) || !c.replicated(30s))
    throw std::runtime_error("(d): the members did not share the shards");
  auto twins = ids_owned_by(c.owners(), "node-0", 1000);
  if (twins.size() < 1000 || send_all(c.members()[0].http, puts(twins), "PUT", 8) != 1000)
    throw std::runtime_error("(d): the twins were not made");
  return twins;
}

} // namespace

void bench_replication_cost(const std::string& dir, size_t updates, int clients) {
  cluster one{dir + "/d1", 64, {"--replication-factor", "1"}};
  cluster two{dir + "/d2", 64, {"--replication-factor", "2"}};
  auto twins_one = two_members_and_twins(one);
  auto twins_two = two_members_and_twins(two);
  struct figures {
    double cpu_us = 0;
    double rate = 0;
    std::vector<double> latencies;
  };
  constexpr int rounds = 2;
  auto phase = [&](cluster& c, const std::vector<std::string>& twins, int conns, figures& f) {
    auto patches = patches_of(twins, updates);
    auto cpu0 = c.cpu();
    auto t0 = clock_type::now();
    auto ok = send_all(c.members()[0].http, patches, "PATCH", conns, &f.latencies);
    auto secs = seconds_since(t0);
    if (ok != updates)
      throw std::runtime_error("(d): updates failed");
    f.cpu_us += (c.cpu() - cpu0) / static_cast<double>(ok) * 1e6 / rounds;
    f.rate += static_cast<double>(ok) / secs / rounds;
  };
  std::printf("(d) %zu updates x %d rounds to 1,000 twins member 0 leads, 2 members, one "
              "copy of each shard and two (both members' CPU):\n", updates, rounds);
  for (int conns : {clients, 4 * clients}) {
    figures r1, r2;
    for (int round = 0; round < rounds; ++round) {
      // Alternating order, so that a drift of the machine weighs on both alike.
      if (round % 2 == 0) {
        phase(one, twins_one, conns, r1);
        phase(two, twins_two, conns, r2);
      } else {
        phase(two, twins_two, conns, r2);
        phase(one, twins_one, conns, r1);
      }
    }
    std::printf("    %3d clients, R=1: %6.1f us  %6.0f updates/s  p99 %5.1f ms\n", conns,
                r1.cpu_us, r1.rate, percentile(r1.latencies, 0.99) * 1e3);
    std::printf("    %3d clients, R=2: %6.1f us  %6.0f updates/s  p99 %5.1f ms   = %.2f x "
                "the CPU [target <= 1.5 x], %.2f x the throughput [target >= 0.6 x]\n",
                conns, r2.cpu_us, r2.rate, percentile(r2.latencies, 0.99) * 1e3,
                r2.cpu_us / r1.cpu_us, r2.rate / r1.rate);
  }
}

void bench_failover(const std::string& dir, int kills) {
  constexpr uint32_t shards = 16;
  cluster c{dir + "/e", shards};  // the default lease and copies
  for (size_t i = 0; i < 3; ++i)
    c.start(i);
  if (!c.balanced(3, 30s) || !c.replicated(30s))
    throw std::runtime_error("(e): the members did not share the shards");
  // A twin in each shard.
  std::vector<std::string> probes(shards);
  for (size_t i = 0, found = 0; found < shards; ++i) {
    auto id = "bench:e" + std::to_string(i);
    auto& probe = probes[runtime::shard_of(*runtime::twin_id::parse(id), shards).value()];
    if (probe.empty()) {
      probe = id;
      ++found;
    }
  }
  if (send_all(c.members()[0].http, puts(probes), "PUT", 4) != shards)
    throw std::runtime_error("(e): the twins were not made");
  std::printf("(e) 3 members, 16 shards, two copies, the default lease (3 s): a member "
              "killed with -9, in turn, %d times; the time until every shard acknowledged a "
              "write sent after the kill:\n   ", kills);
  std::vector<double> times;
  for (int k = 0; k < kills; ++k) {
    auto victim = static_cast<size_t>(k % 3);
    std::vector<int> ports;
    for (size_t i = 0; i < 3; ++i)
      if (i != victim)
        ports.push_back(c.members()[i].http);
    c.kill(victim);
    auto t0 = clock_type::now();
    std::vector<double> served(shards, -1);
    std::vector<std::thread> writers;
    for (size_t s = 0; s < shards; ++s)
      writers.emplace_back([&, s] {
        std::vector<std::unique_ptr<test::http_client>> via;
        for (int port : ports)
          via.push_back(std::make_unique<test::http_client>(port));
        for (size_t n = 0; served[s] < 0 && seconds_since(t0) < 30; ++n) {
          auto r = via[n % via.size()]->call(
            "PATCH", "/v1/twins/" + probes[s], R"({"properties":{"n":)" + std::to_string(n) + "}}",
            {{"Content-Type", "application/merge-patch+json"}});
          if (r.status >= 200 && r.status < 300)
            served[s] = seconds_since(t0);
          else
            std::this_thread::sleep_for(20ms);
        }
      });
    for (auto& w : writers)
      w.join();
    double all = *std::min_element(served.begin(), served.end()) < 0
                   ? -1
                   : *std::max_element(served.begin(), served.end());
    std::printf(all < 0 ? " (not within 30 s)" : " %.2f", all);
    if (all < 0)
      all = 30;
    times.push_back(all);
    c.start(victim);
    if (!c.balanced(3, 60s) || !c.replicated(60s))
      throw std::runtime_error("(e): the killed member did not come back into the cluster");
  }
  std::sort(times.begin(), times.end());
  std::printf(" s\n    median %.2f s, max %.2f s   [target <= 5 s]\n", percentile(times, 0.5),
              times.back());
}

void bench_catch_up(const std::string& dir, int clients) {
  constexpr size_t twins = 100'000;
  cluster c{dir + "/f", 8};
  c.start(0);
  c.start(1);
  if (!c.balanced(2, 30s) || !c.replicated(30s))
    throw std::runtime_error("(f): the members did not share the shards");
  if (send_all(c.members()[0].http, puts(ids(twins, "bench:f-")), "PUT", clients) != twins
      || !c.replicated(60s))
    throw std::runtime_error("(f): the twins were not made");
  // Member 1 dies and loses its data; member 0 leads every shard alone.
  c.kill(1);
  std::system(("rm -rf '" + c.data_dir(1) + "'").c_str());
  if (!wait_until(
        [&] {
          auto owners = c.owners();
          return std::all_of(owners.begin(), owners.end(),
                             [](const std::string& o) { return o == "node-0"; });
        },
        60s))
    throw std::runtime_error("(f): member 0 did not take the shards over");
  auto t0 = clock_type::now();
  auto& m = c.start(1);
  bool whole = c.balanced(2, 300s) && c.replicated(300s);
  auto secs = seconds_since(t0);
  auto copied = test::metric_value(m.metrics, "twin_replication_copied_twins_total");
  std::printf("(f) 2 members, 8 shards, %zu twins, two copies: a member that lost its data "
              "directory holds a copy of every twin again %.1f s after it was started%s: "
              "%.0f twins/s (of them copied as a follower: %.0f)\n",
              twins, secs, whole ? "" : " (NOT in sync)", static_cast<double>(twins) / secs,
              copied);
}

} // namespace twin::bench
