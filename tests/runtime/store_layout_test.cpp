// How twins are kept in shards: the shard hash, the store's keys by shard, listings merged
// over shards, the move of a directory written before shards, and each shard's counts.

#include <map>
#include <set>

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <xxhash.h>

#include "durable_counts.hpp"
#include "rocksdb_setup.hpp"
#include "store_writer.hpp"
#include "test_support.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/shard.hpp"

namespace twin::test {
namespace {

/// A batch that writes the record "r" of `x`.
store_batch record_batch(const twin_id& x) {
  store_batch b;
  b.puts.emplace_back(x, "r");
  return b;
}

TEST(shards, the_shard_of_an_id_is_its_xxh64_modulo_the_shard_count) {
  EXPECT_EQ(id_hash(""), 0xef46db3751d8e999ull);  // XXH64's published value
  auto x = id("factory:motor-1-1-1");
  EXPECT_EQ(id_hash(x.str()), XXH64(x.str().data(), x.str().size(), 0));
  EXPECT_EQ(shard_of(x, 1024).value(), id_hash(x.str()) % 1024);
  EXPECT_EQ(shard_of(x, 1).value(), 0u);
  // Ids spread over the shards.
  std::set<uint32_t> used;
  for (int i = 0; i < 10'000; ++i)
    used.insert(shard_of(id("f:m" + std::to_string(i)), 64).value());
  EXPECT_EQ(used.size(), 64u);
}

TEST(shards, node_ids_are_checked) {
  EXPECT_TRUE(node_id::parse("node-1.eu_west"));
  for (const char* bad : {"", "a b", "n/1", "ü"}) {
    auto n = node_id::parse(bad);
    ASSERT_FALSE(n) << bad;
    EXPECT_EQ(error_code(n.error()), runtime_errc::invalid_argument);
  }
  EXPECT_FALSE(node_id::parse(std::string(65, 'n')));
}

/// Many ids of one type, spread over the shards, list in id order page by page.
TEST(sharded_store, listings_merge_the_shards_in_id_order) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("db");
  o.shard_count = 16;
  auto s = open_rocksdb_store(o);
  ASSERT_TRUE(s) << error_message(s.error());
  auto& store = **s;
  EXPECT_EQ(store.shard_count(), 16u);
  std::set<std::string> ids;
  store_batch b;
  for (int i = 0; i < 300; ++i) {
    auto x = id("f:m" + std::to_string(i * 7919 % 1000));
    ids.insert(x.str());
    b.puts.emplace_back(x, "r");
    b.index_adds.push_back({index_kind::by_type, "motor", x});
  }
  b.puts.emplace_back(id("f:r"), "r");
  b.index_adds.push_back({index_kind::by_type, "robot", id("f:r")});
  ASSERT_FALSE(store.write(b));
  std::vector<std::string> expected{ids.begin(), ids.end()};
  auto pages = [&](auto next) {
    std::vector<std::string> got;
    twin_id after;
    for (int n = 0; n < 100; ++n) {
      auto page = next(after);
      if (!page || page->empty())
        break;
      for (const auto& x : *page)
        got.push_back(x.str());
      after = page->back();
    }
    return got;
  };
  EXPECT_EQ(pages([&](const twin_id& a) { return store.list(index_kind::by_type, "motor", a, 7); }),
            expected);
  expected.push_back("f:r");  // after every f:m...
  EXPECT_EQ(pages([&](const twin_id& a) { return store.scan_ids(a, 7); }), expected);
}

TEST(sharded_store, a_store_opens_only_with_its_own_shard_count) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("db");
  o.shard_count = 64;
  {
    auto s = open_rocksdb_store(o);
    ASSERT_TRUE(s);
    ASSERT_FALSE((*s)->write(record_batch(id("a:1"))));
  }
  o.shard_count = 128;
  auto other = open_rocksdb_store(o);
  ASSERT_FALSE(other);
  EXPECT_NE(error_message(other.error()).find("kept in 64 shards, not the 128"),
            std::string::npos)
    << error_message(other.error());
  o.shard_count = 64;
  auto again = open_rocksdb_store(o);
  ASSERT_TRUE(again);
  EXPECT_EQ(**(*again)->get(id("a:1")), "r");
}

// -- a directory written before shards ------------------------------------------

/// Writes keys straight into a RocksDB database: a new one with the column families of a
/// store written before shards (and before positions), an existing one with its own.
class raw_db {
public:
  explicit raw_db(const std::string& path) {
    rocksdb::DBOptions o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<std::string> names;
    if (!rocksdb::DB::ListColumnFamilies(o, path, &names).ok())
      names = {"default", "twins", "by_type", "by_parent", "history"};
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& name : names)
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions{});
    auto st = rocksdb::DB::Open(o, path, cfs, &handles_, &db_);
    if (!st.ok())
      throw std::runtime_error(st.ToString());
  }
  ~raw_db() {
    for (auto* h : handles_)
      db_->DestroyColumnFamilyHandle(h);
    delete db_;
  }
  enum cf { meta, twins, by_type, by_parent, history };
  void put(cf c, const std::string& k, const std::string& v) {
    ASSERT_TRUE(db_->Put(rocksdb::WriteOptions{}, handles_[c], k, v).ok());
  }
  /// Every key of every column family.
  std::vector<std::string> keys() {
    std::vector<std::string> out;
    for (auto* h : handles_) {
      std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, h)};
      for (it->SeekToFirst(); it->Valid(); it->Next())
        out.push_back(it->key().ToString());
    }
    return out;
  }

