#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

namespace {

// Column families: twins (id -> record), by_type and by_parent ("<key>\0<id>" -> ""),
// history ("<id>\0<property>\0<time>" -> sample, the time as 8 bytes that sort in time
// order) and the default one for node metadata.
constexpr const char* cf_twins = "twins";
constexpr const char* cf_by_type = "by_type";
constexpr const char* cf_by_parent = "by_parent";
constexpr const char* cf_history = "history";

/// The prefix of every history key of `id`, and of its `property` if given.
std::string history_prefix(const twin_id& id, const std::string* property = nullptr) {
  std::string out = id.str();
  out += '\0';
  if (property != nullptr) {
    out += *property;
    out += '\0';
  }
  return out;
}

std::string history_key(const twin_id& id, const std::string& property, int64_t ts) {
  auto out = history_prefix(id, &property);
  auto u = static_cast<uint64_t>(ts) ^ (uint64_t{1} << 63);  // signed order as unsigned
  for (int shift = 56; shift >= 0; shift -= 8)
    out += static_cast<char>((u >> shift) & 0xff);
  return out;
}

int64_t history_time(rocksdb::Slice key) {
  uint64_t u = 0;
  for (size_t i = key.size() - 8; i < key.size(); ++i)
    u = (u << 8) | static_cast<unsigned char>(key[i]);
  return static_cast<int64_t>(u ^ (uint64_t{1} << 63));
}

/// Drops history samples older than the retention when their files are compacted.
class retention_filter final : public rocksdb::CompactionFilter {
public:
  explicit retention_filter(int64_t cutoff_ms) : cutoff_ms_(cutoff_ms) {}

  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice&, std::string*,
              bool*) const override {
    return key.size() >= 8 && history_time(key) < cutoff_ms_;
  }

  const char* Name() const override { return "twin.history_retention"; }

private:
  int64_t cutoff_ms_;
};

/// A filter per compaction, with the cutoff as of its start.
class retention_filter_factory final : public rocksdb::CompactionFilterFactory {
public:
  explicit retention_filter_factory(std::chrono::hours retention) : retention_(retention) {}

  std::unique_ptr<rocksdb::CompactionFilter>
  CreateCompactionFilter(const rocksdb::CompactionFilter::Context&) override {
    auto cutoff = std::chrono::system_clock::now().time_since_epoch() - retention_;
    return std::make_unique<retention_filter>(
      std::chrono::duration_cast<std::chrono::milliseconds>(cutoff).count());
  }

  const char* Name() const override { return "twin.history_retention_factory"; }

private:
  std::chrono::hours retention_;
};

std::string index_key(const std::string& key, const twin_id& id) {
  std::string out;
  out.reserve(key.size() + 1 + id.str().size());
  out += key;
  out += '\0';
  out += id.str();
  return out;
}

caf::error to_error(const rocksdb::Status& st, const std::string& what) {
  return make_error(runtime_errc::store_failure, what + ": " + st.ToString());
}

/// Keeps the background error RocksDB has not recovered from (a failed flush or
/// compaction stops writes until it recovers, by itself or never).
class background_errors final : public rocksdb::EventListener {
public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    if (error != nullptr && !error->ok())
      set(error->ToString());
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    set(info.new_bg_error.ok() ? std::string{} : info.new_bg_error.ToString());
  }
  std::string current() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return error_;
  }

private:
  void set(std::string e) {
    std::lock_guard<std::mutex> guard{mtx_};
    error_ = std::move(e);
  }

  mutable std::mutex mtx_;
  std::string error_;
};

class rocksdb_store final : public state_store {
public:
  rocksdb_store(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> handles, bool sync,
                std::shared_ptr<rocksdb::Cache> cache, std::shared_ptr<background_errors> errors)
    : db_(db), handles_(std::move(handles)), cache_(std::move(cache)), errors_(std::move(errors)) {
    write_opts_.sync = sync;
  }

  ~rocksdb_store() override {
    for (auto* h : handles_)
      db_->DestroyColumnFamilyHandle(h);
    db_->Close();
    delete db_;
  }

