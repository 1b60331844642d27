#pragma once

// Copies of each shard on R members: the primary (the shard's owner) ships each group
// commit's part for the shard to its followers, tagged (shard, epoch, seq), and
// acknowledges a change only once enough copies hold it; a follower applies the batches
// in order, with its position, and keeps no twin of the shard active. A new follower
// copies the shard from the primary while it receives the batches written meanwhile, then
// applies them: only then is it a copy. Private to the cluster module.
//
// Which member is primary and which follow is the shard table's (etcd's): the node tells
// this module (`lead`, `set_replicas`, `follow`), and this module asks the node to record
// in etcd which followers hold every acknowledged change (`insync_fn`), the only ones that
// may become primary.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <caf/expected.hpp>

#include "page_codec.hpp"
#include "transport.hpp"
#include "twin/cluster/tracking_store.hpp"
#include "twin/runtime/commit_point.hpp"
#include "twin/runtime/metrics.hpp"

namespace twin::cluster {

/// The metadata key of a follower's position in its primary's batches ("<epoch>:<seq>"),
/// written with each batch it applies.
inline constexpr const char* position_key = "replica";
inline std::string encode_position(int64_t epoch, uint64_t seq) {
  return std::to_string(epoch) + ":" + std::to_string(seq);
}

struct replication_options {
  /// Copies of each shard, the primary's included (R). 1: no replication.
  uint32_t factor = 1;
  /// Copies a change needs before it is acknowledged; 0: all R. With fewer copies
  /// available, writes wait (at most `timeout`, then `unavailable`).
  uint32_t min_insync = 0;
  /// How long a change waits for its copies, and a write for enough copies to exist.
  std::chrono::milliseconds timeout{5'000};
  /// Changes held while a shard has fewer than `min_insync` copies, at most (all shards).
  size_t max_parked = 100'000;
  /// Batches a copying follower keeps until its copy is complete, at most (bytes a shard).
  size_t max_buffered_bytes = 64u << 20;
};

/// A shard's replication as this member sees it, for status and metrics.
struct replica_status {
  uint32_t shard = 0;
  std::string role;     ///< "primary" or "follower"
  uint64_t seq = 0;     ///< primary: last batch shipped; follower: last applied
  uint32_t copies = 0;  ///< primary: copies that hold every acknowledged change
  uint64_t lag = 0;     ///< primary: batches its slowest counted follower has not confirmed
  double lag_seconds = 0;
  std::string state;    ///< follower: "copying" or "following"
};

class replication final : public runtime::commit_point {
public:
  using send_fn = std::function<bool(const std::string& node, envelope env)>;
  using ask_fn = std::function<caf::expected<std::string>(const std::string& node, envelope env,
                                                          std::chrono::milliseconds timeout)>;
  /// Adds `node` (in `incarnation`) to (or removes it from) the followers of `shard` that
  /// hold every acknowledged change, in etcd, if the shard's primary is still the one of
  /// `epoch`: the primary records its followers so, and a follower takes itself out before
  /// it drops its copy. Returns the revision of the change, 0 if it was not made. Blocks.
  using insync_fn = std::function<int64_t(runtime::shard_id shard, int64_t epoch,
                                          const std::string& node, int64_t incarnation,
                                          bool add)>;

  replication(tracking_store& store, runtime::commit_point& local, std::string me,
              replication_options opts, send_fn send, ask_fn ask, insync_fn insync);
  ~replication() override;  ///< stops

  void start();
  void stop();
  const replication_options& options() const { return opts_; }
  /// Copies a change needs: `min_insync`, or R.
  uint32_t needed() const;

  // -- the primary ------------------------------------------------------------------------

  /// This member is primary of `shard` at `epoch` (before its host serves it): batches
  /// are numbered from 1 again, and it has no follower yet.
  void lead(runtime::shard_id shard, int64_t epoch);
  /// It is not any more: changes still waiting for copies fail (`unavailable`, "may or
  /// may not be kept").
  void resign(runtime::shard_id shard);
  bool leads(runtime::shard_id shard) const;
  /// The table's followers of a shard this member leads, those of them in sync, and the
  /// revision of that list (older than one already applied: ignored).
  void set_replicas(runtime::shard_id shard, const std::vector<std::string>& followers,
                    const std::vector<std::string>& insync, int64_t revision);
  /// A follower asks to receive the shard's batches from now on (`follow`, in its
  /// `generation`): the last batch number shipped before, or why not.
  caf::expected<uint64_t> add_follower(runtime::shard_id shard, int64_t epoch,
                                       const std::string& node, int64_t incarnation,
                                       uint64_t generation);
  /// A member's link dropped: it receives nothing more until it copied anew.
  void on_peer_down(const std::string& node);
  /// A follower's acknowledgements (`replica_acks`).
  void on_acks(const envelope& env);

  void submit(const runtime::twin_id& owner, runtime::store_batch batch,
              runtime::host_counts delta, done_fn done) override;
  void reset(const runtime::twin_id& owner, done_fn done) override;
  runtime::host_counts counts(runtime::shard_id shard) const override;
  runtime::host_counts counts() const override;
  std::chrono::steady_clock::time_point durable_at() const override;

