#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <shared_mutex>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "rocksdb_layout.hpp"
#include "rocksdb_setup.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

namespace {

caf::error to_error(const rocksdb::Status& st, const std::string& what) {
  // A full disk, or the store's limit, met by RocksDB itself: refused for now, not failed.
  if (st.IsNoSpace() || (st.IsIOError() && st.subcode() == rocksdb::Status::kSpaceLimit))
    return make_error(runtime_errc::insufficient_storage, what + ": " + st.ToString());
  return make_error(runtime_errc::store_failure, what + ": " + st.ToString());
}

/// Opens the database and makes its keys those of `shard_count` shards (see
/// `rocks::prepare_layout`); `shards` gets the store's count.
caf::expected<rocks::open_db> open_in_shards(const std::string& path, const rocks::db_setup& setup,
                                             bool read_only, uint32_t shard_count,
                                             uint32_t& shards) {
  auto db = rocks::open(path, setup, read_only);
  if (!db)
    return db.error();
  auto n = rocks::prepare_layout(*db, shard_count, path);
  if (!n) {
    db->close();
    return n.error();
  }
  shards = *n;
  return db;
}

class rocksdb_store final : public state_store {
public:
  rocksdb_store(rocks::open_db db, rocks::db_setup setup, const rocksdb_options& o,
                uint32_t shards)
    : db_(std::move(db)),
      setup_(std::move(setup)),
      path_(o.path),
      shards_(shards),
      min_free_(o.min_free_bytes),
      max_disk_(o.max_disk_bytes),
      log_block_(rocks::log_block_bytes(o.write_buffer_bytes)) {
    write_opts_.sync = o.sync;
  }

  /// Marks a store opened for reading only, and why: it opens for writing once it can.
  void open_read_only(std::string reason) {
    read_only_reason_ = std::move(reason);
    reopen_pending_ = true;
  }

  ~rocksdb_store() override { db_.close(); }

  caf::error write_all(const store_batch* batches, size_t n) override {
    // The records go in in key order (stable: a later operation on the same twin stays
    // later, and only the last one is written). The memtable then finds each insert
    // position from the previous one (see the insert hint in open_rocksdb_store), where
    // random order costs a search from the top of its skip list every time.
    try_reopen();
    std::lock_guard<std::mutex> guard{write_mtx_};
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    if (db_.read_only)
      return make_error(runtime_errc::insufficient_storage, read_only_reason_);
    ops_.clear();
    for (size_t i = 0; i < n; ++i) {
      for (const auto& id : batches[i].deletes)
        ops_.push_back({shard(id), &id.str(), nullptr});
      for (const auto& [id, record] : batches[i].puts)
        ops_.push_back({shard(id), &id.str(), &record});
    }
    std::stable_sort(ops_.begin(), ops_.end(), [](const twin_op& a, const twin_op& b) {
      return a.shard != b.shard ? a.shard < b.shard : *a.id < *b.id;
    });
    // The batch keeps its buffer from one write to the next: a group commit carries
    // thousands of records, and a fresh buffer costs a page fault every 4 KiB.
    batch_.Clear();
    for (size_t i = 0; i < ops_.size(); ++i) {
      const auto& op = ops_[i];
      if (i + 1 < ops_.size() && *ops_[i + 1].id == *op.id)
        continue;  // a later operation on the same twin carries its whole state
      key_.clear();
      rocks::append_shard(key_, op.shard);
      key_ += *op.id;
      if (op.record != nullptr)
        batch_.Put(twins(), key_, *op.record);
      else
        batch_.Delete(twins(), key_);
    }
    for (size_t i = 0; i < n; ++i) {
      const auto& b = batches[i];
      for (const auto& e : b.index_removes)
        batch_.Delete(index(e.index), rocks::index_key(shard(e.id), e.key, e.id));
      for (const auto& e : b.index_adds)
        batch_.Put(index(e.index), rocks::index_key(shard(e.id), e.key, e.id), rocksdb::Slice{});
      for (const auto& id : b.history_deletes) {
        auto from = rocks::history_prefix(shard(id), id);
        auto to = from;
        to.back() = '\1';
        batch_.DeleteRange(history_cf(), from, to);
      }
      for (const auto& h : b.history)
        batch_.Put(history_cf(), rocks::history_key(shard(h.id), h.id, h.property, h.ts_ms),
                   h.bytes);
      for (const auto& m : b.meta_puts)
        batch_.Put(db_.handles[rocks::meta_cf], rocks::meta_key(m.shard, m.key), m.value);
      for (const auto& m : b.positions)
        batch_.Put(db_.handles[rocks::positions_cf], rocks::meta_key(m.shard, m.key), m.value);
    }
    // Refused before RocksDB could meet a full disk: the batch goes to the log and then
    // to a file, and what the memtables hold must still fit when they are flushed.
    if (auto why = space_for(2 * batch_.GetDataSize()); !why.empty()) {
      if (!over_limit_)
        flush_if_it_frees_space(2 * batch_.GetDataSize());
      return make_error(runtime_errc::insufficient_storage, std::move(why));
    }
    auto st = db_.db->Write(write_opts_, &batch_);
    if (batch_.GetDataSize() > max_kept_batch_bytes)
      batch_ = rocksdb::WriteBatch{};  // after a burst: give the memory back
    if (!st.ok())
      return to_error(st, "write failed");
    return {};
  }

