// Anomaly detection: the streaming detector on its own, then on a twin, where each
// telemetry sample gets a score, an anomaly raises the `anomaly` alert and is recorded.

#include <cmath>

#include <nlohmann/json.hpp>

#include "host_fixture.hpp"
#include "twin/runtime/anomaly.hpp"
#include "twin/runtime/query.hpp"

namespace twin::test {
namespace {

/// A wave around 50 (41 to 59) with a ripple, repeating every 150 samples: the warm-up
/// of 200 sees every value it takes.
double ordinary(int i) {
  return 50 + 8 * std::sin(i * 2 * M_PI / 50) + (i % 3 - 1) * 0.5;
}

TEST(anomaly_detector, learns_the_warmup_then_flags_a_spike_once) {
  anomaly_options o;
  anomaly_detector d{o};
  for (int i = 0; i < 200; ++i) {
    auto r = d.observe(ordinary(i));
    ASSERT_EQ(r.score, 0) << "the warm-up scores 0, at " << i;
    ASSERT_FALSE(r.anomalous);
  }
  int flagged = 0;
  for (int i = 200; i < 2000; ++i)
    flagged += d.observe(ordinary(i)).onset ? 1 : 0;
  EXPECT_EQ(flagged, 0) << "values within what the warm-up saw are ordinary";

  auto spike = d.observe(95);
  EXPECT_EQ(spike.score, 1);
  EXPECT_TRUE(spike.onset);
  EXPECT_TRUE(spike.anomalous);
  EXPECT_LE(spike.low, 42);  // the familiar range: the warm-up's
  EXPECT_GE(spike.high, 58);
  EXPECT_LT(spike.high, 95);

  // It lasts `hold` ordinary samples, then ends; the spike's level is familiar now.
  for (uint32_t k = 1; k <= o.hold; ++k)
    ASSERT_TRUE(d.observe(ordinary(2000 + static_cast<int>(k))).anomalous) << k;
  EXPECT_FALSE(d.observe(ordinary(3000)).anomalous);
  auto again = d.observe(95);
  EXPECT_EQ(again.score, 0.75);  // seen once
  EXPECT_FALSE(again.onset);
}

TEST(anomaly_detector, flags_a_level_shift_and_forgets_after_its_memory) {
  anomaly_options o;
  o.memory = 500;
  anomaly_detector d{o};
  for (int i = 0; i < 1000; ++i)
    d.observe(ordinary(i));
  int onsets = 0;
  for (int i = 0; i < 50; ++i)  // down by half the range: new levels
    onsets += d.observe(ordinary(i) - 25).onset ? 1 : 0;
  EXPECT_EQ(onsets, 1) << "one anomaly, however many new samples it holds";
  for (int i = 0; i < 700; ++i)
    d.observe(ordinary(i));
  // 700 samples later the shifted levels are forgotten: new again.
  EXPECT_TRUE(d.observe(ordinary(0) - 25).onset);
}

TEST(anomaly_detector, a_flat_or_noisy_series_without_anomalies_stays_quiet) {
  anomaly_detector flat;
  anomaly_detector noisy;
  uint64_t seed = 42;
  auto uniform = [&] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(seed >> 11) / 9007199254740992.0;
  };
  int flagged = 0;
  for (int i = 0; i < 5000; ++i) {
    flagged += flat.observe(7.5).onset ? 1 : 0;
    // A sum of uniforms: bounded noise the warm-up nearly spans.
    flagged += noisy.observe(uniform() + uniform() + uniform()).onset ? 1 : 0;
  }
  EXPECT_LE(flagged, 2);
  EXPECT_FALSE(flat.observe(std::nan("")).anomalous);  // not a number: ignored
  EXPECT_TRUE(flat.observe(8).onset);                  // a flat line that moves
}

TEST(anomaly_detector, extreme_values_are_scored_like_any_other) {
  anomaly_options o;
  o.warmup = 4;
  anomaly_detector d{o};
  for (double x : {1e308, -1e308, 1e308, -1e308})  // a range no double holds
    d.observe(x);
  EXPECT_EQ(d.observe(0).score, 1);      // a level between the two, never seen
  EXPECT_EQ(d.observe(1e308).score, 0.5);  // visited twice in the warm-up
  anomaly_detector tiny{o};
  for (double x : {0.0, 5e-324, 0.0, 5e-324})  // a range too small to divide by
    tiny.observe(x);
  EXPECT_EQ(tiny.observe(1).score, 1);       // far above: the top level, new
  EXPECT_EQ(tiny.observe(-1e308).score, 1);  // far below: the bottom level, new
  EXPECT_EQ(tiny.observe(2).score, 0.75);    // the top level again
}

TEST(anomaly_bank, detectors_of_different_options_side_by_side_score_as_alone) {
  anomaly_options coarse, sharp, forgetful;
  sharp.sensitivity = 1;
  sharp.warmup = 20;
  forgetful.memory = 50;
  forgetful.hold = 3;
  const anomaly_options* opts[] = {&coarse, &sharp, &forgetful};
  anomaly_bank bank{opts, 3};
  std::vector<anomaly_detector> alone;
  for (const auto* o : opts)
    alone.emplace_back(*o);
  EXPECT_EQ(bank.size(), 3u);
  for (int i = 0; i < 3000; ++i)
    for (size_t k = 0; k < 3; ++k) {
      // Each its own series: ordinary, with a level shift and spikes now and then.
      double x = ordinary(i + 100 * static_cast<int>(k)) + (i > 1500 ? 5.0 * k : 0)
                 + (i % 577 == 0 ? 40 : 0);
      auto a = bank.observe(k, x, *opts[k]);
      auto b = alone[k].observe(x);
      ASSERT_EQ(a.score, b.score) << k << " at " << i;
      ASSERT_EQ(a.onset, b.onset) << k << " at " << i;
      ASSERT_EQ(a.low, b.low) << k << " at " << i;
      ASSERT_EQ(bank.anomalous(k), alone[k].anomalous());
    }
  EXPECT_EQ(bank.count(1), 3000u);
  // A bank moved keeps its detectors; the one moved from holds none.
  anomaly_bank moved{std::move(bank)};
  EXPECT_EQ(moved.count(2), 3000u);
  EXPECT_EQ(bank.size(), 0u);
}

TEST(anomaly_detector, memory_is_bounded_and_options_are_checked) {
  anomaly_detector d;
  EXPECT_GE(d.bytes(), 250 * sizeof(double));  // the warm-up's samples
  for (int i = 0; i < 100000; ++i)
    d.observe(i % 2 == 0 ? ordinary(i) : 1e6 * i);
  EXPECT_LE(d.bytes(), 64u + 320u);  // the options and the bank, and its one detector
  anomaly_options fine;
  anomaly_detector sharp{[] {
    anomaly_options o;
    o.sensitivity = 1;
    return o;
  }()};
  for (int i = 0; i < 300; ++i)
    sharp.observe(i);
  EXPECT_LE(sharp.bytes(), 64u + 448u);
  EXPECT_EQ(fine.check(), nullptr);
  using edit = void (*)(anomaly_options&);
  for (edit bad : {+[](anomaly_options& o) { o.sensitivity = 0; },
                   +[](anomaly_options& o) { o.sensitivity = 1.5; },
                   +[](anomaly_options& o) { o.warmup = 1; },
                   +[](anomaly_options& o) { o.memory = 0; },
                   +[](anomaly_options& o) { o.threshold = 0; }}) {
    anomaly_options o;
    bad(o);
    EXPECT_NE(o.check(), nullptr);
  }
}

constexpr const char* bearing_model = R"({
  "@id": "dtmi:test:bearing;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
  "displayName": "bearing",
  "contents": [
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
    {"@type": "Telemetry", "name": "vibration", "schema": "double"}
  ],
  "twin": {"kind": "component",
           "anomaly": {"temperature": {}, "vibration": {"warmup": 50, "hold": 5}}}
})";

