// The host: persistent virtual actors, composition, desired/delta, compare-and-set.

#include "host_fixture.hpp"

namespace twin::test {
namespace {

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
  auto typo = put(h(), "f:m2", "moter");
  ASSERT_FALSE(typo);
  EXPECT_EQ(error_message(typo.error()), "unknown twin type 'moter' (did you mean 'motor'?)");
  EXPECT_EQ(code(put(h(), "f:m1", "robot")), runtime_errc::conflict);
  EXPECT_EQ(code(ingest(h(), "f:nobody", {{"temperature", value{1.0}}})),
            runtime_errc::not_found);
  auto after = get(h(), "f:m1");
  EXPECT_EQ(after->version, before->version);
  EXPECT_EQ(after->reported, before->reported);
  EXPECT_EQ(h().counts().twins, 1);
}

TEST_F(host_test, relationships_are_the_ones_the_type_declares) {
  start();
  auto put_with = [this](std::vector<relationship> rels) {
    return await_answer<put_result>([&](auto cb) {
      put_request req;
      req.type = "motor";
      req.relationships = std::move(rels);
      req.done = std::move(cb);
      h().route(id("f:m1"), std::move(req));
    });
  };
  auto message = [](const caf::expected<put_result>& r) {
    return r ? std::string{} : error_message(r.error());
  };
  ASSERT_TRUE(put_with({{"feeds", id("f:a")}, {"feeds", id("f:b")}, {"mountedOn", id("f:r")}}));
  auto undeclared = put_with({{"feds", id("f:a")}});
  EXPECT_EQ(message(undeclared), "type 'motor' declares no relationship 'feds' (did you mean "
                                 "'feeds'?)");
  EXPECT_EQ(error_code(undeclared.error()), runtime_errc::unknown_property);
  auto two = put_with({{"mountedOn", id("f:r1")}, {"mountedOn", id("f:r2")}});
  EXPECT_EQ(message(two), "relationship 'mountedOn' of type 'motor' takes at most 1 target");
  EXPECT_EQ(error_code(two.error()), runtime_errc::out_of_range);
  auto twice = put_with({{"feeds", id("f:a")}, {"feeds", id("f:a")}});
  EXPECT_EQ(error_code(twice.error()), runtime_errc::invalid_argument);
  // The refusals changed nothing.
  auto rec = get(h(), "f:m1");
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->version, 1u);
  EXPECT_EQ(rec->relationships.size(), 3u);
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

} // namespace
} // namespace twin::test
