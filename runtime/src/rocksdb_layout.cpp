#include "rocksdb_layout.hpp"

#include <map>
#include <memory>

#include <rocksdb/write_batch.h>

#include "durable_counts.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/record.hpp"

namespace twin::runtime::rocks {

namespace {

/// The store's own metadata: the number of shards its keys are in.
const std::string shards_key = std::string{"\xff\xff", 2} + "shards";

/// A store written before keys had shards moves into at most this many, whose prefixes
/// all sort below '0': below every key it wrote (ids, type names and metadata names
/// start with '0' or above), so that a move that was cut short tells what is left.
constexpr uint32_t max_moved_shard_count = 0x3000;

bool unsharded(rocksdb::Slice key) {
  auto c = static_cast<unsigned char>(key[0]);
  return c >= '0' && c != 0xff;
}

caf::error fail(const std::string& path, const std::string& what) {
  return make_error(runtime_errc::store_failure, "data directory " + path + ": " + what);
}

/// The id that an unsharded key of column family `cf` names; empty for metadata.
std::string_view id_in(size_t cf, rocksdb::Slice key) {
  std::string_view k{key.data(), key.size()};
  auto nul = k.find('\0');
  switch (cf) {
    case twins_cf: return k;
    case by_type_cf:
    case by_parent_cf: return nul == k.npos ? std::string_view{} : k.substr(nul + 1);
    case history_cf: return nul == k.npos ? std::string_view{} : k.substr(0, nul);
    default: return {};
  }
}

/// Moves every unsharded key into its shard, batch by batch (each batch moves its keys
/// atomically, so a move cut short resumes where it stopped).
caf::error move_into_shards(const open_db& db, uint32_t shard_count, const std::string& path) {
  constexpr size_t batch_keys = 4096;
  rocksdb::WriteBatch batch;
  auto write = [&]() -> caf::error {
    auto st = db.db->Write(rocksdb::WriteOptions{}, &batch);
    batch.Clear();
    return st.ok() ? caf::error{} : fail(path, "moving keys into shards: " + st.ToString());
  };
  for (size_t cf = 0; cf < db.handles.size(); ++cf) {
    auto* h = db.handles[cf];
    std::unique_ptr<rocksdb::Iterator> it{db.db->NewIterator(rocksdb::ReadOptions{}, h)};
    for (it->Seek("0"); it->Valid() && unsharded(it->key()); it->Next()) {
      auto id = id_in(cf, it->key());
      if (cf != meta_cf && id.empty())
        return fail(path, "a key of column family " + h->GetName() + " names no twin");
      // Metadata: the node's counts are counted again per shard below.
      if (!id.empty()) {
        std::string key;
        append_shard(key, shard_of(twin_id::trusted(std::string{id}), shard_count));
        key.append(it->key().data(), it->key().size());
        batch.Put(h, key, it->value());
      }
      batch.Delete(h, it->key());
      if (batch.Count() >= batch_keys)
        if (auto err = write())
          return err;
    }
    if (!it->status().ok())
      return fail(path, "reading keys to move: " + it->status().ToString());
  }
  return batch.Count() > 0 ? write() : caf::error{};
}

/// Counts each shard's twins and active alerts from its records.
caf::error count_shards(const open_db& db, const std::string& path) {
  std::map<uint32_t, host_counts> counts;
  std::unique_ptr<rocksdb::Iterator> it{
    db.db->NewIterator(rocksdb::ReadOptions{}, db.handles[twins_cf])};
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto rec = decode_record({it->value().data(), it->value().size()});
    if (!rec)
      return fail(path, "a stored record cannot be read: " + error_message(rec.error()));
    auto& c = counts[key_shard(it->key()).value()];
    c.twins += 1;
    for (const auto& a : rec->alerts)
      count_alert(c, a.level, 1);
  }
  if (!it->status().ok())
    return fail(path, "counting twins: " + it->status().ToString());
  rocksdb::WriteBatch batch;
  for (const auto& [shard, c] : counts)
    batch.Put(db.handles[meta_cf], meta_key(shard_id{shard}, counts_key), encode_counts(c));
  auto st = db.db->Write(rocksdb::WriteOptions{}, &batch);
  return st.ok() ? caf::error{} : fail(path, "writing counts: " + st.ToString());
}

bool empty(const open_db& db) {
  for (auto* h : db.handles) {
    if (h == nullptr)
      continue;  // none in the database
    std::unique_ptr<rocksdb::Iterator> it{db.db->NewIterator(rocksdb::ReadOptions{}, h)};
    it->SeekToFirst();
    if (it->Valid())
      return false;
  }
  return true;
}

} // namespace

