#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// Secondary indexes kept by a store.
enum class index_kind : uint8_t { by_type, by_parent };

struct index_entry {
  index_kind index;
  std::string key;  ///< the type name, or the parent id
  twin_id id;
};

/// One sample of a property's history (its value already encoded).
struct history_entry {
  twin_id id;
  std::string property;
  int64_t ts_ms = 0;
  std::string bytes;
};

/// A metadata value kept with a shard's data (e.g. the shard's durable counts).
struct meta_entry {
  shard_id shard;
  std::string key;
  std::string value;
};

/// One atomic write: twin records (already encoded), deletions, index changes, history
/// samples and their deletion, and metadata. Applied all or nothing. Every entry belongs
/// to the shard of the twin it names (an index entry: of `id`), or to `meta_entry::shard`.
struct store_batch {
  std::vector<std::pair<twin_id, std::string>> puts;
  std::vector<twin_id> deletes;
  std::vector<index_entry> index_adds;
  std::vector<index_entry> index_removes;
  std::vector<history_entry> history;
  std::vector<twin_id> history_deletes;  ///< twins whose every sample goes
  std::vector<meta_entry> meta_puts;
  /// Where a writer is in what it applies, by shard and key (a replica's position in its
  /// primary's batches): written with nearly every write and seldom read, so kept apart
  /// from the metadata, where recording one costs least (read with `get_position`).
  std::vector<meta_entry> positions;

  bool empty() const {
    return puts.empty() && deletes.empty() && index_adds.empty() && index_removes.empty()
           && history.empty() && history_deletes.empty() && meta_puts.empty()
           && positions.empty();
  }
};

/// A page of one shard's entries (as a batch that writes them), and where the next page
/// starts (empty: this was the last).
struct shard_page {
  store_batch entries;
  std::string next;
};

/// A stored history sample: its time and encoded value.
using history_sample = std::pair<int64_t, std::string>;

/// Figures of one part of a store (a RocksDB column family).
struct store_part_stats {
  std::string name;
  uint64_t keys = 0;                      ///< estimated
  uint64_t memtable_bytes = 0;
  uint64_t sst_bytes = 0;                 ///< table files on disk
  uint64_t pending_compaction_bytes = 0;  ///< estimated bytes compaction still has to rewrite
};

/// Figures of a store, for metrics and readiness. Counts are since the store was opened.
struct store_stats {
  std::vector<store_part_stats> parts;
  uint64_t running_compactions = 0;
  uint64_t running_flushes = 0;
  uint64_t block_cache_bytes = 0;
  uint64_t delayed_write_rate = 0;  ///< bytes/s while writes are slowed down, else 0
  bool write_stopped = false;       ///< writes wait for compaction or flushes
  uint64_t stalls_slowdown = 0;     ///< times writes were slowed down
  uint64_t stalls_stop = 0;         ///< times writes were stopped
  uint64_t background_errors = 0;   ///< failed flushes or compactions
  uint64_t disk_free_bytes = 0;     ///< free on the filesystem of the store's files
  uint64_t disk_reserve_bytes = 0;  ///< of which writes never use; both 0: not known
};

/// Durable storage of twin records, two secondary indexes, history and metadata, by shard.
///
/// Every entry belongs to one of `shard_count()` shards (`shard_of` its twin), fixed when
/// the store is created; a store keeps each shard's entries apart (RocksDB: each key starts
/// with its shard), so that a shard can be copied or dropped as a whole. Listings merge
/// the shards: ids come in ascending order whatever their shards.
///
/// Thread safety: every method may be called from any thread at any time.
/// Durability: `write` returns only once the batch survives a crash of the process
/// (write-ahead log written); with `sync` set in the store's options, also a power loss.
/// Lifecycle: created open by a factory function, closed by its destructor.
class state_store {
public:
  virtual ~state_store();

  /// Applies `batch` atomically. Returns `store_failure` with the reason on error, or
  /// `insufficient_storage` when the disk is too full to take it; nothing of the batch is
  /// applied then.
  caf::error write(const store_batch& batch) { return write_all(&batch, 1); }

  /// Applies `n` batches atomically, one after the other in order: an operation of a
  /// later batch wins over one of an earlier batch on the same key. Within one batch,
  /// deletes come before puts, index removes before index adds and history deletes
  /// before history samples.
  virtual caf::error write_all(const store_batch* batches, size_t n) = 0;

  /// Returns the encoded record of `id`, std::nullopt if there is none.
  virtual caf::expected<std::optional<std::string>> get(const twin_id& id) = 0;

  /// Returns up to `limit` ids in `index` under `key`, ascending, strictly after `after`
  /// (empty: from the start).
  virtual caf::expected<std::vector<twin_id>>
  list(index_kind index, const std::string& key, const twin_id& after, size_t limit) = 0;

  /// The keys of `index` that hold any twin (the types twins have, the parents they
  /// have), ascending, each once; `invalid_argument` if there are more than `limit`.
  virtual caf::expected<std::vector<std::string>> index_keys(index_kind index, size_t limit) = 0;