  caf::error write_all(const store_batch* batches, size_t n) override {
    // The records go in in key order (stable: a later operation on the same twin stays
    // later, and only the last one is written). The memtable then finds each insert
    // position from the previous one (see the insert hint in open_rocksdb_store), where
    // random order costs a search from the top of its skip list every time.
    std::lock_guard<std::mutex> guard{write_mtx_};
    ops_.clear();
    for (size_t i = 0; i < n; ++i) {
      for (const auto& id : batches[i].deletes)
        ops_.push_back({&id.str(), nullptr});
      for (const auto& [id, record] : batches[i].puts)
        ops_.push_back({&id.str(), &record});
    }
    std::stable_sort(ops_.begin(), ops_.end(),
                     [](const twin_op& a, const twin_op& b) { return *a.key < *b.key; });
    // The batch keeps its buffer from one write to the next: a group commit carries
    // thousands of records, and a fresh buffer costs a page fault every 4 KiB.
    batch_.Clear();
    for (size_t i = 0; i < ops_.size(); ++i) {
      const auto& op = ops_[i];
      if (i + 1 < ops_.size() && *ops_[i + 1].key == *op.key)
        continue;  // a later operation on the same twin carries its whole state
      if (op.record != nullptr)
        batch_.Put(twins(), *op.key, *op.record);
      else
        batch_.Delete(twins(), *op.key);
    }
    for (size_t i = 0; i < n; ++i) {
      const auto& b = batches[i];
      for (const auto& e : b.index_removes)
        batch_.Delete(index(e.index), index_key(e.key, e.id));
      for (const auto& e : b.index_adds)
        batch_.Put(index(e.index), index_key(e.key, e.id), rocksdb::Slice{});
      for (const auto& id : b.history_deletes) {
        auto from = history_prefix(id);
        auto to = from;
        to.back() = '\1';
        batch_.DeleteRange(history_cf(), from, to);
      }
      for (const auto& h : b.history)
        batch_.Put(history_cf(), history_key(h.id, h.property, h.ts_ms), h.bytes);
      for (const auto& [k, v] : b.meta_puts)
        batch_.Put(handles_[0], k, v);
    }
    auto st = db_->Write(write_opts_, &batch_);
    if (batch_.GetDataSize() > max_kept_batch_bytes)
      batch_ = rocksdb::WriteBatch{};  // after a burst: give the memory back
    if (!st.ok())
      return to_error(st, "write failed");
    return {};
  }

  caf::expected<std::optional<std::string>> get(const twin_id& id) override {
    return get_from(twins(), id.str());
  }

  caf::expected<std::vector<twin_id>>
  list(index_kind kind, const std::string& key, const twin_id& after, size_t limit) override {
    std::string prefix = key;
    prefix += '\0';
    std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, index(kind))};
    std::vector<twin_id> out;
    auto start = after.empty() ? prefix : index_key(key, after);
    for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
      auto k = it->key();
      if (!k.starts_with(prefix))
        break;
      std::string id{k.data() + prefix.size(), k.size() - prefix.size()};
      if (!after.empty() && id == after.str())
        continue;
      out.push_back(twin_id::trusted(std::move(id)));
    }
    if (!it->status().ok())
      return to_error(it->status(), "index scan failed");
    return out;
  }

  caf::expected<std::vector<twin_id>> scan_ids(const twin_id& after, size_t limit) override {
    std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, twins())};
    std::vector<twin_id> out;
    if (after.empty())
      it->SeekToFirst();
    else
      it->Seek(after.str());
    for (; it->Valid() && out.size() < limit; it->Next()) {
      auto k = it->key().ToString();
      if (!after.empty() && k == after.str())
        continue;
      out.push_back(twin_id::trusted(std::move(k)));
    }
    if (!it->status().ok())
      return to_error(it->status(), "scan failed");
    return out;
  }

  caf::expected<std::vector<history_sample>> history(const twin_id& id, const std::string& property,
                                                     int64_t from, int64_t to,
                                                     size_t limit) override {
    auto prefix = history_prefix(id, &property);
    auto end = prefix;
    end.back() = '\1';  // the first key after the series
    rocksdb::Slice upper{end};
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, history_cf())};
    std::vector<history_sample> out;
    for (it->Seek(history_key(id, property, from)); it->Valid() && out.size() < limit;
         it->Next()) {
      auto k = it->key();
      if (!k.starts_with(prefix) || k.size() != prefix.size() + 8)
        break;
      auto ts = history_time(k);
      if (ts > to)
        break;
      out.emplace_back(ts, it->value().ToString());
    }
    if (!it->status().ok())
      return to_error(it->status(), "history read failed");
    return out;
  }

  caf::expected<std::optional<std::string>> get_meta(const std::string& key) override {
    return get_from(handles_[0], key);
  }

  uint64_t approximate_count() override {
    uint64_t n = 0;
    db_->GetIntProperty(twins(), "rocksdb.estimate-num-keys", &n);
    return n;
  }

  store_stats stats() override {
    store_stats s;
    auto number = [this](rocksdb::ColumnFamilyHandle* cf, const char* property) {
      uint64_t n = 0;
      db_->GetIntProperty(cf, property, &n);
      return n;
    };
    auto db_number = [&](const char* property) {
      return number(db_->DefaultColumnFamily(), property);
    };
    for (auto* cf : handles_) {
      s.parts.push_back({cf->GetName(), number(cf, "rocksdb.estimate-num-keys"),
                         number(cf, "rocksdb.cur-size-all-mem-tables"),
                         number(cf, "rocksdb.total-sst-files-size"),
                         number(cf, "rocksdb.estimate-pending-compaction-bytes")});
      // Stalls are counted per column family, in the map of its statistics.
      std::map<std::string, std::string> cf_stats;
      if (db_->GetMapProperty(cf, "rocksdb.cfstats", &cf_stats)) {
        auto count = [&cf_stats](const char* key) {
          return std::strtoull(cf_stats[key].c_str(), nullptr, 10);
        };
        s.stalls_slowdown += count("io_stalls.total_slowdown");
        s.stalls_stop += count("io_stalls.total_stop");
      }
    }
    s.running_compactions = db_number("rocksdb.num-running-compactions");
    s.running_flushes = db_number("rocksdb.num-running-flushes");
    s.block_cache_bytes = cache_->GetUsage();
    s.delayed_write_rate = db_number("rocksdb.actual-delayed-write-rate");
    s.write_stopped = db_number("rocksdb.is-write-stopped") != 0;
    s.background_errors = db_number("rocksdb.background-errors");
    return s;
  }

  std::string write_failure() override { return errors_->current(); }

  caf::error flush() override {
    rocksdb::FlushOptions o;
    o.wait = true;
    auto st = db_->Flush(o, handles_);
    if (!st.ok())
      return make_error(runtime_errc::store_failure, "flush failed: " + st.ToString());
    return {};
  }

