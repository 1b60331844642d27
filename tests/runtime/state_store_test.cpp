// Conformance suite of the state_store interface: every implementation passes it.

#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::test {
namespace {

struct store_factory {
  const char* name;
  std::function<std::unique_ptr<state_store>(const std::string& dir)> make;
};

class state_store_conformance : public ::testing::TestWithParam<store_factory> {
protected:
  void SetUp() override { store_ = GetParam().make(dir_.sub("db")); }

  temp_dir dir_;
  std::unique_ptr<state_store> store_;
};

store_batch puts(std::initializer_list<std::pair<const char*, const char*>> xs) {
  store_batch b;
  for (auto& [k, v] : xs)
    b.puts.emplace_back(id(k), v);
  return b;
}

TEST_P(state_store_conformance, get_returns_what_was_written) {
  ASSERT_FALSE(store_->write(puts({{"a:1", "one"}, {"a:2", "two"}})));
  auto v = store_->get(id("a:1"));
  ASSERT_TRUE(v);
  ASSERT_TRUE(*v);
  EXPECT_EQ(**v, "one");
  auto missing = store_->get(id("a:3"));
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);
}

TEST_P(state_store_conformance, later_put_of_a_key_wins_and_delete_removes) {
  ASSERT_FALSE(store_->write(puts({{"a:1", "one"}, {"a:1", "uno"}})));
  EXPECT_EQ(**store_->get(id("a:1")), "uno");
  store_batch del;
  del.deletes.push_back(id("a:1"));
  ASSERT_FALSE(store_->write(del));
  EXPECT_FALSE(*store_->get(id("a:1")));
}

TEST_P(state_store_conformance, batches_written_together_apply_in_order) {
  // A delete of one batch and a put of the next: the put wins, and the other way round.
  std::vector<store_batch> bs(4);
  bs[0].deletes.push_back(id("a:1"));
  bs[1].puts.emplace_back(id("a:1"), "back");
  bs[2].puts.emplace_back(id("a:2"), "gone soon");
  bs[2].index_adds.push_back({index_kind::by_parent, "p:1", id("a:2")});
  bs[3].deletes.push_back(id("a:2"));
  bs[3].index_removes.push_back({index_kind::by_parent, "p:1", id("a:2")});
  ASSERT_FALSE(store_->write_all(bs.data(), bs.size()));
  EXPECT_EQ(**store_->get(id("a:1")), "back");
  EXPECT_FALSE(*store_->get(id("a:2")));
  EXPECT_TRUE(store_->list(index_kind::by_parent, "p:1", {}, 10)->empty());
}

TEST_P(state_store_conformance, the_last_write_of_a_twin_wins_among_many_batches) {
  // Twins written and deleted many times in one group commit, in no particular key order.
  std::vector<store_batch> bs(300);
  auto deletes = [](size_t i) { return i % 5 == 3; };
  for (size_t i = 0; i < bs.size(); ++i) {
    auto key = id("m:" + std::to_string((i * 7) % 13));
    if (deletes(i))
      bs[i].deletes.push_back(key);
    else
      bs[i].puts.emplace_back(key, "v" + std::to_string(i));
  }
  ASSERT_FALSE(store_->write_all(bs.data(), bs.size()));
  int deleted = 0;
  for (size_t k = 0; k < 13; ++k) {
    size_t last = 0;
    for (size_t i = 0; i < bs.size(); ++i)
      if ((i * 7) % 13 == k)
        last = i;
    auto got = store_->get(id("m:" + std::to_string(k)));
    ASSERT_TRUE(got);
    if (deletes(last)) {
      ++deleted;
      EXPECT_FALSE(*got) << k;
    } else {
      ASSERT_TRUE(*got) << k;
      EXPECT_EQ(**got, "v" + std::to_string(last));
    }
  }
  EXPECT_GT(deleted, 0);  // some twins end deleted, the others written
}

