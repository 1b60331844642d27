#include "rocksdb_setup.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/table.h>

#include "rocksdb_layout.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::runtime::rocks {

namespace {

constexpr const char* cf_twins = "twins";
constexpr const char* cf_by_type = "by_type";
constexpr const char* cf_by_parent = "by_parent";
constexpr const char* cf_history = "history";
constexpr const char* cf_positions = "positions";

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


std::string mib(uint64_t bytes) {
  return std::to_string(bytes >> 20) + " MiB";
}

} // namespace

void background_errors::OnBackgroundError(rocksdb::BackgroundErrorReason,
                                          rocksdb::Status* error) {
  if (error != nullptr && !error->ok())
    set(error->ToString());
}

void background_errors::OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) {
  set(info.new_bg_error.ok() ? std::string{} : info.new_bg_error.ToString());
}

std::string background_errors::current() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return error_;
}

void background_errors::set(std::string e) {
  std::lock_guard<std::mutex> guard{mtx_};
  error_ = std::move(e);
}

db_setup make_setup(const rocksdb_options& o) {
  db_setup s;
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
  s.errors = std::make_shared<background_errors>();
  db_opts.listeners.push_back(s.errors);
  // With a file manager, RocksDB recovers by itself from a flush or compaction that met a
  // full disk, once space returns; it also holds the files to the store's limit.
  s.files.reset(rocksdb::NewSstFileManager(rocksdb::Env::Default()));
  if (o.max_disk_bytes > 0)
    s.files->SetMaxAllowedSpaceUsage(o.max_disk_bytes);
  db_opts.sst_file_manager = s.files;

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

  // Positions: a few keys written over and over, with nearly every write, and seldom read.
  // A skip list's insert of another version of a key costs as much as a record's (a search
  // through all the versions the memtable holds); a vector's is an append, and the vector
  // is sorted when it is flushed or read. A vector takes no concurrent inserts: writers'
  // memtable inserts take turns (as the host's single store writer's do anyway).
  rocksdb::ColumnFamilyOptions positions_opts{index_opts};
  positions_opts.memtable_factory.reset(new rocksdb::VectorRepFactory);
  db_opts.allow_concurrent_memtable_write = false;

  s.cfs = {
    {rocksdb::kDefaultColumnFamilyName, index_opts},
    {cf_twins, twins_opts},
    {cf_by_type, index_opts},
    {cf_by_parent, index_opts},
    {cf_history, history_opts},
    {cf_positions, positions_opts},
  };
  s.db = rocksdb::DBOptions{db_opts};
  s.cache = table.block_cache;
  return s;
}

void open_db::close() {
  if (db == nullptr)
    return;
  for (auto* h : handles)
    if (h != nullptr)
      db->DestroyColumnFamilyHandle(h);
  handles.clear();
  db->Close();
  delete db;
  db = nullptr;
}

caf::expected<open_db> open(const std::string& path, const db_setup& setup, bool read_only) {
  open_db out;
  out.read_only = read_only;
  // Opened for writing, a database gets the column families it lacks (it was written
  // before they existed); for reading, it cannot, and those have no handle.
  auto cfs = setup.cfs;
  std::vector<bool> present(cfs.size(), true);
  std::vector<std::string> names;
  if (read_only && rocksdb::DB::ListColumnFamilies(setup.db, path, &names).ok()) {
    cfs.clear();
    for (size_t i = 0; i < setup.cfs.size(); ++i) {
      present[i] = std::find(names.begin(), names.end(), setup.cfs[i].name) != names.end();
      if (present[i])
        cfs.push_back(setup.cfs[i]);
    }
  }
  auto st = read_only ? rocksdb::DB::OpenForReadOnly(setup.db, path, cfs, &out.handles, &out.db)
                      : rocksdb::DB::Open(setup.db, path, cfs, &out.handles, &out.db);
  if (st.ok()) {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    for (size_t i = 0, k = 0; i < present.size(); ++i)
      handles.push_back(present[i] ? out.handles[k++] : nullptr);
    out.handles = std::move(handles);
    return out;
  }
  auto msg = st.ToString();
  if (st.IsIOError() && msg.find("lock") != std::string::npos)
    return make_error(runtime_errc::store_locked,
                      "data directory " + path
                        + " is in use by another process (its LOCK file is held): " + msg);
  if (st.IsCorruption())
    return make_error(runtime_errc::store_corrupt, "data directory " + path + " is corrupt: " + msg);
  if (st.IsInvalidArgument())
    return make_error(runtime_errc::store_corrupt,
                      "data directory " + path + " is not a twin database: " + msg);
  return make_error(runtime_errc::store_failure, "cannot open data directory " + path + ": " + msg);
}

std::optional<uint64_t> free_bytes(const std::string& path) {
  struct statvfs s {};
  if (::statvfs(path.c_str(), &s) != 0)
    return std::nullopt;
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

uint64_t log_bytes(const std::string& path) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator{path, ec})
    if (e.path().extension() == ".log" && e.is_regular_file(ec))
      n += e.file_size(ec);
  return n;
}

std::string short_of_space(const std::string& path, uint64_t free, uint64_t more,
                           uint64_t reserve) {
  if (free >= reserve && free - reserve >= more)
    return {};
  return "the disk of " + path + " has " + mib(free) + " free, less than the reserve of "
         + mib(reserve) + " and the " + mib(more)
         + " that the write and the flushes it leads to need; writes resume once space is freed";
}


} // namespace twin::runtime::rocks
