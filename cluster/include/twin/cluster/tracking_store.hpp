#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "twin/runtime/state_store.hpp"

namespace twin::cluster {

/// A store that records the changes written to the shards it is told to track, from then
/// on, each entry's last change only: what a shard's new owner applies after it copied the
/// shard while the old owner still served it, to end with exactly the old owner's entries.
/// Every call goes on to the store it wraps; a write is recorded once that store applied
/// it. A cluster member's host writes through one (see `node`).
///
/// Thread safety: as `state_store`.
class tracking_store final : public runtime::state_store {
public:
  /// Records at most about `max_bytes` of changes per shard; beyond, the shard's record
  /// is dropped and `changes` says the shard must be copied anew.
  explicit tracking_store(runtime::state_store& inner, size_t max_bytes = 64u << 20);

  /// Records the changes of `shard` from now on, forgetting any recorded before.
  void track(runtime::shard_id shard);
  /// Stops recording the changes of `shard`, and forgets them.
  void untrack(runtime::shard_id shard);
  /// The changes of `shard` recorded so far, from `cursor` on (empty: the start; else a
  /// page's `next`), whole twins of about `max_bytes` at most a page: a batch that writes
  /// each changed entry's last value, or deletes it (the shard's metadata comes with the
  /// last page). The same cursor gives the same page as long as nothing is written to the
  /// shard. `unavailable` if the shard is not tracked, `conflict` if its changes outgrew
  /// the limit (until `track` starts recording anew).
  caf::expected<runtime::shard_page> changes(runtime::shard_id shard, const std::string& cursor,
                                             size_t max_bytes);

  /// Called after each write the wrapped store applied, on the writing thread, with the
  /// write's batches; set before writes begin.
  using observer_fn = std::function<void(const runtime::store_batch* batches, size_t n)>;
  void set_observer(observer_fn fn) { observer_ = std::move(fn); }

  caf::error write_all(const runtime::store_batch* batches, size_t n) override;
  caf::expected<std::optional<std::string>> get(const runtime::twin_id& id) override;
  caf::expected<std::vector<runtime::twin_id>> list(runtime::index_kind index,
                                                    const std::string& key,
                                                    const runtime::twin_id& after,
                                                    size_t limit) override;
  caf::expected<std::vector<std::string>> index_keys(runtime::index_kind index,
                                                     size_t limit) override;
  caf::expected<std::vector<runtime::twin_id>> scan_ids(const runtime::twin_id& after,
                                                        size_t limit) override;
  caf::expected<std::vector<runtime::history_sample>>
  history(const runtime::twin_id& id, const std::string& property, int64_t from, int64_t to,
          size_t limit) override;
  caf::expected<std::vector<runtime::history_sample>>
  latest_history(const runtime::twin_id& id, const std::string& property, int64_t before,
                 size_t limit) override;
  caf::expected<std::optional<std::string>> get_meta(runtime::shard_id shard,
                                                     const std::string& key) override;
  caf::expected<std::vector<std::pair<std::string, std::string>>>
  scan_meta(runtime::shard_id shard, const std::string& prefix, size_t limit) override;
  caf::expected<std::optional<std::string>> get_position(runtime::shard_id shard,
                                                         const std::string& key) override;
  uint32_t shard_count() const override;
  caf::expected<runtime::shard_page> read_shard(runtime::shard_id shard, const std::string& cursor,
                                                size_t max_bytes) override;
  caf::error drop_shard(runtime::shard_id shard) override;
  uint64_t approximate_count() override;
  runtime::store_stats stats() override;
  std::string write_failure() override;
  caf::error flush() override;

private:
  /// The last change of each entry of one twin.
  struct twin_changes {
    runtime::twin_id id;
    std::optional<std::optional<std::string>> record;  ///< set: its last put, or a delete
    std::map<std::pair<runtime::index_kind, std::string>, bool> index;  ///< added or removed
    bool history_cleared = false;  ///< every sample before `samples` went
    std::map<std::pair<std::string, int64_t>, std::string> samples;
  };
  struct shard_changes {
    std::map<std::string, twin_changes> twins;  ///< by id, for paging
    std::map<std::string, std::string> meta;
    size_t bytes = 0;
    bool overflowed = false;
  };

  /// The changes of the tracked shard of `id`, nullptr if it is not tracked.
  twin_changes* twin_of(const runtime::twin_id& id, size_t bytes);
  void record(const runtime::store_batch& b);

  runtime::state_store& inner_;
  const size_t max_bytes_;
  observer_fn observer_;
  std::mutex mtx_;
  std::unordered_map<uint32_t, shard_changes> tracked_;
  std::atomic<size_t> tracking_{0};  ///< entries of `tracked_`: 0 lets writes skip the lock
};

} // namespace twin::cluster
