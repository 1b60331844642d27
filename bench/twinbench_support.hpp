#pragma once

// What twinbench's parts share: timing, a window of requests in flight, a node on a RocksDB
// store, and the bench's twin types and twins.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/scheduler.hpp"

namespace twinbench {

using namespace twin::runtime;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0);

/// CPU time of the whole process (every thread), user and system, in seconds.
double cpu_seconds();

/// A rate and the CPU time of the process per operation while it was measured.
struct rate_result {
  double per_second = 0;
  double cpu_us = 0;
};

/// Measures from its construction: `rate(n)` for `n` operations since then.
struct meter {
  clock_type::time_point t0 = clock_type::now();
  double cpu0 = cpu_seconds();

  rate_result rate(size_t n) const {
    auto ops = static_cast<double>(n);
    return {ops / seconds_since(t0), (cpu_seconds() - cpu0) * 1e6 / ops};
  }
};

/// The resident set of the process, in bytes.
long rss_bytes();

double percentile(std::vector<double> xs, double p);

/// Returns freed memory to the system, so that RSS shows what is in use.
void release_free_memory();

[[noreturn]] void die(const std::string& msg);

/// Twin `i` of a population: `bench:<prefix><i>`.
twin_id bench_id(const char* prefix, size_t i);

twin_id sensor_id(size_t i);

/// Keeps at most `window` requests in flight; when full, waits until a quarter of them
/// were answered (fewer, longer sleeps). One thread sends; answers may come on any
/// thread. The sender reads the answered count only when the room it last saw is used
/// up: a shared counter touched by both sides for every request would cost a cache line
/// transfer each time, more than the runtime's own cross-thread handoffs.
class flight_window {
public:
  explicit flight_window(int64_t window) : window_(std::max<int64_t>(1, window)) {}
  void acquire() {
    if (room_ <= 0) {
      if (in_flight() >= window_)
        while (in_flight() > window_ * 3 / 4)
          std::this_thread::sleep_for(std::chrono::microseconds{50});
      room_ = window_ - in_flight();
    }
    --room_;
    ++sent_;
  }
  void release() { answered_.fetch_add(1, std::memory_order_acq_rel); }
  void drain() {
    while (in_flight() > 0)
      std::this_thread::sleep_for(std::chrono::microseconds{100});
  }

private:
  int64_t in_flight() const { return sent_ - answered_.load(std::memory_order_acquire); }

  int64_t window_;
  int64_t room_ = 0;  ///< requests that may still be sent before looking again
  int64_t sent_ = 0;
  alignas(64) std::atomic<int64_t> answered_{0};  // apart from what the sender writes
};

/// The four properties of a sensor, at random.
value_map sample(std::mt19937_64& rng);

/// Creates twins [first, last) of `type` (4 properties) named `prefix`, pipelined.
void create_twins(router& rt, size_t first, size_t last, std::mt19937_64& rng,
                  const char* type = "sensor", const char* prefix = "s");

/// A host on a RocksDB store in `dir`, with an actor system of its own.
struct bench_node {
  bench_node(const std::string& dir, size_t cache_mb, int threads, const std::string& policy) {
    rocksdb_options o;
    o.path = dir;
    o.block_cache_bytes = cache_mb << 20;
    auto s = open_rocksdb_store(o);
    if (!s)
      die(error_message(s.error()));
    store = std::move(*s);
    if (!configure_scheduler(cfg, threads, policy))
      die("unknown scheduler policy " + policy);
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  void start(const type_registry& types, host_options opts = {}) {
    h = std::make_unique<host>(*sys, *store, types, opts);
    if (auto err = h->start())
      die(error_message(err));
  }

  void stop() {
    if (auto err = h->stop(std::chrono::minutes{5}))
      die(error_message(err));
    h.reset();
  }

  /// Stops the host, the actor system and the store (whose background work would
  /// otherwise go on in its directory).
  void close() {
    stop();
    sys.reset();
    store.reset();
  }

  std::unique_ptr<state_store> store;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<host> h;
};

/// A sensor of 4 numeric properties; `watched`: each watched for anomalies, and a
/// remaining useful life learned (see `install_rul`).
type_builder sensor_type(const char* name, bool watched);

/// Installs on `type` a RUL model of its 4 properties, fitted on runs of random samples:
/// what it predicts does not matter here, what it costs a sample does.
void install_rul(const twin_type& type);

/// sensor, watched_sensor, group and site.
type_registry bench_types();

/// The size of a stored sensor twin, for the raw baseline.
size_t record_size();

} // namespace twinbench
