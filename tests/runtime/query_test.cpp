// Reads across twins on a running host: queries over the secondary indexes with paging,
// property history with downsampling, and the change feed.

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/query.hpp"
#include "twin/runtime/scheduler.hpp"

namespace twin::test {
namespace {

/// Counts the store's reads, in front of a memory store.
class counting_store : public failing_store {
public:
  counting_store() : failing_store(make_memory_store()) {}
  caf::expected<std::vector<twin_id>> scan_ids(const twin_id& after, size_t limit) override {
    ++scans;
    return failing_store::scan_ids(after, limit);
  }
  caf::expected<std::optional<std::string>> get(const twin_id& id) override {
    ++gets;
    return failing_store::get(id);
  }
  std::atomic<int> scans{0};
  std::atomic<int> gets{0};
};

class query_test : public ::testing::Test {
protected:
  query_test() {
    configure_scheduler(cfg_, 2);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    add_test_types(types_);
    host_ = std::make_unique<host>(*sys_, store_, types_);
    host_->set_feed(&feed_);
    EXPECT_FALSE(host_->start());
  }

  ~query_test() override {
    host_->stop();
    host_.reset();
    sys_.reset();
  }

  /// A plant p:plant with two lines, each with robots r0..r2, each with motors m0..m2;
  /// motor temperature = 10 * robot + motor (+ 100 on line 2).
  void build_plant() {
    ASSERT_TRUE(put(*host_, "p:plant", "plant"));
    for (int l = 1; l <= 2; ++l) {
      auto line = "p:line" + std::to_string(l);
      ASSERT_TRUE(put(*host_, line, "line", "p:plant"));
      for (int r = 0; r < 3; ++r) {
        auto robot = line + "-r" + std::to_string(r);
        ASSERT_TRUE(put(*host_, robot, "robot", line));
        for (int m = 0; m < 3; ++m) {
          auto motor = robot + "-m" + std::to_string(m);
          double t = 10 * r + m + (l == 2 ? 100 : 0);
          ASSERT_TRUE(put(*host_, motor, "motor", robot, {{"temperature", t}}));
        }
      }
    }
  }

  std::vector<std::string> ids(const twin_query& q) {
    std::vector<std::string> out;
    auto page = run_query(store_, types_, q);
    EXPECT_TRUE(page) << error_message(page.error());
    if (page)
      for (const auto& rec : page->items)
        out.push_back(rec.id.str());
    return out;
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  type_registry types_;
  counting_store store_;
  change_feed feed_;
  std::unique_ptr<host> host_;
};

TEST_F(query_test, filters_come_from_the_indexes_and_combine_with_where) {
  build_plant();
  store_.scans = 0;
  twin_query q;
  q.type = "robot";
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line1-r0", "p:line1-r1", "p:line1-r2",
                                              "p:line2-r0", "p:line2-r1", "p:line2-r2"}));
  q = {};
  q.parent = id("p:line1-r1");
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line1-r1-m0", "p:line1-r1-m1",
                                              "p:line1-r1-m2"}));
  q = {};
  q.kind = twin_kind::system;
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line1", "p:line2"}));
  // Only the twins under the parent are read, not the whole store.
  q = {};
  q.parent = id("p:line2-r2");
  q.where = *expression::parse("temperature >= 121 and temperature < 200");
  store_.gets = 0;
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line2-r2-m1", "p:line2-r2-m2"}));
  EXPECT_EQ(store_.gets.load(), 3);
  EXPECT_EQ(store_.scans.load(), 0);
  // Filters that contradict each other find nothing.
  q.type = "robot";
  EXPECT_TRUE(ids(q).empty());
  // Aggregates are properties to `where` like any other (once the robots recomputed).
  q = {};
  q.kind = twin_kind::asset;
  q.where = *expression::parse("max_temperature > 100");
  EXPECT_TRUE(eventually([&] { return ids(q).size() == 3u; }));
  // No filter at all: every twin.
  q = {};
  q.limit = twin_query::max_limit;
  EXPECT_EQ(ids(q).size(), 1u + 2 + 6 + 18);
  EXPECT_GT(store_.scans.load(), 0);
}

