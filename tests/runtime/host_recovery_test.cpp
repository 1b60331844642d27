// The host over time and failures: device time, restart recovery, passivation and the
// active-set cap, failed writes, stopping.

#include <limits>
#include <thread>

#include "host_fixture.hpp"

namespace twin::test {
namespace {

TEST_F(host_test, older_samples_do_not_overwrite_newer_ones) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor"));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{50.0}}}, 1'700'000'000'000));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{10.0}}}, 1'000'000'000'000));
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{50.0});
}

TEST_F(host_test, samples_from_the_future_are_refused_and_pin_nothing) {
  host_options opts;
  opts.max_clock_skew = std::chrono::seconds{60};
  start(opts);
  ASSERT_TRUE(put(h(), "f:m1", "motor", {}, {{"temperature", value{20.0}}}));
  auto far = ingest(h(), "f:m1", {{"temperature", value{249.0}}},
                    std::numeric_limits<int64_t>::max());
  ASSERT_FALSE(far);
  EXPECT_EQ(error_code(far.error()), runtime_errc::future_timestamp);
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{20.0});
  // Within the allowed skew a sample is taken; later samples without a ts are older and
  // skipped (the device's own order), but an operator's patch is applied.
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{50.0}}}, now_ms() + 30'000));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{51.0}}}));
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{50.0});
  ASSERT_TRUE(patch(h(), "f:m1", {{"temperature", value{40.0}}}, {}));
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{40.0});
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{41.0}}}));
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{41.0});
}

TEST_F(host_test, a_twin_that_holds_a_timestamp_from_the_future_recovers_at_the_next_sample) {
  // Written while samples from the future were still taken (a skew of ~292 million years).
  host_options lax;
  lax.max_clock_skew = std::chrono::milliseconds{std::numeric_limits<int64_t>::max() / 2};
  start(lax);
  ASSERT_TRUE(put(h(), "f:m1", "motor"));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{249.0}}}, now_ms() + 3'600'000));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{20.0}}}));
  ASSERT_EQ(prop(h(), "f:m1", "temperature"), value{249.0});
  restart();  // the default skew of 60 s
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{21.0}}}));
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{21.0});
}

TEST_F(host_test, property_metadata_follows_reports_and_deletions) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor"));
  auto v1 = ingest(h(), "f:m1", {{"temperature", value{50.0}}}, 1'700'000'000'000);
  // The same value, reported later: the update time moves, durably.
  auto v2 = ingest(h(), "f:m1", {{"temperature", value{50.0}}}, 1'700'000'000'500);
  ASSERT_TRUE(v1 && v2);
  EXPECT_EQ(*v2, *v1 + 1);
  // The very same sample again changes nothing.
  EXPECT_EQ(*ingest(h(), "f:m1", {{"temperature", value{50.0}}}, 1'700'000'000'500), *v2);
  restart();
  EXPECT_EQ(get(h(), "f:m1")->metadata.at("temperature").updated_ms, 1'700'000'000'500);
  // null deletes the property and its metadata.
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{}}}, 1'700'000'001'000));
  auto rec = get(h(), "f:m1");
  EXPECT_EQ(rec->reported.count("temperature"), 0u);
  EXPECT_EQ(rec->metadata.count("temperature"), 0u);
}

TEST_F(host_test, every_acknowledged_change_survives_a_restart) {
  start();
  build_plant();
  ASSERT_TRUE(ingest(h(), "f:m2", {{"temperature", value{95.0}}}));
  ASSERT_TRUE(patch(h(), "f:m1", {}, {{"rpm", value{900}}}));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "health") == value{"critical"}; }));
  auto before = get(h(), "f:robot1");
  restart();
  EXPECT_EQ(h().active_count(), 0u);
  auto m2 = get(h(), "f:m2");
  ASSERT_TRUE(m2);
  EXPECT_EQ(m2->reported.at("temperature"), value{95.0});
  EXPECT_EQ(m2->alerts.size(), 2u);
  EXPECT_EQ(get(h(), "f:m1")->desired.at("rpm"), value{900});
  auto after = get(h(), "f:robot1");
  EXPECT_EQ(after->version, before->version);
  EXPECT_EQ(after->reported, before->reported);
  EXPECT_EQ(prop(h(), "f:plant", "max_temperature"), value{95.0});
  EXPECT_EQ(h().counts().twins, 8);
  EXPECT_EQ(h().counts().alerts_critical, 1);
  // Aggregates keep working from the persisted child states after the restart.
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{99.0}}}));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "max_temperature") == value{99.0}; }));
  ASSERT_TRUE(ingest(h(), "f:m2", {{"temperature", value{10.0}}}));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{10.0}}}));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "max_temperature") == value{30.0}; }));
}

