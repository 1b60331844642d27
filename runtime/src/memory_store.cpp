#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
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
      for (const auto& m : b.positions)
        positions_[{m.shard.value(), m.key}] = m.value;
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

  caf::expected<std::vector<std::string>> index_keys(index_kind kind, size_t limit) override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<std::string> out;
    for (const auto& [key, id] : index(kind))
      if (out.empty() || out.back() != key)
        out.push_back(key);
    if (out.size() > limit)
      return make_error(runtime_errc::invalid_argument,
                        "more than " + std::to_string(limit) + " index keys");
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

  caf::expected<std::vector<history_sample>> latest_history(const twin_id& id,
                                                            const std::string& property,
                                                            int64_t before,
                                                            size_t limit) override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<history_sample> out;
    for (auto i = history_.lower_bound({id, property, before});
         i != history_.begin() && out.size() < limit;) {
      --i;
      if (std::get<0>(i->first) != id || std::get<1>(i->first) != property)
        break;
      out.emplace_back(std::get<2>(i->first), i->second);
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

  caf::expected<std::optional<std::string>> get_meta(shard_id shard,
                                                     const std::string& key) override {
    return find(meta_, shard, key);
  }

  caf::expected<std::vector<std::pair<std::string, std::string>>>
  scan_meta(shard_id shard, const std::string& prefix, size_t limit) override {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto it = meta_.lower_bound({shard.value(), prefix});
         it != meta_.end() && it->first.first == shard.value() && out.size() < limit
         && it->first.second.compare(0, prefix.size(), prefix) == 0;
         ++it)
      out.emplace_back(it->first.second, it->second);
    return out;
  }

  caf::expected<std::optional<std::string>> get_position(shard_id shard,
                                                         const std::string& key) override {
    return find(positions_, shard, key);
  }

  uint32_t shard_count() const override { return shard_count_; }

  /// A page is the entries of the shard in the maps' order from the cursor's count on.
  caf::expected<shard_page> read_shard(shard_id shard, const std::string& cursor,
                                       size_t max_bytes) override {
    // A cursor is the step (twins, the two indexes, history, metadata) and the fields of
    // the first key not read yet, so that entries changed meanwhile shift nothing.
    static constexpr size_t fields[] = {1, 2, 2, 3, 1};
    size_t step = 0;
    std::vector<std::string> at;
    if (!cursor.empty()) {
      step = static_cast<unsigned char>(cursor[0]);
      for (size_t from = 1;;) {
        auto nul = cursor.find('\0', from);
        at.push_back(cursor.substr(from, nul - from));
        if (nul == std::string::npos)
          break;
        from = nul + 1;
      }
    }
    auto bad = [] { return make_error(runtime_errc::invalid_argument, "not a cursor of a shard"); };
    if (step >= std::size(fields) || (!at.empty() && at.size() != fields[step]))
      return bad();
    std::optional<twin_id> at_id;
    int64_t at_ts = 0;
    if (!at.empty() && step != 4) {
      auto id = twin_id::parse(at[step == 0 || step == 3 ? 0 : 1]);
      if (!id)
        return bad();
      at_id = std::move(*id);
    }
    if (step == 3 && std::from_chars(at[2].data(), at[2].data() + at[2].size(), at_ts).ec != std::errc{})
      return bad();
    std::lock_guard<std::mutex> guard{mtx_};
    shard_page page;
    auto& b = page.entries;
    size_t bytes = 0;
    auto mine = [&](const twin_id& id) { return shard_of(id, shard_count_) == shard; };
    // Whether the page is full before an entry whose key has `key_fields`.
    auto full = [&](size_t s, std::initializer_list<std::string> key_fields) {
      if (bytes < max_bytes)
        return false;
      page.next = std::string(1, static_cast<char>(s));
      for (const auto& f : key_fields)
        page.next += (page.next.size() > 1 ? std::string(1, '\0') : "") + f;
      return true;
    };
    for (auto it = at.empty() ? twins_.begin() : twins_.lower_bound(*at_id); step == 0 && it != twins_.end(); ++it) {
      if (!mine(it->first))
        continue;
      if (full(0, {it->first.str()}))
        return page;
      bytes += it->first.str().size() + it->second.size();
      b.puts.emplace_back(it->first, it->second);
    }
    for (size_t s = std::max<size_t>(step, 1); s <= 2; ++s) {
      auto kind = s == 1 ? index_kind::by_type : index_kind::by_parent;
      auto& idx = index(kind);
      auto it = s == step && !at.empty() ? idx.lower_bound({at[0], *at_id}) : idx.begin();
      for (; it != idx.end(); ++it) {
        if (!mine(it->second))
          continue;
        if (full(s, {it->first, it->second.str()}))
          return page;
        bytes += it->first.size() + it->second.str().size();
        b.index_adds.push_back({kind, it->first, it->second});
      }
    }
    if (step <= 3) {
      auto it = step == 3 && !at.empty() ? history_.lower_bound({*at_id, at[1], at_ts}) : history_.begin();
      for (; it != history_.end(); ++it) {
        const auto& [id, property, ts] = it->first;
        if (!mine(id))
          continue;
        if (full(3, {id.str(), property, std::to_string(ts)}))
          return page;
        bytes += property.size() + it->second.size();
        b.history.push_back({id, property, ts, it->second});
      }
    }
    auto it = step == 4 && !at.empty() ? meta_.lower_bound({shard.value(), at[0]})
                                       : meta_.lower_bound({shard.value(), std::string{}});
    for (; it != meta_.end() && it->first.first == shard.value(); ++it) {
      if (full(4, {it->first.second}))
        return page;
      bytes += it->first.second.size() + it->second.size();
      b.meta_puts.push_back({shard, it->first.second, it->second});
    }
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
    for (auto* m : {&meta_, &positions_})
      for (auto i = m->begin(); i != m->end();)
        i = i->first.first == shard.value() ? m->erase(i) : std::next(i);
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
    s.parts.push_back({"positions", positions_.size(), 0, 0, 0});
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
  using meta_map = std::map<std::pair<uint32_t, std::string>, std::string>;

  std::optional<std::string> find(const meta_map& m, shard_id shard, const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = m.find({shard.value(), key});
    if (i == m.end())
      return std::nullopt;
    return i->second;
  }

  meta_map meta_;
  meta_map positions_;
};

} // namespace

std::unique_ptr<state_store> make_memory_store(uint32_t shard_count) {
  return std::make_unique<memory_store>(shard_count);
}

} // namespace twin::runtime