  /// Returns up to `limit` twin ids, ascending, strictly after `after`.
  virtual caf::expected<std::vector<twin_id>> scan_ids(const twin_id& after, size_t limit) = 0;

  /// Returns up to `limit` samples of `property` of twin `id` with `from` <= time <= `to`,
  /// by ascending time. Samples older than the store's retention may be gone.
  virtual caf::expected<std::vector<history_sample>>
  history(const twin_id& id, const std::string& property, int64_t from, int64_t to,
          size_t limit) = 0;

  /// Returns the last `limit` samples of `property` of twin `id` with time < `before`, by
  /// ascending time.
  virtual caf::expected<std::vector<history_sample>>
  latest_history(const twin_id& id, const std::string& property, int64_t before,
                 size_t limit) = 0;

  /// Returns the metadata value of `key` in `shard`, std::nullopt if there is none.
  virtual caf::expected<std::optional<std::string>> get_meta(shard_id shard,
                                                             const std::string& key) = 0;

  /// Returns the metadata of `shard` whose keys begin with `prefix`, at most `limit`
  /// entries, by ascending key (the whole key, prefix included).
  virtual caf::expected<std::vector<std::pair<std::string, std::string>>>
  scan_meta(shard_id shard, const std::string& prefix, size_t limit) = 0;

  /// Returns the position of `key` in `shard` (see `store_batch::positions`), std::nullopt
  /// if there is none. RocksDB: costs a sort of the positions written lately.
  virtual caf::expected<std::optional<std::string>> get_position(shard_id shard,
                                                                 const std::string& key) = 0;

  /// The number of shards the store's entries are kept in.
  virtual uint32_t shard_count() const = 0;

  /// Reads the entries of `shard` (records, index entries, history, metadata; not its
  /// positions, which are the writer's own) from
  /// `cursor` on (empty: the start; else a page's `next`), about `max_bytes` of keys and
  /// values at most but at least one entry: writing the pages into another store copies
  /// the shard there. Pages are read one by one, not from one snapshot: a cursor names
  /// the first entry not read yet, so entries changed meanwhile make no page miss others.
  virtual caf::expected<shard_page> read_shard(shard_id shard, const std::string& cursor,
                                               size_t max_bytes) = 0;

  /// Deletes every entry of `shard`, its positions included, atomically.
  virtual caf::error drop_shard(shard_id shard) = 0;

  /// Returns the number of stored twins (exact for the memory store, RocksDB's
  /// estimate for the RocksDB store).
  virtual uint64_t approximate_count() = 0;

  /// Reads the store's figures (RocksDB: from the database's own properties).
  virtual store_stats stats() = 0;

  /// Why the store takes no writes now (RocksDB: its disk has less free space than the
  /// reserve, or a failed flush or compaction it has not recovered from); "" when it
  /// takes them. Cheap enough for every readiness check.
  virtual std::string write_failure() = 0;

  /// Moves what is buffered in memory to the store's files and waits for it (RocksDB:
  /// flushes the memtables). Durability does not need it; it frees the write buffers.
  virtual caf::error flush() = 0;
};

struct rocksdb_options {
  /// Directory of the database; created if missing. No default: required.
  std::string path;
  /// Shards of the store (1 to `max_shard_count`), or 0: those of an existing store, and
  /// `default_shard_count` for a new one. An existing store keeps its own and does not
  /// open with another (`store_failure`). A directory written before stores had shards is
  /// moved into them on opening, once. Default: `default_shard_count`.
  uint32_t shard_count = default_shard_count;
  /// fsync the write-ahead log on every write (survives power loss). Default: off,
  /// which survives a crash or kill of the process.
  bool sync = false;
  /// Size of the shared block cache. Default: 256 MiB.
  size_t block_cache_bytes = 256u << 20;
  /// Size of one memtable. Default: 64 MiB.
  size_t write_buffer_bytes = 64u << 20;
  /// History samples older than this are dropped (at compaction). Default: 7 days.
  std::chrono::hours history_retention{24 * 7};
  /// Space kept free on the data directory's filesystem: a write that would leave less
  /// is refused (`insufficient_storage`), so that RocksDB always has room to flush its
  /// memtables and never meets a full disk itself. Writes resume by themselves once
  /// space returns. Default: 256 MiB.
  uint64_t min_free_bytes = 256u << 20;
  /// The most the store's table files may take (as RocksDB's SST file manager counts
  /// them; its logs and metadata files come on top): RocksDB holds them to it, and writes
  /// are refused (`insufficient_storage`) once the files and what the memtables will add
  /// reach three quarters of it, which leaves compactions room. Default: 0, no limit but
  /// the disk's.
  uint64_t max_disk_bytes = 0;
};

/// Opens (or creates) a RocksDB store. Returns `store_locked` if another process has
/// the directory open, `store_corrupt` if it cannot be read, `store_failure` otherwise.
caf::expected<std::unique_ptr<state_store>> open_rocksdb_store(const rocksdb_options& opts);

/// Makes an empty in-memory store (for tests and ephemeral nodes).
std::unique_ptr<state_store> make_memory_store(uint32_t shard_count = default_shard_count);

} // namespace twin::runtime