  caf::expected<std::optional<std::string>> get(const twin_id& id) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    return get_from(twins(), rocks::twin_key(shard(id), id));
  }

  caf::expected<std::vector<twin_id>>
  list(index_kind kind, const std::string& key, const twin_id& after, size_t limit) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    return merged_ids(index(kind), key + '\0', after, limit);
  }

  caf::expected<std::vector<std::string>> index_keys(index_kind kind, size_t limit) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    // Each shard's keys of one index key are one range: one seek past each range.
    std::set<std::string> keys;
    std::unique_ptr<rocksdb::Iterator> it{db_.db->NewIterator(rocksdb::ReadOptions{}, index(kind))};
    for (it->SeekToFirst(); it->Valid();) {
      auto k = it->key().ToStringView();
      auto nul = k.find('\0', rocks::shard_prefix_size);
      if (nul == std::string_view::npos)
        return make_error(runtime_errc::store_corrupt, "an index key without its id");
      keys.emplace(k.substr(rocks::shard_prefix_size, nul - rocks::shard_prefix_size));
      if (keys.size() > limit)
        return make_error(runtime_errc::invalid_argument,
                          "more than " + std::to_string(limit) + " index keys");
      std::string next{k.substr(0, nul)};
      next += '\1';
      it->Seek(next);
    }
    if (!it->status().ok())
      return to_error(it->status(), "index read failed");
    return std::vector<std::string>{keys.begin(), keys.end()};
  }

  caf::expected<std::vector<twin_id>> scan_ids(const twin_id& after, size_t limit) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    return merged_ids(twins(), {}, after, limit);
  }

  caf::expected<std::vector<history_sample>> history(const twin_id& id, const std::string& property,
                                                     int64_t from, int64_t to,
                                                     size_t limit) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    auto prefix = rocks::history_prefix(shard(id), id, &property);
    auto end = prefix;
    end.back() = '\1';  // the first key after the series
    rocksdb::Slice upper{end};
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it{db_.db->NewIterator(ro, history_cf())};
    std::vector<history_sample> out;
    for (it->Seek(rocks::history_key(shard(id), id, property, from));
         it->Valid() && out.size() < limit;
         it->Next()) {
      auto k = it->key();
      if (!k.starts_with(prefix) || k.size() != prefix.size() + 8)
        break;
      auto ts = rocks::history_time(k);
      if (ts > to)
        break;
      out.emplace_back(ts, it->value().ToString());
    }
    if (!it->status().ok())
      return to_error(it->status(), "history read failed");
    return out;
  }

  caf::expected<std::vector<history_sample>> latest_history(const twin_id& id,
                                                            const std::string& property,
                                                            int64_t before,
                                                            size_t limit) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    auto prefix = rocks::history_prefix(shard(id), id, &property);
    rocksdb::Slice lower{prefix};
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lower;
    std::unique_ptr<rocksdb::Iterator> it{db_.db->NewIterator(ro, history_cf())};
    std::vector<history_sample> out;
    auto last = rocks::history_key(shard(id), id, property, before);
    for (it->SeekForPrev(last); it->Valid() && out.size() < limit; it->Prev()) {
      auto k = it->key();
      if (!k.starts_with(prefix) || k.size() != prefix.size() + 8)
        break;
      auto ts = rocks::history_time(k);
      if (ts < before)
        out.emplace_back(ts, it->value().ToString());
    }
    if (!it->status().ok())
      return to_error(it->status(), "history read failed");
    std::reverse(out.begin(), out.end());
    return out;
  }

  caf::expected<std::optional<std::string>> get_meta(shard_id shard,
                                                     const std::string& key) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    return get_from(db_.handles[rocks::meta_cf], rocks::meta_key(shard, key));
  }

  caf::expected<std::vector<std::pair<std::string, std::string>>>
  scan_meta(shard_id shard, const std::string& prefix, size_t limit) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    auto start = rocks::meta_key(shard, prefix);
    auto skip = start.size() - prefix.size();  // the shard's part of each key
    std::unique_ptr<rocksdb::Iterator> it{
      db_.db->NewIterator(rocksdb::ReadOptions{}, db_.handles[rocks::meta_cf])};
    std::vector<std::pair<std::string, std::string>> out;
    for (it->Seek(start); it->Valid() && out.size() < limit && it->key().starts_with(start);
         it->Next())
      out.emplace_back(it->key().ToString().substr(skip), it->value().ToString());
    if (!it->status().ok())
      return to_error(it->status(), "metadata read failed");
    return out;
  }

  caf::expected<std::optional<std::string>> get_position(shard_id shard,
                                                         const std::string& key) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    if (db_.handles[rocks::positions_cf] == nullptr)  // opened for reading, without them
      return std::optional<std::string>{};
    return get_from(db_.handles[rocks::positions_cf], rocks::meta_key(shard, key));
  }

  uint32_t shard_count() const override { return shards_; }

  caf::expected<shard_page> read_shard(shard_id shard, const std::string& cursor,
                                       size_t max_bytes) override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    return rocks::read_shard(db_, shard, cursor, max_bytes);
  }

  caf::error drop_shard(shard_id shard) override {
    try_reopen();
    std::lock_guard<std::mutex> guard{write_mtx_};
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    if (db_.read_only)
      return make_error(runtime_errc::insufficient_storage, read_only_reason_);
    return rocks::drop_shard(db_, shard, write_opts_);
  }

  uint64_t approximate_count() override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    uint64_t n = 0;
    db_.db->GetIntProperty(twins(), "rocksdb.estimate-num-keys", &n);
    return n;
  }

  store_stats stats() override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    store_stats s;
    auto number = [this](rocksdb::ColumnFamilyHandle* cf, const char* property) {
      uint64_t n = 0;
      db_.db->GetIntProperty(cf, property, &n);
      return n;
    };
    auto db_number = [&](const char* property) {
      return number(db_.db->DefaultColumnFamily(), property);
    };
    for (auto* cf : db_.handles) {
      if (cf == nullptr)
        continue;  // opened for reading, without it
      s.parts.push_back({cf->GetName(), number(cf, "rocksdb.estimate-num-keys"),
                         number(cf, "rocksdb.cur-size-all-mem-tables"),
                         number(cf, "rocksdb.total-sst-files-size"),
                         number(cf, "rocksdb.estimate-pending-compaction-bytes")});
      // Stalls are counted per column family, in the map of its statistics.
      std::map<std::string, std::string> cf_stats;
      if (db_.db->GetMapProperty(cf, "rocksdb.cfstats", &cf_stats)) {
        auto count = [&cf_stats](const char* key) {
          return std::strtoull(cf_stats[key].c_str(), nullptr, 10);
        };
        s.stalls_slowdown += count("io_stalls.total_slowdown");
        s.stalls_stop += count("io_stalls.total_stop");
      }
    }
    s.running_compactions = db_number("rocksdb.num-running-compactions");
    s.running_flushes = db_number("rocksdb.num-running-flushes");
    s.block_cache_bytes = setup_.cache->GetUsage();
    s.delayed_write_rate = db_number("rocksdb.actual-delayed-write-rate");
    s.write_stopped = db_number("rocksdb.is-write-stopped") != 0;
    s.background_errors = db_number("rocksdb.background-errors");
    if (auto free = rocks::free_bytes(path_)) {  // unknown: both 0
      s.disk_free_bytes = *free;
      s.disk_reserve_bytes = min_free_;
    }
    return s;
  }

  std::string write_failure() override {
    try_reopen();
    // Not behind a write that RocksDB stalls: the space is then checked by the next one.
    std::unique_lock<std::mutex> writing{write_mtx_, std::try_to_lock};
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    if (db_.read_only)
      return read_only_reason_;
    if (writing.owns_lock())
      if (auto why = space_for(0); !why.empty())
        return why;
    return setup_.errors->current();
  }

  caf::error flush() override {
    std::shared_lock<std::shared_mutex> open{db_mtx_};
    if (db_.read_only)
      return {};  // nothing written since it opened
    rocksdb::FlushOptions o;
    o.wait = true;
    auto st = db_.db->Flush(o, db_.handles);
    if (!st.ok())
      return to_error(st, "flush failed");
    return {};
  }

