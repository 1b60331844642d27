// What-if scenarios: a copy of a subtree run forward in virtual time, and what they refuse.

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "twin/runtime/dynamics.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/optimize.hpp"
#include "twin/runtime/scenario.hpp"

namespace twin::test {
namespace {

using namespace runtime;

/// A heater whose temperature follows its desired power with a lag, and a room above two
/// of them that rolls up their temperature and alerts when it gets hot.
type_registry room_types() {
  type_registry reg;
  type_builder heater{"heater", twin_kind::component};
  heater.property("power", property_type::real).range(0, 10).writable();
  heater.property("temperature", property_type::real);
  heater.command("off");
  heater.command_effect("off", {{"power", value{0.0}}});
  heater.dynamics("power", "desired.power", 1);
  heater.dynamics("temperature", "15 + 2 * power", 60);
  heater.derive("fahrenheit", "temperature * 9 / 5 + 32");
  heater.alert("hot", "temperature > 30", severity::warning);
  type_builder room{"room", twin_kind::asset};
  room.aggregate("max_temperature", aggregate_fn::max, "temperature");
  room.aggregate("heaters", aggregate_fn::count, "");
  room.aggregate("worst", aggregate_fn::worst, "health");
  room.alert("stuffy", "max_temperature > 25", severity::critical);
  room.command("cool");
  room.command_effect("cool", {{"power", value{1.0}}}, "heater");
  for (auto* b : {&heater, &room}) {
    auto t = b->build();
    EXPECT_TRUE(t) << error_message(t.error());
    EXPECT_FALSE(reg.add(*t));
  }
  return reg;
}

std::vector<twin_record> room_records() {
  auto rec = [](const char* id, const char* type, const char* parent, value_map reported) {
    twin_record r;
    r.id = *twin_id::parse(id);
    r.type = type;
    if (*parent)
      r.parent = *twin_id::parse(parent);
    r.reported = std::move(reported);
    return r;
  };
  return {rec("h:room", "room", "", {}),
          rec("h:a", "heater", "h:room", {{"power", value{2.0}}, {"temperature", value{19.0}}}),
          rec("h:b", "heater", "h:room", {{"power", value{2.0}}, {"temperature", value{19.0}}}),
          rec("h:elsewhere", "heater", "", {{"power", value{9.0}}})};
}

TEST(scenario, runs_the_subtree_forward_through_dynamics_aggregates_and_alerts) {
  auto types = room_types();
  auto records = room_records();
  scenario_request req;
  req.root = *twin_id::parse("h:room");
  req.horizon_s = 600;
  req.step_s = 1;
  req.changes.push_back({*twin_id::parse("h:a"), {{"power", value{8.0}}}, {}, {}});
  req.watch = {{*twin_id::parse("h:a"), "temperature"}, {*twin_id::parse("h:room"), "max_temperature"}};
  auto r = run_scenario(types, records, req);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_EQ(r->twin_steps, 600u * 3);  // the heater elsewhere is not under the room
  ASSERT_EQ(r->times.size(), 601u);
  EXPECT_EQ(r->times.back(), 600);
  // The heater's power follows its new desired value, and its temperature, with its
  // 60 s lag, heads for 15 + 2 * 8 = 31.
  const auto& a = r->series[0];
  EXPECT_EQ(a[0], 19);
  EXPECT_GT(a[60], 25);
  EXPECT_NEAR(a[600], 31, 0.1);
  EXPECT_EQ(r->series[1][600], a[600]);  // the room's max is that heater
  // Alerts with the virtual time they came: the room gets stuffy first, then the heater hot.
  ASSERT_EQ(r->alerts.size(), 2u);
  EXPECT_EQ(r->alerts[0].alert, "stuffy");
  EXPECT_EQ(r->alerts[0].twin.str(), "h:room");
  EXPECT_TRUE(r->alerts[0].raised);
  EXPECT_EQ(r->alerts[1].alert, "hot");
  EXPECT_EQ(r->alerts[1].twin.str(), "h:a");
  EXPECT_GT(r->alerts[1].t_s, r->alerts[0].t_s);
  // The analytic time to 30 °C from 19 °C toward 31 °C with a 60 s lag (the power steps up
  // at once): 60 * ln(12 / 1), within the steps' discretisation.
  EXPECT_NEAR(r->alerts[1].t_s, 60 * std::log(12.0), 3);
  // The final state of every twin of the subtree, derived properties and health included.
  ASSERT_EQ(r->final_state.size(), 3u);
  for (const auto& [id, props] : r->final_state) {
    if (id.str() == "h:a") {
      EXPECT_NEAR(props.at("fahrenheit").as_double(), a[600] * 9 / 5 + 32, 1e-9);
      EXPECT_EQ(props.at("health"), value{"warning"});
    }
    if (id.str() == "h:room") {
      EXPECT_EQ(props.at("heaters"), value{int64_t{2}});
      EXPECT_EQ(props.at("worst"), value{"warning"});
      EXPECT_EQ(props.at("health"), value{"critical"});
    }
  }
  // Nothing of it reached the records.
  EXPECT_EQ(records[1].reported.at("temperature"), value{19.0});
}

TEST(scenario, commands_apply_their_declared_effects_and_series_are_thinned) {
  auto types = room_types();
  scenario_request req;
  req.root = *twin_id::parse("h:room");
  req.horizon_s = 3600;
  req.step_s = 0.5;  // 7,200 steps: the series keeps 1,000 points at most
  req.changes.push_back({*twin_id::parse("h:room"), {}, {}, "cool"});
  req.watch = {{*twin_id::parse("h:b"), "power"}};
  auto r = run_scenario(types, room_records(), req);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_LE(r->times.size(), scenario_request::max_points + 1);
  EXPECT_EQ(r->times.back(), 3600);
  EXPECT_NEAR(r->series[0].back(), 1.0, 1e-9);  // the room's cool set each heater to 1
  EXPECT_TRUE(r->alerts.empty());
}

TEST(scenario, bad_requests_are_refused_with_the_reason) {
  auto types = room_types();
  auto records = room_records();
  auto refused = [&](auto edit) {
    scenario_request req;
    req.root = *twin_id::parse("h:room");
    edit(req);
    auto r = run_scenario(types, records, req);
    EXPECT_FALSE(r);
    if (r)
      return std::string{};
    EXPECT_EQ(error_code(r.error()), runtime_errc::invalid_argument);
    return error_message(r.error());
  };
  auto id = [](const char* text) { return *twin_id::parse(text); };
  EXPECT_NE(refused([&](auto& q) { q.root = id("h:none"); }).find("no twin h:none"),
            std::string::npos);
  EXPECT_NE(refused([](auto& q) { q.horizon_s = 0; }).find("above 0"), std::string::npos);
  EXPECT_NE(refused([](auto& q) { q.step_s = -1; }).find("above 0"), std::string::npos);
  EXPECT_NE(refused([](auto& q) { q.horizon_s = 1e9; }).find("1e+09 steps; a scenario runs 1e+06"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& q) { q.changes.push_back({id("h:elsewhere"), {}, {}, {}}); })
              .find("not in the subtree"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& q) {
              q.changes.push_back({id("h:a"), {{"temperature", value{1.0}}}, {}, {}});
            }).find("h:a"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& q) { q.changes.push_back({id("h:a"), {}, {}, "explode"}); })
              .find("no command 'explode'"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& q) { q.watch = {{id("h:a"), "pressure"}}; })
              .find("no property 'pressure'"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& q) { q.watch = {{id("h:elsewhere"), "power"}}; })
              .find("not in the subtree"),
            std::string::npos);
}