TEST_F(host_test, a_parent_catches_up_with_children_written_before_a_crash) {
  start();
  build_plant();
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:robot1", "max_temperature") == value{20.0}; }));
  auto robot = get(h(), "f:robot1");
  ASSERT_TRUE(robot);
  stop();
  // As after a kill -9 between a child's durable write and its parent's: the store has
  // the child's new state, the parent's record has not. And as after one between a
  // parent accepting a new child and the child's write: the parent lists a child that
  // never became durable.
  auto m1 = decode_record(**store_->get(id("f:m1")));
  m1->reported["temperature"] = value{97.0};
  robot->children.push_back({id("f:m9"), {{"temperature", value{150.0}}}, severity::ok, "motor"});
  store_batch b;
  b.puts.emplace_back(m1->id, encode(*m1));
  b.puts.emplace_back(robot->id, encode(*robot));
  ASSERT_FALSE(store_->write(b));
  start();
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:robot1", "max_temperature") == value{97.0}; }));
  EXPECT_EQ(prop(h(), "f:robot1", "motors"), value{2});
  EXPECT_EQ(get(h(), "f:robot1")->children.size(), 2u);
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "max_temperature") == value{97.0}; }));
}

TEST_F(host_test, stored_properties_the_type_no_longer_declares_are_kept_until_a_put) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"temperature", value{20.0}}}));
  stop();
  // As if the motor model had a property "torque" when the twin was stored.
  auto m1 = decode_record(**store_->get(id("f:m1")));
  m1->reported["torque"] = value{12.5};
  m1->metadata["torque"] = property_meta{1700000000000, "telemetry"};
  store_batch b;
  b.puts.emplace_back(m1->id, encode(*m1));
  ASSERT_FALSE(store_->write(b));
  start();
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{25.0}}}));
  restart();  // the write of the ingest kept it
  auto r = get(h(), "f:m1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reported.at("torque"), value{12.5});
  EXPECT_EQ(r->metadata.at("torque").source, "telemetry");
  EXPECT_EQ(r->reported.at("temperature"), value{25.0});
  // Telemetry cannot write it, and a put, which replaces the reported state, drops it.
  EXPECT_FALSE(ingest(h(), "f:m1", {{"torque", value{1.0}}}));
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"temperature", value{26.0}}}));
  restart();
  r = get(h(), "f:m1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reported.count("torque"), 0u);
  EXPECT_EQ(r->reported.at("temperature"), value{26.0});
}

TEST_F(host_test, a_child_of_a_parent_deleted_before_a_crash_drops_the_link) {
  start();
  build_plant();
  stop();
  // As after a kill -9 right after deleting robot2: its orphan notice never reached m3.
  store_batch b;
  b.deletes.push_back(id("f:robot2"));
  b.index_removes.push_back({index_kind::by_type, "robot", id("f:robot2")});
  b.index_removes.push_back({index_kind::by_parent, "f:line2", id("f:robot2")});
  ASSERT_FALSE(store_->write(b));
  start();
  EXPECT_EQ(get(h(), "f:m3")->parent, id("f:robot2"));
  ASSERT_TRUE(ingest(h(), "f:m3", {{"temperature", value{31.0}}}));
  ASSERT_TRUE(eventually([&] { return get(h(), "f:m3")->parent.empty(); }));
  EXPECT_TRUE(eventually(
    [&] { return store_->list(index_kind::by_parent, "f:robot2", {}, 10)->empty(); }));
  EXPECT_FALSE(get(h(), "f:robot2"));
}

TEST_F(host_test, idle_twins_passivate_and_reactivate_with_their_state) {
  host_options opts;
  opts.idle_timeout = std::chrono::milliseconds{50};
  start(opts);
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"temperature", value{33.0}}}));
  ASSERT_TRUE(eventually([&] { return h().active_count() == 0; }));
  EXPECT_GE(h().stats().passivations.load(), 1u);
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{33.0});
  EXPECT_GE(h().stats().activations.load(), 2u);
}