private:
  shard_id shard(const twin_id& id) const { return shard_of(id, shards_); }

  /// The ids of the keys "<shard><tail><id>" of `cf`, ascending by id over all shards,
  /// strictly after `after`, at most `limit`. A merge: one seek per shard, and one more
  /// per id taken. With `db_mtx_`.
  caf::expected<std::vector<twin_id>> merged_ids(rocksdb::ColumnFamilyHandle* cf,
                                                 const std::string& tail, const twin_id& after,
                                                 size_t limit) {
    std::unique_ptr<rocksdb::Iterator> it{db_.db->NewIterator(rocksdb::ReadOptions{}, cf)};
    std::string seek;
    // The first id of `s` after `from` (strictly: ids hold no '\0', so the smallest
    // string after an id is the id and a '\0'), or nothing.
    auto first_after = [&](uint32_t s, const std::string& from) -> std::optional<std::string> {
      seek.clear();
      rocks::append_shard(seek, shard_id{s});
      seek += tail;
      auto prefix_size = seek.size();
      if (!from.empty()) {
        seek += from;
        seek += '\0';
      }
      it->Seek(seek);
      if (!it->Valid() || it->key().size() <= prefix_size
          || std::memcmp(it->key().data(), seek.data(), prefix_size) != 0)
        return std::nullopt;
      return std::string{it->key().data() + prefix_size, it->key().size() - prefix_size};
    };
    using head = std::pair<std::string, uint32_t>;  // an id and its shard
    std::priority_queue<head, std::vector<head>, std::greater<>> heads;
    for (uint32_t s = 0; s < shards_ && limit > 0; ++s)
      if (auto id = first_after(s, after.str()))
        heads.emplace(std::move(*id), s);
    std::vector<twin_id> out;
    while (!heads.empty() && out.size() < limit) {
      auto [id, s] = heads.top();
      heads.pop();
      if (auto next = first_after(s, id))
        heads.emplace(std::move(*next), s);
      out.push_back(twin_id::trusted(std::move(id)));
    }
    if (!it->status().ok())
      return to_error(it->status(), "index scan failed");
    return out;
  }

  /// Why `more` bytes cannot be written now while the reserve, the memtables' flush and
  /// the new log it starts still fit on the disk; "" if they can (or the free space is
  /// unknown). With `write_mtx_` and `db_mtx_`.
  std::string space_for(uint64_t more) {
    uint64_t memtables = 0;
    db_.db->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &memtables);
    // Writes stop at three quarters of the limit: compactions need room for their output
    // before they delete their input, and RocksDB skips those that would pass the limit.
    auto files = setup_.files->GetTotalSize();
    over_limit_ = max_disk_ > 0 && files + memtables + more >= max_disk_ / 4 * 3;
    if (over_limit_)
      return "the store's files take " + std::to_string(files >> 20) + " MiB and its memtables "
             + std::to_string(memtables >> 20) + " MiB, at three quarters of its limit of "
             + std::to_string(max_disk_ >> 20) + " MiB (the rest is room for compactions); "
             + "writes resume once compactions or the history's retention free space";
    auto needed = more + memtables + log_block_;
    // The free space measured a moment ago, less what was written since, spares a system
    // call on every write while the disk is far from the reserve. RocksDB takes space this
    // does not see between measurements: a flush's file (once its memtable stops
    // counting), a new log, a compaction's output. Near the reserve every write measures,
    // and a write is refused only on a fresh measurement.
    auto now = std::chrono::steady_clock::now();
    bool stale = now - free_at_ >= std::chrono::milliseconds{50};
    uint64_t unseen = 3 * log_block_;
    if (!stale && free_ && *free_ >= min_free_ + needed + written_since_ + unseen) {
      written_since_ += more;
      return {};
    }
    free_ = rocks::free_bytes(path_);
    free_at_ = now;
    written_since_ = more;
    if (!free_)
      return {};
    return rocks::short_of_space(path_, *free_, needed, min_free_);
  }

  /// A store opened for reading only (its disk was full) opens for writing again once
  /// the disk has room for the reserve and for the logs that opening flushes. Tried at
  /// most every two seconds; without `db_mtx_`.
  void try_reopen() {
    if (!reopen_pending_.load())
      return;
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> guard{write_mtx_};
    if (now - last_reopen_ < std::chrono::seconds{2})
      return;
    last_reopen_ = now;
    auto free = rocks::free_bytes(path_);
    auto needed = rocks::log_bytes(path_) + log_block_;
    if (!free || !rocks::short_of_space(path_, *free, needed, min_free_).empty())
      return;
    // A read-only database holds no lock: the one for writing opens beside it, and the
    // read-only one goes only once it did.
    uint32_t shards = 0;
    auto rw = open_in_shards(path_, setup_, false, shards_, shards);
    if (!rw) {
      std::unique_lock<std::shared_mutex> open{db_mtx_};
      read_only_reason_ = "the store is open for reading only: " + error_message(rw.error());
      return;
    }
    std::unique_lock<std::shared_mutex> open{db_mtx_};
    db_.close();
    db_ = std::move(*rw);
    reopen_pending_ = false;
  }

  /// Starts a flush (without waiting for it) when the disk is short only because of what
  /// the memtables hold, and has room for the flush (their files and a new log): their
  /// logs then go, and the space with them. At most once a second.
  void flush_if_it_frees_space(uint64_t more) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_space_flush_ < std::chrono::seconds{1})
      return;
    auto free = rocks::free_bytes(path_);
    uint64_t memtables = 0;
    db_.db->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &memtables);
    if (!free || *free < memtables + log_block_
        || !rocks::short_of_space(path_, *free, more + log_block_, min_free_).empty())
      return;
    last_space_flush_ = now;
    rocksdb::FlushOptions o;
    o.wait = false;
    o.allow_write_stall = true;
    db_.db->Flush(o, db_.handles);
  }

  rocksdb::ColumnFamilyHandle* twins() const { return db_.handles[rocks::twins_cf]; }
  rocksdb::ColumnFamilyHandle* history_cf() const { return db_.handles[rocks::history_cf]; }
  rocksdb::ColumnFamilyHandle* index(index_kind k) const {
    return db_.handles[k == index_kind::by_type ? rocks::by_type_cf : rocks::by_parent_cf];
  }

  caf::expected<std::optional<std::string>> get_from(rocksdb::ColumnFamilyHandle* cf,
                                                     const std::string& key) {
    std::string out;
    auto st = db_.db->Get(rocksdb::ReadOptions{}, cf, key, &out);
    if (st.IsNotFound())
      return std::optional<std::string>{};
    if (!st.ok())
      return to_error(st, "read failed");
    return std::optional<std::string>{std::move(out)};
  }

  /// A twin record to write (or delete: no record) in a group commit.
  struct twin_op {
    shard_id shard;
    const std::string* id;
    const std::string* record;
  };

  static constexpr size_t max_kept_batch_bytes = 32u << 20;

  /// Taken shared by every read and write, exclusively to open the database again.
  std::shared_mutex db_mtx_;
  rocks::open_db db_;
  rocks::db_setup setup_;
  std::string path_;
  uint32_t shards_;
  uint64_t min_free_;
  uint64_t max_disk_;      ///< 0: no limit
  bool over_limit_ = false;  ///< the last `space_for` met the limit (with write_mtx_)
  uint64_t log_block_;     ///< what a new log, or a log's next block, takes at once
  std::atomic<bool> reopen_pending_{false};  ///< open for reading only, to open for writing
  std::string read_only_reason_;              ///< why (written with db_mtx_ held alone)
  std::chrono::steady_clock::time_point last_reopen_{};
  rocksdb::WriteOptions write_opts_;
  std::mutex write_mtx_;  ///< guards the seven below, which every write reuses
  std::chrono::steady_clock::time_point last_space_flush_{};
  std::optional<uint64_t> free_;  ///< the disk's free bytes, measured at `free_at_`
  std::chrono::steady_clock::time_point free_at_{};
  uint64_t written_since_ = 0;    ///< bytes the writes since may have taken of it
  std::vector<twin_op> ops_;
  std::string key_;
  rocksdb::WriteBatch batch_;
};

} // namespace

