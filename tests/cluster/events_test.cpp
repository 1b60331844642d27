// How members stream change events to each other, over a recorded link: a member relays
// its twins' events that a watcher's filters admit, in order; before a shard changes owner
// it relays what is queued and hears back from each watcher; and whatever breaks that
// promise (a watcher that does not answer, a relay that falls behind, a member that goes
// away) makes the watcher's streams lag instead of silently missing events.

#include <condition_variable>
#include <mutex>

#include <gtest/gtest.h>

#include "events.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/wire.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using namespace std::chrono_literals;
using runtime::change_event;
using runtime::change_feed;
using runtime::event_filter;

/// What a member sent, in order, and whether its questions get answers.
struct link_log {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::pair<std::string, envelope>> sent;  ///< to whom, what
  bool answer = true;
  bool hold = false;  ///< sending waits while set

  void release() {
    std::lock_guard<std::mutex> guard{mtx};
    hold = false;
    cv.notify_all();
  }

  /// Waits until `n` envelopes were sent (at most 5 s).
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, 5s, [&] { return sent.size() >= n; });
  }
};

change_streams make_streams(link_log& log, const std::string& me) {
  auto record = [&log, me](const std::string& to, envelope env) {
    env.from = me;
    std::unique_lock<std::mutex> guard{log.mtx};
    log.cv.wait(guard, [&] { return !log.hold; });
    log.sent.emplace_back(to, std::move(env));
    log.cv.notify_all();
    return true;
  };
  return change_streams{
    record, [&log, record](const std::string& to, envelope env,
                           std::chrono::milliseconds) -> caf::expected<std::string> {
      record(to, std::move(env));
      std::lock_guard<std::mutex> guard{log.mtx};
      if (log.answer)
        return std::string{};
      return runtime::make_error(runtime::runtime_errc::timeout, "no answer");
    }};
}

change_feed::event_ptr change(const std::string& id, uint64_t version) {
  auto ev = std::make_shared<change_event>();
  ev->id = *runtime::twin_id::parse(id);
  ev->type = "counter";
  ev->version = version;
  ev->properties["count"] = runtime::value{static_cast<int64_t>(version)};
  return ev;
}

envelope watch_from(const std::string& node, const std::string& filters) {
  envelope env;
  env.kind = envelope::watch;
  env.from = node;
  env.bytes = filters;
  return env;
}

/// The ids and versions of the events in the envelopes of `kind` sent to `to`.
std::vector<std::pair<std::string, uint64_t>> relayed(link_log& log, const std::string& to) {
  std::vector<std::pair<std::string, uint64_t>> out;
  std::lock_guard<std::mutex> guard{log.mtx};
  for (const auto& [node, env] : log.sent)
    if (node == to && env.kind == envelope::events) {
      auto events = runtime::decode_events(env.bytes);
      for (const auto& ev : *events)
        out.emplace_back(ev->id.str(), ev->version);
    }
  return out;
}

/// A member ("a") whose host publishes in `local`.
class change_streams_test : public ::testing::Test {
protected:
  change_streams_test() { owner.set_local(&local); }

  link_log log;
  change_feed local;
  change_streams owner = make_streams(log, "a");
};

TEST_F(change_streams_test, relays_what_a_watcher_asks_for_in_order_and_the_watcher_publishes_it) {
  ASSERT_FALSE(owner.on_watch(watch_from("b", R"([{"prefix": "m:1"}, {"type": "counter", "namespace": "k"}])")));
  EXPECT_EQ(owner.watchers(), 1u);
  for (uint64_t v = 1; v <= 3; ++v) {
    local.publish(change("m:1", v));
    local.publish(change("m:2", v));  // no filter admits it
    local.publish(change("k:x", v));
  }
  ASSERT_TRUE(log.wait_for(1));
  for (int i = 0; i < 100 && relayed(log, "b").size() < 6; ++i)
    std::this_thread::sleep_for(10ms);
  std::vector<std::pair<std::string, uint64_t>> want{
    {"m:1", 1}, {"k:x", 1}, {"m:1", 2}, {"k:x", 2}, {"m:1", 3}, {"k:x", 3}};
  EXPECT_EQ(relayed(log, "b"), want);

  // The watcher publishes what it receives, for its own subscribers.
  link_log other;
  auto watcher = make_streams(other, "b");
  auto sub = watcher.feed().subscribe(event_filter{}, 16, 1 << 20);
  std::vector<std::pair<std::string, envelope>> sent;
  {
    std::lock_guard<std::mutex> guard{log.mtx};
    sent = log.sent;
  }
  for (const auto& [to, env] : sent)
    watcher.on_events(env);
  auto got = sub->take();
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[5]->id.str(), "k:x");
  EXPECT_EQ(got[5]->properties.at("count"), runtime::value{int64_t{3}});
  // Its own twins' events reach its subscribers without a link.
  change_feed mine;
  watcher.set_local(&mine);
  EXPECT_TRUE(mine.active());
  mine.publish(change("b:own", 1));
  EXPECT_EQ(sub->take().size(), 1u);

  // A watcher with no filters left stops its relay.
  ASSERT_FALSE(owner.on_watch(watch_from("b", "[]")));
  EXPECT_EQ(owner.watchers(), 0u);
  EXPECT_FALSE(local.wants(*runtime::twin_id::parse("m:1"), "counter"));
}