TEST_P(state_store_conformance, indexes_list_in_order_with_paging) {
  store_batch b;
  for (auto k : {"f:m3", "f:m1", "f:m2", "f:r1"})
    b.puts.emplace_back(id(k), "x");
  for (auto k : {"f:m3", "f:m1", "f:m2"})
    b.index_adds.push_back({index_kind::by_type, "motor", id(k)});
  b.index_adds.push_back({index_kind::by_type, "robot", id("f:r1")});
  b.index_adds.push_back({index_kind::by_parent, "f:r1", id("f:m1")});
  ASSERT_FALSE(store_->write(b));
  auto all = store_->list(index_kind::by_type, "motor", {}, 100);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0], id("f:m1"));
  EXPECT_EQ((*all)[2], id("f:m3"));
  auto page = store_->list(index_kind::by_type, "motor", id("f:m1"), 1);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0], id("f:m2"));
  // A key that is a prefix of another must not see the other's entries.
  EXPECT_TRUE(store_->list(index_kind::by_type, "moto", {}, 100)->empty());
  auto children = store_->list(index_kind::by_parent, "f:r1", {}, 100);
  ASSERT_EQ(children->size(), 1u);
  EXPECT_EQ((*children)[0], id("f:m1"));
  store_batch rm;
  rm.index_removes.push_back({index_kind::by_type, "motor", id("f:m2")});
  ASSERT_FALSE(store_->write(rm));
  EXPECT_EQ(store_->list(index_kind::by_type, "motor", {}, 100)->size(), 2u);
}

TEST_P(state_store_conformance, scan_ids_pages_over_all_twins) {
  ASSERT_FALSE(store_->write(puts({{"b:1", "x"}, {"a:1", "x"}, {"c:1", "x"}})));
  auto first = store_->scan_ids({}, 2);
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0], id("a:1"));
  auto rest = store_->scan_ids((*first)[1], 10);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0], id("c:1"));
}

TEST_P(state_store_conformance, metadata_round_trips_per_shard) {
  store_batch b;
  b.meta_puts.push_back({shard_id{3}, "counts", "1 2 3"});
  b.meta_puts.push_back({shard_id{4}, "counts", "4 5 6"});
  ASSERT_FALSE(store_->write(b));
  EXPECT_EQ(**store_->get_meta(shard_id{3}, "counts"), "1 2 3");
  EXPECT_EQ(**store_->get_meta(shard_id{4}, "counts"), "4 5 6");
  EXPECT_FALSE(*store_->get_meta(shard_id{5}, "counts"));
  EXPECT_FALSE(*store_->get_meta(shard_id{3}, "nothing"));
}

TEST_P(state_store_conformance, positions_are_kept_apart_from_metadata_and_the_last_wins) {
  for (int seq = 1; seq <= 300; ++seq) {  // written over and over, as a replica does
    store_batch b;
    b.puts.emplace_back(id("p:t" + std::to_string(seq % 7)), "record");
    b.positions.push_back({shard_id{3}, "replica", "5:" + std::to_string(seq)});
    b.positions.push_back({shard_id{4}, "replica", "6:" + std::to_string(seq * 2)});
    ASSERT_FALSE(store_->write(b));
  }
  EXPECT_EQ(**store_->get_position(shard_id{3}, "replica"), "5:300");
  EXPECT_EQ(**store_->get_position(shard_id{4}, "replica"), "6:600");
  EXPECT_FALSE(*store_->get_position(shard_id{5}, "replica"));
  EXPECT_FALSE(*store_->get_meta(shard_id{3}, "replica"));  // not metadata
  ASSERT_FALSE(store_->flush());
  EXPECT_EQ(**store_->get_position(shard_id{3}, "replica"), "5:300");
}