  // -- a follower -----------------------------------------------------------------------

  /// This member follows `shard` of `primary` at `epoch` (from the table): unless it does
  /// already, it drops its data of the shard and copies it anew.
  void follow(runtime::shard_id shard, const std::string& primary, int64_t epoch);
  /// It follows the shard no more: the batches of its primary are refused from now on
  /// (returns once none is being applied). `drop`: its data goes too.
  void unfollow(runtime::shard_id shard, bool drop);
  bool follows(runtime::shard_id shard) const;
  /// A primary's batches (`replicate`) from the actor system: applied on the follower's
  /// own thread.
  void on_batches(envelope&& env);
  /// Frames of a member's link that came together: its batches (`replicate`) are applied
  /// on the calling thread, in one write; acknowledgements (`replica_acks`) are taken.
  void on_link_frames(std::vector<envelope>& frames);

  // -- figures ----------------------------------------------------------------------------

  std::vector<replica_status> status() const;
  void collect(std::vector<runtime::metrics::family>& out) const;

  struct primary_shard;
  struct follower_shard;

private:
  /// Runs on the writing thread after each write: ships the parts of led shards.
  void on_written(const runtime::store_batch* batches, size_t n);
  /// The callback of a change of a led shard: once durable here, it waits for its copies.
  done_fn wait_for_copies(uint32_t shard, int64_t epoch, done_fn done);
  /// Moves to `out` the callbacks of the changes every counted follower has confirmed.
  void complete(primary_shard& p, std::vector<done_fn>& out);
  /// The shards `b` writes to.
  std::vector<uint32_t> shards_of(const runtime::store_batch& b) const;
  /// `b`'s entries by shard.
  std::map<uint32_t, runtime::store_batch> split_by_shard(const runtime::store_batch& b) const;
  /// Expires what waited too long; records followers in sync (or out of it) in etcd.
  void control_loop();
  /// Applies the batches that came through the actor system.
  void apply_loop();
  /// Applies `work`'s batches (in order) in one write, and acknowledges them.
  void apply(std::vector<envelope>& work);
  /// Copies the shards this member began to follow.
  void copy_loop();
  caf::error copy_shard(uint32_t shard, const std::string& primary, int64_t epoch,
                        uint64_t generation);
  /// Follows `shard` anew (with `fmtx_`): a copy from the start, after a short pause.
  void restart_copy(uint32_t shard, follower_shard& f);
  void send_acks(std::map<std::string, std::vector<replica_ack>>& acks);
  /// A primary refused batches of shards this member follows: they are copied anew.
  void on_refusals(const std::string& from, const std::vector<replica_ack>& refusals);
  /// Sends each followed shard's position to its primary.
  void confirm_positions();
  static size_t approximate_size(const runtime::store_batch& b);
  bool stopped() const { return stopping_.load(); }
  /// Calls `callbacks` with `err` (their changes' copies are counted as of now).
  void run(std::vector<done_fn>& callbacks, caf::error err);

  tracking_store& store_;
  runtime::commit_point& local_;
  std::string me_;
  replication_options opts_;
  send_fn send_;
  ask_fn ask_;
  insync_fn insync_;
  uint32_t shard_count_;

  mutable std::mutex mtx_;  ///< the primary's state
  std::mutex ship_mtx_;     ///< batches are numbered and shipped in one turn under it
  std::unordered_map<uint32_t, primary_shard> led_;
  std::atomic<size_t> led_count_{0};  ///< entries of `led_`: 0 lets writes skip the lock
  size_t parked_ = 0;

  mutable std::mutex fmtx_;  ///< the follower's state
  std::condition_variable fcv_;      ///< batches came (the applier)
  std::condition_variable copy_cv_;  ///< shards to copy (the copier)
  std::condition_variable room_cv_;  ///< the applier took what came (its senders)
  std::unordered_map<uint32_t, follower_shard> followed_;
  std::vector<envelope> incoming_;
  size_t incoming_bytes_ = 0;  ///< of `incoming_`
  static constexpr size_t max_incoming_bytes = 64u << 20;
  std::deque<uint32_t> to_copy_;
  uint64_t generation_ = 0;

  std::mutex ctl_mtx_;
  std::condition_variable ctl_cv_;
  std::atomic<bool> stopping_{false};
  std::thread control_, applier_, copier_;

  // Figures.
  std::atomic<uint64_t> shipped_{0};        ///< batches shipped (per follower)
  std::atomic<uint64_t> applied_{0};        ///< batches applied as a follower
  std::atomic<uint64_t> refused_{0};        ///< batches refused as a follower
  std::atomic<uint64_t> copies_done_{0};    ///< shards copied as a new follower
  std::atomic<uint64_t> copies_failed_{0};
  std::atomic<uint64_t> copied_entries_{0}; ///< entries copied as a new follower
  std::atomic<uint64_t> timeouts_{0};       ///< changes that did not get their copies in time
  std::atomic<uint64_t> waits_{0};          ///< writes held for lack of copies
  runtime::metrics::histogram ack_latency_{runtime::metrics::histogram::latency_bounds()};
};

} // namespace twin::cluster
