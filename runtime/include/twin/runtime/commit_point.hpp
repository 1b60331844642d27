#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include <caf/error.hpp>

#include "twin/runtime/shard.hpp"
#include "twin/runtime/state_store.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// Totals kept durable with the twins, per shard (they survive restarts and kill -9).
struct host_counts {
  int64_t twins = 0;
  int64_t alerts_warning = 0;
  int64_t alerts_critical = 0;

  bool empty() const { return twins == 0 && alerts_warning == 0 && alerts_critical == 0; }
  host_counts& operator+=(const host_counts& x) {
    twins += x.twins;
    alerts_warning += x.alerts_warning;
    alerts_critical += x.alerts_critical;
    return *this;
  }
  host_counts& operator-=(const host_counts& x) {
    twins -= x.twins;
    alerts_warning -= x.alerts_warning;
    alerts_critical -= x.alerts_critical;
    return *this;
  }
  friend bool operator==(const host_counts& a, const host_counts& b) {
    return a.twins == b.twins && a.alerts_warning == b.alerts_warning
           && a.alerts_critical == b.alerts_critical;
  }
};

/// Where twins' changes become durable. The host hands every change to one; a change is
/// acknowledged only once its `done` reports it durable. The local implementation writes
/// to the node's store with group commit; a replicating one may wrap it, to acknowledge
/// once enough copies hold the change.
///
/// Every batch names its owner (a twin), whose shard it belongs to, with what it adds to
/// the shard's durable counts. Batches of one owner become durable in submission order.
/// Once a write of an owner failed, its later batches fail without being written (each
/// carries the whole record, including the change that failed) until the owner submits a
/// reset; the reset's callback then tells the owner that none of its batches is queued
/// any more.
///
/// Thread-safe; callbacks run on the commit point's own thread and must not block.
class commit_point {
public:
  using done_fn = std::function<void(caf::error)>;

  virtual ~commit_point();

  /// Makes `batch` durable with `delta` added to the counts of the owner's shard, then
  /// calls `done` (with the error if it failed: nothing of it is applied then). An empty
  /// batch is a barrier: `done` runs once the owner's earlier batches are handled.
  virtual void submit(const twin_id& owner, store_batch batch, host_counts delta,
                      done_fn done) = 0;

  /// Clears a failure of `owner`; `done` runs once every earlier batch is handled.
  virtual void reset(const twin_id& owner, done_fn done) = 0;

  /// The durable counts of `shard`.
  virtual host_counts counts(shard_id shard) const = 0;
  /// The durable counts of every shard together.
  virtual host_counts counts() const = 0;

  /// When the write whose callbacks run now was durable (on the commit point's thread);
  /// none if it was not timed.
  virtual std::chrono::steady_clock::time_point durable_at() const = 0;
};

} // namespace twin::runtime
