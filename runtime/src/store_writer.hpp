#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "twin/runtime/commit_point.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

/// The local commit point, with group commit: one thread takes every batch submitted
/// since its last write, writes them as one store batch and then calls each submitter
/// back. Also keeps the durable counts of each shard (twins, active alerts) and writes
/// them in the same batch as the changes that moved them, so they are exact after a crash.
///
/// Owned by the host. `submit` is thread-safe; callbacks run on the writer thread.
class store_writer final : public commit_point {
public:
  /// Records each write's duration and size in `stats` while its histograms are on.
  store_writer(state_store& store, host_stats& stats);
  ~store_writer() override;

  /// Reads the durable counts of every shard from the store.
  caf::error load_counts();
  /// Reads the durable counts of `shard` from the store again (its data changed under
  /// the writer: the shard was copied in or dropped).
  caf::error load_counts(shard_id shard);
  void start();
  /// Writes what is queued, then stops the thread.
  void stop();

  void submit(const twin_id& owner, store_batch batch, host_counts delta,
              done_fn done) override;
  void reset(const twin_id& owner, done_fn done) override;
  host_counts counts(shard_id shard) const override;
  host_counts counts() const override;

  /// When the write whose callbacks run now was durable (writer thread); none if the
  /// histograms were off for it.
  std::chrono::steady_clock::time_point durable_at() const override { return durable_at_; }

private:
  struct item {
    twin_id owner;
    store_batch batch;
    host_counts delta;
    done_fn done;
    bool reset = false;
  };

  /// Queues `x`, or fails it at once if the writer is stopped.
  void enqueue(item&& x);
  void run();

  state_store& store_;
  host_stats& stats_;
  std::chrono::steady_clock::time_point durable_at_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<item> queue_;
  std::vector<host_counts> counts_;  ///< by shard
  host_counts total_;
  std::unordered_set<twin_id> failed_;  ///< owners with a failed write (writer thread only)
  bool running_ = false;   ///< takes submissions
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace twin::runtime
