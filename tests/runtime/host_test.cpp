// The host: persistent virtual actors, composition, desired/delta, compare-and-set,
// restart recovery.

#include <atomic>
#include <future>
#include <limits>
#include <mutex>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/scheduler.hpp"

namespace twin::test {
namespace {

/// Records what the runtime sends to devices.
class recording_gateway : public device_gateway {
public:
  void publish_desired(const twin_id& id, const value_map& delta) override {
    std::lock_guard<std::mutex> guard{mtx};
    deltas[id.str()] = delta;
    ++published;
  }
  void send_command(const twin_id& id, const std::string& name, const value&) override {
    std::lock_guard<std::mutex> guard{mtx};
    commands.push_back(id.str() + "/" + name);
  }
  value_map delta_of(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    return deltas[id];
  }
  std::mutex mtx;
  std::map<std::string, value_map> deltas;
  std::vector<std::string> commands;
  int published = 0;
};

class host_test : public ::testing::Test {
protected:
  host_test() {
    configure_scheduler(cfg_, 2);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    add_test_types(types_);
  }

  ~host_test() override {
    stop();
    sys_.reset();
  }

  void start(host_options opts = {}) {
    if (!store_) {
      rocksdb_options o;
      o.path = dir_.sub("db");
      o.block_cache_bytes = 8 << 20;
      auto s = open_rocksdb_store(o);
      ASSERT_TRUE(s) << error_message(s.error());
      store_ = std::move(*s);
    }
    host_ = std::make_unique<host>(*sys_, *store_, types_, opts);
    host_->set_gateway(&gateway_);
    ASSERT_FALSE(host_->start());
  }

  /// Starts on an in-memory store whose writes can be made to fail.
  failing_store* start_failing() {
    auto flaky = std::make_unique<failing_store>(make_memory_store());
    auto* fs = flaky.get();
    store_ = std::move(flaky);
    start();
    return fs;
  }

  void stop() {
    if (host_) {
      EXPECT_FALSE(host_->stop());
      host_.reset();
    }
  }

  /// Stops the host, closes the store and opens both again.
  void restart(host_options opts = {}) {
    stop();
    store_.reset();
    start(opts);
  }

  host& h() { return *host_; }