TEST_P(state_store_conformance, a_shard_copies_page_by_page_and_drops_whole) {
  // Twins of two shards, with index entries, history and metadata.
  auto in = [&](uint32_t shard, int n) {
    for (int i = 0, found = 0;; ++i) {
      auto x = id("s:t" + std::to_string(i));
      if (shard_of(x, store_->shard_count()).value() == shard && found++ == n)
        return x;
    }
  };
  std::vector<twin_id> mine, other;
  store_batch b;
  for (int n = 0; n < 12; ++n)
    for (auto [shard, list] : {std::pair{5u, &mine}, std::pair{9u, &other}}) {
      auto x = in(shard, n);
      list->push_back(x);
      b.puts.emplace_back(x, "record of " + x.str());
      b.index_adds.push_back({index_kind::by_type, "motor", x});
      b.index_adds.push_back({index_kind::by_parent, "s:p", x});
      b.history.push_back({x, "t", 1000 + n, "h1"});
      b.history.push_back({x, "t", 2000 + n, "h2"});
    }
  b.meta_puts.push_back({shard_id{5}, "counts", "12 0 0"});
  b.meta_puts.push_back({shard_id{9}, "counts", "12 0 0"});
  b.positions.push_back({shard_id{5}, "replica", "1:7"});
  b.positions.push_back({shard_id{9}, "replica", "1:8"});
  ASSERT_FALSE(store_->write(b));
  // Small pages: each holds an entry or two.
  auto copy = make_memory_store(store_->shard_count());
  std::string cursor;
  int pages = 0;
  do {
    auto page = store_->read_shard(shard_id{5}, cursor, 40);
    ASSERT_TRUE(page) << error_message(page.error());
    ASSERT_FALSE(page->entries.empty());
    ASSERT_FALSE(copy->write(page->entries));
    cursor = page->next;
  } while (!cursor.empty() && ++pages < 1000);
  EXPECT_GT(pages, 8);
  std::sort(mine.begin(), mine.end());
  EXPECT_EQ(*copy->list(index_kind::by_type, "motor", {}, 100), mine);
  EXPECT_EQ(*copy->list(index_kind::by_parent, "s:p", {}, 100), mine);
  EXPECT_EQ(*copy->scan_ids({}, 100), mine);
  EXPECT_EQ(**copy->get(mine[3]), "record of " + mine[3].str());
  EXPECT_EQ(copy->history(mine[0], "t", 0, 5000, 10)->size(), 2u);
  EXPECT_EQ(**copy->get_meta(shard_id{5}, "counts"), "12 0 0");
  EXPECT_FALSE(*copy->get_meta(shard_id{9}, "counts"));
  EXPECT_FALSE(*copy->get_position(shard_id{5}, "replica"));  // the writer's own: not copied
  // Something that is no cursor is refused.
  EXPECT_FALSE(store_->read_shard(shard_id{5}, "x\xff", 40));
  // Dropping the shard leaves the other whole.
  ASSERT_FALSE(store_->drop_shard(shard_id{5}));
  std::sort(other.begin(), other.end());
  EXPECT_EQ(*store_->scan_ids({}, 100), other);
  EXPECT_EQ(*store_->list(index_kind::by_type, "motor", {}, 100), other);
  EXPECT_TRUE(store_->history(mine[0], "t", 0, 5000, 10)->empty());
  EXPECT_EQ(store_->history(other[0], "t", 0, 5000, 10)->size(), 2u);
  EXPECT_FALSE(*store_->get_meta(shard_id{5}, "counts"));
  EXPECT_EQ(**store_->get_meta(shard_id{9}, "counts"), "12 0 0");
  EXPECT_FALSE(*store_->get_position(shard_id{5}, "replica"));
  EXPECT_EQ(**store_->get_position(shard_id{9}, "replica"), "1:8");
  auto empty = store_->read_shard(shard_id{5}, {}, 40);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->entries.empty());
  EXPECT_TRUE(empty->next.empty());
}