std::string twin_key(shard_id shard, const twin_id& id) {
  std::string out;
  out.reserve(shard_prefix_size + id.str().size());
  append_shard(out, shard);
  out += id.str();
  return out;
}

std::string index_key(shard_id shard, const std::string& key, const twin_id& id) {
  std::string out;
  out.reserve(shard_prefix_size + key.size() + 1 + id.str().size());
  append_shard(out, shard);
  out += key;
  out += '\0';
  out += id.str();
  return out;
}

std::string history_prefix(shard_id shard, const twin_id& id, const std::string* property) {
  std::string out;
  append_shard(out, shard);
  out += id.str();
  out += '\0';
  if (property != nullptr) {
    out += *property;
    out += '\0';
  }
  return out;
}

std::string history_key(shard_id shard, const twin_id& id, const std::string& property,
                        int64_t ts) {
  auto out = history_prefix(shard, id, &property);
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

std::string meta_key(shard_id shard, const std::string& key) {
  auto out = shard_prefix(shard);
  out += key;
  return out;
}

caf::expected<shard_page> read_shard(const open_db& db, shard_id shard, const std::string& cursor,
                                     size_t max_bytes) {
  // The column families in the order a shard is read.
  static constexpr size_t order[] = {twins_cf, by_type_cf, by_parent_cf, history_cf, meta_cf};
  auto prefix = shard_prefix(shard);
  size_t step = 0;
  std::string from = prefix;
  if (!cursor.empty()) {
    step = static_cast<unsigned char>(cursor[0]);
    if (step >= std::size(order) || cursor.size() < 1 + shard_prefix_size
        || cursor.compare(1, shard_prefix_size, prefix) != 0)
      return make_error(runtime_errc::invalid_argument, "not a cursor of shard "
                                                          + std::to_string(shard.value()));
    from = cursor.substr(1);  // the first key not read yet
  }
  shard_page page;
  auto& b = page.entries;
  size_t bytes = 0;
  for (; step < std::size(order); ++step, from = prefix) {
    auto cf = order[step];
    std::unique_ptr<rocksdb::Iterator> it{db.db->NewIterator(rocksdb::ReadOptions{}, db.handles[cf])};
    for (it->Seek(from); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (bytes >= max_bytes) {
        page.next = static_cast<char>(step) + it->key().ToString();
        return page;
      }
      std::string_view k{it->key().data() + shard_prefix_size, it->key().size() - shard_prefix_size};
      auto v = it->value().ToString();
      bytes += k.size() + v.size();
      auto nul = k.find('\0');
      switch (cf) {
        case twins_cf: b.puts.emplace_back(twin_id::trusted(std::string{k}), std::move(v)); break;
        case by_type_cf:
        case by_parent_cf:
          b.index_adds.push_back({cf == by_type_cf ? index_kind::by_type : index_kind::by_parent,
                                  std::string{k.substr(0, nul)},
                                  twin_id::trusted(std::string{k.substr(nul + 1)})});
          break;
        case history_cf: {
          auto prop = nul + 1;
          auto end = k.find('\0', prop);
          b.history.push_back({twin_id::trusted(std::string{k.substr(0, nul)}),
                               std::string{k.substr(prop, end - prop)},
                               history_time(it->key()), std::move(v)});
          break;
        }
        default: b.meta_puts.push_back({shard, std::string{k}, std::move(v)});
      }
    }
    if (!it->status().ok())
      return make_error(runtime_errc::store_failure,
                        "reading shard " + std::to_string(shard.value()) + ": "
                          + it->status().ToString());
  }
  return page;
}

caf::error drop_shard(const open_db& db, shard_id shard, const rocksdb::WriteOptions& wo) {
  auto from = shard_prefix(shard);
  auto to = shard_prefix(shard_id{shard.value() + 1});
  rocksdb::WriteBatch batch;
  for (size_t cf = 0; cf < db.handles.size(); ++cf) {
    auto* h = db.handles[cf];
    if (cf != twins_cf) {
      batch.DeleteRange(h, from, to);
      continue;
    }
    // The twins' memtable inserts from a hint, which RocksDB also applies to a range
    // deletion's own table (and fails): their keys go one by one.
    std::unique_ptr<rocksdb::Iterator> it{db.db->NewIterator(rocksdb::ReadOptions{}, h)};
    for (it->Seek(from); it->Valid() && it->key().compare(to) < 0; it->Next())
      batch.Delete(h, it->key());
    if (!it->status().ok())
      return make_error(runtime_errc::store_failure, "dropping shard "
                                                       + std::to_string(shard.value()) + ": "
                                                       + it->status().ToString());
  }
  auto st = db.db->Write(wo, &batch);
  if (!st.ok())
    return make_error(runtime_errc::store_failure, "dropping shard "
                                                     + std::to_string(shard.value()) + ": "
                                                     + st.ToString());
  return {};
}

caf::expected<uint32_t> prepare_layout(const open_db& db, uint32_t shard_count,
                                       const std::string& path) {
  if (shard_count > max_shard_count)
    return fail(path, "a store has 1 to " + std::to_string(max_shard_count) + " shards, not "
                        + std::to_string(shard_count));
  std::string stored;
  auto st = db.db->Get(rocksdb::ReadOptions{}, db.handles[meta_cf], shards_key, &stored);
  if (st.ok()) {
    auto n = static_cast<uint32_t>(std::strtoul(stored.c_str(), nullptr, 10));
    if (n == 0 || n > max_shard_count)
      return make_error(runtime_errc::store_corrupt,
                        "data directory " + path + ": its shard count '" + stored
                          + "' is not a number of shards");
    if (shard_count != 0 && n != shard_count)
      return fail(path, "its twins are kept in " + std::to_string(n) + " shards, not the "
                          + std::to_string(shard_count) + " this node is configured for");
    return n;
  }
  if (!st.IsNotFound())
    return fail(path, "reading its shard count: " + st.ToString());
  if (shard_count == 0)
    shard_count = default_shard_count;
  bool fresh = empty(db);
  if (!fresh && db.read_only)
    return fail(path, "it was written before twins were kept in shards, and moving them "
                      "needs room on its disk to write; free some space and start again");
  if (db.read_only)
    return shard_count;  // marked when it opens for writing
  if (!fresh) {
    if (shard_count > max_moved_shard_count)
      return fail(path, "it was written before twins were kept in shards and moves into at "
                        "most " + std::to_string(max_moved_shard_count) + " shards, not "
                        + std::to_string(shard_count));
    if (auto err = move_into_shards(db, shard_count, path))
      return err;
    if (auto err = count_shards(db, path))
      return err;
  }
  rocksdb::WriteOptions synced;
  synced.sync = true;
  st = db.db->Put(synced, db.handles[meta_cf], shards_key, std::to_string(shard_count));
  if (!st.ok())
    return fail(path, "writing its shard count: " + st.ToString());
  return shard_count;
}

} // namespace twin::runtime::rocks
