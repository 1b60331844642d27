#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "twin/runtime/host.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

/// Group commit: one thread takes every batch submitted since its last write, writes
/// them as one store batch and then calls each submitter back. Also keeps the durable
/// counts (twins, active alerts) and writes them in the same batch as the changes that
/// moved them, so they are exact after a crash.
///
/// Every batch names its owner (a twin). Once a write of an owner failed, its later
/// batches fail without being written (each carries the whole record, including the
/// change that failed) until the owner submits a reset; the reset's callback then tells
/// the owner that none of its batches is queued any more.
///
/// Owned by the host. `submit` is thread-safe; callbacks run on the writer thread.
class store_writer {
public:
  using done_fn = std::function<void(caf::error)>;

  /// Records each write's duration and size in `stats` while its histograms are on.
  store_writer(state_store& store, host_stats& stats);
  ~store_writer();

  /// Reads the durable counts from the store.
  caf::error load_counts();
  void start();
  /// Writes what is queued, then stops the thread.
  void stop();

  void submit(const twin_id& owner, store_batch batch, host_counts delta, done_fn done);

  /// Clears a failure of `owner`; `done` runs once every earlier batch is handled.
  void reset(const twin_id& owner, done_fn done);

  host_counts counts() const;

  /// When the write whose callbacks run now was durable (writer thread); none if the
  /// histograms were off for it.
  std::chrono::steady_clock::time_point durable_at() const { return durable_at_; }

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
  host_counts counts_;
  std::unordered_set<twin_id> failed_;  ///< owners with a failed write (writer thread only)
  bool running_ = false;   ///< takes submissions
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace twin::runtime