private:
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

std::string nul_joined(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty())
      out += '\0';
    out += p;
  }
  return out;
}

/// A history key's time: 8 bytes big-endian, sign bit flipped.
std::string time_bytes(int64_t ts) {
  auto u = static_cast<uint64_t>(ts) ^ (uint64_t{1} << 63);
  std::string out;
  for (int shift = 56; shift >= 0; shift -= 8)
    out += static_cast<char>((u >> shift) & 0xff);
  return out;
}

twin_record motor(const std::string& name, const std::string& parent, bool alert) {
  twin_record r;
  r.id = id("f:" + name);
  r.type = "motor";
  r.parent = parent.empty() ? twin_id{} : id(parent);
  r.reported["temperature"] = value{alert ? 120.0 : 20.0};
  r.version = 3;
  if (alert)
    r.alerts.push_back({"overheat", severity::critical, 1700000000000});
  return r;
}

/// Writes twins the way stores did before shards: keys without a shard prefix and one
/// metadata key of counts for the whole node.
void write_unsharded(raw_db& db, const std::vector<twin_record>& twins) {
  host_counts counts;
  for (const auto& t : twins) {
    db.put(raw_db::twins, t.id.str(), encode(t));
    db.put(raw_db::by_type, nul_joined({t.type, t.id.str()}), "");
    if (!t.parent.empty())
      db.put(raw_db::by_parent, nul_joined({t.parent.str(), t.id.str()}), "");
    db.put(raw_db::history, nul_joined({t.id.str(), "temperature", time_bytes(1000)}), "s1");
    db.put(raw_db::history, nul_joined({t.id.str(), "temperature", time_bytes(2000)}), "s2");
    counts.twins += 1;
    counts.alerts_critical += static_cast<int64_t>(t.alerts.size());
  }
  db.put(raw_db::meta, "counts", encode_counts(counts));
}

void expect_moved(state_store& store, const std::vector<twin_record>& twins) {
  host_counts total;
  for (uint32_t s = 0; s < store.shard_count(); ++s)
    if (auto v = store.get_meta(shard_id{s}, counts_key); v && *v)
      total += *decode_counts(**v);
  EXPECT_EQ(total.twins, static_cast<int64_t>(twins.size()));
  for (const auto& t : twins) {
    auto bytes = store.get(t.id);
    ASSERT_TRUE(bytes && *bytes) << t.id.str();
    auto rec = decode_record(**bytes);
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->reported, t.reported);
    EXPECT_EQ(rec->version, t.version);
    auto h = store.history(t.id, "temperature", 0, 5000, 10);
    ASSERT_TRUE(h);
    ASSERT_EQ(h->size(), 2u) << t.id.str();
    EXPECT_EQ((*h)[1], (history_sample{2000, "s2"}));
    if (!t.alerts.empty()) {
      auto c = decode_counts(**store.get_meta(shard_of(t.id, store.shard_count()), counts_key));
      EXPECT_GE(c->alerts_critical, 1);
    }
  }
}

TEST(sharded_store, a_directory_written_before_shards_moves_into_them_once) {
  temp_dir dir;
  auto path = dir.sub("db");
  std::vector<twin_record> twins;
  twins.push_back(motor("m1", "f:r1", true));
  twins.push_back(motor("m2", "f:r1", false));
  twins.push_back(motor("m3", "", false));
  {
    raw_db db{path};
    write_unsharded(db, twins);
  }
  rocksdb_options o;
  o.path = path;
  for (int opening = 0; opening < 2; ++opening) {
    auto s = open_rocksdb_store(o);
    ASSERT_TRUE(s) << error_message(s.error());
    auto& store = **s;
    expect_moved(store, twins);
    EXPECT_EQ(*store.list(index_kind::by_type, "motor", {}, 10),
              (std::vector<twin_id>{id("f:m1"), id("f:m2"), id("f:m3")}));
    EXPECT_EQ(*store.list(index_kind::by_parent, "f:r1", {}, 10),
              (std::vector<twin_id>{id("f:m1"), id("f:m2")}));
  }
  // No key is left outside a shard: each starts with a shard below 1,024 or is the
  // store's own (0xffff).
  raw_db db{path};
  for (const auto& k : db.keys()) {
    ASSERT_GE(k.size(), 2u);
    auto shard = (static_cast<unsigned char>(k[0]) << 8) | static_cast<unsigned char>(k[1]);
    EXPECT_TRUE(shard < 1024 || shard == 0xffff) << k;
  }
}