TEST_F(query_test, a_condition_reads_the_twins_own_fields_and_ids_filter) {
  build_plant();
  ASSERT_TRUE(put(*host_, "q:line1", "line"));
  twin_query q;
  q.where = *expression::parse("id = 'p:line1-r1'");
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line1-r1"}));
  q.where = *expression::parse("parent = 'p:line2' and kind = 'asset' and type = 'robot'");
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line2-r0", "p:line2-r1", "p:line2-r2"}));
  q.where = *expression::parse("namespace = 'q'");
  EXPECT_EQ(ids(q), (std::vector<std::string>{"q:line1"}));
  q = {};
  q.kind = twin_kind::system;
  q.ns = "p";
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line1", "p:line2"}));
  q.ns.clear();
  q.prefix = "q:";
  EXPECT_EQ(ids(q), (std::vector<std::string>{"q:line1"}));
  q = {};
  q.prefix = "p:line1-r2-";
  EXPECT_EQ(ids(q), (std::vector<std::string>{"p:line1-r2-m0", "p:line1-r2-m1",
                                              "p:line1-r2-m2"}));
}

TEST_F(query_test, pages_follow_the_cursor_and_cover_every_twin_once) {
  build_plant();
  for (auto kind : {std::optional<twin_kind>{}, std::optional<twin_kind>{twin_kind::component}}) {
    twin_query q;
    q.kind = kind;
    q.limit = 4;
    std::vector<std::string> seen;
    for (int pages = 0; pages < 20; ++pages) {
      auto page = run_query(store_, types_, q);
      ASSERT_TRUE(page);
      EXPECT_LE(page->items.size(), 4u);
      for (const auto& rec : page->items)
        seen.push_back(rec.id.str());
      if (page->cursor.empty())
        break;
      auto after = decode_cursor(page->cursor);
      ASSERT_TRUE(after);
      q.after = *after;
    }
    EXPECT_EQ(seen.size(), kind ? 18u : 27u);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
  }
  // A cursor is opaque, and garbage is refused.
  EXPECT_EQ(*decode_cursor(encode_cursor(id("p:line1-r0"))), id("p:line1-r0"));
  for (auto bad : {"", "x", "!!!!", "cDpsaW5lMQ", "MQ"})
    EXPECT_FALSE(decode_cursor(bad)) << bad;
  twin_query q;
  q.limit = 0;
  EXPECT_FALSE(run_query(store_, types_, q));
}

TEST_F(query_test, history_keeps_each_sample_and_downsamples_by_step) {
  ASSERT_TRUE(put(*host_, "p:r", "robot"));
  ASSERT_TRUE(put(*host_, "p:m", "motor", "p:r"));
  // Samples at 1000, 1100, ..., 2900 ms; an older one after them is not applied.
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(ingest(*host_, "p:m", {{"temperature", 20.0 + i}}, 1000 + 100 * i));
  ASSERT_TRUE(ingest(*host_, "p:m", {{"temperature", 99.0}}, 500));
  history_query q;
  q.id = id("p:m");
  q.property = "temperature";
  auto all = read_history(store_, types_, q);
  ASSERT_TRUE(all) << error_message(all.error());
  ASSERT_EQ(all->points.size(), 20u);
  EXPECT_EQ(all->points[0].ts_ms, 1000);
  EXPECT_EQ(all->points[19].v, value{39.0});
  EXPECT_FALSE(all->next_from_ms);
  q.from_ms = 1500;
  q.to_ms = 1800;
  q.limit = 2;
  auto part = read_history(store_, types_, q);
  ASSERT_EQ(part->points.size(), 2u);
  EXPECT_EQ(part->points[1].ts_ms, 1600);
  EXPECT_EQ(part->next_from_ms, 1700);
  q = history_query{id("p:m"), "temperature", 0, INT64_MAX, 1000};
  auto steps = read_history(store_, types_, q);
  ASSERT_EQ(steps->buckets.size(), 2u);
  EXPECT_EQ(steps->buckets[0].ts_ms, 1000);
  EXPECT_EQ(steps->buckets[0].count, 10u);
  EXPECT_DOUBLE_EQ(steps->buckets[0].min, 20);
  EXPECT_DOUBLE_EQ(steps->buckets[0].max, 29);
  EXPECT_DOUBLE_EQ(steps->buckets[0].avg, 24.5);
  EXPECT_DOUBLE_EQ(steps->buckets[1].avg, 34.5);
  // The parent's aggregate has a history of its own, once it was recomputed.
  EXPECT_TRUE(eventually([&] {
    auto h = read_history(store_, types_, history_query{id("p:r"), "max_temperature"});
    return h && !h->points.empty() && h->points.back().v == value{39.0};
  }));
  // What keeps no history, and twins that do not exist, say so.
  EXPECT_EQ(error_code(read_history(store_, types_, {id("p:m"), "rpm"}).error()),
            runtime_errc::unknown_property);
  EXPECT_EQ(error_code(read_history(store_, types_, {id("p:m"), "mode", 0, 10, 5}).error()),
            runtime_errc::type_mismatch);
  EXPECT_EQ(error_code(read_history(store_, types_, {id("p:x"), "temperature"}).error()),
            runtime_errc::not_found);
  // Deleting the twin deletes its history.
  ASSERT_TRUE(remove(*host_, "p:m"));
  ASSERT_TRUE(put(*host_, "p:m", "motor"));
  auto fresh = read_history(store_, types_, history_query{id("p:m"), "temperature"});
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(fresh->points.empty());
}

