#pragma once

// What the replication of a shard keeps, on its primary and on a follower. Private to
// replication_*.cpp.

#include <deque>
#include <map>

#include "replication.hpp"

namespace twin::cluster {

using clock_type = std::chrono::steady_clock;

struct replication::primary_shard {
  int64_t epoch = 0;
  uint64_t seq = 0;  ///< the last batch shipped
  int64_t replicas = 0;  ///< the revision of the table's followers last applied
  std::vector<std::string> followers;  ///< the table's

  struct target {
    int64_t incarnation = 0;
    uint64_t generation = 0;   ///< the follower's follow (see `replica_ack::generation`)
    uint64_t base = 0;         ///< the last batch shipped before this follow began
    uint64_t acked = 0;        ///< every batch up to this one is durable there
    clock_type::time_point heard{};
    bool counted = false;      ///< changes wait for its acknowledgement
    uint64_t barrier = 0;      ///< counted from after this batch: in sync once it has it
    bool in_etcd = false;      ///< etcd lists it in sync: it may become primary
    bool dropped = false;      ///< it gets nothing more (it missed a batch)
    bool recording = false;    ///< a change of etcd's list is under way
  };
  std::map<std::string, target> targets;

  struct waiter {
    uint64_t seq;
    done_fn done;
    clock_type::time_point since;
  };
  std::deque<waiter> waiting;  ///< by seq

  struct parked_change {
    runtime::twin_id owner;
    runtime::store_batch batch;
    runtime::host_counts delta;
    done_fn done;
    bool reset = false;
    clock_type::time_point since;
  };
  std::deque<parked_change> parked;  ///< held for lack of copies, in order

  /// Copies that hold every change acknowledged from now on.
  uint32_t copies() const {
    uint32_t n = 1;
    for (const auto& [node, t] : targets)
      n += t.counted ? 1 : 0;
    return n;
  }
};

struct replication::follower_shard {
  std::string primary;
  int64_t epoch = 0;
  uint64_t generation = 0;  ///< this follow's: a copy of an earlier one is stale
  bool following = false;   ///< copied: batches apply as they come
  bool copying = false;
  uint64_t base = 0;        ///< the last batch before the copy began; batches after it count
  uint64_t applied = 0;     ///< following: the last batch applied
  std::vector<replica_batch> buffer;  ///< while copying
  size_t buffered = 0;
  clock_type::time_point retry{};  ///< a failed copy starts again from then
  /// A copy of this follow was whole, so etcd may list this member as in sync: it leaves
  /// that list before its data of the shard goes.
  bool listed = false;
};

} // namespace twin::cluster