private:
  rocksdb::ColumnFamilyHandle* twins() const { return handles_[1]; }
  rocksdb::ColumnFamilyHandle* history_cf() const { return handles_[4]; }
  rocksdb::ColumnFamilyHandle* index(index_kind k) const {
    return k == index_kind::by_type ? handles_[2] : handles_[3];
  }

  caf::expected<std::optional<std::string>> get_from(rocksdb::ColumnFamilyHandle* cf,
                                                     const std::string& key) {
    std::string out;
    auto st = db_->Get(rocksdb::ReadOptions{}, cf, key, &out);
    if (st.IsNotFound())
      return std::optional<std::string>{};
    if (!st.ok())
      return to_error(st, "read failed");
    return std::optional<std::string>{std::move(out)};
  }

  /// A twin record to write (or delete: no record) in a group commit.
  struct twin_op {
    const std::string* key;
    const std::string* record;
  };

  static constexpr size_t max_kept_batch_bytes = 32u << 20;

  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::shared_ptr<rocksdb::Cache> cache_;  ///< the block cache of every column family
  std::shared_ptr<background_errors> errors_;
  rocksdb::WriteOptions write_opts_;
  std::mutex write_mtx_;  ///< guards the two below, which every write reuses
  std::vector<twin_op> ops_;
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
  rocksdb::Options db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.IncreaseParallelism(2);
  db_opts.max_background_jobs = 2;
  // LZ4 at every level: activations read records at random, and ZSTD's slower
  // decompression showed in activation latency.
  db_opts.compression = rocksdb::kLZ4Compression;
  db_opts.write_buffer_size = o.write_buffer_bytes;
  db_opts.enable_pipelined_write = true;
  auto errors = std::make_shared<background_errors>();
  db_opts.listeners.push_back(errors);

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(o.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;

  rocksdb::ColumnFamilyOptions twins_opts{db_opts};
  twins_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  twins_opts.OptimizeForPointLookup(o.block_cache_bytes >> 20);
  // OptimizeForPointLookup replaces the table factory: keep the shared cache and filter.
  twins_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Inserts continue from where the previous one went in (one hint for all keys): with
  // the records of a group commit in key order, each insert is a short step along the
  // memtable's skip list instead of a search from its top. RocksDB uses the hint only
  // when one thread inserts a write group, as the host's single store writer does.
  twins_opts.memtable_insert_with_hint_prefix_extractor.reset(
    rocksdb::NewCappedPrefixTransform(0));

  rocksdb::ColumnFamilyOptions index_opts{db_opts};
  index_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  index_opts.write_buffer_size = o.write_buffer_bytes / 4;

  rocksdb::ColumnFamilyOptions history_opts{index_opts};
  history_opts.compaction_filter_factory =
    std::make_shared<retention_filter_factory>(o.history_retention);
  // The retention filter runs when files are compacted: compact each at least this often.
  history_opts.periodic_compaction_seconds = static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::seconds>(o.history_retention).count());

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs{
    {rocksdb::kDefaultColumnFamilyName, index_opts},
    {cf_twins, twins_opts},
    {cf_by_type, index_opts},
    {cf_by_parent, index_opts},
    {cf_history, history_opts},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  auto st = rocksdb::DB::Open(rocksdb::DBOptions{db_opts}, o.path, cfs, &handles, &db);
  if (!st.ok()) {
    auto msg = st.ToString();
    if (st.IsIOError() && msg.find("lock") != std::string::npos)
      return make_error(runtime_errc::store_locked,
                        "data directory " + o.path
                          + " is in use by another process (its LOCK file is held): " + msg);
    if (st.IsCorruption())
      return make_error(runtime_errc::store_corrupt,
                        "data directory " + o.path + " is corrupt: " + msg);
    if (st.IsInvalidArgument())
      return make_error(runtime_errc::store_corrupt,
                        "data directory " + o.path + " is not a twin database: " + msg);
    return make_error(runtime_errc::store_failure,
                      "cannot open data directory " + o.path + ": " + msg);
  }
  return std::unique_ptr<state_store>{
    new rocksdb_store(db, std::move(handles), o.sync, table.block_cache, std::move(errors))};
}

} // namespace twin::runtime
