// The audit log: entries written by a thread of its own, read back by time, token and twin a
// page at a time, kept across a reopening, and dropped past the retention.

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/api/audit.hpp"

namespace twin::test {
namespace {

using api::audit_entry;
using api::audit_log;
using api::audit_query;

audit_entry entry(int64_t ts, const std::string& token, const std::string& twin,
                  unsigned status = 200) {
  audit_entry e;
  e.ts_ms = ts;
  e.token_id = token;
  e.token_name = token.empty() ? "" : "name of " + token;
  e.peer = "10.1.2.3";
  e.method = "PATCH";
  e.path = "/v1/twins/" + twin;
  e.twin = twin;
  e.status = status;
  e.outcome = status < 400 ? "ok" : "forbidden";
  return e;
}

std::unique_ptr<audit_log> open(const std::string& path,
                                std::chrono::hours retention = std::chrono::hours{24}) {
  api::audit_options o;
  o.path = path;
  o.retention = retention;
  auto log = audit_log::open(o);
  EXPECT_TRUE(log) << error_message(log.error());
  return log ? std::move(*log) : nullptr;
}


TEST(audit_log, entries_read_back_by_time_token_and_twin_a_page_at_a_time) {
  temp_dir dir;
  auto log = open(dir.sub("audit"));
  auto t0 = now_ms();
  for (int i = 0; i < 250; ++i)
    log->record(entry(t0 + i, i % 2 == 0 ? "aaaaaaaaaaaaaaaa" : "bbbbbbbbbbbbbbbb",
                      "p:t" + std::to_string(i % 5), i % 7 == 0 ? 403 : 200));
  log->flush();
  EXPECT_EQ(log->written(), 250u);
  audit_query q;
  q.from_ms = t0;
  q.limit = 100;
  std::vector<audit_entry> all;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = log->read(q);
    ASSERT_TRUE(page) << error_message(page.error());
    all.insert(all.end(), page->items.begin(), page->items.end());
    if (page->cursor.empty())
      break;
    q.cursor = page->cursor;
  }
  ASSERT_EQ(all.size(), 250u);
  for (size_t i = 0; i < all.size(); ++i)
    ASSERT_EQ(all[i].ts_ms, t0 + static_cast<int64_t>(i));  // oldest first, none twice
  EXPECT_EQ(all[7].status, 403u);
  EXPECT_EQ(all[7].outcome, "forbidden");
  EXPECT_EQ(all[1].token_name, "name of bbbbbbbbbbbbbbbb");
  EXPECT_EQ(all[1].peer, "10.1.2.3");

  audit_query of_token;
  of_token.token_id = "aaaaaaaaaaaaaaaa";
  of_token.twin = "p:t0";
  of_token.from_ms = t0 + 10;
  of_token.to_ms = t0 + 100;
  of_token.limit = 1000;
  auto page = log->read(of_token);
  ASSERT_TRUE(page);
  // Even i from 10 to 100 with i % 5 == 0: 10, 20, ..., 100.
  ASSERT_EQ(page->items.size(), 10u);
  for (const auto& e : page->items)
    EXPECT_TRUE(e.token_id == "aaaaaaaaaaaaaaaa" && e.twin == "p:t0");
  audit_query bad;
  bad.cursor = "not a cursor";
  EXPECT_FALSE(log->read(bad));
  bad.cursor.clear();
  bad.limit = 0;
  EXPECT_FALSE(log->read(bad));
}

TEST(audit_log, a_log_opened_again_keeps_its_entries_and_adds_to_them) {
  temp_dir dir;
  auto t0 = now_ms();
  auto log = open(dir.sub("audit"));
  log->record(entry(t0, "", "p:a", 401));
  log.reset();  // writes what is queued
  log = open(dir.sub("audit"));
  log->record(entry(t0, "", "p:b", 401));  // the same millisecond
  log->flush();
  audit_query q;
  q.from_ms = t0;
  auto page = log->read(q);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].twin, "p:a");
  EXPECT_EQ(page->items[1].twin, "p:b");
}

TEST(audit_log, entries_older_than_the_retention_go) {
  temp_dir dir;
  auto now = now_ms();
  auto log = open(dir.sub("audit"), std::chrono::hours{1});
  log->record(entry(now - 2 * 3'600'000, "", "p:old"));
  log->record(entry(now, "", "p:new"));
  log.reset();
  log = open(dir.sub("audit"), std::chrono::hours{1});  // trims as it starts
  log->flush();
  audit_query q;
  auto page = log->read(q);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->items[0].twin, "p:new");
}

TEST(audit_log, a_full_queue_drops_and_counts_instead_of_waiting) {
  temp_dir dir;
  api::audit_options o;
  o.path = dir.sub("audit");
  o.max_queued = 10;
  auto log = audit_log::open(o);
  ASSERT_TRUE(log);
  for (int i = 0; i < 100000; ++i)
    (*log)->record(entry(now_ms(), "", "p:x"));
  (*log)->flush();
  EXPECT_EQ((*log)->written() + (*log)->dropped(), 100000u);
  EXPECT_GT((*log)->dropped(), 0u);
}

} // namespace
} // namespace twin::test