TEST_P(state_store_conformance, a_page_cursor_misses_nothing_when_earlier_entries_go) {
  std::vector<twin_id> ids;
  store_batch b;
  for (int i = 0; ids.size() < 10; ++i) {
    auto x = id("c:t" + std::to_string(i));
    if (shard_of(x, store_->shard_count()).value() != 2)
      continue;
    ids.push_back(x);
    b.puts.emplace_back(x, "r");
    b.index_adds.push_back({index_kind::by_type, "motor", x});
    b.history.push_back({x, "t", 1000, "h"});
  }
  ASSERT_FALSE(store_->write(b));
  std::sort(ids.begin(), ids.end());
  // While the shard is read page by page, the entries already read go.
  std::set<std::string> seen;
  std::string cursor;
  for (int pages = 0; pages < 1000; ++pages) {
    auto page = store_->read_shard(shard_id{2}, cursor, 1);
    ASSERT_TRUE(page) << error_message(page.error());
    store_batch gone;
    for (const auto& [x, rec] : page->entries.puts) {
      seen.insert("record " + x.str());
      gone.deletes.push_back(x);
    }
    for (const auto& e : page->entries.index_adds) {
      seen.insert("index " + e.id.str());
      gone.index_removes.push_back(e);
    }
    for (const auto& h : page->entries.history) {
      seen.insert("history " + h.id.str());
      gone.history_deletes.push_back(h.id);
    }
    ASSERT_FALSE(store_->write(gone));
    if (page->next.empty())
      break;
    cursor = page->next;
  }
  EXPECT_EQ(seen.size(), 3 * ids.size());
}

TEST_P(state_store_conformance, flush_keeps_everything_readable) {
  auto b = puts({{"a:1", "one"}, {"a:2", "two"}});
  b.index_adds.push_back({index_kind::by_parent, "a:0", id("a:2")});
  b.meta_puts.push_back({shard_id{0}, "m", "v"});
  ASSERT_FALSE(store_->write(b));
  ASSERT_FALSE(store_->flush());
  EXPECT_EQ(**store_->get(id("a:1")), "one");
  EXPECT_EQ(**store_->get(id("a:2")), "two");
  EXPECT_EQ(*store_->list(index_kind::by_parent, "a:0", {}, 10), std::vector<twin_id>{id("a:2")});
  EXPECT_EQ(**store_->get_meta(shard_id{0}, "m"), "v");
  ASSERT_FALSE(store_->write(puts({{"a:1", "uno"}})));  // writes go on after a flush
  EXPECT_EQ(**store_->get(id("a:1")), "uno");
}

TEST_P(state_store_conformance, binary_values_survive) {
  std::string bytes{"a\0b\xff", 4};
  store_batch b;
  b.puts.emplace_back(id("a:bin"), bytes);
  ASSERT_FALSE(store_->write(b));
  EXPECT_EQ(**store_->get(id("a:bin")), bytes);
}

