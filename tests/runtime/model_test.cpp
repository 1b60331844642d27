// Twin types: the C++ SDK, validation of values and model files.

#include <fstream>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/model.hpp"

namespace twin::test {
namespace {

type_ptr motor_type() {
  type_registry reg;
  add_test_types(reg);
  return reg.find("motor");
}

TEST(twin_type, accepts_values_of_declared_properties) {
  auto t = motor_type();
  EXPECT_FALSE(t->check_reported({{"temperature", value{20}}, {"rpm", value{1500.5}}}));
  EXPECT_FALSE(t->check_reported({{"count", value{2.0}}}));  // integral double is an int
  EXPECT_FALSE(t->check_reported({{"temperature", value{}}}));  // null deletes
}

TEST(twin_type, rejects_unknown_wrong_typed_and_out_of_range_values) {
  auto t = motor_type();
  auto code = [&](value_map m) { return error_code(t->check_reported(m)); };
  EXPECT_EQ(code({{"colour", value{1}}}), runtime_errc::unknown_property);
  EXPECT_EQ(code({{"temperature", value{"hot"}}}), runtime_errc::type_mismatch);
  EXPECT_EQ(code({{"count", value{2.5}}}), runtime_errc::type_mismatch);
  EXPECT_EQ(code({{"load", value{1.5}}}), runtime_errc::out_of_range);
  EXPECT_EQ(code({{"temperature", value{-51}}}), runtime_errc::out_of_range);
  EXPECT_EQ(code({{"health", value{"ok"}}}), runtime_errc::read_only);
  auto err = t->check_reported({{"load", value{1.5}}});
  EXPECT_EQ(error_message(err), "property 'load' = 1.5 is out of range [0, 1]");
  err = t->check_reported({{"temperature", value{"hot"}}});
  EXPECT_EQ(error_message(err),
            "property 'temperature' of type 'motor' expects double, got string \"hot\"");
}

TEST(twin_type, desired_needs_writable_properties) {
  auto t = motor_type();
  EXPECT_FALSE(t->check_desired({{"rpm", value{1000}}}));
  EXPECT_EQ(error_code(t->check_desired({{"temperature", value{20}}})), runtime_errc::read_only);
  EXPECT_EQ(error_code(t->check_desired({{"rpm", value{9000}}})), runtime_errc::out_of_range);
}

TEST(type_builder, adds_computed_properties) {
  type_registry reg;
  add_test_types(reg);
  auto robot = reg.find("robot");
  ASSERT_TRUE(robot);
  auto* agg = robot->property("max_temperature");
  ASSERT_NE(agg, nullptr);
  EXPECT_TRUE(agg->computed);
  EXPECT_EQ(robot->property("motors")->type, property_type::integer);
  EXPECT_TRUE(robot->property("health")->computed);
}

TEST(type_builder, rejects_broken_definitions) {
  auto fails = [](type_builder b) {
    auto t = b.build();
    return !t && error_code(t.error()) == runtime_errc::invalid_model;
  };
  EXPECT_TRUE(fails(type_builder{"1bad", twin_kind::asset}));
  type_builder dup{"t", twin_kind::asset};
  dup.property("a", property_type::real).property("a", property_type::real);
  EXPECT_TRUE(fails(dup));
  type_builder range{"t", twin_kind::asset};
  range.property("a", property_type::real).range(5, 1);
  EXPECT_TRUE(fails(range));
  type_builder alert{"t", twin_kind::asset};
  alert.property("a", property_type::real).alert("x", "b > 1", severity::warning);
  EXPECT_TRUE(fails(alert));
  type_builder syntax{"t", twin_kind::asset};
  syntax.property("a", property_type::real).alert("x", "a >", severity::warning);
  EXPECT_TRUE(fails(syntax));
  type_builder health{"t", twin_kind::asset};
  health.property("health", property_type::string);
  EXPECT_TRUE(fails(health));
  type_builder orphan_unit{"t", twin_kind::asset};
  orphan_unit.unit("degC");
  EXPECT_TRUE(fails(orphan_unit));
}

TEST(type_builder, refuses_derived_properties_that_cannot_be_computed) {
  auto why = [](const std::string& name, const std::string& formula) {
    type_builder b{"t", twin_kind::asset};
    b.property("a", property_type::real).property("s", property_type::string);
    b.derive("d1", "a * 2").derive(name, formula);
    auto t = b.build();
    EXPECT_FALSE(t) << formula;
    if (t)
      return std::string{};
    EXPECT_EQ(error_code(t.error()), runtime_errc::invalid_model);
    return error_message(t.error());
  };
  EXPECT_NE(why("d2", "b + 1").find("'d2' reads unknown property 'b'"), std::string::npos);
  EXPECT_NE(why("d2", "s + 1").find("'s', which is not a number"), std::string::npos);
  EXPECT_NE(why("d2", "a +").find("invalid formula"), std::string::npos);
  EXPECT_NE(why("a", "1").find("invalid or taken name"), std::string::npos);
  EXPECT_NE(why("d1", "1").find("invalid or taken name"), std::string::npos);
  EXPECT_NE(why("health", "1").find("invalid or taken name"), std::string::npos);
  EXPECT_NE(why("d2", "d2 + 1").find("'d2' read each other in a circle"), std::string::npos);
  // d1 reads d3, which reads d1 (and d2 reads d3).
  type_builder circle{"t", twin_kind::asset};
  circle.property("a", property_type::real);
  circle.derive("d1", "d3 + a").derive("d2", "d3 * 2").derive("d3", "d1 / 2");
  auto t = circle.build();
  ASSERT_FALSE(t);
  EXPECT_NE(error_message(t.error()).find("'d1', 'd2', 'd3' read each other in a circle"),
            std::string::npos)
    << error_message(t.error());
}

TEST(type_registry, refuses_a_second_type_of_the_same_name) {
  type_registry reg;
  add_test_types(reg);
  auto again = type_builder{"motor", twin_kind::component}.build();
  ASSERT_TRUE(again);
  EXPECT_EQ(error_code(reg.add(*again)), runtime_errc::invalid_model);
  EXPECT_EQ(reg.size(), 4u);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path};
  out << text;
}

TEST(model_files, load_a_dtdl_interface_with_the_twin_extension) {
  temp_dir dir;
  write_file(dir.sub("robot.json"), R"json({
    "@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:factory:robot;1",
    "@type": "Interface",
    "contents": [
      {"@type": "Property", "name": "status", "schema": "string", "writable": true},
      {"@type": ["Telemetry", "Temperature"], "name": "temperature", "schema": "double",
       "unit": "degreeCelsius", "minimum": -50, "maximum": 250},
      {"@type": "Command", "name": "stop"},
      {"@type": "Relationship", "name": "contains"}
    ],
    "twin": {
      "kind": "asset",
      "aggregates": [{"name": "max_motor_temperature", "function": "max", "source": "temperature"}],
      "derived": [{"name": "headroom", "formula": "clamp(90 - temperature, 0, 140)",
                   "unit": "degreeCelsius"}],
      "alerts": [{"name": "hot", "when": "max_motor_temperature > 80", "severity": "warning"},
                 {"name": "tight", "when": "headroom < 5", "severity": "critical"}],
      "history": ["temperature", "max_motor_temperature", "headroom"]
    }
  })json");
  type_registry reg;
  auto n = load_models(dir.path(), reg);
  ASSERT_TRUE(n) << error_message(n.error());
  EXPECT_EQ(*n, 1u);
  auto t = reg.find("robot");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->kind(), twin_kind::asset);
  EXPECT_TRUE(t->property("status")->writable);
  EXPECT_EQ(*t->property("temperature")->max, 250);
  EXPECT_TRUE(t->has_command("stop"));
  EXPECT_EQ(t->alerts().size(), 2u);
  EXPECT_EQ(t->aggregates()[0].fn, aggregate_fn::max);
  ASSERT_EQ(t->derived().size(), 1u);
  EXPECT_EQ(t->derived()[0].expr.inputs(), std::vector<std::string>{"temperature"});
  EXPECT_TRUE(t->property("headroom")->computed);
  EXPECT_EQ(t->property("headroom")->unit, "degreeCelsius");
  EXPECT_TRUE(t->property("temperature")->history);
  EXPECT_TRUE(t->property("max_motor_temperature")->history);
  EXPECT_FALSE(t->property("status")->history);
  EXPECT_EQ(t->history_properties().size(), 3u);
}