  void build_plant() {
    ASSERT_TRUE(put(h(), "f:plant", "plant"));
    ASSERT_TRUE(put(h(), "f:line1", "line", "f:plant"));
    ASSERT_TRUE(put(h(), "f:line2", "line", "f:plant"));
    ASSERT_TRUE(put(h(), "f:robot1", "robot", "f:line1"));
    ASSERT_TRUE(put(h(), "f:robot2", "robot", "f:line2"));
    for (auto m : {"f:m1", "f:m2"})
      ASSERT_TRUE(put(h(), m, "motor", "f:robot1", {{"temperature", value{20.0}}}));
    ASSERT_TRUE(put(h(), "f:m3", "motor", "f:robot2", {{"temperature", value{30.0}}}));
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  temp_dir dir_;
  type_registry types_;
  std::unique_ptr<state_store> store_;
  recording_gateway gateway_;
  std::unique_ptr<host> host_;
};

TEST_F(host_test, create_read_update_delete) {
  start();
  auto created = put(h(), "f:m1", "motor", "", {{"temperature", value{21.5}}});
  ASSERT_TRUE(created) << error_message(created.error());
  EXPECT_TRUE(created->created);
  EXPECT_EQ(created->version, 1u);
  auto rec = get(h(), "f:m1");
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->type, "motor");
  EXPECT_EQ(rec->kind, twin_kind::component);
  EXPECT_EQ(rec->reported.at("temperature"), value{21.5});
  EXPECT_EQ(rec->reported.at("health"), value{"ok"});
  auto v = ingest(h(), "f:m1", {{"temperature", value{25.0}}, {"load", value{0.5}}});
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 2u);
  EXPECT_EQ(prop(h(), "f:m1", "load"), value{0.5});
  EXPECT_EQ(get(h(), "f:m1")->metadata.at("load").source, "telemetry");
  auto replaced = put(h(), "f:m1", "motor", "", {{"rpm", value{100}}});
  ASSERT_TRUE(replaced);
  EXPECT_FALSE(replaced->created);
  rec = get(h(), "f:m1");
  EXPECT_EQ(rec->reported.count("temperature"), 0u);  // replaced, not merged
  EXPECT_EQ(rec->reported.at("rpm"), value{100});
  ASSERT_TRUE(remove(h(), "f:m1"));
  auto gone = get(h(), "f:m1");
  ASSERT_FALSE(gone);
  EXPECT_EQ(error_code(gone.error()), runtime_errc::not_found);
  EXPECT_EQ(h().counts().twins, 0);
}

TEST_F(host_test, bad_input_is_rejected_and_changes_nothing) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"temperature", value{20.0}}}));
  auto before = get(h(), "f:m1");
  auto code = [](auto r) { return r ? runtime_errc::none : error_code(r.error()); };
  EXPECT_EQ(code(ingest(h(), "f:m1", {{"temperature", value{"hot"}}})),
            runtime_errc::type_mismatch);
  EXPECT_EQ(code(ingest(h(), "f:m1", {{"temperature", value{21.0}}, {"nope", value{1}}})),
            runtime_errc::unknown_property);
  EXPECT_EQ(code(ingest(h(), "f:m1", {{"load", value{7}}})), runtime_errc::out_of_range);
  EXPECT_EQ(code(ingest(h(), "f:m1", {{"health", value{"ok"}}})), runtime_errc::read_only);
  EXPECT_EQ(code(patch(h(), "f:m1", {}, {{"temperature", value{3}}})), runtime_errc::read_only);
  EXPECT_EQ(code(put(h(), "f:m1", "gadget")), runtime_errc::unknown_type);
  EXPECT_EQ(code(put(h(), "f:m1", "robot")), runtime_errc::conflict);
  EXPECT_EQ(code(ingest(h(), "f:nobody", {{"temperature", value{1.0}}})),
            runtime_errc::not_found);
  auto after = get(h(), "f:m1");
  EXPECT_EQ(after->version, before->version);
  EXPECT_EQ(after->reported, before->reported);
  EXPECT_EQ(h().counts().twins, 1);
}

TEST_F(host_test, parent_links_follow_the_kind_order) {
  start();
  ASSERT_TRUE(put(h(), "f:robot1", "robot"));
  ASSERT_TRUE(put(h(), "f:m1", "motor"));
  auto bad = put(h(), "f:robot2", "robot", "f:m1");  // an asset under a component
  ASSERT_FALSE(bad);
  EXPECT_EQ(error_code(bad.error()), runtime_errc::invalid_parent);
  EXPECT_NE(error_message(bad.error()).find("component < asset"), std::string::npos);
  EXPECT_EQ(error_code(get(h(), "f:robot2").error()), runtime_errc::not_found);
  auto missing = put(h(), "f:m2", "motor", "f:nothing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(error_code(missing.error()), runtime_errc::invalid_parent);
  EXPECT_EQ(error_code(put(h(), "f:m1", "motor", "f:m1").error()), runtime_errc::invalid_parent);
  ASSERT_TRUE(put(h(), "f:m1", "motor", "f:robot1"));
  auto parent = get(h(), "f:robot1");
  ASSERT_EQ(parent->children.size(), 1u);
  EXPECT_EQ(parent->children[0].id, id("f:m1"));
  EXPECT_EQ(get(h(), "f:m1")->parent, id("f:robot1"));
  // Same kind is allowed: a component inside a component.
  EXPECT_TRUE(put(h(), "f:m2", "motor", "f:m1"));
  auto listed = store_->list(index_kind::by_parent, "f:robot1", {}, 10);
  ASSERT_EQ(listed->size(), 1u);
}

TEST_F(host_test, requests_behind_a_put_that_waits_for_its_parent_keep_their_order) {
  start();
  ASSERT_TRUE(put(h(), "f:robot1", "robot"));
  // Fire a create-with-parent, a patch and a read without waiting in between.
  std::promise<caf::expected<put_result>> created;
  std::promise<caf::expected<uint64_t>> patched;
  std::promise<caf::expected<twin_record>> read;
  put_request p;
  p.type = "motor";
  p.parent = id("f:robot1");
  p.properties = {{"temperature", value{20.0}}};
  p.done = [&](caf::expected<put_result> r) { created.set_value(std::move(r)); };
  patch_request q;
  q.properties = {{"temperature", value{21.0}}};
  q.done = [&](caf::expected<uint64_t> v) { patched.set_value(std::move(v)); };
  h().route(id("f:m1"), std::move(p));
  h().route(id("f:m1"), std::move(q));
  h().route(id("f:m1"), get_request{[&](caf::expected<twin_record> r) { read.set_value(std::move(r)); }});
  auto fc = created.get_future();
  auto fv = patched.get_future();
  auto fr = read.get_future();
  for (auto ready : {fc.wait_for(std::chrono::seconds{10}), fv.wait_for(std::chrono::seconds{10}),
                     fr.wait_for(std::chrono::seconds{10})})
    ASSERT_EQ(ready, std::future_status::ready);
  auto c = fc.get();
  auto v = fv.get();
  auto r = fr.get();
  ASSERT_TRUE(c);
  ASSERT_TRUE(v) << error_message(v.error());
  EXPECT_EQ(c->version, 1u);
  EXPECT_EQ(*v, 2u);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, 2u);
  EXPECT_EQ(r->reported.at("temperature"), value{21.0});
}

