#pragma once

// The keys of the RocksDB store. Every key starts with its shard, two bytes big-endian, so
// that a shard is one range in every column family:
//   twins      <shard><id>                          -> record
//   by_type    <shard><type>\0<id>                  -> ""
//   by_parent  <shard><parent>\0<id>                -> ""   (in the shard of <id>)
//   history    <shard><id>\0<property>\0<time>      -> sample (time: 8 bytes in time order)
//   default    <shard><key>                         -> metadata of the shard
//              \xff\xff<key>                        -> metadata of the store (its layout)
//   positions  <shard><key>                         -> a writer's position in the shard
// Private to the RocksDB store.

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>

#include "rocksdb_setup.hpp"
#include "twin/runtime/state_store.hpp"
#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime::rocks {

constexpr size_t shard_prefix_size = 2;

/// Appends the prefix of `shard`'s keys to `out`.
inline void append_shard(std::string& out, shard_id shard) {
  out += static_cast<char>((shard.value() >> 8) & 0xff);
  out += static_cast<char>(shard.value() & 0xff);
}

inline std::string shard_prefix(shard_id shard) {
  std::string out;
  append_shard(out, shard);
  return out;
}

/// The shard of a key.
inline shard_id key_shard(rocksdb::Slice key) {
  return shard_id{(static_cast<uint32_t>(static_cast<unsigned char>(key[0])) << 8)
                  | static_cast<unsigned char>(key[1])};
}

std::string twin_key(shard_id shard, const twin_id& id);
std::string index_key(shard_id shard, const std::string& key, const twin_id& id);
/// The prefix of every history key of `id`, and of its `property` if given.
std::string history_prefix(shard_id shard, const twin_id& id,
                           const std::string* property = nullptr);
std::string history_key(shard_id shard, const twin_id& id, const std::string& property,
                        int64_t ts);
/// The time of a history key.
int64_t history_time(rocksdb::Slice key);
std::string meta_key(shard_id shard, const std::string& key);

/// Reads a page of `shard`'s entries (see `state_store::read_shard`). A cursor is the step
/// in the order of column families read and the first key not read yet.
caf::expected<shard_page> read_shard(const open_db& db, shard_id shard, const std::string& cursor,
                                     size_t max_bytes);

/// Deletes every key of `shard` in every column family, in one batch.
caf::error drop_shard(const open_db& db, shard_id shard, const rocksdb::WriteOptions& wo);

/// Makes the database of a writable store hold `shard_count` shards: a new one is marked
/// so, one written before keys had shards is moved into them (once; a crash in the middle
/// resumes at the next opening), and one with another count is refused (`store_failure`);
/// `shard_count` 0 takes the store's own (the default for a new one). For a store opened
/// for reading only, only checks; one that would need the move is refused. Returns the
/// store's shard count.
caf::expected<uint32_t> prepare_layout(const open_db& db, uint32_t shard_count,
                                       const std::string& path);

} // namespace twin::runtime::rocks