TEST_F(host_test, unknown_ids_do_not_stay_active) {
  start();
  for (int i = 0; i < 100; ++i)
    EXPECT_FALSE(get(h(), "f:ghost" + std::to_string(i)));
  EXPECT_TRUE(eventually([&] { return h().active_count() == 0; }));
}

TEST_F(host_test, the_active_set_is_capped_and_nothing_is_lost_or_reordered) {
  host_options opts;
  opts.max_active = 64;  // one per stripe: constant passivation under load
  start(opts);
  constexpr int twins = 200;
  constexpr int rounds = 20;
  for (int i = 0; i < twins; ++i)
    ASSERT_TRUE(put(h(), "f:m" + std::to_string(i), "motor", "", {{"count", value{0}}}));
  // Fire every update without waiting; each twin must end at `rounds`, applied in order.
  std::atomic<int> acked{0};
  std::atomic<int> out_of_order{0};
  std::vector<uint64_t> last_version(twins, 0);
  std::mutex mtx;
  auto base_ts = now_ms() + 1000;
  for (int r = 1; r <= rounds; ++r)
    for (int i = 0; i < twins; ++i) {
      ingest_request req;
      req.values = {{"count", value{r}}};
      req.ts_ms = base_ts + r;
      req.done = [&, i](caf::expected<uint64_t> v) {
        if (v) {
          std::lock_guard<std::mutex> guard{mtx};
          if (*v <= last_version[i])
            ++out_of_order;
          last_version[i] = *v;
        }
        ++acked;
      };
      h().route(id("f:m" + std::to_string(i)), std::move(req));
    }
  ASSERT_TRUE(eventually([&] { return acked.load() == twins * rounds; }));
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_TRUE(eventually([&] { return h().active_count() <= 64u; })) << h().active_count();
  EXPECT_GT(h().stats().passivations.load(), 0u);
  for (int i = 0; i < twins; ++i) {
    auto rec = get(h(), "f:m" + std::to_string(i));
    ASSERT_TRUE(rec) << error_message(rec.error());
    ASSERT_EQ(rec->reported.at("count"), value{rounds}) << i;
  }
}

TEST_F(host_test, composition_holds_while_twins_passivate_constantly) {
  host_options opts;
  opts.max_active = 64;  // one twin per stripe: parents and children come and go all the time
  start(opts);
  ASSERT_TRUE(put(h(), "f:plant", "plant"));
  std::vector<std::string> motors;
  for (int l = 0; l < 4; ++l) {
    auto line = "f:line" + std::to_string(l);
    ASSERT_TRUE(put(h(), line, "line", "f:plant"));
    for (int r = 0; r < 8; ++r) {
      auto robot = "f:robot" + std::to_string(l) + "-" + std::to_string(r);
      ASSERT_TRUE(put(h(), robot, "robot", line));
      for (int m = 0; m < 4; ++m) {
        motors.push_back("f:motor" + std::to_string(l) + "-" + std::to_string(r) + "-"
                         + std::to_string(m));
        ASSERT_TRUE(put(h(), motors.back(), "motor", robot));
      }
    }
  }
  // Every motor reports at once, without waiting; one runs hot.
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  for (size_t i = 0; i < motors.size(); ++i) {
    ingest_request req;
    req.values = {{"temperature", value{i == 77 ? 99.0 : 40.0 + static_cast<double>(i % 20)}}};
    req.done = [&](caf::expected<uint64_t> v) { ++(v ? acked : failed); };
    h().route(id(motors[i]), std::move(req));
  }
  ASSERT_TRUE(eventually([&] { return acked + failed == static_cast<int>(motors.size()); }));
  EXPECT_EQ(failed.load(), 0);
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "max_temperature") == value{99.0}; }))
    << to_string(prop(h(), "f:plant", "max_temperature"));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "health") == value{"critical"}; }));
  EXPECT_GT(h().stats().passivations.load(), 100u);
  for (int l = 0; l < 4; ++l)
    EXPECT_EQ(get(h(), "f:line" + std::to_string(l))->children.size(), 8u);
  restart(opts);
  EXPECT_EQ(prop(h(), "f:plant", "max_temperature"), value{99.0});
  EXPECT_EQ(h().counts().twins, 1 + 4 + 32 + 128);
  EXPECT_EQ(h().counts().alerts_critical, 1);
}

