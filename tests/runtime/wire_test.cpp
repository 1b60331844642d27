// Requests as bytes: every kind crosses as its payload and its answer comes back as a
// reply; a host whose clients and twins reach each other only through bytes behaves as
// one reached directly.

#include <map>

#include "host_fixture.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/wire.hpp"

namespace twin::test {
namespace {

/// Sends `req` through bytes to `deliver` and its reply back: what a cluster does
/// between two nodes, on one.
void cross(const twin_id& to, twin_request req,
           const std::function<void(const twin_id&, twin_request)>& deliver) {
  auto kept = std::make_shared<twin_request>(std::move(req));
  auto decoded = decode_request(encode_request(to, *kept), [kept](std::string reply) {
    deliver_reply(*kept, reply);
  });
  ASSERT_TRUE(decoded) << error_message(decoded.error());
  EXPECT_EQ(decoded->id, to);
  deliver(decoded->id, std::move(decoded->req));
}

TEST(wire, a_put_crosses_with_every_field_and_its_answer_comes_back) {
  put_request p;
  p.type = "motor";
  p.parent = id("f:r1");
  p.properties = {{"temperature", value{21.5}}, {"mode", value{"auto"}}};
  p.desired = {{"rpm", value{int64_t{1200}}}};
  p.relationships = {{"feeds", id("f:m2")}};
  p.if_version = 0;
  p.source = "dev-1";
  std::optional<caf::expected<put_result>> got;
  p.done = [&](caf::expected<put_result> r) { got = std::move(r); };
  cross(id("f:m1"), std::move(p), [](const twin_id&, twin_request req) {
    auto& q = std::get<put_request>(req);
    EXPECT_EQ(q.type, "motor");
    EXPECT_EQ(q.parent, id("f:r1"));
    EXPECT_EQ(q.properties.at("temperature"), value{21.5});
    EXPECT_EQ(q.properties.at("mode"), value{"auto"});
    EXPECT_EQ(q.desired.at("rpm"), value{int64_t{1200}});
    ASSERT_EQ(q.relationships.size(), 1u);
    EXPECT_EQ(q.relationships[0].target, id("f:m2"));
    EXPECT_EQ(q.if_version, std::optional<uint64_t>{0});
    EXPECT_EQ(q.source, "dev-1");
    q.done(put_result{7, true});
  });
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->version, 7u);
  EXPECT_TRUE((*got)->created);
}

TEST(wire, a_patch_carries_its_parent_and_relationships_only_when_it_sets_them) {
  patch_request moves;
  moves.parent = twin_id{};  // none: the twin becomes a root
  moves.relationships = std::vector<relationship>{{"feeds", id("f:m2")}};
  moves.done = [](caf::expected<uint64_t>) {};
  cross(id("f:m1"), std::move(moves), [](const twin_id&, twin_request req) {
    auto& q = std::get<patch_request>(req);
    ASSERT_TRUE(q.parent);
    EXPECT_TRUE(q.parent->empty());
    ASSERT_TRUE(q.relationships);
    ASSERT_EQ(q.relationships->size(), 1u);
    EXPECT_EQ((*q.relationships)[0].name, "feeds");
    EXPECT_EQ((*q.relationships)[0].target, id("f:m2"));
    q.done(uint64_t{2});
  });
  patch_request keeps;
  keeps.properties = {{"load", value{0.5}}};
  keeps.done = [](caf::expected<uint64_t>) {};
  cross(id("f:m1"), std::move(keeps), [](const twin_id&, twin_request req) {
    auto& q = std::get<patch_request>(req);
    EXPECT_FALSE(q.parent);
    EXPECT_FALSE(q.relationships);
    q.done(uint64_t{3});
  });
  for (bool refuse : {true, false}) {
    remove_request r;
    r.refuse_with_children = refuse;
    r.done = [](caf::expected<uint64_t>) {};
    cross(id("f:m1"), std::move(r), [refuse](const twin_id&, twin_request req) {
      auto& q = std::get<remove_request>(req);
      EXPECT_EQ(q.refuse_with_children, refuse);
      q.done(uint64_t{4});
    });
  }
}

TEST(wire, errors_come_back_with_their_code_and_message) {
  patch_request p;
  p.properties = {{"temperature", value{}}};  // null deletes
  std::optional<caf::expected<uint64_t>> got;
  p.done = [&](caf::expected<uint64_t> r) { got = std::move(r); };
  cross(id("f:m1"), std::move(p), [](const twin_id&, twin_request req) {
    auto& q = std::get<patch_request>(req);
    EXPECT_TRUE(q.properties.at("temperature").is_null());
    EXPECT_FALSE(q.if_version);
    q.done(make_error(runtime_errc::version_conflict, "the twin has version 4"));
  });
  ASSERT_TRUE(got && !*got);
  EXPECT_EQ(error_code(got->error()), runtime_errc::version_conflict);
  EXPECT_EQ(error_message(got->error()), "the twin has version 4");
}

TEST(wire, reads_commands_and_queries_between_twins_come_back) {
  twin_record rec;
  rec.id = id("f:m1");
  rec.type = "motor";
  rec.reported = {{"temperature", value{20.0}}};
  rec.version = 3;
  std::optional<caf::expected<twin_record>> read;
  cross(id("f:m1"), get_request{[&](caf::expected<twin_record> r) { read = std::move(r); }},
        [&](const twin_id&, twin_request req) { std::get<get_request>(req).done(rec); });
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->reported, rec.reported);
  EXPECT_EQ((*read)->version, 3u);