TEST(scenario, what_it_projects_is_what_a_noisy_device_does_within_the_noise) {
  // The factory's question at a small scale: project a heater's temperature after a change,
  // then let a device with the same dynamics and their noise live through the same change.
  type_registry reg;
  type_builder b{"noisy_heater", twin_kind::component};
  b.property("power", property_type::real).writable();
  b.property("temperature", property_type::real);
  b.dynamics("power", "desired.power", 1);
  b.dynamics("temperature", "15 + 2 * power", 60, 0.2);
  auto t = b.build();
  ASSERT_TRUE(t);
  ASSERT_FALSE(reg.add(*t));
  twin_record rec;
  rec.id = *twin_id::parse("h:x");
  rec.type = "noisy_heater";
  rec.reported = {{"power", value{2.0}}, {"temperature", value{19.0}}};
  scenario_request req;
  req.root = rec.id;
  req.horizon_s = 600;
  req.changes.push_back({rec.id, {{"power", value{6.0}}}, {}, {}});
  req.watch = {{rec.id, "temperature"}};
  auto projected = run_scenario(reg, {rec}, req);
  ASSERT_TRUE(projected);
  // The device, live: the same change, stepped with its noise, 20 times over.
  auto temperature = static_cast<size_t>((*t)->index_of("temperature"));
  std::mt19937_64 rng{17};
  double sq = 0;
  size_t n = 0;
  for (int run = 0; run < 20; ++run) {
    auto s = dynamics_state_of(**t, rec.reported, {{"power", value{6.0}}});
    for (int k = 1; k <= 600; ++k) {
      step_dynamics(**t, s, 1.0, &rng);
      double d = s[temperature] - projected->series[0][static_cast<size_t>(k)];
      sq += d * d;
      ++n;
    }
  }
  double rms = std::sqrt(sq / static_cast<double>(n));
  // A seeded scenario is one such run, the same for the same seed.
  req.noise_seed = 5;
  auto one = run_scenario(reg, {rec}, req);
  auto same = run_scenario(reg, {rec}, req);
  req.noise_seed = 6;
  auto other = run_scenario(reg, {rec}, req);
  ASSERT_TRUE(one && same && other);
  EXPECT_EQ(one->series, same->series);
  EXPECT_NE(one->series, other->series);
  EXPECT_NE(one->series, projected->series);
  // What the noise explains: a lag of time constant 60 s driven by a random walk of 0.2 per
  // root second settles at a standard deviation of 0.2 * sqrt(60 / 2) = 1.1.
  double explained = 0.2 * std::sqrt(60.0 / 2);
  EXPECT_GT(rms, 0.3 * explained);
  EXPECT_LT(rms, 1.2 * explained);
}

