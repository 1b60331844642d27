#include <charconv>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

state_store::~state_store() = default;

namespace {

/// A store in a few ordered maps under one mutex. Nothing survives the process.
class memory_store final : public state_store {
public:
  explicit memory_store(uint32_t shard_count) : shard_count_(shard_count) {}

  caf::error write_all(const store_batch* batches, size_t n) override {
    std::lock_guard<std::mutex> guard{mtx_};
    for (size_t i = 0; i < n; ++i) {
      const auto& b = batches[i];
      // Same order as the RocksDB store: deletes, then puts; index removes, then adds;
      // history deletes, then samples.
      for (const auto& id : b.deletes)
        twins_.erase(id);
      for (const auto& id : b.history_deletes)
        for (auto it = history_.lower_bound({id, {}, INT64_MIN});
             it != history_.end() && std::get<0>(it->first) == id;)
          it = history_.erase(it);
      for (const auto& [id, bytes] : b.puts)
        twins_[id] = bytes;
      for (const auto& e : b.index_removes)
        index(e.index).erase({e.key, e.id});
      for (const auto& e : b.index_adds)
        index(e.index).insert({e.key, e.id});
      for (const auto& h : b.history)
        history_[{h.id, h.property, h.ts_ms}] = h.bytes;
      for (const auto& m : b.meta_puts)
        meta_[{m.shard.value(), m.key}] = m.value;
    }
    return {};
  }

  caf::expected<std::optional<std::string>> get(const twin_id& id) override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = twins_.find(id);
    if (i == twins_.end())
      return std::optional<std::string>{};
    return std::optional<std::string>{i->second};
  }

  caf::expected<std::vector<twin_id>>
  list(index_kind kind, const std::string& key, const twin_id& after, size_t limit) override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<twin_id> out;
    auto& idx = index(kind);
    auto i = idx.upper_bound({key, after});
    for (; i != idx.end() && i->first == key && out.size() < limit; ++i)
      out.push_back(i->second);
    return out;
  }

  caf::expected<std::vector<twin_id>> scan_ids(const twin_id& after, size_t limit) override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<twin_id> out;
    for (auto i = twins_.upper_bound(after); i != twins_.end() && out.size() < limit; ++i)
      out.push_back(i->first);
    return out;
  }

  caf::expected<std::vector<history_sample>> history(const twin_id& id, const std::string& property,
                                                     int64_t from, int64_t to,
                                                     size_t limit) override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<history_sample> out;
    for (auto i = history_.lower_bound({id, property, from});
         i != history_.end() && std::get<0>(i->first) == id && std::get<1>(i->first) == property
         && std::get<2>(i->first) <= to && out.size() < limit;
         ++i)
      out.emplace_back(std::get<2>(i->first), i->second);
    return out;
  }

  caf::expected<std::optional<std::string>> get_meta(shard_id shard,
                                                     const std::string& key) override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = meta_.find({shard.value(), key});
    if (i == meta_.end())
      return std::optional<std::string>{};
    return std::optional<std::string>{i->second};
  }

  uint32_t shard_count() const override { return shard_count_; }

  /// A page is the entries of the shard in the maps' order from the cursor's count on.
  caf::expected<shard_page> read_shard(shard_id shard, const std::string& cursor,
                                       size_t max_bytes) override {
    std::lock_guard<std::mutex> guard{mtx_};
    size_t skip = 0;
    if (!cursor.empty()) {
      auto [end, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), skip);
      if (ec != std::errc{} || end != cursor.data() + cursor.size())
        return make_error(runtime_errc::invalid_argument, "not a cursor of a shard");
    }
    shard_page page;
    auto& b = page.entries;
    size_t n = 0;
    size_t bytes = 0;
    auto mine = [&](const twin_id& id) { return shard_of(id, shard_count_) == shard; };
    // Whether an entry (of the shard if `in_shard`) goes into this page; counts it.
    auto take = [&](bool in_shard, size_t size) {
      if (!in_shard || n++ < skip || !page.next.empty())
        return false;
      if (bytes >= max_bytes) {
        page.next = std::to_string(n - 1);
        return false;
      }
      bytes += size;
      return true;
    };
    for (const auto& [id, record] : twins_)
      if (take(mine(id), id.str().size() + record.size()))
        b.puts.emplace_back(id, record);
    for (auto kind : {index_kind::by_type, index_kind::by_parent})
      for (const auto& [key, id] : index(kind))
        if (take(mine(id), key.size() + id.str().size()))
          b.index_adds.push_back({kind, key, id});
    for (const auto& [k, v] : history_)
      if (take(mine(std::get<0>(k)), std::get<1>(k).size() + v.size()))
        b.history.push_back({std::get<0>(k), std::get<1>(k), std::get<2>(k), v});
    for (const auto& [k, v] : meta_)
      if (take(k.first == shard.value(), k.second.size() + v.size()))
        b.meta_puts.push_back({shard, k.second, v});
    return page;
  }

  caf::error drop_shard(shard_id shard) override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto mine = [&](const twin_id& id) { return shard_of(id, shard_count_) == shard; };
    for (auto i = twins_.begin(); i != twins_.end();)
      i = mine(i->first) ? twins_.erase(i) : std::next(i);
    for (auto kind : {index_kind::by_type, index_kind::by_parent}) {
      auto& idx = index(kind);
      for (auto i = idx.begin(); i != idx.end();)
        i = mine(i->second) ? idx.erase(i) : std::next(i);
    }
    for (auto i = history_.begin(); i != history_.end();)
      i = mine(std::get<0>(i->first)) ? history_.erase(i) : std::next(i);
    for (auto i = meta_.begin(); i != meta_.end();)
      i = i->first.first == shard.value() ? meta_.erase(i) : std::next(i);
    return {};
  }

  uint64_t approximate_count() override {
    std::lock_guard<std::mutex> guard{mtx_};
    return twins_.size();
  }

  store_stats stats() override {
    std::lock_guard<std::mutex> guard{mtx_};
    store_stats s;
    s.parts.push_back({"default", meta_.size(), 0, 0, 0});
    s.parts.push_back({"twins", twins_.size(), 0, 0, 0});
    s.parts.push_back({"by_type", by_type_.size(), 0, 0, 0});
    s.parts.push_back({"by_parent", by_parent_.size(), 0, 0, 0});
    s.parts.push_back({"history", history_.size(), 0, 0, 0});
    return s;
  }

  std::string write_failure() override { return {}; }

  caf::error flush() override { return {}; }  // nothing is buffered

private:
  using index_set = std::set<std::pair<std::string, twin_id>>;

  index_set& index(index_kind k) { return k == index_kind::by_type ? by_type_ : by_parent_; }

  const uint32_t shard_count_;
  std::mutex mtx_;
  std::map<twin_id, std::string> twins_;
  index_set by_type_;
  index_set by_parent_;
  std::map<std::tuple<twin_id, std::string, int64_t>, std::string> history_;
  std::map<std::pair<uint32_t, std::string>, std::string> meta_;
};

} // namespace

std::unique_ptr<state_store> make_memory_store(uint32_t shard_count) {
  return std::make_unique<memory_store>(shard_count);
}

} // namespace twin::runtime
