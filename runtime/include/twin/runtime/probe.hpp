#pragma once

#include <string>
#include <vector>

#include "twin/runtime/metrics.hpp"

namespace twin::runtime {

class host;
class state_store;

/// The runtime's metrics: twins active and stored, activations and passivations,
/// requests by kind, updates and their latency, the store writer's batches, the store's
/// own figures (RocksDB properties), active alerts, the build, and the process's CPU,
/// memory, threads and files. Everything is read when a scrape asks.
///
/// Owned by the node's main, beside the host and the store it reads, which must outlive
/// its last `collect`.
class probe final : public metrics::collectable {
public:
  probe(const host& h, state_store& store);
  void collect(std::vector<metrics::family>& out) const override;

private:
  const host& host_;
  state_store& store_;
};

/// Figures of this process, read from /proc and the cgroup.
struct process_stats {
  double cpu_seconds = 0;          ///< user and system
  uint64_t resident_bytes = 0;
  uint64_t virtual_bytes = 0;
  uint64_t memory_limit_bytes = 0;  ///< the cgroup's limit, else the machine's memory
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;
  uint64_t threads = 0;
  double start_time_seconds = 0;   ///< since the epoch
};

process_stats read_process_stats();

} // namespace twin::runtime
