// DTDL as the model files use it: an ontology written the way the published ones are
// (tests/data/ontology), each schema's values, extends, names and DTMIs, and the errors.

#include <fstream>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"

namespace twin::test {
namespace {

using namespace runtime;

/// The ontology's types, loaded once.
const type_registry& ontology() {
  static type_registry reg = [] {
    type_registry r;
    auto n = load_models(TEST_DATA_DIR "/ontology", r);
    EXPECT_TRUE(n) << error_message(n.error());
    return r;
  }();
  return reg;
}

/// The error of writing `values` as reported state of `type`; "" if they are taken.
std::string refusal(const std::string& type, value_map values) {
  auto t = ontology().find(type);
  if (!t)
    return "no type " + type;
  auto err = t->check_reported(values);
  return err ? error_message(err) : std::string{};
}

value object(std::initializer_list<std::pair<const std::string, value>> fields) {
  return value{value_map{fields}};
}

TEST(dtdl_ontology, loads_with_extends_components_relationships_and_named_schemas) {
  const auto& reg = ontology();
  EXPECT_EQ(reg.size(), 13u) << testing::PrintToString(reg.names());
  auto building = reg.find("Building");
  ASSERT_TRUE(building);
  EXPECT_EQ(building->dtmi(), "dtmi:test:onto:Building;1");
  EXPECT_EQ(building->display_name(), "Building");
  EXPECT_EQ(building->kind(), twin_kind::asset) << "no twin extension: an asset";
  EXPECT_EQ(building->extends(), (std::vector<std::string>{"dtmi:test:onto:Architecture;1",
                                                           "dtmi:test:onto:Space;1"}));
  // Inherited contents, the component as an object of its interface's properties.
  for (auto name : {"name", "customTags", "externalIds", "geometry", "georeference",
                    "capacity", "opened", "inspectionInterval", "opensAt"})
    EXPECT_TRUE(building->property(name)) << name;
  const auto* geo = building->property("georeference");
  ASSERT_TRUE(geo && geo->schema);
  EXPECT_EQ(geo->schema->id, "dtmi:test:onto:Georeference;1");
  EXPECT_EQ(geo->schema->fields.size(), 3u);
  EXPECT_TRUE(geo->writable);
  // Relationships, with their targets by type name and their multiplicity.
  const auto* part_of = building->relationship("isPartOf");
  ASSERT_TRUE(part_of);
  EXPECT_EQ(part_of->target, "Space");
  EXPECT_EQ(part_of->max, 1u);
  EXPECT_EQ(building->relationship("address")->target, "PostalAddress");
  EXPECT_EQ(building->relationship("isLocationOf")->target, "");
  EXPECT_FALSE(building->relationship("isLocationOf")->max);
  // A diamond (Air_Temperature_Sensor extends Temperature_Sensor and Sensor) takes each
  // base once; the nearest declaration of a content holds.
  auto air = reg.find("Air_Temperature_Sensor");
  ASSERT_TRUE(air);
  EXPECT_EQ(air->extends().size(), 3u);
  const auto* temperature = air->property("temperature");
  ASSERT_TRUE(temperature);
  EXPECT_TRUE(temperature->telemetry);
  EXPECT_EQ(temperature->semantic_type, "Temperature");
  EXPECT_EQ(temperature->unit, "degreeCelsius");
  EXPECT_FALSE(temperature->writable);
  EXPECT_FALSE(air->property("tags")->writable);
  // Several interfaces in one file, a named Enum used by its DTMI.
  auto breaker = reg.find("Breaker");
  ASSERT_TRUE(breaker);
  EXPECT_EQ(breaker->relationship("feeds")->target, "Building");
  EXPECT_TRUE(breaker->has_command("open"));
  EXPECT_EQ(breaker->property("phases")->schema->id, "dtmi:test:grid:PhaseCode;1");
}

TEST(dtdl_ontology, values_are_checked_against_every_schema) {
  // Maps: their values' schema.
  EXPECT_EQ(refusal("Building", {{"customTags", object({{"green", value{true}}})}}), "");
  EXPECT_EQ(refusal("Building", {{"customTags", object({{"green", value{"yes"}}})}}),
            "property 'customTags.green' expects a boolean, got \"yes\"");
  // Objects: their fields, by name; the nearest declaration of lastKnownValue.
  auto reading = object({{"value", value{21.5}}, {"timestamp", value{"2024-05-01T12:00:00Z"}}});
  EXPECT_EQ(refusal("Air_Temperature_Sensor", {{"lastKnownValue", reading}}), "");
  EXPECT_EQ(refusal("Point", {{"lastKnownValue", reading}}),
            "property 'lastKnownValue.value' expects a string, got 21.5");
  EXPECT_EQ(refusal("Air_Temperature_Sensor",
                    {{"lastKnownValue", object({{"when", value{"now"}}})}}),
            "property 'lastKnownValue' has no field 'when'");
  // Enums: one of their values, nothing else.
  EXPECT_EQ(refusal("Breaker", {{"phases", value{"AB"}}}), "");
  EXPECT_EQ(refusal("Breaker", {{"phases", value{"banana"}}}),
            "property 'phases' must be one of \"ABC\", \"AB\", \"A\", not \"banana\"");
  EXPECT_NE(refusal("Breaker", {{"phases", object({{"x", value{1}}})}}), "");
  EXPECT_EQ(refusal("Breaker", {{"priority", value{3}}}), "");
  EXPECT_NE(refusal("Breaker", {{"priority", value{2}}}), "");
  EXPECT_NE(refusal("Breaker", {{"priority", value{"high"}}}), "");
  EXPECT_EQ(refusal("Point", {{"aggregate", object({{"aggregationFunction", value{"mean"}},
                                                    {"aggregationInterval", value{"PT15M"}}})}}),
            "");
  EXPECT_EQ(refusal("Point", {{"aggregate", object({{"aggregationFunction", value{"median"}}})}}),
            "property 'aggregate.aggregationFunction' must be one of \"max\", \"mean\", "
            "\"min\", not \"median\"");
  // Arrays: their elements.
  EXPECT_EQ(refusal("Breaker", {{"ratedCurrents", value{value_list{value{10.0}, value{16}}}}}),
            "");
  EXPECT_EQ(refusal("Breaker", {{"ratedCurrents", value{value_list{value{10.0}, value{"x"}}}}}),
            "property 'ratedCurrents[1]' expects a number, got \"x\"");
  // Dates, times and durations in their ISO 8601 forms.
  EXPECT_EQ(refusal("Building", {{"opened", value{"2024-05-01T08:00:00+02:00"}},
                                 {"opensAt", value{"07:30:00"}},
                                 {"inspectionInterval", value{"P1Y2M10DT2H30M"}}}),
            "");
  EXPECT_NE(refusal("Building", {{"opened", value{"2024-05-01"}}}), "") << "a date, not a dateTime";
  EXPECT_NE(refusal("Building", {{"opened", value{"2024-02-30T08:00:00Z"}}}), "");
  EXPECT_NE(refusal("Building", {{"opensAt", value{"25:00:00"}}}), "");
  EXPECT_NE(refusal("Building", {{"inspectionInterval", value{"3 days"}}}), "");
  EXPECT_NE(refusal("Building", {{"inspectionInterval", value{"PT"}}}), "");
  EXPECT_EQ(refusal("Building", {{"georeference", object({{"surveyed", value{"2024-05-01"}}})}}),
            "");
  EXPECT_NE(refusal("Building", {{"georeference", object({{"surveyed", value{"May"}}})}}), "");
  // Integers of a width: their range.
  EXPECT_EQ(refusal("Level", {{"levelNumber", value{-2}}}), "");
  EXPECT_NE(refusal("Level", {{"levelNumber", value{300}}}), "");
  EXPECT_NE(refusal("Building", {{"capacity", object({{"maxOccupancy", value{-1}}})}}), "");
}

/// Loads the model texts `files` (name, text) from a fresh directory; the error, or "".
std::string load_error(std::vector<std::pair<std::string, std::string>> files,
                       type_registry* into = nullptr) {
  temp_dir dir;
  for (const auto& [name, text] : files)
    std::ofstream{dir.sub(name)} << text;
  type_registry reg;
  auto n = load_models(dir.path(), into ? *into : reg);
  return n ? std::string{} : error_message(n.error());
}

std::string interface(const std::string& id, const std::string& rest = {}) {
  return R"({"@context": "dtmi:dtdl:context;3", "@type": "Interface", "@id": ")" + id + "\""
         + (rest.empty() ? "" : ", " + rest) + "}";
}

TEST(dtdl_models, errors_name_the_file_the_element_and_the_reason) {
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  auto cycle = load_error({{"a.json", interface("dtmi:t:a;1", R"("extends": "dtmi:t:b;1")")},
                           {"b.json", interface("dtmi:t:b;1", R"("extends": "dtmi:t:a;1")")}});
  EXPECT_TRUE(has(cycle, "extends 'dtmi:t:a;1', which extends it: a cycle")) << cycle;
  auto missing = load_error({{"a.json", interface("dtmi:t:a;1", R"("extends": "dtmi:t:z;1")")}});
  EXPECT_TRUE(has(missing, "extends 'dtmi:t:z;1', which no model defines")) << missing;
  std::vector<std::pair<std::string, std::string>> deep;
  for (int i = 0; i < 12; ++i)
    deep.emplace_back("l" + std::to_string(i) + ".json",
                      interface("dtmi:t:l" + std::to_string(i) + ";1",
                                i < 11 ? R"("extends": "dtmi:t:l)" + std::to_string(i + 1) + R"(;1")"
                                       : ""));
  EXPECT_TRUE(has(load_error(deep), "nests deeper than 10 levels"));
  auto kinds = load_error(
    {{"a.json", interface("dtmi:t:a;1", R"("contents": [{"@type": "Property", "name": "x", "schema": "double"}])")},
     {"b.json", interface("dtmi:t:b;1", R"("extends": "dtmi:t:a;1", "contents": [{"@type": "Relationship", "name": "x"}])")}});
  EXPECT_TRUE(has(kinds, "'x' is declared by both 'dtmi:t:a;1' and 'dtmi:t:b;1' as different"))
    << kinds;
  auto versions = load_error({{"a.json", interface("dtmi:t:a;1")}, {"b.json", interface("dtmi:t:a;2")}});
  EXPECT_TRUE(has(versions, "dtmi:t:a is defined in two versions")) << versions;
  auto enum_kind = load_error({{"a.json", interface("dtmi:t:a;1", R"("contents": [{"@type": "Property", "name": "e",
    "schema": {"@type": "Enum", "valueSchema": "double", "enumValues": []}}])")}});
  EXPECT_TRUE(has(enum_kind, "a.json: interface 'dtmi:t:a;1': 'e': an Enum's \"valueSchema\""))
    << enum_kind;
  auto map_key = load_error({{"a.json", interface("dtmi:t:a;1", R"("contents": [{"@type": "Property", "name": "m",
    "schema": {"@type": "Map", "mapKey": {"name": "k", "schema": "integer"}, "mapValue": {"name": "v", "schema": "string"}}}])")}});
  EXPECT_TRUE(has(map_key, "'m': a Map's \"mapKey\" must have the schema \"string\"")) << map_key;
  auto child = load_error({{"line.json", interface("dtmi:t:line;1", R"("twin": {"kind": "system",
    "aggregates": [{"name": "n", "function": "count", "childType": "robto"}]})")},
                           {"robot.json", interface("dtmi:t:robot;1", R"("twin": {"kind": "asset"})")}});
  EXPECT_TRUE(has(child, "line.json: interface 'dtmi:t:line;1': an aggregate's childType: "
                         "'robto' is not a known type (did you mean 'robot'?)"))
    << child;
  auto multiplicity = load_error({{"a.json", interface("dtmi:t:a;1", R"("contents": [{"@type": "Relationship",
    "name": "r", "minMultiplicity": 1}])")}});
  EXPECT_TRUE(has(multiplicity, "\"minMultiplicity\" must be 0")) << multiplicity;
  auto target = load_error({{"a.json", interface("dtmi:t:a;1", R"("contents": [{"@type": "Relationship",
    "name": "r", "target": "dtmi:t:nobody;1"}])")}});
  EXPECT_TRUE(has(target, "relationship 'r': its target: no model defines 'dtmi:t:nobody;1'"))
    << target;
  auto component = load_error({{"a.json", interface("dtmi:t:a;1", R"("contents": [{"@type": "Component",
    "name": "c", "schema": "dtmi:t:nothing;1"}])")}});
  EXPECT_TRUE(has(component, "'c': its schema 'dtmi:t:nothing;1' is not a defined interface"))
    << component;
  auto bad_id = load_error({{"a.json", interface("dtmi:t:a-b;1")}});
  EXPECT_TRUE(has(bad_id, "'dtmi:t:a-b;1' is not a DTMI")) << bad_id;
}

TEST(dtdl_models, the_dtmi_is_the_identity_and_a_short_name_serves_when_it_is_unambiguous) {
  type_registry reg;
  auto err = load_error({{"a.json", interface("dtmi:a:motor;1", R"("twin": {"kind": "component"})")},
                         {"b.json", interface("dtmi:b:motor;2", R"("twin": {"kind": "component"})")},
                         {"c.json", interface("dtmi:c:robot;1", R"("twin": {"kind": "asset",
    "aggregates": [{"name": "n", "function": "count", "childType": "dtmi:b:motor;2"}]})")}},
                        &reg);
  ASSERT_EQ(err, "");
  EXPECT_EQ(reg.names(), (std::vector<std::string>{"dtmi:a:motor", "dtmi:b:motor", "robot"}));
  EXPECT_EQ(reg.find("dtmi:a:motor;1")->dtmi(), "dtmi:a:motor;1");
  EXPECT_EQ(reg.find("dtmi:b:motor")->dtmi(), "dtmi:b:motor;2");
  EXPECT_FALSE(reg.find("dtmi:b:motor;1")) << "another version";
  EXPECT_FALSE(reg.find("motor")) << "ambiguous";
  EXPECT_EQ(reg.find("robot")->name(), "robot");
  EXPECT_EQ(reg.find("dtmi:c:robot;1")->name(), "robot");
  EXPECT_EQ(reg.find("robot")->aggregates()[0].child_type, "dtmi:b:motor");
  // The "twin" extension's name wins; a model of a DTMI that is there already does not load.
  type_registry named;
  ASSERT_EQ(load_error({{"a.json", interface("dtmi:a:motor;1", R"("twin": {"kind": "component", "name": "drive"})")}},
                       &named),
            "");
  EXPECT_EQ(named.find("drive")->dtmi(), "dtmi:a:motor;1");
  EXPECT_EQ(named.find("motor")->name(), "drive");
  auto again = load_error({{"x.json", interface("dtmi:a:motor;3", R"("twin": {"kind": "component"})")}}, &named);
  EXPECT_NE(again.find("both models of dtmi:a:motor"), std::string::npos) << again;
}

TEST(dtdl_models, a_derived_interface_inherits_the_twin_extension) {
  type_registry reg;
  ASSERT_EQ(load_error({{"base.json", interface("dtmi:t:pump;1", R"("contents": [
    {"@type": "Telemetry", "name": "pressure", "schema": "double"}],
    "twin": {"kind": "component", "alerts": [{"name": "high", "when": "pressure > 8", "severity": "warning"}],
             "history": ["pressure"]})")},
                        {"derived.json", interface("dtmi:t:boosterPump;1", R"("extends": "dtmi:t:pump;1",
    "contents": [{"@type": "Telemetry", "name": "speed", "schema": "double"}],
    "twin": {"alerts": [{"name": "fast", "when": "speed > 3000", "severity": "critical"}]})")}},
                       &reg),
            "");
  auto booster = reg.find("boosterPump");
  ASSERT_TRUE(booster);
  EXPECT_EQ(booster->kind(), twin_kind::component);
  ASSERT_EQ(booster->alerts().size(), 2u);
  EXPECT_EQ(booster->alerts()[0].name, "high");
  EXPECT_EQ(booster->alerts()[1].name, "fast");
  EXPECT_TRUE(booster->property("pressure")->history);
}

} // namespace
} // namespace twin::test