  std::optional<caf::expected<value>> answer;
  command_request c{"stop", value{value_map{{"now", value{true}}}},
                    [&](caf::expected<value> v) { answer = std::move(v); }};
  cross(id("f:m1"), std::move(c), [](const twin_id&, twin_request req) {
    auto& q = std::get<command_request>(req);
    EXPECT_EQ(q.name, "stop");
    EXPECT_EQ(q.args.as_map().at("now"), value{true});
    q.done(value{"stopped"});
  });
  ASSERT_TRUE(answer && *answer);
  EXPECT_EQ(**answer, value{"stopped"});

  std::optional<bool> cycle;
  cross(id("f:r1"), ancestor_query{id("f:r2"), twin_kind::asset, [&](bool x) { cycle = x; }},
        [](const twin_id&, twin_request req) {
          auto& q = std::get<ancestor_query>(req);
          EXPECT_EQ(q.candidate, id("f:r2"));
          EXPECT_EQ(q.kind, twin_kind::asset);
          q.done(true);
        });
  EXPECT_EQ(cycle, std::optional<bool>{true});

  std::optional<caf::error> attached;
  child_state child{id("f:m1"), {{"temperature", value{20.0}}}, severity::warning, "motor"};
  cross(id("f:r1"), attach_request{child, twin_kind::component, [&](caf::error e) {
          attached = std::move(e);
        }},
        [](const twin_id&, twin_request req) {
          auto& q = std::get<attach_request>(req);
          EXPECT_EQ(q.state.health, severity::warning);
          EXPECT_EQ(q.state.values.at("temperature"), value{20.0});
          q.done(caf::error{});
        });
  ASSERT_TRUE(attached);
  EXPECT_FALSE(*attached);
}

TEST(wire, notices_cross_without_a_reply) {
  for (twin_request req : {twin_request{detach_notice{id("f:m1")}},
                           twin_request{orphan_notice{id("f:r1")}},
                           twin_request{child_query{id("f:r1")}},
                           twin_request{child_update{{id("f:m1"), {}, severity::ok, "motor"},
                                                     twin_kind::component}}}) {
    EXPECT_FALSE(expects_reply(req));
    bool replied = false;
    auto index = req.index();
    auto decoded = decode_request(encode_request(id("f:x"), req),
                                  [&](std::string) { replied = true; });
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->req.index(), index);
    EXPECT_FALSE(replied);
  }
  EXPECT_EQ(std::get<detach_notice>(
              decode_request(encode_request(id("f:x"), detach_notice{id("f:m1")}), {})->req)
              .child,
            id("f:m1"));
}

