// Dynamics: how a model says its properties evolve in time, checked when it loads and
// stepped in simulated seconds.

#include <cmath>

#include <gtest/gtest.h>

#include "twin/runtime/dynamics.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::test {
namespace {

using namespace runtime;

std::string tank_model(const std::string& dynamics) {
  return R"({"@id": "dtmi:test:tank;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
    "contents": [
      {"@type": "Property", "name": "inflow", "schema": "double", "writable": true},
      {"@type": "Telemetry", "name": "level", "schema": "double", "minimum": 0, "maximum": 10},
      {"@type": "Telemetry", "name": "temperature", "schema": "double"},
      {"@type": "Property", "name": "label", "schema": "string"}],
    "twin": {"kind": "component",
             "derived": [{"name": "full", "formula": "level / 10"}],
             "dynamics": )" + dynamics + "}}";
}

/// A tank filled at the desired inflow, drained in proportion to its level, whose
/// temperature follows 20 + level with a lag of 5 s.
type_ptr tank() {
  auto t = parse_model(tank_model(R"({
    "level": {"rate": "desired.inflow - 0.1 * level"},
    "temperature": {"target": "20 + level", "lag": 5, "noise": 0.5}})"),
                       "tank.json");
  EXPECT_TRUE(t) << error_message(t.error());
  return t ? *t : nullptr;
}

TEST(dynamics, lags_and_rates_step_from_the_state_before_the_step) {
  auto t = tank();
  ASSERT_TRUE(t);
  auto level = static_cast<size_t>(t->index_of("level"));
  auto temperature = static_cast<size_t>(t->index_of("temperature"));
  auto full = static_cast<size_t>(t->index_of("full"));
  auto s = dynamics_state_of(*t, {{"level", value{2.0}}, {"temperature", value{10.0}}},
                             {{"inflow", value{0.5}}});
  ASSERT_EQ(s.size(), 2 * t->properties().size());
  step_dynamics(*t, s, 1.0);
  EXPECT_DOUBLE_EQ(s[level], 2.0 + (0.5 - 0.2));
  EXPECT_DOUBLE_EQ(s[temperature], 10 + (22 - 10) / 5.0);  // from the level before the step
  EXPECT_DOUBLE_EQ(s[full], s[level] / 10);                 // derived, computed again
  // A step as long as the lag or longer reaches the target.
  step_dynamics(*t, s, 60.0);
  EXPECT_DOUBLE_EQ(s[temperature], 20 + 2.3);
  // The declared range holds: 2.3 + 60 * (0.5 - 0.23) is beyond 10.
  EXPECT_DOUBLE_EQ(s[level], 10);
  // No desired inflow: the rate is unknown and the level holds.
  s[t->properties().size() + static_cast<size_t>(t->index_of("inflow"))] = std::nan("");
  step_dynamics(*t, s, 1.0);
  EXPECT_DOUBLE_EQ(s[level], 10);
  // A property without a value takes its target at once; a rate has nothing to add to.
  auto empty = dynamics_state_of(*t, {}, {{"inflow", value{1.0}}});
  step_dynamics(*t, empty, 1.0);
  EXPECT_TRUE(std::isnan(empty[level]));
  EXPECT_TRUE(std::isnan(empty[temperature]));  // its target reads the level
}

TEST(dynamics, noise_is_added_only_with_a_generator_and_scales_with_the_root_of_time) {
  auto t = tank();
  ASSERT_TRUE(t);
  auto temperature = static_cast<size_t>(t->index_of("temperature"));
  std::mt19937_64 rng{11};
  double sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    auto s = dynamics_state_of(*t, {{"level", value{0.0}}, {"temperature", value{20.0}}}, {});
    step_dynamics(*t, s, 4.0, &rng);  // at its target: only the noise moves it
    sq += (s[temperature] - 20) * (s[temperature] - 20);
  }
  EXPECT_NEAR(std::sqrt(sq / n), 0.5 * 2, 0.05);  // noise * sqrt(dt)
  auto s = dynamics_state_of(*t, {{"level", value{0.0}}, {"temperature", value{20.0}}}, {});
  step_dynamics(*t, s, 4.0);
  EXPECT_EQ(s[temperature], 20);
}

TEST(dynamics, declarations_are_checked_when_the_model_loads) {
  auto refused = [](const std::string& dynamics) {
    auto t = parse_model(tank_model(dynamics), "tank.json");
    return t ? std::string{} : error_message(t.error());
  };
  EXPECT_EQ(refused(R"({"level": {"rate": "inflow", "noise": 0.1}})"), "");
  for (auto [dynamics, why] : std::vector<std::pair<std::string, std::string>>{
         {R"({"nothing": {"rate": "1"}})", "name no property"},
         {R"({"full": {"rate": "1"}})", "need a declared number"},
         {R"({"label": {"rate": "1"}})", "need a declared number"},
         {R"({"level": {"rate": "desired.level"}})", "not a writable number"},
         {R"({"level": {"rate": "label"}})", "not a number or a boolean"},
         {R"({"level": {"rate": "volume * 2"}})", "unknown property 'volume'"},
         {R"({"level": {"rate": "1 +"}})", "formula"},
         {R"({"level": {"target": "1"}})", "\"lag\""},
         {R"({"level": {"target": "1", "lag": 0}})", "\"lag\""},
         {R"({"level": {"rate": "1", "lag": 2}})", "takes no \"lag\""},
         {R"({"level": {"rate": "1", "target": "2", "lag": 1}})", "either"},
         {R"({"level": {}})", "either"},
         {R"({"level": {"rate": "1", "noise": -1}})", "noise of 0 or more"},
         {R"({"level": {"rate": "1", "speed": 1}})", "unknown field"},
         {R"({"level": "1"})", "must be"},
         {R"([])", "must map"}}) {
    auto text = refused(dynamics);
    EXPECT_NE(text.find(why), std::string::npos) << dynamics << ": " << text;
  }
}

} // namespace
} // namespace twin::test