TEST_F(query_test, the_feed_streams_durable_changes_in_version_order_and_lags_without_waiting) {
  event_filter all;
  auto sub = feed_.subscribe(all, 1000);
  event_filter motors;
  motors.type = "motor";
  motors.prefix = "p:m";
  auto only_motors = feed_.subscribe(motors, 1000);
  auto tiny = feed_.subscribe(all, 3);
  std::atomic<int> woken{0};
  sub->on_ready([&] { ++woken; });
  ASSERT_TRUE(put(*host_, "p:r", "robot"));
  ASSERT_TRUE(put(*host_, "p:m", "motor", "p:r"));
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(ingest(*host_, "p:m", {{"temperature", 20.0 + i}}));
  ASSERT_TRUE(command(*host_, "p:m", "stop"));
  ASSERT_TRUE(remove(*host_, "p:m"));
  std::vector<change_feed::event_ptr> seen;
  // The robot recomputes after the motor's changes: wait until the feed holds them all.
  ASSERT_TRUE(eventually([&] {
    for (auto& ev : sub->take())
      seen.push_back(ev);
    return !seen.empty() && seen.back()->id == id("p:r")
           && seen.back()->properties.count("max_temperature") == 0;
  }));
  EXPECT_GT(woken.load(), 0);
  uint64_t last = 0;
  int changes = 0, commands = 0, deletes = 0;
  for (const auto& ev : seen) {
    if (ev->id != id("p:m"))
      continue;
    if (ev->kind == change_event::kind_t::command) {
      ++commands;
      EXPECT_EQ(ev->command, "stop");
      continue;
    }
    EXPECT_EQ(ev->version, last + 1);  // every version, in order
    last = ev->version;
    ev->kind == change_event::kind_t::deleted ? ++deletes : ++changes;
  }
  EXPECT_EQ(changes, 11);
  EXPECT_EQ(commands, 1);
  EXPECT_EQ(deletes, 1);
  auto motor_events = only_motors->take();
  ASSERT_EQ(motor_events.size(), 13u);
  for (const auto& ev : motor_events)
    EXPECT_EQ(ev->type, "motor");
  EXPECT_EQ(motor_events[5]->properties.at("temperature"), value{24.0});
  // The tiny subscriber fell behind: it kept its first three events and then lagged.
  EXPECT_TRUE(tiny->lagged());
  EXPECT_EQ(tiny->take().size(), 3u);
  EXPECT_FALSE(sub->lagged());
  // A dropped subscriber is forgotten; with none left, twins build no events.
  sub.reset();
  only_motors.reset();
  tiny.reset();
  ASSERT_TRUE(put(*host_, "p:x", "robot"));  // its commit asked the feed, before the answer
  EXPECT_FALSE(feed_.active());
}

