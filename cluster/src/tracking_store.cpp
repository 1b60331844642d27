#include "twin/cluster/tracking_store.hpp"

#include "twin/runtime/errc.hpp"

namespace twin::cluster {

using runtime::make_error;
using runtime::runtime_errc;
using runtime::shard_id;
using runtime::twin_id;

tracking_store::tracking_store(runtime::state_store& inner, size_t max_bytes)
  : inner_(inner), max_bytes_(max_bytes) {}

void tracking_store::track(shard_id shard) {
  std::lock_guard<std::mutex> guard{mtx_};
  tracked_[shard.value()] = shard_changes{};
  tracking_.store(tracked_.size(), std::memory_order_release);
}

void tracking_store::untrack(shard_id shard) {
  std::lock_guard<std::mutex> guard{mtx_};
  tracked_.erase(shard.value());
  tracking_.store(tracked_.size(), std::memory_order_release);
}

tracking_store::twin_changes* tracking_store::twin_of(const twin_id& id, size_t bytes) {
  auto i = tracked_.find(runtime::shard_of(id, inner_.shard_count()).value());
  if (i == tracked_.end() || i->second.overflowed)
    return nullptr;
  auto& sc = i->second;
  sc.bytes += bytes + id.str().size() + 64;
  if (sc.bytes > max_bytes_) {  // too much to keep: the shard is copied anew instead
    sc = shard_changes{};
    sc.overflowed = true;
    return nullptr;
  }
  auto& tc = sc.twins[id.str()];
  tc.id = id;
  return &tc;
}

void tracking_store::record(const runtime::store_batch& b) {
  // In the order a batch applies them: deletes before puts, removes before adds.
  for (const auto& id : b.deletes)
    if (auto* tc = twin_of(id, 0))
      tc->record.emplace(std::nullopt);
  for (const auto& [id, bytes] : b.puts)
    if (auto* tc = twin_of(id, bytes.size()))
      tc->record.emplace(bytes);
  for (const auto& e : b.index_removes)
    if (auto* tc = twin_of(e.id, e.key.size()))
      tc->index[{e.index, e.key}] = false;
  for (const auto& e : b.index_adds)
    if (auto* tc = twin_of(e.id, e.key.size()))
      tc->index[{e.index, e.key}] = true;
  for (const auto& id : b.history_deletes)
    if (auto* tc = twin_of(id, 0)) {
      tc->history_cleared = true;
      tc->samples.clear();
    }
  for (const auto& h : b.history)
    if (auto* tc = twin_of(h.id, h.property.size() + h.bytes.size()))
      tc->samples[{h.property, h.ts_ms}] = h.bytes;
  for (const auto& m : b.meta_puts) {
    auto i = tracked_.find(m.shard.value());
    if (i != tracked_.end() && !i->second.overflowed)
      i->second.meta[m.key] = m.value;
  }
}

caf::error tracking_store::write_all(const runtime::store_batch* batches, size_t n) {
  auto err = inner_.write_all(batches, n);
  if (err)
    return err;
  if (observer_)
    observer_(batches, n);
  if (tracking_.load(std::memory_order_acquire) == 0)
    return err;
  std::lock_guard<std::mutex> guard{mtx_};
  for (size_t i = 0; i < n; ++i)
    record(batches[i]);
  return err;
}

caf::expected<runtime::shard_page> tracking_store::changes(shard_id shard,
                                                            const std::string& cursor,
                                                            size_t max_bytes) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = tracked_.find(shard.value());
  if (i == tracked_.end())
    return make_error(runtime_errc::unavailable,
                      "the changes of shard " + std::to_string(shard.value())
                        + " are not recorded");
  auto& sc = i->second;
  if (sc.overflowed)  // until `track` starts the record anew, with a new copy
    return make_error(runtime_errc::conflict,
                      "shard " + std::to_string(shard.value())
                        + " changed too much while it was copied: copy it again");
  runtime::shard_page page;
  auto& b = page.entries;
  size_t bytes = 0;
  auto it = cursor.empty() ? sc.twins.begin() : sc.twins.upper_bound(cursor);
  for (; it != sc.twins.end(); ++it) {
    if (bytes >= max_bytes && !b.empty()) {
      page.next = std::prev(it)->first;
      return page;
    }
    const auto& tc = it->second;
    if (tc.record && *tc.record) {
      b.puts.emplace_back(tc.id, **tc.record);
      bytes += (*tc.record)->size();
    } else if (tc.record) {
      b.deletes.push_back(tc.id);
    }
    for (const auto& [entry, added] : tc.index)
      (added ? b.index_adds : b.index_removes).push_back({entry.first, entry.second, tc.id});
    if (tc.history_cleared)
      b.history_deletes.push_back(tc.id);
    for (const auto& [at, value] : tc.samples) {
      b.history.push_back({tc.id, at.first, at.second, value});
      bytes += at.first.size() + value.size();
    }
    bytes += tc.id.str().size() + 16 * tc.index.size();
  }
  for (const auto& [key, value] : sc.meta)
    b.meta_puts.push_back({shard, key, value});
  return page;
}

// -- the wrapped store ------------------------------------------------------------------

caf::expected<std::optional<std::string>> tracking_store::get(const twin_id& id) {
  return inner_.get(id);
}

caf::expected<std::vector<twin_id>> tracking_store::list(runtime::index_kind index,
                                                         const std::string& key,
                                                         const twin_id& after, size_t limit) {
  return inner_.list(index, key, after, limit);
}

caf::expected<std::vector<std::string>> tracking_store::index_keys(runtime::index_kind index,
                                                                  size_t limit) {
  return inner_.index_keys(index, limit);
}

caf::expected<std::vector<twin_id>> tracking_store::scan_ids(const twin_id& after, size_t limit) {
  return inner_.scan_ids(after, limit);
}

caf::expected<std::vector<runtime::history_sample>>
tracking_store::history(const twin_id& id, const std::string& property, int64_t from, int64_t to,
                        size_t limit) {
  return inner_.history(id, property, from, to, limit);
}

caf::expected<std::vector<runtime::history_sample>>
tracking_store::latest_history(const twin_id& id, const std::string& property, int64_t before,
                               size_t limit) {
  return inner_.latest_history(id, property, before, limit);
}

caf::expected<std::optional<std::string>> tracking_store::get_meta(shard_id shard,
                                                                   const std::string& key) {
  return inner_.get_meta(shard, key);
}

caf::expected<std::vector<std::pair<std::string, std::string>>>
tracking_store::scan_meta(shard_id shard, const std::string& prefix, size_t limit) {
  return inner_.scan_meta(shard, prefix, limit);
}

caf::expected<std::optional<std::string>> tracking_store::get_position(shard_id shard,
                                                                       const std::string& key) {
  return inner_.get_position(shard, key);
}

uint32_t tracking_store::shard_count() const {
  return inner_.shard_count();
}

caf::expected<runtime::shard_page> tracking_store::read_shard(shard_id shard,
                                                               const std::string& cursor,
                                                               size_t max_bytes) {
  return inner_.read_shard(shard, cursor, max_bytes);
}

caf::error tracking_store::drop_shard(shard_id shard) {
  return inner_.drop_shard(shard);
}

uint64_t tracking_store::approximate_count() {
  return inner_.approximate_count();
}

runtime::store_stats tracking_store::stats() {
  return inner_.stats();
}

std::string tracking_store::write_failure() {
  return inner_.write_failure();
}

caf::error tracking_store::flush() {
  return inner_.flush();
}

} // namespace twin::cluster