TEST(wire, malformed_bytes_and_replies_are_refused_clearly) {
  for (std::string bad : {std::string{}, std::string{"\x01\x02garbage"},
                          std::string(64, '\xff')}) {
    auto d = decode_request(bad, {});
    ASSERT_FALSE(d);
    EXPECT_EQ(error_code(d.error()), runtime_errc::invalid_argument);
  }
  // A request whose id was never checked (as a faulty node might send) is refused too.
  auto forged = encode_request(twin_id::trusted("no colon"), get_request{});
  auto d = decode_request(forged, {});
  ASSERT_FALSE(d);
  EXPECT_NE(error_message(d.error()).find("invalid twin id"), std::string::npos);
  // A reply of another kind than the request's answers it with an error.
  std::optional<caf::expected<uint64_t>> got;
  twin_request kept = ingest_request{{}, 0, "t", [&](caf::expected<uint64_t> r) { got = r; }};
  std::string reply;
  auto getter = decode_request(encode_request(id("f:m1"), get_request{}),
                               [&](std::string r) { reply = std::move(r); });
  std::get<get_request>(getter->req).done(twin_record{});
  deliver_reply(kept, reply);
  ASSERT_TRUE(got && !*got);
  EXPECT_EQ(error_code(got->error()), runtime_errc::invalid_argument);
}

/// A router that sends every request through bytes to a host, and every reply back.
class wire_router : public router {
public:
  void route(const twin_id& id, twin_request req) override {
    routed.fetch_add(1);
    cross(id, std::move(req), [this](const twin_id& to, twin_request r) {
      target->route(to, std::move(r));
    });
  }
  router* target = nullptr;
  std::atomic<int> routed{0};
};

class wire_host_test : public host_test {
protected:
  void start_wired() {
    twin_router_ = &wire_;
    start();
    wire_.target = &h();
  }
  wire_router wire_;
};

TEST_F(wire_host_test, twins_reached_only_through_bytes_compose_as_on_one_node) {
  start_wired();
  auto& r = wire_;
  ASSERT_TRUE(put(r, "f:plant", "plant"));
  ASSERT_TRUE(put(r, "f:line1", "line", "f:plant"));
  ASSERT_TRUE(put(r, "f:robot1", "robot", "f:line1"));
  for (auto m : {"f:m1", "f:m2"})
    ASSERT_TRUE(put(r, m, "motor", "f:robot1", {{"temperature", value{20.0}}}));
  ASSERT_TRUE(ingest(r, "f:m1", {{"temperature", value{95.0}}}));
  ASSERT_TRUE(eventually([&] { return prop(r, "f:plant", "max_temperature") == value{95.0}; }));
  EXPECT_EQ(prop(r, "f:robot1", "motors"), value{2});
  EXPECT_EQ(get(r, "f:m1")->alerts.size(), 2u);  // warm and overheat
  // Ancestor queries cross too: a link that closes a cycle is refused.
  ASSERT_TRUE(put(r, "f:a", "motor"));
  ASSERT_TRUE(put(r, "f:b", "motor", "f:a"));
  auto loop = put(r, "f:a", "motor", "f:b");
  ASSERT_FALSE(loop);
  EXPECT_EQ(error_code(loop.error()), runtime_errc::conflict);
  EXPECT_EQ(*command(r, "f:m1", "stop"), value{});
  ASSERT_TRUE(patch(r, "f:m2", {}, {{"rpm", value{900.0}}}));
  EXPECT_TRUE(eventually([&] { return gateway_.delta_of("f:m2").count("rpm") == 1; }));
  // Deleting the robot orphans its motors through bytes, and a restarted plant asks its
  // children for their states the same way.
  ASSERT_TRUE(remove(r, "f:robot1"));
  ASSERT_TRUE(eventually([&] { return get(r, "f:m1")->parent.empty(); }));
  stop();
  wire_.target = nullptr;
  start_wired();
  auto before = wire_.routed.load();
  EXPECT_EQ(get(r, "f:plant")->children.size(), 1u);
  EXPECT_GE(wire_.routed.load() - before, 2);  // the get, and the plant's child query
}

} // namespace
} // namespace twin::test