TEST_F(host_test, links_that_would_make_a_cycle_are_refused) {
  start();
  ASSERT_TRUE(put(h(), "f:a", "motor"));
  ASSERT_TRUE(put(h(), "f:b", "motor", "f:a"));
  ASSERT_TRUE(put(h(), "f:c", "motor", "f:b"));
  auto loop = put(h(), "f:a", "motor", "f:c");  // a -> c -> b -> a
  ASSERT_FALSE(loop);
  EXPECT_EQ(error_code(loop.error()), runtime_errc::conflict);
  EXPECT_NE(error_message(loop.error()).find("cycle"), std::string::npos);
  EXPECT_TRUE(get(h(), "f:a")->parent.empty());
  auto direct = put(h(), "f:a", "motor", "f:b");  // a -> b -> a
  ASSERT_FALSE(direct);
  EXPECT_EQ(error_code(direct.error()), runtime_errc::conflict);
  // A sibling branch is fine.
  ASSERT_TRUE(put(h(), "f:d", "motor", "f:a"));
  EXPECT_TRUE(put(h(), "f:e", "motor", "f:d"));
}

TEST_F(host_test, two_concurrent_links_cannot_close_a_cycle) {
  start();
  for (int round = 0; round < 20; ++round) {
    auto a = "f:a" + std::to_string(round);
    auto b = "f:b" + std::to_string(round);
    ASSERT_TRUE(put(h(), a, "motor"));
    ASSERT_TRUE(put(h(), b, "motor"));
    std::promise<bool> ra;
    std::promise<bool> rb;
    put_request pa;
    pa.type = "motor";
    pa.parent = id(b);
    pa.done = [&](caf::expected<put_result> r) { ra.set_value(static_cast<bool>(r)); };
    put_request pb;
    pb.type = "motor";
    pb.parent = id(a);
    pb.done = [&](caf::expected<put_result> r) { rb.set_value(static_cast<bool>(r)); };
    h().route(id(a), std::move(pa));
    h().route(id(b), std::move(pb));
    auto fa = ra.get_future();
    auto fb = rb.get_future();
    ASSERT_EQ(fa.wait_for(std::chrono::seconds{10}), std::future_status::ready);
    ASSERT_EQ(fb.wait_for(std::chrono::seconds{10}), std::future_status::ready);
    EXPECT_FALSE(fa.get() && fb.get()) << "both links were accepted in round " << round;
    auto pa_rec = get(h(), a);
    auto pb_rec = get(h(), b);
    EXPECT_FALSE(pa_rec->parent == id(b) && pb_rec->parent == id(a));
  }
}

