// Times to limits: a property's trend projected to where it meets a limit, on its own and
// on a twin.

#include <cmath>
#include <random>

#include "host_fixture.hpp"
#include "twin/runtime/trend.hpp"

namespace twin::test {
namespace {

TEST(trend_estimator, a_straight_line_meets_its_limit_exactly) {
  trend_estimator e{600};
  for (int i = 0; i < 4; ++i)
    e.add(1000 + 10.0 * i, 2 + 0.1 * i);
  EXPECT_FALSE(e.time_to(5, true)) << "four samples are too few";
  e.add(1040, 2.4);
  auto p = e.time_to(5, true);
  ASSERT_TRUE(p);
  EXPECT_NEAR(p->eta_s, (5 - 2.4) / 0.01, 1e-6);
  EXPECT_NEAR(p->low_s, p->eta_s, 1e-3);  // no scatter: (next to) no uncertainty
  EXPECT_NEAR(p->high_s, p->eta_s, 1e-3);
  EXPECT_FALSE(e.time_to(0, false)) << "rising: it never falls to 0";
  EXPECT_EQ(e.time_to(2.3, true)->eta_s, 0) << "there already";
  e.add(1040, 100);  // no newer than the last: ignored
  EXPECT_NEAR(e.time_to(5, true)->eta_s, 260, 1e-6);
}

TEST(trend_estimator, noise_widens_the_interval_and_old_samples_fade) {
  std::mt19937_64 rng{5};
  std::normal_distribution<double> noise{0, 0.05};
  trend_estimator e{300};
  // Falling 0.001 a second for an hour, sampled every 10 s, toward a lower limit of 0.
  for (int i = 0; i <= 360; ++i)
    e.add(10.0 * i, 10 - 0.001 * 10 * i + noise(rng));
  auto p = e.time_to(0, false);
  ASSERT_TRUE(p);
  double truth = (10 - 3.6) / 0.001;
  EXPECT_LT(p->low_s, p->eta_s);
  EXPECT_GT(p->high_s, p->eta_s);
  EXPECT_LT(p->low_s, truth);
  EXPECT_GT(p->high_s, truth);
  EXPECT_NEAR(p->eta_s, truth, 0.25 * truth);
  // The trend turns: within a few half-lives the projection follows the new one.
  for (int i = 361; i <= 720; ++i)
    e.add(10.0 * i, 6.4 + 0.002 * 10 * (i - 360) + noise(rng));
  EXPECT_FALSE(e.time_to(0, false)) << "rising now";
  EXPECT_NEAR(e.time_to(20, true)->eta_s, (20 - 13.6) / 0.002, 0.25 * (20 - 13.6) / 0.002);
}

constexpr const char* gearbox_model = R"({
  "@id": "dtmi:test:gearbox;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
  "contents": [
    {"@type": "Telemetry", "name": "wear", "schema": "double", "minimum": 0, "maximum": 1},
    {"@type": "Telemetry", "name": "oil", "schema": "double"}
  ],
  "twin": {"kind": "component",
           "alerts": [{"name": "worn", "when": "wear > 0.8", "severity": "warning"}],
           "timeToLimit": {"wear": {"limit": "worn", "halfLife": 3600},
                           "oil": {"below": 2}}}
})";

TEST_F(host_test, a_twin_shows_when_its_wear_reaches_the_alert_threshold) {
  auto type = parse_model(gearbox_model, "gearbox.json");
  ASSERT_TRUE(type) << error_message(type.error());
  ASSERT_FALSE(types_.add(*type));
  start();
  ASSERT_TRUE(put(h(), "g:1", "gearbox"));
  const int64_t t0 = 1'700'000'000'000;
  for (int i = 0; i < 10; ++i)  // 0.001 a minute
    ASSERT_TRUE(ingest(h(), "g:1", {{"wear", value{0.5 + 0.001 * i}}}, t0 + i * 60'000));
  auto rec = get(h(), "g:1");
  ASSERT_TRUE(rec);
  double eta = (0.8 - 0.509) / 0.001 * 60;
  EXPECT_NEAR(rec->reported.at("wear_time_to_limit_s").as_double(), eta, 1e-3 * eta);
  EXPECT_NEAR(rec->reported.at("wear_time_to_limit_low_s").as_double(), eta, 1e-3 * eta);
  EXPECT_EQ(rec->metadata.at("wear_time_to_limit_s").updated_ms, t0 + 9 * 60'000);
  EXPECT_EQ(rec->reported.count("oil_time_to_limit_s"), 0u);  // no oil samples
  // Oil that stops falling has no time to its limit.
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(ingest(h(), "g:1", {{"oil", value{5.0}}}, t0 + i * 60'000));
  EXPECT_EQ(get(h(), "g:1")->reported.count("oil_time_to_limit_s"), 0u);
  // Shown, not stored: after a restart they come back with the samples.
  restart();
  EXPECT_EQ(get(h(), "g:1")->reported.count("wear_time_to_limit_s"), 0u);
  EXPECT_EQ(get(h(), "g:1")->reported.at("wear"), value{0.509});
}

TEST(trend_model, declarations_are_checked) {
  auto refused = [](const std::string& limits) {
    std::string text = gearbox_model;
    auto at = text.find(R"("timeToLimit": )");
    auto end = text.find("}}\n}", at);  // the end of "timeToLimit", and of "twin"
    text = text.substr(0, at) + R"("timeToLimit": )" + limits + text.substr(end + 1);
    auto t = parse_model(text, "gearbox.json");
    return t ? std::string{} : error_message(t.error());
  };
  EXPECT_EQ(refused(R"({"wear": {"limit": "max"}})"), "");
  for (auto [limits, why] : std::vector<std::pair<std::string, std::string>>{
         {R"({"oil": {"limit": "max"}})", "does not declare"},
         {R"({"wear": {"limit": "broken"}})", "names no alert 'broken'"},
         {R"({"oil": {"limit": "worn"}})", "whose condition is not 'oil > x'"},
         {R"({"nothing": {"above": 1}})", "names no property"},
         {R"({"wear": {"above": 1, "below": 0}})", "needs one of"},
         {R"({"wear": {}})", "needs one of"},
         {R"({"wear": {"above": 1, "halfLife": 0}})", "half-life"},
         {R"({"wear": {"above": "high"}})", "must be a number"},
         {R"({"wear": {"above": 1, "window": 5}})", "unknown field"}}) {
    auto text = refused(limits);
    EXPECT_NE(text.find(why), std::string::npos) << limits << ": " << text;
  }  // A threshold beyond what a double holds is refused, not a crash.
  std::string huge = gearbox_model;
  huge.replace(huge.find("wear > 0.8"), 10, "wear > 1e999");
  auto t = parse_model(huge, "gearbox.json");
  ASSERT_FALSE(t);
  EXPECT_NE(error_message(t.error()).find("whose condition is not"), std::string::npos);
}

} // namespace
} // namespace twin::test
