// Derived properties: declared formulas over a twin's own properties, recomputed on every
// change, read by alerts and kept in the history like any property.

#include "host_fixture.hpp"

namespace twin::test {
namespace {

/// A pump: the water's power from its flow and head, and its efficiency against the
/// shaft's power while it runs (declared before what it reads: the type orders them).
type_ptr pump_type() {
  type_builder b{"pump", twin_kind::component};
  b.property("flow", property_type::real).unit("m3/s");
  b.property("head", property_type::real).unit("m");
  b.property("shaft_kw", property_type::real).unit("kilowatt");
  b.property("running", property_type::boolean);
  b.derive("efficiency", "running ? hydraulic_kw / max(shaft_kw, 0.001) : 0");
  b.derive("hydraulic_kw", "flow * head * 9.81", "kilowatt");
  b.alert("poor", "efficiency < 0.5", severity::warning);
  b.keep_history("efficiency");
  auto t = b.build();
  EXPECT_TRUE(t) << error_message(t.error());
  return t ? *t : nullptr;
}

double number(const value& v) {
  return v.is_number() ? v.as_double() : -1;
}

TEST_F(host_test, derived_properties_follow_their_inputs_and_drive_alerts) {
  ASSERT_FALSE(types_.add(pump_type()));
  start();
  ASSERT_TRUE(put(h(), "p:1", "pump"));
  EXPECT_TRUE(prop(h(), "p:1", "hydraulic_kw").is_null());  // no inputs, no value

  ASSERT_TRUE(ingest(h(), "p:1", {{"flow", value{0.1}}, {"head", value{20.0}}}, 1'000'000));
  EXPECT_DOUBLE_EQ(number(prop(h(), "p:1", "hydraulic_kw")), 0.1 * 20 * 9.81);
  EXPECT_TRUE(prop(h(), "p:1", "efficiency").is_null());  // running and shaft_kw missing

  ASSERT_TRUE(
    ingest(h(), "p:1", {{"shaft_kw", value{50.0}}, {"running", value{true}}}, 2'000'000));
  auto rec = get(h(), "p:1");
  ASSERT_TRUE(rec);
  EXPECT_DOUBLE_EQ(number(rec->reported.at("efficiency")), 0.1 * 20 * 9.81 / 50);
  EXPECT_EQ(rec->metadata.at("efficiency").source, "computed");
  EXPECT_EQ(rec->metadata.at("efficiency").updated_ms, 2'000'000);  // its newest input's
  ASSERT_EQ(rec->alerts.size(), 1u);
  EXPECT_EQ(rec->alerts[0].name, "poor");

  // More head: more power, and the alert clears.
  ASSERT_TRUE(ingest(h(), "p:1", {{"head", value{40.0}}}, 2'500'000));
  EXPECT_DOUBLE_EQ(number(prop(h(), "p:1", "efficiency")), 0.1 * 40 * 9.81 / 50);
  EXPECT_TRUE(get(h(), "p:1")->alerts.empty());
  // Stopped: the conditional's other branch.
  ASSERT_TRUE(ingest(h(), "p:1", {{"running", value{false}}}, 3'000'000));
  EXPECT_DOUBLE_EQ(number(prop(h(), "p:1", "efficiency")), 0);
  // An input deleted: no value.
  ASSERT_TRUE(ingest(h(), "p:1", {{"flow", value{}}}, 4'000'000));
  EXPECT_TRUE(prop(h(), "p:1", "hydraulic_kw").is_null());
  EXPECT_EQ(prop(h(), "p:1", "efficiency"), value{0.0});  // not running: reads no power

  // Computed: nobody writes it.
  auto refused = ingest(h(), "p:1", {{"efficiency", value{1.0}}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(error_code(refused.error()), runtime_errc::read_only);

  // Its history, at the times of the samples it came from.
  auto samples = store_->history(id("p:1"), "efficiency", 0, INT64_MAX, 10);
  ASSERT_TRUE(samples);
  std::vector<int64_t> times;
  for (const auto& [ts, bytes] : *samples)
    times.push_back(ts);
  EXPECT_EQ(times, (std::vector<int64_t>{2'000'000, 2'500'000, 3'000'000}));
}

TEST_F(host_test, derived_properties_come_back_with_the_twin_after_a_restart) {
  ASSERT_FALSE(types_.add(pump_type()));
  start();
  ASSERT_TRUE(put(h(), "p:2", "pump", "", {{"flow", value{0.2}}, {"head", value{10.0}}}));
  EXPECT_DOUBLE_EQ(number(prop(h(), "p:2", "hydraulic_kw")), 0.2 * 10 * 9.81);
  ASSERT_TRUE(patch(h(), "p:2", {{"head", value{20.0}}}));  // an API write too
  EXPECT_DOUBLE_EQ(number(prop(h(), "p:2", "hydraulic_kw")), 0.2 * 20 * 9.81);
  restart();
  EXPECT_DOUBLE_EQ(number(prop(h(), "p:2", "hydraulic_kw")), 0.2 * 20 * 9.81);
}

} // namespace
} // namespace twin::test