TEST(optimize, finds_the_set_points_that_keep_within_the_constraints) {
  auto types = room_types();
  auto id = [](const char* text) { return *twin_id::parse(text); };
  optimize_request o;
  o.scenario.root = id("h:room");
  o.scenario.horizon_s = 600;
  o.vary = {{id("h:a"), "power", 0, 10}, {id("h:b"), "power", 0, 10}};
  // As warm as it gets (the mean of the room's warmest heater) with neither heater hot:
  // temperature 15 + 2 * power stays at most 30, so each power at most 7.5.
  o.objective = {id("h:room"), "max_temperature"};
  o.maximize = true;
  o.bounds = {{id("h:a"), "temperature", std::nullopt, 30.0},
              {id("h:b"), "temperature", std::nullopt, 30.0}};
  o.max_evaluations = 60;
  auto r = optimize_scenario(types, room_records(), o);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_TRUE(r->feasible);
  EXPECT_LE(r->evaluations, 60u);
  ASSERT_EQ(r->best.size(), 2u);
  EXPECT_NEAR(std::max(r->best[0], r->best[1]), 7.5, 0.1);
  EXPECT_LE(std::max(r->best[0], r->best[1]), 7.6);  // the lag leaves a hair of room
  // The best scenario is the one it answers: its changes are the set-points.
  ASSERT_EQ(r->best_scenario.changes.size(), 2u);
  EXPECT_EQ(r->best_scenario.changes[0].desired.at("power"), value{r->best[0]});
  EXPECT_EQ(r->result.times.back(), 600);
  // Forbidding alerts instead: the room's stuffy alert (critical, above 25) comes first,
  // and holds the heater at 5.
  o.bounds.clear();
  o.no_alert = severity::warning;
  o.objective = {id("h:a"), "temperature"};
  o.stat = series_stat::final;
  o.vary = {{id("h:a"), "power", 0, 10}};
  o.scenario.changes = {{id("h:b"), {{"power", value{0.0}}}, {}, {}}};  // b stays cool
  r = optimize_scenario(types, room_records(), o);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_TRUE(r->feasible);
  EXPECT_NEAR(r->best[0], 5, 0.1);
  EXPECT_NEAR(r->objective, 25, 0.3);
  EXPECT_TRUE(r->result.alerts.empty());
}