TEST(sharded_store, a_directory_written_before_positions_opens_for_reading_too) {
  // Opened for reading only (its disk full), a database cannot get the column families
  // it was written without: it opens with those it has.
  temp_dir dir;
  auto path = dir.sub("db");
  {
    raw_db db{path};
    db.put(raw_db::twins, "k", "v");
  }
  rocksdb_options o;
  o.path = path;
  auto setup = rocks::make_setup(o);
  auto db = rocks::open(path, setup, true);
  ASSERT_TRUE(db) << error_message(db.error());
  ASSERT_EQ(db->handles.size(), 6u);
  EXPECT_EQ(db->handles[rocks::positions_cf], nullptr);
  EXPECT_NE(db->handles[rocks::twins_cf], nullptr);
  std::string v;  // its data reads
  EXPECT_TRUE(db->db->Get(rocksdb::ReadOptions{}, db->handles[rocks::twins_cf], "k", &v).ok());
  EXPECT_EQ(v, "v");
  db->close();
  // Opened for writing, it gets them.
  auto rw = rocks::open(path, setup, false);
  ASSERT_TRUE(rw) << error_message(rw.error());
  EXPECT_NE(rw->handles[rocks::positions_cf], nullptr);
  rw->close();
}

TEST(sharded_store, a_move_cut_short_resumes_at_the_next_opening) {
  temp_dir dir;
  auto path = dir.sub("db");
  auto moved = motor("m1", "", true);
  auto left = motor("m2", "", false);
  {
    // As after a crash in the middle of the move: m1's keys are in their shard, m2's are
    // not, and the store is not yet marked as sharded.
    raw_db db{path};
    write_unsharded(db, {left});
    std::string prefix;
    auto shard = shard_of(moved.id, default_shard_count).value();
    prefix += static_cast<char>(shard >> 8);
    prefix += static_cast<char>(shard & 0xff);
    db.put(raw_db::twins, prefix + moved.id.str(), encode(moved));
    db.put(raw_db::by_type, prefix + nul_joined({"motor", moved.id.str()}), "");
    for (auto [ts, v] : {std::pair{1000, "s1"}, std::pair{2000, "s2"}})
      db.put(raw_db::history, prefix + nul_joined({moved.id.str(), "temperature", time_bytes(ts)}),
             v);
  }
  rocksdb_options o;
  o.path = path;
  auto s = open_rocksdb_store(o);
  ASSERT_TRUE(s) << error_message(s.error());
  expect_moved(**s, {moved, left});
  EXPECT_EQ((*s)->list(index_kind::by_type, "motor", {}, 10)->size(), 2u);
}

// -- the local commit point ------------------------------------------------------

TEST(store_writer, keeps_durable_counts_per_shard) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("db");
  o.shard_count = 8;
  auto s = open_rocksdb_store(o);
  ASSERT_TRUE(s);
  host_stats stats;
  auto a = id("f:a");
  auto b = id("f:b0");
  for (int i = 1; shard_of(b, 8) == shard_of(a, 8); ++i)
    b = id("f:b" + std::to_string(i));
  {
    store_writer w{**s, stats};
    ASSERT_FALSE(w.load_counts());
    w.start();
    std::promise<void> done;
    std::atomic<int> left{3};
    auto count_down = [&](caf::error err) {
      EXPECT_FALSE(err);
      if (--left == 0)
        done.set_value();
    };
    w.submit(a, record_batch(a), host_counts{1, 0, 1}, count_down);
    w.submit(b, record_batch(b), host_counts{1, 2, 0}, count_down);
    w.submit(a, store_batch{}, host_counts{0, 0, -1}, count_down);
    done.get_future().wait();
    EXPECT_EQ(w.counts(shard_of(a, 8)), (host_counts{1, 0, 0}));
    EXPECT_EQ(w.counts(shard_of(b, 8)), (host_counts{1, 2, 0}));
    EXPECT_EQ(w.counts(), (host_counts{2, 2, 0}));
    w.stop();
  }
  store_writer again{**s, stats};
  ASSERT_FALSE(again.load_counts());
  EXPECT_EQ(again.counts(shard_of(a, 8)), (host_counts{1, 0, 0}));
  EXPECT_EQ(again.counts(), (host_counts{2, 2, 0}));
}

} // namespace
} // namespace twin::test