TEST_F(change_streams_test, malformed_filters_are_refused_and_change_nothing) {
  for (auto bad : {"", "{}", R"([1])", R"([{"prefix": 3}])", "[[]]"})
    EXPECT_TRUE(owner.on_watch(watch_from("b", bad))) << bad;
  EXPECT_EQ(owner.watchers(), 0u);
  EXPECT_FALSE(local.active());
}

TEST_F(change_streams_test, a_sync_relays_what_is_queued_before_asking_and_a_silent_watcher_lags) {
  ASSERT_FALSE(owner.on_watch(watch_from("b", R"([{}])")));
  ASSERT_FALSE(owner.on_watch(watch_from("c", R"([{}])")));
  for (uint64_t v = 1; v <= 50; ++v)
    local.publish(change("m:1", v));
  owner.sync(1s);
  {
    std::lock_guard<std::mutex> guard{log.mtx};
    for (const auto& node : {"b", "c"}) {  // every event of the twin, then the question
      size_t events = 0;
      bool asked = false;
      for (const auto& [to, env] : log.sent) {
        if (to != node)
          continue;
        if (env.kind == envelope::sync)
          asked = true;
        if (env.kind != envelope::events)
          continue;
        EXPECT_FALSE(asked) << "an event after the sync to " << node;
        events += runtime::decode_events(env.bytes)->size();
      }
      EXPECT_TRUE(asked) << node;
      EXPECT_EQ(events, 50u) << node;
    }
    log.sent.clear();
    log.answer = false;
  }
  owner.sync(1s);  // no answer: each watcher is told it lost events, and its relay goes
  EXPECT_EQ(owner.watchers(), 0u);
  std::lock_guard<std::mutex> guard{log.mtx};
  size_t gaps = 0;
  for (const auto& [to, env] : log.sent)
    gaps += env.kind == envelope::gap;
  EXPECT_EQ(gaps, 2u);
}

TEST_F(change_streams_test, a_relay_that_falls_behind_tells_its_watcher_whose_streams_lag) {
  ASSERT_FALSE(owner.on_watch(watch_from("b", R"([{}])")));
  // The link stalls with one event on its way; then far more come than a relay holds.
  {
    std::lock_guard<std::mutex> guard{log.mtx};
    log.hold = true;
  }
  local.publish(change("m:1", 1));
  auto payload = std::make_shared<change_event>(*change("m:1", 2));
  payload->properties["blob"] = runtime::value{std::string(64 << 10, 'x')};
  for (int i = 0; i < 2'000; ++i)
    local.publish(payload);
  log.release();
  for (int i = 0; i < 500 && owner.watchers() > 0; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(owner.watchers(), 0u);
  envelope gap;
  {
    std::lock_guard<std::mutex> guard{log.mtx};
    ASSERT_FALSE(log.sent.empty());
    gap = log.sent.back().second;
  }
  EXPECT_EQ(gap.kind, envelope::gap);

  // The watcher's streams lag, and it tells the member again what it watches.
  link_log other;
  auto watcher = make_streams(other, "b");
  auto sub = watcher.feed().subscribe(event_filter{}, 16, 1 << 20);
  watcher.refresh({"a"});
  ASSERT_TRUE(other.wait_for(1));
  watcher.on_gap("a");
  EXPECT_TRUE(sub->lagged());
  auto again = watcher.feed().subscribe(event_filter{}, 16, 1 << 20);
  watcher.refresh({"a"});
  ASSERT_TRUE(other.wait_for(2));
  std::lock_guard<std::mutex> guard{other.mtx};
  EXPECT_EQ(other.sent[1].second.kind, envelope::watch);
}

TEST(change_streams, a_watched_member_that_goes_away_makes_the_streams_lag) {
  link_log log;
  auto watcher = make_streams(log, "b");
  auto sub = watcher.feed().subscribe(event_filter{"k", "", "", false, ""}, 16, 1 << 20);
  watcher.watch({"a", "c"}, 1s);
  {
    std::lock_guard<std::mutex> guard{log.mtx};
    ASSERT_EQ(log.sent.size(), 2u);
    EXPECT_EQ(log.sent[0].second.bytes, R"([{"namespace":"k","prefix":"","type":""}])");
  }
  // An exact id and a segment prefix cross too.
  auto one = watcher.feed().subscribe(event_filter{"", "", "k:a", true, "k:a-1"}, 16, 1 << 20);
  watcher.watch({"a", "c"}, 1s);
  {
    std::lock_guard<std::mutex> guard{log.mtx};
    ASSERT_EQ(log.sent.size(), 4u);
    EXPECT_EQ(log.sent[2].second.bytes,
              R"([{"id":"k:a-1","namespace":"","prefix":"k:a","segment":true,"type":""},)"
              R"({"namespace":"k","prefix":"","type":""}])");
  }
  watcher.watch({"a", "c"}, 1s);  // told already: nothing new to say
  EXPECT_EQ(log.sent.size(), 4u);
  watcher.on_peer_down("d");  // not watched: nothing lost
  EXPECT_FALSE(sub->lagged());
  watcher.on_peer_down("c");
  EXPECT_TRUE(sub->lagged());
}

} // namespace
} // namespace twin::test
