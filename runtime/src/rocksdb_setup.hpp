#pragma once

// How the RocksDB store is opened: its column families and their options, the history's
// retention, the listener of background errors, and the disk space a database needs (its
// keys are in rocksdb_layout.hpp). Private to the RocksDB store.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/sst_file_manager.h>

#include "twin/runtime/state_store.hpp"

namespace twin::runtime::rocks {

// Column families, in the order of their handles: the default one for metadata, twins,
// by_type, by_parent, history and positions.
enum cf_slot : size_t {
  meta_cf = 0,
  twins_cf = 1,
  by_type_cf = 2,
  by_parent_cf = 3,
  history_cf = 4,
  positions_cf = 5,
};

/// Keeps the background error RocksDB has not recovered from (a failed flush or
/// compaction stops writes until it recovers, by itself or never).
class background_errors final : public rocksdb::EventListener {
public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override;
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override;
  std::string current() const;

private:
  void set(std::string e);

  mutable std::mutex mtx_;
  std::string error_;
};

/// Everything a database is opened with; the same for every opening of one store.
struct db_setup {
  rocksdb::DBOptions db;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  std::shared_ptr<rocksdb::Cache> cache;  ///< the block cache of every column family
  std::shared_ptr<background_errors> errors;
  /// Tracks the size of the database's files (and holds them to `max_disk_bytes`).
  std::shared_ptr<rocksdb::SstFileManager> files;
};

db_setup make_setup(const rocksdb_options& o);

/// An open database and its column families (in `cf_slot` order; opened for reading
/// only, one the database was written without has none: nullptr).
struct open_db {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  bool read_only = false;

  /// Closes it (nothing if none is open).
  void close();
};

/// Opens the database at `path`, for reading only if asked (which writes nothing to the
/// disk). Returns `store_locked`, `store_corrupt` or `store_failure` with the reason.
caf::expected<open_db> open(const std::string& path, const db_setup& setup, bool read_only);

/// Bytes free for unprivileged use on the filesystem of `path`; nullopt if unknown.
std::optional<uint64_t> free_bytes(const std::string& path);

/// Bytes of the write-ahead logs in `path`: what opening for writing may flush to files.
uint64_t log_bytes(const std::string& path);

/// Bytes a new write-ahead log takes on the disk at once, before anything is written to
/// it: RocksDB preallocates a log a tenth larger than the largest memtable, `write_buffer`,
/// and extends it by as much when it is full.
constexpr uint64_t log_block_bytes(uint64_t write_buffer) {
  return write_buffer + write_buffer / 10;
}

/// Why a disk with `free` bytes cannot take `more` (new data, the memtables to flush, a
/// new log)
/// while keeping `reserve` free; "" if it can.
std::string short_of_space(const std::string& path, uint64_t free, uint64_t more,
                           uint64_t reserve);

} // namespace twin::runtime::rocks