TEST_F(host_test, a_failed_write_fails_the_request_and_changes_nothing) {
  auto* fs = start_failing();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"temperature", value{20.0}}}));
  fs->fail_next_write();
  auto failed = ingest(h(), "f:m1", {{"temperature", value{95.0}}});
  ASSERT_FALSE(failed);
  EXPECT_EQ(error_code(failed.error()), runtime_errc::store_failure);
  auto rec = get(h(), "f:m1");
  EXPECT_EQ(rec->version, 1u);
  EXPECT_EQ(rec->reported.at("temperature"), value{20.0});
  EXPECT_TRUE(rec->alerts.empty());
  EXPECT_EQ(h().counts().alerts_critical, 0);
  // The twin works again afterwards.
  auto v = ingest(h(), "f:m1", {{"temperature", value{30.0}}});
  ASSERT_TRUE(v) << error_message(v.error());
  EXPECT_EQ(*v, 2u);
}

TEST_F(host_test, changes_queued_behind_a_failed_write_fail_too) {
  auto* fs = start_failing();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"count", value{0}}}));
  // The first change's write fails, and is held in the store while more changes queue
  // up behind it. Each of those carries the whole record, including the failed change:
  // none may be stored, and the twin must go back to what the store has.
  fs->fail_next_write(true);
  constexpr int n = 20;
  std::atomic<int> ok{0};
  std::atomic<int> errors{0};
  auto send = [&](int i) {
    ingest_request req;
    req.values = {{"count", value{i}}};
    req.ts_ms = now_ms() + i;
    req.done = [&](caf::expected<uint64_t> r) { ++(r ? ok : errors); };
    h().route(id("f:m1"), std::move(req));
  };
  send(1);
  ASSERT_TRUE(fs->wait_held(std::chrono::seconds{10}));
  for (int i = 2; i <= n; ++i)
    send(i);
  fs->release();
  ASSERT_TRUE(eventually([&] { return ok + errors == n; }));
  EXPECT_GE(errors.load(), 1);
  // What the store has is exactly what was acknowledged.
  auto stored = decode_record(**fs->get(id("f:m1")));
  EXPECT_EQ(stored->version, 1u + static_cast<uint64_t>(ok.load()));
  EXPECT_NE(stored->reported.at("count"), value{1});
  auto rec = get(h(), "f:m1");
  EXPECT_EQ(rec->version, stored->version);
  EXPECT_EQ(rec->reported.at("count"), stored->reported.at("count"));
}

TEST_F(host_test, a_failed_write_spares_twins_that_only_waited_in_it) {
  auto* fs = start_failing();
  auto ts = now_ms() + 60'000;  // newer than what the puts report
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"temperature", value{20.0}}}));
  ASSERT_TRUE(put(h(), "f:m2", "motor"));
  ASSERT_TRUE(put(h(), "f:m3", "motor"));
  ASSERT_TRUE(ingest(h(), "f:m2", {{"temperature", value{21.0}}}, ts));
  // A held write of f:m3 lets the next group gather f:m1's change and f:m2's repeated
  // sample (which changes nothing and only waits for the writer); that group fails.
  fs->hold_next_write();
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  auto send = [&](const char* twin, double temperature) {
    ingest_request req;
    req.values = {{"temperature", value{temperature}}};
    req.ts_ms = ts;
    req.done = [&](caf::expected<uint64_t> r) {
      failed += r ? 0 : 1;
      ++answered;
    };
    h().route(id(twin), std::move(req));
  };
  send("f:m3", 1.0);
  ASSERT_TRUE(fs->wait_held(std::chrono::seconds{10}));
  send("f:m1", 30.0);
  send("f:m2", 21.0);
  // A twin answers a get at once, after what it was sent before: both have handed their
  // part to the writer once these come back.
  ASSERT_TRUE(get(h(), "f:m1"));
  ASSERT_TRUE(get(h(), "f:m2"));
  fs->fail_next_write();
  fs->release();
  ASSERT_TRUE(eventually([&] { return answered == 3; }));
  EXPECT_EQ(failed.load(), 2);
  // f:m2 lost nothing in the failed write: its next change is taken.
  auto v = ingest(h(), "f:m2", {{"temperature", value{22.0}}});
  EXPECT_TRUE(v) << error_message(v.error());
}

TEST_F(host_test, stop_refuses_new_requests_clearly) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor"));
  ASSERT_FALSE(h().stop());
  auto r = get(h(), "f:m1");
  ASSERT_FALSE(r);
  EXPECT_EQ(error_code(r.error()), runtime_errc::shutting_down);
}

} // namespace
} // namespace twin::test