TEST_F(host_test, aggregates_and_health_roll_up_four_levels) {
  start();
  build_plant();
  auto agg = [&](const char* twin) { return prop(h(), twin, "max_temperature"); };
  ASSERT_TRUE(eventually([&] { return agg("f:plant") == value{30.0}; }))
    << to_string(agg("f:plant"));
  EXPECT_EQ(agg("f:robot1"), value{20.0});
  EXPECT_EQ(prop(h(), "f:robot1", "motors"), value{2});
  ASSERT_TRUE(ingest(h(), "f:m2", {{"temperature", value{95.0}}, {"load", value{0.5}}}));
  ASSERT_TRUE(eventually([&] { return agg("f:plant") == value{95.0}; }));
  EXPECT_EQ(agg("f:robot1"), value{95.0});
  EXPECT_EQ(agg("f:line1"), value{95.0});
  EXPECT_EQ(agg("f:line2"), value{30.0});
  EXPECT_EQ(prop(h(), "f:m2", "health"), value{"critical"});
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "health") == value{"critical"}; }));
  EXPECT_EQ(prop(h(), "f:line1", "health"), value{"critical"});
  EXPECT_EQ(prop(h(), "f:line2", "health"), value{"ok"});
  EXPECT_EQ(prop(h(), "f:robot1", "avg_load"), value{0.5});
  EXPECT_EQ(h().counts().alerts_critical, 1);
  EXPECT_EQ(h().counts().alerts_warning, 1);  // warm (> 70) holds too
  // Cooling down clears the alerts level after level.
  ASSERT_TRUE(ingest(h(), "f:m2", {{"temperature", value{75.0}}}));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "health") == value{"warning"}; }));
  ASSERT_TRUE(ingest(h(), "f:m2", {{"temperature", value{40.0}}}));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:plant", "health") == value{"ok"}; }));
  EXPECT_EQ(agg("f:plant"), value{40.0});
  EXPECT_EQ(h().counts().alerts_critical, 0);
  EXPECT_EQ(h().counts().alerts_warning, 0);
  auto m2 = get(h(), "f:m2");
  EXPECT_TRUE(m2->alerts.empty());
}

TEST_F(host_test, deleting_a_parent_detaches_its_children) {
  start();
  build_plant();
  ASSERT_TRUE(remove(h(), "f:robot1"));
  ASSERT_TRUE(eventually([&] { return get(h(), "f:m1")->parent.empty(); }));
  ASSERT_TRUE(eventually([&] { return get(h(), "f:m2")->parent.empty(); }));
  EXPECT_TRUE(get(h(), "f:m1"));  // not deleted
  ASSERT_TRUE(eventually([&] { return get(h(), "f:line1")->children.empty(); }));
  EXPECT_TRUE(eventually(
    [&] { return store_->list(index_kind::by_parent, "f:robot1", {}, 10)->empty(); }));
  EXPECT_TRUE(eventually([&] { return prop(h(), "f:line1", "max_temperature").is_null(); }));
}

TEST_F(host_test, moving_a_child_updates_both_parents) {
  start();
  build_plant();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "f:robot2", {{"temperature", value{60.0}}}));
  ASSERT_TRUE(eventually([&] { return get(h(), "f:robot1")->children.size() == 1; }));
  ASSERT_TRUE(eventually([&] { return get(h(), "f:robot2")->children.size() == 2; }));
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:robot2", "max_temperature") == value{60.0}; }));
  EXPECT_EQ(store_->list(index_kind::by_parent, "f:robot2", {}, 10)->size(), 2u);
  EXPECT_EQ(store_->list(index_kind::by_parent, "f:robot1", {}, 10)->size(), 1u);
}

TEST_F(host_test, desired_delta_reaches_the_device_and_clears_when_reported) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"rpm", value{1000}}}));
  auto v = patch(h(), "f:m1", {}, {{"rpm", value{1500}}});
  ASSERT_TRUE(v) << error_message(v.error());
  auto rec = get(h(), "f:m1");
  EXPECT_EQ(delta(*rec), (value_map{{"rpm", value{1500}}}));
  ASSERT_TRUE(eventually([&] { return gateway_.delta_of("f:m1").count("rpm") == 1; }));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"rpm", value{1500.0}}}));
  EXPECT_TRUE(delta(*get(h(), "f:m1")).empty());
  ASSERT_TRUE(eventually([&] { return gateway_.delta_of("f:m1").empty(); }));
  // null deletes a desired key
  ASSERT_TRUE(patch(h(), "f:m1", {}, {{"rpm", value{}}}));
  EXPECT_TRUE(get(h(), "f:m1")->desired.empty());
}

