// cluster_bench's replication parts: what the second copy of each shard costs, and what it
// gives when a member dies.
//
//   (d) updates to the twins member 0 leads, with one copy of each shard and with two, in
//       the same run: throughput, p99 latency, CPU of the members per update
//                          [target: R=2 <= 1.5 x the CPU of R=1, >= 0.6 x its throughput]
//       with each member's threads, and the floor of R=2 next to it: R=1, the follower's
//       write of the same batches and a loopback round trip (raw, measured in the run) for
//       each envelope the follower received; and R=1 at R=2's rate (its clients pausing),
//       what the slower pace alone costs
//   (e) kill -9 of a member, in turn, K times: the time until every shard acknowledges a
//       write again                                    [target: median and max <= 5 s]
//   (f) a member that lost its data directory returns: the rate at which it copies the
//       shards again (twins/s)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <map>
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

/// The CPU (both threads, us) of a round trip over a loopback TCP connection: `bytes` one
/// way, 16 back, each side blocked in its read until the other's write wakes it.
double loopback_round_trip_us(size_t bytes, int rounds) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0
      || listen(listener, 1) != 0
      || getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("(d): no loopback socket");
  int client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(client, reinterpret_cast<sockaddr*>(&addr), len) != 0)
    throw std::runtime_error("(d): no loopback connection");
  int server = accept(listener, nullptr, nullptr);
  close(listener);
  int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto exact = [](int fd, char* p, size_t n, bool in) {
    while (n > 0) {
      auto k = in ? read(fd, p, n) : write(fd, p, n);
      if (k <= 0)
        return false;
      p += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  };
  auto thread_cpu = [] {
    rusage u{};
    getrusage(RUSAGE_THREAD, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec)
           + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  std::atomic<double> echo_cpu{0};
  std::thread echo{[&] {
    std::vector<char> in(bytes), answer(16);
    auto c0 = thread_cpu();
    for (int r = 0; r < rounds; ++r)
      if (!exact(server, in.data(), bytes, true) || !exact(server, answer.data(), 16, false))
        break;
    echo_cpu = thread_cpu() - c0;
  }};
  std::vector<char> out(bytes, 'x'), answer(16);
  auto c0 = thread_cpu();
  for (int r = 0; r < rounds; ++r)
    if (!exact(client, out.data(), bytes, false) || !exact(client, answer.data(), 16, true))
      break;
  auto mine = thread_cpu() - c0;
  echo.join();
  close(client);
  close(server);
  return (mine + echo_cpu.load()) / rounds * 1e6;
}

} // namespace

void bench_replication_cost(const std::string& dir, size_t updates, int clients) {
  cluster one{dir + "/d1", 64, {"--replication-factor", "1"}};
  cluster two{dir + "/d2", 64, {"--replication-factor", "2"}};
  auto twins_one = two_members_and_twins(one);
  auto twins_two = two_members_and_twins(two);
  auto rtt = loopback_round_trip_us(1024, 20'000);
  std::printf("(d) raw limit: a loopback TCP round trip (1 KiB, and a short answer) costs %.1f us "
              "of CPU, both threads woken\n", rtt);
  struct figures {
    double cpu_us = 0;
    double rate = 0;
    double envelopes = 0;  ///< envelopes the follower received per update (R=2)
    std::vector<double> latencies;
    std::map<std::string, double> threads[2];  ///< each member's threads, us per update
  };
  constexpr int rounds = 2;
  auto phase = [&](cluster& c, const std::vector<std::string>& twins, int conns, figures& f,
                   std::chrono::microseconds think = {}) {
    auto patches = patches_of(twins, updates);
    auto received = [&] {
      return test::metric_value(c.members()[1].metrics, "twin_cluster_received_total");
    };
    auto cpu0 = c.cpu();
    auto threads0 = std::array{c.cpu_by_thread(0), c.cpu_by_thread(1)};
    auto envelopes0 = received();
    auto t0 = clock_type::now();
    auto ok = send_all(c.members()[0].http, patches, "PATCH", conns, &f.latencies, think);
    auto secs = seconds_since(t0);
    if (ok != updates)
      throw std::runtime_error("(d): updates failed");
    auto per_update = 1e6 / static_cast<double>(ok) / rounds;
    f.cpu_us += (c.cpu() - cpu0) * per_update;
    f.rate += static_cast<double>(ok) / secs / rounds;
    f.envelopes += (received() - envelopes0) / static_cast<double>(ok) / rounds;
    for (size_t m = 0; m < 2; ++m)
      for (const auto& [name, cpu] : c.cpu_by_thread(m))
        f.threads[m][name] += (cpu - threads0[m][name]) * per_update;
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
    for (size_t m = 0; m < 2; ++m) {
      std::printf("        member %zu's threads, us per update R=1 / R=2:", m);
      for (const auto& [name, us] : r2.threads[m])
        if (us >= 0.5 || r1.threads[m][name] >= 0.5)
          std::printf("  %s %.1f / %.1f", name.c_str(), r1.threads[m][name], us);
      std::printf("\n");
    }
    // What a second copy cannot cost less than: the follower's write of the same batches
    // (the primary's store writer with R=1) and a round trip between the members for each
    // envelope.
    auto write = r1.threads[0]["twin.store"];
    auto floor = r1.cpu_us + write + r2.envelopes * rtt;
    std::printf("        floor of R=2: R=1 + the follower's write (%.1f us) + %.2f envelopes "
                "an update x the round trip = %.1f us = %.2f x\n",
                write, r2.envelopes, floor, floor / r1.cpu_us);
    // A second copy answers later, so the same clients send less often, and every thread
    // of the members takes fewer updates each time it wakes. R=1 with clients that pause
    // after each answer, so that they send at R=2's rate, shows what that alone costs: the
    // pause starts as the clients' time between requests with R=2 less that with R=1, and
    // is corrected twice by the rate a try with it reached.
    auto cycle_us = [&](double rate) { return 1e6 * conns / rate; };
    auto pause = cycle_us(r2.rate) - cycle_us(r1.rate);
    auto pause_us = [&] { return std::chrono::microseconds{static_cast<int64_t>(pause)}; };
    for (int tries = 0; tries < 2; ++tries) {
      figures trial;
      phase(one, twins_one, conns, trial, pause_us());
      pause = std::max(0.0, pause - (cycle_us(trial.rate * rounds) - cycle_us(r2.rate)));
    }
    figures paced;
    for (int round = 0; round < rounds; ++round)
      phase(one, twins_one, conns, paced, pause_us());
    auto paced_floor = paced.cpu_us + write + r2.envelopes * rtt;
    std::printf("        R=1 at R=2's rate (each client pausing %.0f us after each answer): "
                "%.1f us  %.0f updates/s = %.2f x; the floor of R=2 at that rate: %.1f us = "
                "%.2f x\n",
                pause, paced.cpu_us, paced.rate, paced.cpu_us / r1.cpu_us, paced_floor,
                paced_floor / r1.cpu_us);
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