TEST_P(state_store_conformance, history_reads_a_time_range_and_goes_with_its_twin) {
  store_batch b;
  b.puts.emplace_back(id("a:1"), "rec");
  for (int64_t ts : {-5, 10, 20, 30, 40})
    b.history.push_back({id("a:1"), "t", ts, "v" + std::to_string(ts)});
  b.history.push_back({id("a:1"), "u", 20, "other property"});
  b.history.push_back({id("a:10"), "t", 20, "other twin"});
  ASSERT_FALSE(store_->write(b));
  auto h = store_->history(id("a:1"), "t", 10, 30, 100);
  ASSERT_TRUE(h);
  ASSERT_EQ(h->size(), 3u);
  EXPECT_EQ((*h)[0], (history_sample{10, "v10"}));
  EXPECT_EQ((*h)[2], (history_sample{30, "v30"}));
  auto all = store_->history(id("a:1"), "t", INT64_MIN, INT64_MAX, 100);
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ(all->front().first, -5);  // times before the epoch sort first
  EXPECT_EQ(store_->history(id("a:1"), "t", INT64_MIN, INT64_MAX, 2)->size(), 2u);
  // The latest samples before a time, by ascending time, of this twin and property only.
  auto last = store_->latest_history(id("a:1"), "t", 40, 2);
  ASSERT_TRUE(last);
  EXPECT_EQ(*last, (std::vector<history_sample>{{20, "v20"}, {30, "v30"}}));
  EXPECT_EQ(store_->latest_history(id("a:1"), "t", INT64_MAX, 100)->size(), 5u);
  EXPECT_TRUE(store_->latest_history(id("a:1"), "t", -5, 100)->empty());
  EXPECT_EQ(*store_->latest_history(id("a:1"), "u", 100, 100),
            (std::vector<history_sample>{{20, "other property"}}));
  EXPECT_TRUE(store_->latest_history(id("a:2"), "t", INT64_MAX, 100)->empty());
  // A sample of the same time is replaced.
  store_batch again;
  again.history.push_back({id("a:1"), "t", 20, "new"});
  ASSERT_FALSE(store_->write(again));
  EXPECT_EQ((*store_->history(id("a:1"), "t", 20, 20, 10))[0].second, "new");
  // Deleting the twin deletes its history, not that of a twin whose id starts alike.
  store_batch del;
  del.deletes.push_back(id("a:1"));
  del.history_deletes.push_back(id("a:1"));
  ASSERT_FALSE(store_->write(del));
  EXPECT_TRUE(store_->history(id("a:1"), "t", INT64_MIN, INT64_MAX, 100)->empty());
  EXPECT_TRUE(store_->history(id("a:1"), "u", INT64_MIN, INT64_MAX, 100)->empty());
  EXPECT_EQ(store_->history(id("a:10"), "t", INT64_MIN, INT64_MAX, 100)->size(), 1u);
  // In one write: a sample, then the deletion of its twin's history in a later batch (it
  // goes), then a sample of the twin created again (it stays).
  std::vector<store_batch> bs(3);
  bs[0].history.push_back({id("a:2"), "t", 1, "old"});
  bs[1].history_deletes.push_back(id("a:2"));
  bs[2].history.push_back({id("a:2"), "t", 2, "new"});
  ASSERT_FALSE(store_->write_all(bs.data(), bs.size()));
  auto left = store_->history(id("a:2"), "t", INT64_MIN, INT64_MAX, 100);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].second, "new");
}

TEST_P(state_store_conformance, stats_name_each_part_and_count_its_keys) {
  store_batch b;
  for (int i = 0; i < 20; ++i)
    b.puts.emplace_back(id("t:k" + std::to_string(i)), "record");
  b.index_adds.push_back({index_kind::by_type, "sensor", id("t:k1")});
  ASSERT_FALSE(store_->write(b));
  std::map<std::string, uint64_t> keys;
  for (const auto& p : store_->stats().parts)
    keys[p.name] = p.keys;
  for (const char* part : {"default", "twins", "by_type", "by_parent", "history", "positions"})
    EXPECT_EQ(keys.count(part), 1u) << part;
  EXPECT_EQ(keys["twins"], 20u);
  EXPECT_EQ(keys["by_type"], 1u);
  EXPECT_EQ(store_->write_failure(), "");
}

INSTANTIATE_TEST_SUITE_P(
  stores, state_store_conformance,
  ::testing::Values(
    store_factory{"memory", [](const std::string&) { return make_memory_store(); }},
    store_factory{"rocksdb",
                  [](const std::string& dir) {
                    rocksdb_options o;
                    o.path = dir;
                    o.block_cache_bytes = 8 << 20;
                    auto s = open_rocksdb_store(o);
                    if (!s)
                      throw std::runtime_error(error_message(s.error()));
                    return std::move(*s);
                  }}),
  [](const auto& info) { return std::string{info.param.name}; });

// -- RocksDB specifics ------------------------------------------------------------

TEST(rocksdb_store, compactions_drop_history_older_than_the_retention) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("db");
  o.history_retention = std::chrono::hours{1};
  auto s = open_rocksdb_store(o);
  ASSERT_TRUE(s) << error_message(s.error());
  auto& store = **s;
  auto now = now_ms();
  auto two_hours_ago = now - 2 * 3600 * 1000;
  // Four files of samples, half of them past the retention: four files on the first level
  // start a compaction.
  for (int f = 0; f < 4; ++f) {
    store_batch b;
    for (int i = 0; i < 50; ++i) {
      b.history.push_back({id("a:1"), "t", two_hours_ago + f * 100 + i, "old"});
      b.history.push_back({id("a:1"), "t", now + f * 100 + i, "new"});
    }
    ASSERT_FALSE(store.write(b));
    ASSERT_FALSE(store.flush());
  }
  EXPECT_TRUE(eventually(
    [&] {
      auto h = store.history(id("a:1"), "t", INT64_MIN, INT64_MAX, 1000);
      return h && h->size() == 200u && h->front().first >= now;
    },
    std::chrono::seconds{20}));
}