caf::expected<std::unique_ptr<state_store>> open_rocksdb_store(const rocksdb_options& o) {
  if (o.path.empty())
    return make_error(runtime_errc::store_failure, "no data directory given");
  std::error_code ec;
  std::filesystem::create_directories(o.path, ec);
  if (ec)
    return make_error(runtime_errc::store_failure,
                      "cannot create data directory " + o.path + ": " + ec.message());
  auto setup = rocks::make_setup(o);
  // Opening for writing may flush the logs to files and starts a new log: on a disk
  // without room for that, open for reading only (which writes nothing), and for writing
  // once there is room.
  std::string why;
  if (auto free = rocks::free_bytes(o.path))
    why = rocks::short_of_space(
      o.path, *free, rocks::log_bytes(o.path) + rocks::log_block_bytes(o.write_buffer_bytes),
      o.min_free_bytes);
  if (why.empty()) {
    uint32_t shards = 0;
    auto db = open_in_shards(o.path, setup, false, o.shard_count, shards);
    if (db)
      return std::unique_ptr<state_store>{
        new rocksdb_store(std::move(*db), std::move(setup), o, shards)};
    // Only a disk that filled up meanwhile makes it open for reading.
    why = error_message(db.error());
    if (error_code(db.error()) != runtime_errc::store_failure
        || why.find("No space left") == std::string::npos)
      return db.error();
  }
  {
    uint32_t shards = 0;
    auto ro = open_in_shards(o.path, setup, true, o.shard_count, shards);
    if (!ro)
      return make_error(runtime_errc::store_failure, "cannot open data directory " + o.path
                                                       + ": " + why + "; "
                                                       + error_message(ro.error()));
    auto s = std::make_unique<rocksdb_store>(std::move(*ro), std::move(setup), o, shards);
    s->open_read_only("the store is open for reading only: " + why);
    return std::unique_ptr<state_store>{std::move(s)};
  }
}

} // namespace twin::runtime