TEST_F(host_test, the_delta_is_published_only_when_it_can_have_changed) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"rpm", value{1000}}}, {{"rpm", value{1500}}}));
  ASSERT_TRUE(eventually([&] { return gateway_.delta_of("f:m1").count("rpm") == 1; }));
  auto published = [&] {
    std::lock_guard<std::mutex> guard{gateway_.mtx};
    return gateway_.published;
  };
  auto before = published();
  // Reports of properties nobody desires leave the device's delta alone.
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{20.0 + i}}}));
  EXPECT_EQ(published(), before);
  // Reporting the desired value clears the delta, and the device hears of it.
  ASSERT_TRUE(ingest(h(), "f:m1", {{"rpm", value{1500.0}}}));
  ASSERT_TRUE(eventually([&] { return published() == before + 1; }));
  EXPECT_TRUE(gateway_.delta_of("f:m1").empty());
}

TEST_F(host_test, commands_reach_the_device) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor"));
  EXPECT_TRUE(command(h(), "f:m1", "stop"));
  auto unknown = command(h(), "f:m1", "dance");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(error_code(unknown.error()), runtime_errc::invalid_argument);
  std::lock_guard<std::mutex> guard{gateway_.mtx};
  EXPECT_EQ(gateway_.commands, (std::vector<std::string>{"f:m1/stop"}));
}

TEST_F(host_test, compare_and_set_on_the_version) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {}, {}, uint64_t{0}));  // create only
  auto again = put(h(), "f:m1", "motor", "", {}, {}, uint64_t{0});
  ASSERT_FALSE(again);
  EXPECT_EQ(error_code(again.error()), runtime_errc::version_conflict);
  auto v = patch(h(), "f:m1", {{"temperature", value{1.0}}}, {}, uint64_t{1});
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 2u);
  auto stale = patch(h(), "f:m1", {{"temperature", value{2.0}}}, {}, uint64_t{1});
  ASSERT_FALSE(stale);
  EXPECT_EQ(error_code(stale.error()), runtime_errc::version_conflict);
  EXPECT_EQ(prop(h(), "f:m1", "temperature"), value{1.0});
  EXPECT_FALSE(remove(h(), "f:m1", uint64_t{1}));
  EXPECT_TRUE(remove(h(), "f:m1", uint64_t{2}));
}

TEST_F(host_test, concurrent_writers_with_compare_and_set_never_lose_an_update) {
  start();
  ASSERT_TRUE(put(h(), "f:m1", "motor", "", {{"count", value{0}}}));
  std::atomic<int> applied{0};
  auto worker = [&] {
    for (int i = 0; i < 50; ++i) {
      for (int attempt = 0; attempt < 1000; ++attempt) {
        auto rec = get(h(), "f:m1");
        auto n = rec->reported.at("count").as_int();
        if (patch(h(), "f:m1", {{"count", value{n + 1}}}, {}, rec->version)) {
          ++applied;
          break;
        }
      }
    }
  };
  std::thread a{worker};
  std::thread b{worker};
  a.join();
  b.join();
  EXPECT_EQ(applied.load(), 100);
  EXPECT_EQ(prop(h(), "f:m1", "count"), value{100});
}

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
  stop();
  // As after a kill -9 between a child's durable write and its parent's: the store has
  // the child's new state and a new child, the parent's record has neither.
  auto m1 = decode_record(**store_->get(id("f:m1")));
  m1->reported["temperature"] = value{97.0};
  auto extra = *m1;
  extra.id = id("f:m9");
  extra.reported["temperature"] = value{50.0};
  store_batch b;
  b.puts.emplace_back(m1->id, encode(*m1));
  b.puts.emplace_back(extra.id, encode(extra));
  b.index_adds.push_back({index_kind::by_parent, "f:robot1", extra.id});
  ASSERT_FALSE(store_->write(b));
  start();
  ASSERT_TRUE(eventually([&] { return prop(h(), "f:robot1", "max_temperature") == value{97.0}; }));
  EXPECT_EQ(prop(h(), "f:robot1", "motors"), value{3});
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
