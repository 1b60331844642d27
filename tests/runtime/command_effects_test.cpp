// Commands whose effects a type declares: desired values set on the twin and on its
// children of a type, durable before the command is answered.

#include "host_fixture.hpp"

namespace twin::test {
namespace {

/// A cell of motors: `stop` sets its own mode and every motor's rpm; `overheat` asks the
/// motors for what they do not take (their temperature is not writable).
type_ptr cell_type() {
  type_builder b{"cell", twin_kind::asset};
  b.property("mode", property_type::string).writable();
  b.command("stop").command("overheat");
  b.command_effect("stop", {{"mode", value{"stopped"}}});
  b.command_effect("stop", {{"rpm", value{0.0}}}, "motor");
  b.command_effect("overheat", {{"temperature", value{99.0}}}, "motor");
  auto t = b.build();
  EXPECT_TRUE(t) << error_message(t.error());
  return t ? *t : nullptr;
}

TEST_F(host_test, a_command_sets_the_desired_values_its_type_declares_here_and_on_children) {
  ASSERT_FALSE(types_.add(cell_type()));
  start();
  ASSERT_TRUE(put(h(), "c:1", "cell"));
  ASSERT_TRUE(put(h(), "c:m1", "motor", "c:1", {}, {{"rpm", value{1500.0}}}));
  ASSERT_TRUE(put(h(), "c:m2", "motor", "c:1"));
  ASSERT_TRUE(eventually([&] { return get(h(), "c:1")->children.size() == 2; }));

  auto r = command(h(), "c:1", "stop");
  ASSERT_TRUE(r) << error_message(r.error());
  // Answered once every effect is durable.
  EXPECT_EQ(get(h(), "c:1")->desired.at("mode"), value{"stopped"});
  for (const char* m : {"c:m1", "c:m2"}) {
    auto rec = get(h(), m);
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->desired.at("rpm"), value{0.0}) << m;
  }
  // The devices hear of it: the cell's command, the motors' desired deltas.
  EXPECT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> guard{gateway_.mtx};
    return std::count(gateway_.commands.begin(), gateway_.commands.end(), "c:1/stop") == 1
           && gateway_.deltas["c:m1"].count("rpm") == 1
           && gateway_.deltas["c:m2"].count("rpm") == 1;
  }));

  // A child that refuses: the command answers why, naming it.
  auto refused = command(h(), "c:1", "overheat");
  ASSERT_FALSE(refused);
  EXPECT_EQ(error_code(refused.error()), runtime_errc::read_only);
  EXPECT_NE(error_message(refused.error()).find("child c:m"), std::string::npos)
    << error_message(refused.error());
}

TEST(type_builder, refuses_command_effects_that_cannot_apply) {
  auto why = [](const std::string& command, value_map desired, std::string child_type = {}) {
    type_builder b{"t", twin_kind::asset};
    b.property("level", property_type::real).writable().property("seen", property_type::real);
    b.command("stop");
    b.command_effect(command, std::move(desired), std::move(child_type));
    auto t = b.build();
    EXPECT_FALSE(t) << command;
    return t ? std::string{} : error_message(t.error());
  };
  EXPECT_NE(why("halt", {{"level", value{0.0}}}).find("not declared"), std::string::npos);
  EXPECT_NE(why("stop", {}).find("sets no desired value"), std::string::npos);
  EXPECT_NE(why("stop", {{"seen", value{0.0}}}).find("cannot set"), std::string::npos);
  EXPECT_NE(why("stop", {{"level", value{"high"}}}).find("cannot set"), std::string::npos);
  EXPECT_NE(why("stop", {{"rpm", value{0.0}}}, "no good").find("invalid child type"),
            std::string::npos);
}

} // namespace
} // namespace twin::test