TEST(model_files, errors_name_the_file_and_the_problem) {
  temp_dir dir;
  struct bad_case {
    const char* text;
    const char* expect;
  };
  for (auto [text, expect] : std::vector<bad_case>{
         {"{", "is not valid JSON: at line 1, column 2"},
         {"[]", "holds no Interface"},
         {R"({"@type":"Interface","@id":"x:y;1"})", "'x:y;1' is not a DTMI"},
         {R"({"@type":"Telemetry","@id":"dtmi:x:y;1"})", "\"@type\" must be \"Interface\""},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"gadget"}})", "kind"},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset"},
             "contents":[{"@type":"Property","name":"a","schema":"quaternion"}]})",
          "'a': unsupported schema 'quaternion'"},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset",
             "alerts":[{"name":"a","when":"nope > 1","severity":"critical"}]}})",
          "unknown property"},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset",
             "history":["nope"]}})",
          "history of 'nope'"},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset","history":"a"}})",
          "list of property names"},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset",
             "derived":[{"name":"d","formula":"a * (2"}]},
             "contents":[{"@type":"Property","name":"a","schema":"double"}]})",
          "derived property 'd' invalid formula at position 7: missing ')'"},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset",
             "derived":[{"name":"d"}]}})",
          "\"formula\""},
         {R"({"@type":"Interface","@id":"dtmi:x:y;1","twin":{"kind":"asset",
             "history":["o"]}, "contents":[{"@type":"Property","name":"o",
             "schema":{"@type":"Object","fields":[]}}]})",
          "only scalars"},
       }) {
    auto path = dir.sub("m.json");
    write_file(path, text);
    auto t = load_model_file(path);
    ASSERT_FALSE(t) << text;
    auto msg = error_message(t.error());
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(expect), std::string::npos) << msg;
  }
  type_registry reg;
  EXPECT_FALSE(load_models(dir.sub("missing"), reg));
}

} // namespace
} // namespace twin::test