TEST(event_filters, take_an_exact_id_and_a_prefix_that_ends_a_segment) {
  event_filter line1;
  line1.prefix = "factory:line-1";
  EXPECT_TRUE(line1.matches(id("factory:line-10"), "line")) << "a plain prefix";
  line1.segment = true;
  for (auto yes : {"factory:line-1", "factory:line-1-robot-2", "factory:line-1.a"})
    EXPECT_TRUE(line1.matches(id(yes), "line")) << yes;
  for (auto no : {"factory:line-10", "factory:line-1a", "factory:line-"})
    EXPECT_FALSE(line1.matches(id(no), "line")) << no;
  event_filter one;
  one.id = "factory:line-1";
  EXPECT_TRUE(one.matches(id("factory:line-1"), "line"));
  EXPECT_FALSE(one.matches(id("factory:line-10"), "line"));
  EXPECT_FALSE(one.matches(id("factory:line-1-robot-2"), "robot"));
}

TEST(change_feed_bounds, a_subscriber_lags_once_its_queue_holds_too_many_bytes) {
  change_feed feed;
  auto small = feed.subscribe({}, 4096, 10'000);
  auto roomy = feed.subscribe({}, 4096, 1u << 20);
  for (int i = 0; i < 10; ++i) {
    auto ev = std::make_shared<change_event>();
    ev->id = twin_id::trusted("f:m" + std::to_string(i));
    ev->type = "motor";
    ev->version = 1;
    ev->properties.emplace("label", value{std::string(3000, 'x')});
    EXPECT_GT(approximate_size(*ev), 3000u);
    feed.publish(ev);
  }
  // About 3 KB an event: three fit in 10 KB, and then it lags; the other keeps all ten.
  EXPECT_TRUE(small->lagged());
  EXPECT_EQ(small->take().size(), 3u);
  EXPECT_FALSE(roomy->lagged());
  EXPECT_EQ(roomy->take().size(), 10u);
}

TEST(change_feed_log, a_subscriber_resumes_after_a_kept_event_or_is_told_it_cannot) {
  change_feed feed;
  feed.retain(3, 1u << 20);
  auto publish = [&](const std::string& twin) {
    auto ev = std::make_shared<change_event>();
    ev->id = twin_id::trusted(twin);
    ev->type = "motor";
    feed.publish(ev);
  };
  EXPECT_TRUE(feed.wants(id("f:m1"), "motor")) << "what it keeps is every change";
  for (int i = 1; i <= 5; ++i)
    publish(i == 4 ? "g:m4" : "f:m" + std::to_string(i));  // kept: 3, 4 and 5
  auto resumed = feed.subscribe_any({event_filter{"f", "", "", false, ""}}, 100, 1u << 20,
                                    feed.event_id(2));
  EXPECT_FALSE(resumed->reset());
  publish("f:m6");
  auto got = resumed->take_numbered();
  ASSERT_EQ(got.size(), 3u);  // 3 and 5 kept (4 is another namespace's), then 6
  EXPECT_EQ(got[0].seq, 3u);
  EXPECT_EQ(got[1].ev->id.str(), "f:m5");
  EXPECT_EQ(got[2].seq, 6u);
  EXPECT_EQ(resumed->event_id(6), feed.event_id(6));
  auto current = feed.subscribe_any({event_filter{}}, 100, 1u << 20, feed.event_id(6));
  EXPECT_FALSE(current->reset());
  EXPECT_TRUE(current->take().empty());
  // Too old (1 and 2 are gone), not yet published, or another feed's: it cannot resume.
  for (const auto& after : {feed.event_id(2).substr(0, 17) + "1", feed.event_id(9),
                            change_feed{}.event_id(5), std::string{"garbage"}}) {
    auto sub = feed.subscribe_any({event_filter{}}, 100, 1u << 20, after);
    EXPECT_TRUE(sub->reset()) << after;
    EXPECT_TRUE(sub->take().empty()) << after;
  }
  EXPECT_NE(change_feed{}.event_id(1), change_feed{}.event_id(1));
}

} // namespace
} // namespace twin::test
