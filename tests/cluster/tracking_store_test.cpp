// A shard copied page by page while its twins keep changing, then brought up to date with
// the changes the tracking store recorded meanwhile, ends equal to the original: records,
// both indexes, history and metadata, deletions included.

#include <gtest/gtest.h>

#include "twin/cluster/tracking_store.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::test {
namespace {

using namespace twin::runtime;
using cluster::tracking_store;

constexpr uint32_t shards = 16;

/// `n` ids of shard `s`.
std::vector<twin_id> ids_of(shard_id s, size_t n) {
  std::vector<twin_id> out;
  for (int i = 0; out.size() < n && i < 100'000; ++i) {
    auto id = *twin_id::parse("t:x" + std::to_string(i));
    if (shard_of(id, shards) == s)
      out.push_back(id);
  }
  return out;
}

store_batch make(const twin_id& id, const std::string& record, const std::string& type,
                 int64_t ts) {
  store_batch b;
  b.puts.emplace_back(id, record);
  b.index_adds.push_back({index_kind::by_type, type, id});
  b.history.push_back({id, "level", ts, "v" + std::to_string(ts)});
  return b;
}

/// Everything `store` holds of the twins `ids` and of `shard`'s metadata, as text.
std::string contents(state_store& store, shard_id shard, const std::vector<twin_id>& ids) {
  std::string out;
  for (const auto& id : ids) {
    auto rec = store.get(id);
    out += id.str() + "=" + (rec && *rec ? **rec : "-") + " history:";
    auto samples = store.history(id, "level", 0, 1'000'000, 100);
    for (const auto& [ts, v] : *samples)
      out += std::to_string(ts) + ":" + v + ",";
    out += "\n";
  }
  for (const auto* type : {"a", "b"}) {
    out += std::string{"type "} + type + ":";
    auto listed = store.list(index_kind::by_type, type, twin_id{}, 100);
    for (const auto& id : *listed)
      if (std::find(ids.begin(), ids.end(), id) != ids.end())
        out += id.str() + ",";
    out += "\n";
  }
  auto meta = store.get_meta(shard, "counts");
  out += "meta=" + (meta && *meta ? **meta : "-");
  return out;
}

TEST(tracking_store, a_copy_made_while_the_shard_changes_plus_its_changes_equals_the_shard) {
  auto inner = make_memory_store(shards);
  tracking_store store{*inner};
  shard_id s{3};
  auto ids = ids_of(s, 12);
  ASSERT_EQ(ids.size(), 12u);
  for (size_t i = 0; i < ids.size(); ++i)
    ASSERT_FALSE(store.write(make(ids[i], "r0-" + std::to_string(i), "a", 10)));
  auto other = *twin_id::parse("t:other");
  for (int i = 0; shard_of(other, shards) == s; ++i)
    other = *twin_id::parse("t:other" + std::to_string(i));

  store.track(s);
  auto copy = make_memory_store(shards);
  std::string cursor;
  int pages = 0;
  for (; pages < 100; ++pages) {
    auto page = store.read_shard(s, cursor, 64);  // small pages: the changes come between
    ASSERT_TRUE(page);
    ASSERT_FALSE(copy->write(page->entries));
    if (pages == 1) {  // the shard changes while it is copied, before and behind the cursor
      ASSERT_FALSE(store.write(make(ids[0], "r1-0", "a", 20)));
      ASSERT_FALSE(store.write(make(ids[11], "r1-11", "a", 20)));
      store_batch gone;
      gone.deletes.push_back(ids[1]);
      gone.index_removes.push_back({index_kind::by_type, "a", ids[1]});
      gone.history_deletes.push_back(ids[1]);
      gone.meta_puts.push_back({s, "counts", "11"});
      ASSERT_FALSE(store.write(gone));
      store_batch retyped;  // index moves, history cleared then a new sample
      retyped.index_removes.push_back({index_kind::by_type, "a", ids[10]});
      retyped.index_adds.push_back({index_kind::by_type, "b", ids[10]});
      retyped.history_deletes.push_back(ids[10]);
      retyped.history.push_back({ids[10], "level", 30, "fresh"});
      ASSERT_FALSE(store.write(retyped));
      ASSERT_FALSE(store.write(make(other, "elsewhere", "a", 5)));  // not tracked
    }
    if (page->next.empty())
      break;
    cursor = page->next;
  }
  EXPECT_GT(pages, 2);
  EXPECT_NE(contents(*copy, s, ids), contents(store, s, ids));  // the copy alone misses them

  cursor.clear();
  for (int i = 0; i < 100; ++i) {
    auto page = store.changes(s, cursor, 16);
    ASSERT_TRUE(page) << error_message(page.error());
    for (const auto& [id, rec] : page->entries.puts)
      EXPECT_NE(id, other);
    ASSERT_FALSE(copy->write(page->entries));
    if (page->next.empty())
      break;
    cursor = page->next;
  }
  EXPECT_EQ(contents(*copy, s, ids), contents(store, s, ids));
  EXPECT_FALSE(copy->get(other).value());
}

TEST(tracking_store, changes_beyond_its_limit_make_the_shard_copied_anew) {
  auto inner = make_memory_store(shards);
  tracking_store store{*inner, 4096};
  shard_id s{5};
  auto ids = ids_of(s, 1);
  EXPECT_EQ(error_code(store.changes(s, "", 1 << 20).error()), runtime_errc::unavailable);
  store.track(s);
  for (int i = 0; i < 100; ++i)
    ASSERT_FALSE(store.write(make(ids[0], std::string(100, 'x'), "a", i)));
  for (int asked = 0; asked < 2; ++asked) {  // an answer lost on its way is given again
    auto too_many = store.changes(s, "", 1 << 20);
    ASSERT_FALSE(too_many);
    EXPECT_EQ(error_code(too_many.error()), runtime_errc::conflict);
  }
  // Recorded anew for a new copy: it needs only what comes next.
  store.track(s);
  auto empty = store.changes(s, "", 1 << 20);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->entries.empty());
  ASSERT_FALSE(store.write(make(ids[0], "last", "a", 1000)));
  auto last = store.changes(s, "", 1 << 20);
  ASSERT_TRUE(last);
  ASSERT_EQ(last->entries.puts.size(), 1u);
  EXPECT_EQ(last->entries.puts[0].second, "last");
  store.untrack(s);
  EXPECT_FALSE(store.changes(s, "", 1 << 20));
}

} // namespace
} // namespace twin::test