TEST(optimize, keeps_to_its_budget_and_to_whole_values) {
  type_registry reg;
  type_builder b{"dial", twin_kind::component};
  for (auto* p : {"a", "b", "c"})
    b.property(p, property_type::real).writable();
  b.property("notch", property_type::integer).writable();
  b.property("out", property_type::real);
  b.dynamics("out", "-(a - 0.3)^2 - (b - 0.6)^2 - c - (notch - 2.4)^2", 1);
  b.dynamics("a", "desired.a", 1);
  b.dynamics("b", "desired.b", 1);
  b.dynamics("c", "desired.c", 1);
  b.dynamics("notch", "desired.notch", 1);
  auto t = b.build();
  ASSERT_TRUE(t) << error_message(t.error());
  ASSERT_FALSE(reg.add(*t));
  twin_record rec;
  rec.id = *twin_id::parse("d:1");
  rec.type = "dial";
  rec.reported = {{"a", value{0.0}}, {"b", value{0.0}}, {"c", value{0.0}}, {"notch", value{int64_t{0}}}};
  optimize_request o;
  o.scenario.root = rec.id;
  o.scenario.horizon_s = 10;
  o.vary = {{rec.id, "a", 0, 1}, {rec.id, "b", 0, 1}, {rec.id, "c", 0, 1}, {rec.id, "notch", 0, 5}};
  o.objective = {rec.id, "out"};
  o.stat = series_stat::final;
  o.maximize = true;
  o.max_evaluations = 6;  // fewer than a grid of 2 values per set-point
  auto r = optimize_scenario(reg, {rec}, o);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_LE(r->evaluations, 6u);
  o.max_evaluations = 200;
  r = optimize_scenario(reg, {rec}, o);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_LE(r->evaluations, 200u);
  EXPECT_EQ(r->best[3], std::round(r->best[3]));  // an integer: whole values only
  EXPECT_EQ(r->best[3], 2);
  EXPECT_NEAR(r->best[0], 0.3, 0.05);
  EXPECT_NEAR(r->best[1], 0.6, 0.05);
  EXPECT_NEAR(r->best[2], 0, 0.05);
}

TEST(scenario, property_changes_reach_derived_properties_and_alerts_read_health) {
  type_registry reg;
  type_builder leaf{"leaf", twin_kind::component};
  leaf.property("x", property_type::real);
  leaf.derive("double_x", "2 * x");
  leaf.alert("big", "double_x > 10", severity::critical);
  type_builder top{"top", twin_kind::asset};
  top.aggregate("worst", aggregate_fn::worst, "health");
  top.alert("trouble", "health = \"critical\"", severity::warning);
  for (auto* b : {&leaf, &top}) {
    auto t = b->build();
    ASSERT_TRUE(t) << error_message(t.error());
    ASSERT_FALSE(reg.add(*t));
  }
  twin_record up, down;
  up.id = *twin_id::parse("t:top");
  up.type = "top";
  down.id = *twin_id::parse("t:leaf");
  down.type = "leaf";
  down.parent = up.id;
  down.reported = {{"x", value{1.0}}};
  scenario_request req;
  req.root = up.id;
  req.horizon_s = 2;
  req.changes = {{down.id, {}, {{"x", value{6.0}}}, {}}};
  req.watch = {{down.id, "double_x"}};
  auto r = run_scenario(reg, {up, down}, req);
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_EQ(r->series[0].back(), 12);  // a twin without dynamics, its property changed
  ASSERT_EQ(r->alerts.size(), 2u);
  EXPECT_EQ(r->alerts[0].alert, "big");
  EXPECT_EQ(r->alerts[1].alert, "trouble");  // read the health it rolled up
  EXPECT_EQ(r->extremes[0], std::make_pair(2.0, 12.0));
}

TEST(optimize, bad_requests_are_refused) {
  auto types = room_types();
  auto id = [](const char* text) { return *twin_id::parse(text); };
  auto refused = [&](auto edit) {
    optimize_request o;
    o.scenario.root = id("h:room");
    o.vary = {{id("h:a"), "power", 0, 10}};
    o.objective = {id("h:a"), "temperature"};
    edit(o);
    auto r = optimize_scenario(types, room_records(), o);
    return r ? std::string{} : error_message(r.error());
  };
  EXPECT_EQ(refused([](auto&) {}), "");
  EXPECT_NE(refused([](auto& o) { o.vary.clear(); }).find("1 to 4"), std::string::npos);
  EXPECT_NE(refused([](auto& o) { o.vary[0].max = -1; }).find("min below max"), std::string::npos);
  EXPECT_NE(refused([](auto& o) { o.max_evaluations = 2; }).find("max_evaluations"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& o) { o.vary[0].property = "temperature"; }).find("h:a"),
            std::string::npos);
  EXPECT_NE(refused([&](auto& o) { o.objective = {id("h:a"), "nope"}; }).find("nope"),
            std::string::npos);
}

} // namespace
} // namespace twin::test
