#pragma once

// cluster_bench's harness: an etcd and twind members as real processes on loopback in a
// scratch directory, HTTP clients that send requests over several connections, and the CPU
// time of processes.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "process.hpp"

namespace twin::bench {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0);

/// User and system CPU seconds of process `pid` so far.
double cpu_of(pid_t pid);
/// The same for each of its threads, summed by thread name.
std::map<std::string, double> cpu_by_thread(pid_t pid);

/// Calls `pred` every 20 ms until it holds, for at most `timeout`.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

/// An etcd and twind members (one actor thread each) in a directory of their own. Every
/// member is started with `extra` arguments after the cluster's own.
class cluster {
public:
  cluster(std::string dir, uint32_t shards, std::vector<std::string> extra = {});
  ~cluster();

  struct member {
    int http = test::free_port();
    int metrics = test::free_port();
    int port = test::free_port();
    std::unique_ptr<test::process> proc;
  };

  /// Starts member `i` (again, on its data directory if it has one) and waits until it is
  /// ready.
  member& start(size_t i);
  /// Stops member `i` with SIGTERM.
  void stop(size_t i);
  /// Kills member `i` with SIGKILL.
  void kill(size_t i);
  /// Member `i`'s data directory.
  std::string data_dir(size_t i) const;

  /// `GET /v1/cluster` through the first member that answers; null if none does.
  json status();
  /// Waits until `n` members share the shards within one of each other, none moving.
  bool balanced(size_t n, std::chrono::milliseconds timeout);
  /// Waits until every shard has an owner and all its copies in sync.
  bool replicated(std::chrono::milliseconds timeout);
  /// The owner of each shard, by the table.
  std::vector<std::string> owners();
  /// The CPU seconds of every running member so far.
  double cpu();
  /// The CPU seconds of member `i`'s threads so far, by thread name.
  std::map<std::string, double> cpu_by_thread(size_t i);

  std::vector<member>& members() { return members_; }
  uint32_t shards() const { return shards_; }

private:
  std::string dir_;
  uint32_t shards_;
  std::vector<std::string> extra_;
  std::string etcd_url_;
  std::unique_ptr<test::process> etcd_;
  std::vector<member> members_;
};

/// A request: target and body.
using request = std::pair<std::string, std::string>;

/// Sends `requests` with `method` over `clients` connections to port `port`, each client
/// pausing `think` after each answer; returns how many were answered 2xx. With
/// `latencies`, it holds each answered request's latency in seconds.
size_t send_all(int port, const std::vector<request>& requests, const std::string& method,
                int clients, std::vector<double>* latencies = nullptr,
                std::chrono::microseconds think = {});

/// A PUT of an `item` twin for each of `ids`.
std::vector<request> puts(const std::vector<std::string>& ids);

/// `n` PATCHes of `twins` in turn, the k-th setting property `n` to k.
std::vector<request> patches_of(const std::vector<std::string>& twins, size_t n);

/// `prefix`0 to `prefix`(n - 1).
std::vector<std::string> ids(size_t n, const std::string& prefix);

/// The first `n` twin ids `bench:t<k>` whose shard `owner` owns by `owners` (the owner of
/// each shard); fewer if 1,000,000 ids do not hold that many.
std::vector<std::string> ids_owned_by(const std::vector<std::string>& owners,
                                      const std::string& owner, size_t n);

// The replication parts of cluster_bench (cluster_bench_replication.cpp).

/// (d) Throughput, p99 latency and CPU per update with two copies of each shard beside one.
void bench_replication_cost(const std::string& dir, size_t updates, int clients);
/// (e) The time until every shard acknowledges writes again after a member's kill -9.
void bench_failover(const std::string& dir, int kills);
/// (f) The rate at which a member that lost its data copies the shards again.
void bench_catch_up(const std::string& dir, int clients);

// cluster_bench's TLS part (cluster_bench_tls.cpp).

/// (g) CPU per update and throughput of forwarded and replicated updates, plain and with
/// TLS between members.
void bench_peer_tls(const std::string& dir, size_t updates, int clients);

} // namespace twin::bench