TEST(rocksdb_store, data_survives_reopen) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("nested/twin/db");  // missing parents are created
  {
    auto s = open_rocksdb_store(o);
    ASSERT_TRUE(s) << error_message(s.error());
    store_batch b;
    b.puts.emplace_back(id("a:1"), "kept");
    b.index_adds.push_back({index_kind::by_type, "t", id("a:1")});
    ASSERT_FALSE((*s)->write(b));
  }
  auto s = open_rocksdb_store(o);
  ASSERT_TRUE(s);
  EXPECT_EQ(**(*s)->get(id("a:1")), "kept");
  EXPECT_EQ((*s)->list(index_kind::by_type, "t", {}, 10)->size(), 1u);
}

TEST(rocksdb_store, reports_its_column_families_from_the_databases_properties) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("db");
  auto store = open_rocksdb_store(o);
  ASSERT_TRUE(store);
  store_batch b;
  for (int i = 0; i < 100; ++i)
    b.puts.emplace_back(id("t:k" + std::to_string(i)), std::string(200, 'x'));
  ASSERT_FALSE((*store)->write(b));
  auto before = (*store)->stats();
  ASSERT_FALSE((*store)->flush());
  auto after = (*store)->stats();
  std::map<std::string, store_part_stats> parts;
  for (const auto& p : after.parts)
    parts[p.name] = p;
  for (const char* name : {"default", "twins", "by_type", "by_parent", "history"})
    EXPECT_EQ(parts.count(name), 1u) << name;
  EXPECT_EQ(parts["twins"].keys, 100u);
  EXPECT_GT(parts["twins"].sst_bytes, 0u);  // flushed into a table file
  ASSERT_TRUE((*store)->get(id("t:k7")));  // read through the block cache
  EXPECT_GT((*store)->stats().block_cache_bytes, 0u);
  for (const auto& p : before.parts) {
    if (p.name == "twins") {
      EXPECT_GT(p.memtable_bytes, parts["twins"].memtable_bytes);
    }
  }
  EXPECT_EQ(after.background_errors, 0u);
  EXPECT_EQ((*store)->write_failure(), "");
  EXPECT_FALSE(after.write_stopped);
  EXPECT_EQ(after.stalls_stop, 0u);
}

TEST(rocksdb_store, second_open_of_a_directory_is_refused_clearly) {
  temp_dir dir;
  rocksdb_options o;
  o.path = dir.sub("db");
  auto first = open_rocksdb_store(o);
  ASSERT_TRUE(first);
  auto second = open_rocksdb_store(o);
  ASSERT_FALSE(second);
  EXPECT_EQ(error_code(second.error()), runtime_errc::store_locked);
  EXPECT_NE(error_message(second.error()).find("in use by another process"), std::string::npos);
}

TEST(rocksdb_store, corrupt_directory_is_refused_clearly) {
  temp_dir dir;
  auto path = dir.sub("db");
  std::filesystem::create_directories(path);
  {
    std::ofstream current{path + "/CURRENT"};
    current << "MANIFEST-000999\n";  // names a manifest that does not exist
  }
  rocksdb_options o;
  o.path = path;
  auto s = open_rocksdb_store(o);
  ASSERT_FALSE(s);
  auto code = error_code(s.error());
  EXPECT_TRUE(code == runtime_errc::store_corrupt || code == runtime_errc::store_failure)
    << error_message(s.error());
  EXPECT_NE(error_message(s.error()).find(path), std::string::npos);
}

} // namespace
} // namespace twin::test