std::vector<nlohmann::json> anomalies(state_store& store, const type_registry& types,
                                      const std::string& twin, const std::string& property,
                                      int64_t from = 0, size_t limit = 100) {
  history_query q;
  q.id = *twin_id::parse(twin);
  q.property = anomaly_series(property);
  q.from_ms = from;
  q.limit = limit;
  auto page = read_history(store, types, q);
  EXPECT_TRUE(page) << error_message(page.error());
  std::vector<nlohmann::json> out;
  if (page)
    for (const auto& p : page->points) {
      auto j = nlohmann::json::parse(p.v.as_string());
      j["ts"] = p.ts_ms;
      out.push_back(j);
    }
  return out;
}

TEST_F(host_test, a_twin_scores_its_samples_and_records_each_anomaly) {
  auto type = parse_model(bearing_model, "bearing.json");
  ASSERT_TRUE(type) << error_message(type.error());
  ASSERT_FALSE(types_.add(*type));
  start();
  ASSERT_TRUE(put(h(), "b:1", "bearing"));
  const int64_t t0 = 1'700'000'000'000;
  for (int i = 0; i < 400; ++i)
    ASSERT_TRUE(ingest(h(), "b:1", {{"temperature", value{ordinary(i)}}}, t0 + i * 1000));
  auto rec = get(h(), "b:1");
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->reported.at("temperature_anomaly"), value{0.0});  // a familiar level
  EXPECT_TRUE(rec->alerts.empty());

  // A reading far above: score 1, the alert, a record stamped with the sample's time.
  const int64_t ts = t0 + 400'000;
  ASSERT_TRUE(ingest(h(), "b:1", {{"temperature", value{120.0}}}, ts));
  rec = get(h(), "b:1");
  EXPECT_EQ(rec->reported.at("temperature_anomaly"), value{1.0});
  EXPECT_EQ(rec->metadata.at("temperature_anomaly").updated_ms, ts);
  ASSERT_EQ(rec->alerts.size(), 1u);
  EXPECT_EQ(rec->alerts[0].name, "anomaly");
  EXPECT_EQ(rec->alerts[0].level, severity::warning);
  auto found = anomalies(*store_, types_, "b:1", "temperature");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0]["ts"], ts);
  EXPECT_EQ(found[0]["property"], "temperature");
  EXPECT_EQ(found[0]["value"], 120.0);
  EXPECT_EQ(found[0]["score"], 1.0);
  EXPECT_LT(found[0]["expected"][0].get<double>(), 45);
  EXPECT_GT(found[0]["expected"][1].get<double>(), 55);
  EXPECT_LT(found[0]["expected"][1].get<double>(), 120);

  // An older sample is not scored; ordinary samples end the anomaly after `hold`.
  ASSERT_TRUE(ingest(h(), "b:1", {{"temperature", value{500.0}}}, ts - 1));
  EXPECT_EQ(anomalies(*store_, types_, "b:1", "temperature").size(), 1u);
  for (int i = 1; i <= 61; ++i)
    ASSERT_TRUE(ingest(h(), "b:1", {{"temperature", value{ordinary(i)}}}, ts + i * 1000));
  EXPECT_TRUE(get(h(), "b:1")->alerts.empty());

  // The score's history: a sample where it changes, at the reading's time.
  auto scores = store_->history(id("b:1"), "temperature_anomaly", ts - 1000, ts + 1000, 10);
  ASSERT_TRUE(scores);
  ASSERT_EQ(scores->size(), 2u);
  EXPECT_EQ((*scores)[0].first, ts);
  EXPECT_EQ(decode_sample((*scores)[0].second), value{1.0});
  EXPECT_EQ((*scores)[1].first, ts + 1000);  // back to a familiar level
  EXPECT_EQ(decode_sample((*scores)[1].second), value{0.0});

  // Every property's anomalies at once, merged by time, and paged.
  for (int i = 0; i < 60; ++i)
    ASSERT_TRUE(ingest(h(), "b:1", {{"vibration", value{1.0 + 0.01 * (i % 7)}}}, ts + 100'000 + i));
  ASSERT_TRUE(ingest(h(), "b:1", {{"vibration", value{9.0}}}, ts + 200'000));
  ASSERT_TRUE(ingest(h(), "b:1", {{"temperature", value{-80.0}}}, ts + 300'000));
  auto all = anomalies(*store_, types_, "b:1", "");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1]["property"], "vibration");
  EXPECT_EQ(all[1]["ts"], ts + 200'000);
  EXPECT_EQ(all[2]["property"], "temperature");
  auto first = anomalies(*store_, types_, "b:1", "", 0, 2);
  ASSERT_EQ(first.size(), 2u);
  auto rest = anomalies(*store_, types_, "b:1", "", ts + 300'000, 2);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0]["value"], -80.0);

  // After a restart: the records and the scores' history stay; the score is in memory only
  // and shows again with the next sample, from a detector that learns again.
  restart();
  rec = get(h(), "b:1");
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->reported.count("temperature_anomaly"), 0u);
  ASSERT_EQ(rec->alerts.size(), 1u);  // as stored: the anomaly of -80 was under way
  EXPECT_EQ(rec->reported.at("temperature"), value{-80.0});
  EXPECT_EQ(anomalies(*store_, types_, "b:1", "").size(), 3u);
  ASSERT_TRUE(ingest(h(), "b:1", {{"temperature", value{50.0}}}, ts + 400'000));
  EXPECT_EQ(prop(h(), "b:1", "temperature_anomaly"), value{0.0});  // warming up
  EXPECT_TRUE(get(h(), "b:1")->alerts.empty());  // a new detector: nothing under way

  // What is not watched is refused.
  history_query q;
  q.id = id("b:1");
  q.property = anomaly_series("nothing");
  auto none = read_history(*store_, types_, q);
  ASSERT_FALSE(none);
  EXPECT_EQ(error_code(none.error()), runtime_errc::unknown_property);
}

TEST(anomaly_model, declarations_are_checked) {
  auto refused = [](const std::string& ext) {
    std::string text = R"({"@id": "dtmi:test:x;1", "@type": "Interface",
      "@context": "dtmi:dtdl:context;3", "contents": [
        {"@type": "Telemetry", "name": "t", "schema": "double"},
        {"@type": "Property", "name": "label", "schema": "string"}],
      "twin": {"kind": "component", )" + ext.substr(1) + "}";
    auto t = parse_model(text, "x.json");
    return t ? std::string{} : error_message(t.error());
  };
  EXPECT_EQ(refused(R"({"anomaly": {"t": {"sensitivity": 0.8, "hold": 10}}})"), "");
  EXPECT_NE(refused(R"({"anomaly": {"nope": {}}})").find("names no property"), std::string::npos);
  EXPECT_NE(refused(R"({"anomaly": {"label": {}}})").find("declared number"), std::string::npos);
  EXPECT_NE(refused(R"({"anomaly": {"t": {"sensitivity": 2}}})").find("sensitivity"),
            std::string::npos);
  EXPECT_NE(refused(R"({"anomaly": {"t": {"hold": -1}}})").find("whole number"), std::string::npos);
  EXPECT_NE(refused(R"({"anomaly": {"t": {"speed": 1}}})").find("unknown option"),
            std::string::npos);
  EXPECT_NE(refused(R"({"anomaly": {"t": {}}, "alerts": [{"name": "anomaly", "when": "t > 1",
            "severity": "warning"}]})").find("raised by anomaly detection"), std::string::npos);
}

} // namespace
} // namespace twin::test
