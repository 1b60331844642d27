#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "twin/runtime/host.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

/// Group commit: one thread takes every batch submitted since its last write, writes
/// them as one store batch and then calls each submitter back. Also keeps the durable
/// counts (twins, active alerts) and writes them in the same batch as the changes that
/// moved them, so they are exact after a crash.
///
/// Owned by the host. `submit` is thread-safe; callbacks run on the writer thread.
class store_writer {
public:
  using done_fn = std::function<void(caf::error)>;

  store_writer(state_store& store, host_stats& stats);
  ~store_writer();

  /// Reads the durable counts from the store.
  caf::error load_counts();
  void start();
  /// Writes what is queued, then stops the thread.
  void stop();

  void submit(store_batch batch, host_counts delta, done_fn done);

  host_counts counts() const;

private:
  struct item {
    store_batch batch;
    host_counts delta;
    done_fn done;
  };

  void run();

  state_store& store_;
  host_stats& stats_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<item> queue_;
  host_counts counts_;
  bool running_ = false;   ///< takes submissions
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace twin::runtime
