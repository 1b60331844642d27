// Remaining useful life: the smoothing of a twin's inputs, a fit on a fleet and its
// error, the model's bytes, and twins that show what their type's model says, across a
// restart and a removal.

#include <algorithm>
#include <cmath>
#include <random>

#include "host_fixture.hpp"
#include "twin/runtime/rul.hpp"
#include "twin/runtime/rul_catalog.hpp"

namespace twin::test {
namespace {

constexpr int64_t t0 = 1'700'000'000'000;

/// One sample a second of a twin that lives `life` s: its wear rises to 1 over its last
/// 100 s and its temperature follows, both with noise. Rows up to `left` s before its end.
rul_run engine(const std::string& id, int life, std::mt19937_64& rng, int left = 0) {
  std::normal_distribution<double> noise{0, 0.01};
  rul_run r;
  r.twin = id;
  for (int t = 0; t <= life - left; ++t) {
    double wear = std::clamp(1 - (life - t) / 100.0, 0.0, 1.0);
    r.ts_ms.push_back(t0 + t * 1000);
    r.values.push_back(wear + noise(rng));
    r.values.push_back(40 + 10 * wear + 10 * noise(rng));
  }
  return r;
}

std::vector<rul_run> fleet(int twins, uint64_t seed) {
  std::mt19937_64 rng{seed};
  std::vector<rul_run> out;
  for (int i = 0; i < twins; ++i)
    out.push_back(engine("fleet:" + std::to_string(i), 150 + 12 * i, rng));
  return out;
}

const std::vector<std::string> inputs{"wear", "temp"};

rul_options capped(double cap_s) {
  rul_options o;
  o.cap_s = cap_s;
  return o;
}

/// The estimate for the features of every row of `r`.
rul_estimate estimate_at_end(const rul_model& m, const rul_run& r) {
  rul_features f{2};
  for (size_t i = 0; i < r.ts_ms.size(); ++i)
    f.add(r.values.data() + 2 * i, m.weight());
  return m.estimate(f);
}

TEST(rul_features, holt_smoothing_follows_a_line_and_its_slope) {
  rul_features f{1};
  for (int i = 0; i < 300; ++i) {
    double x = 3 + 0.5 * i;
    f.add(&x, rul_features::weight(10));
  }
  EXPECT_EQ(f.samples(), 300u);
  EXPECT_NEAR(f.values()[0], 3 + 0.5 * 299, 0.01);  // the level has caught up
  EXPECT_NEAR(f.values()[1], 0.5, 1e-3);            // the trend is the slope
}

TEST(rul_fit, a_fleet_teaches_the_life_left_and_its_error) {
  auto runs = fleet(10, 1);
  auto m = fit_rul(runs, inputs, capped(60));
  ASSERT_TRUE(m) << error_message(m.error());
  size_t samples = 0;
  for (const auto& r : runs)
    samples += r.ts_ms.size();
  EXPECT_EQ(m->report.twins, 10u);
  EXPECT_EQ(m->report.samples, samples);
  EXPECT_EQ(m->report.folds, 5u);
  EXPECT_LT(m->report.cv_rmse_s, 4);
  EXPECT_GT(m->report.cv_rmse_s, 0);
  EXPECT_LE(m->report.cv_mae_s, m->report.cv_rmse_s);
  // A twin it never saw, 30 s before its end; and a young one, far from it.
  std::mt19937_64 rng{99};
  auto near = estimate_at_end(*m, engine("new:1", 230, rng, 30));
  EXPECT_NEAR(near.rul_s, 30, 5);
  EXPECT_LE(near.low_s, near.rul_s);
  EXPECT_GE(near.high_s, near.rul_s);
  EXPECT_LT(near.low_s, near.high_s);
  auto young = estimate_at_end(*m, engine("new:2", 230, rng, 200));
  EXPECT_GT(young.rul_s, 55);
  EXPECT_LE(young.high_s, 60) << "nothing beyond the cap";
}

TEST(rul_fit, too_few_runs_or_bad_options_are_refused) {
  auto one = fleet(1, 1);
  auto m = fit_rul(one, inputs, capped(60));
  ASSERT_FALSE(m);
  EXPECT_EQ(error_code(m.error()), runtime_errc::invalid_argument);
  EXPECT_NE(error_message(m.error()).find("at least 2 run-to-failure twins"), std::string::npos);
  auto runs = fleet(3, 1);
  runs[1].ts_ms.resize(1);
  runs[1].values.resize(2);
  EXPECT_FALSE(fit_rul(runs, inputs, capped(60))) << "a twin with one sample";
  EXPECT_FALSE(fit_rul(fleet(3, 1), inputs, capped(0)));
  rul_options no_folds;
  no_folds.folds = 1;
  EXPECT_FALSE(fit_rul(fleet(3, 1), inputs, no_folds));
}

TEST(rul_model, its_bytes_give_the_same_model_and_bad_bytes_an_error) {
  auto m = fit_rul(fleet(6, 3), inputs, capped(60));
  ASSERT_TRUE(m);
  m->type = "engine";
  m->version = 7;
  m->selection_prefix = "fleet:";
  auto back = rul_model::decode(m->encode());
  ASSERT_TRUE(back) << error_message(back.error());
  EXPECT_EQ(back->type, "engine");
  EXPECT_EQ(back->version, 7u);
  EXPECT_EQ(back->inputs, inputs);
  EXPECT_EQ(back->selection_prefix, "fleet:");
  EXPECT_EQ(back->report.cv_rmse_s, m->report.cv_rmse_s);
  std::mt19937_64 rng{5};
  auto run = engine("x:1", 200, rng, 40);
  EXPECT_EQ(estimate_at_end(*back, run).rul_s, estimate_at_end(*m, run).rul_s);
  EXPECT_EQ(estimate_at_end(*back, run).high_s, estimate_at_end(*m, run).high_s);
  auto bad = rul_model::decode("not a model");
  ASSERT_FALSE(bad);
  EXPECT_EQ(error_code(bad.error()), runtime_errc::store_corrupt);
}

constexpr const char* engine_model = R"({
  "@id": "dtmi:test:engine;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
  "contents": [
    {"@type": "Telemetry", "name": "wear", "schema": "double"},
    {"@type": "Telemetry", "name": "temp", "schema": "double"},
    {"@type": "Telemetry", "name": "vibration", "schema": "double"}
  ],
  "twin": {"kind": "component", "history": ["wear", "temp"], "rul": true}
})";

/// Posts the rows of `r` to twin `id`.
void feed(host& h, const std::string& id, const rul_run& r) {
  for (size_t i = 0; i < r.ts_ms.size(); ++i)
    ASSERT_TRUE(ingest(h, id, {{"wear", value{r.values[2 * i]}}, {"temp", value{r.values[2 * i + 1]}}},
                       r.ts_ms[i]));
}

TEST_F(host_test, twins_show_their_types_rul_which_is_stored_versioned_and_reloaded) {
  auto type = parse_model(engine_model, "engine.json");
  ASSERT_TRUE(type) << error_message(type.error());
  ASSERT_FALSE(types_.add(*type));
  ASSERT_TRUE((*type)->learns_rul());
  start();
  std::mt19937_64 rng{11};
  ASSERT_TRUE(put(h(), "e:1", "engine"));
  feed(h(), "e:1", engine("e:1", 200, rng, 150));
  EXPECT_EQ(get(h(), "e:1")->reported.count("rul_s"), 0u) << "no model yet";

  auto catalog =
    std::make_unique<rul_catalog>(make_local_kv_store(*store_, h().local_commit(), "rul/"), types_);
  auto m = fit_rul(fleet(10, 1), inputs, capped(60));
  ASSERT_TRUE(m);
  m->type = "engine";
  ASSERT_FALSE(rul_catalog::resolve(**type, *m));
  auto installed = catalog->install(*m);
  ASSERT_TRUE(installed) << error_message(installed.error());
  EXPECT_EQ((*installed)->version, 1u);
  ASSERT_TRUE(put(h(), "e:2", "engine"));
  auto lived = engine("e:2", 240, rng, 30);
  feed(h(), "e:2", lived);
  auto rec = get(h(), "e:2");
  ASSERT_TRUE(rec);
  EXPECT_NEAR(rec->reported.at("rul_s").as_double(), 30, 6);
  EXPECT_LE(rec->reported.at("rul_low_s").as_double(), rec->reported.at("rul_s").as_double());
  EXPECT_GE(rec->reported.at("rul_high_s").as_double(), rec->reported.at("rul_s").as_double());
  EXPECT_EQ(rec->metadata.at("rul_s").updated_ms, t0 + 210 * 1000);
  // A sample of another property is no sample of the inputs: the estimate stays.
  ASSERT_TRUE(ingest(h(), "e:2", {{"vibration", value{1.0}}}, t0 + 211 * 1000));
  EXPECT_EQ(get(h(), "e:2")->metadata.at("rul_s").updated_ms, t0 + 210 * 1000);

  // Shown, not stored; the model is stored: after a restart (a new registry would start
  // with no model) the catalog installs it again.
  catalog.reset();
  restart();
  (*type)->set_rul(nullptr);
  catalog =
    std::make_unique<rul_catalog>(make_local_kv_store(*store_, h().local_commit(), "rul/"), types_);
  auto skipped = catalog->load();
  ASSERT_TRUE(skipped);
  EXPECT_TRUE(skipped->empty());
  ASSERT_TRUE((*type)->rul());
  EXPECT_EQ((*type)->rul()->version, 1u);
  EXPECT_EQ((*type)->rul()->positions, (std::vector<int>{0, 1}));
  EXPECT_EQ(get(h(), "e:2")->reported.count("rul_s"), 0u);
  // The twin activated again smooths its inputs from their history, not from nothing: its
  // next estimate is the one of a twin that never stopped, within what the history older
  // than twelve half-lives weighs.
  ASSERT_TRUE(ingest(h(), "e:2", {{"wear", value{0.72}}, {"temp", value{47.2}}},
                     t0 + 212 * 1000));
  lived.ts_ms.push_back(t0 + 212 * 1000);
  lived.values.insert(lived.values.end(), {0.72, 47.2});
  auto go_on = estimate_at_end(**installed, lived);
  EXPECT_NEAR(get(h(), "e:2")->reported.at("rul_s").as_double(), go_on.rul_s, 0.5);
  EXPECT_NEAR(go_on.rul_s, 28, 6);

  // Removed: the next sample clears the estimate; a new fit takes the next version.
  auto removed = catalog->remove("engine");
  ASSERT_TRUE(removed);
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(*catalog->remove("engine"));
  ASSERT_TRUE(ingest(h(), "e:2", {{"wear", value{0.73}}, {"temp", value{47.3}}},
                     t0 + 213 * 1000));
  EXPECT_EQ(get(h(), "e:2")->reported.count("rul_s"), 0u);
  auto again = catalog->install(*m);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->version, 2u);
}

TEST(rul_model_file, declarations_are_checked) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string text = engine_model;
    text.replace(text.find(from), from.size(), to);
    auto t = parse_model(text, "engine.json");
    return t ? std::string{} : error_message(t.error());
  };
  EXPECT_NE(with(R"("rul": true)", R"("rul": 1)").find("\"rul\" must be true"),
            std::string::npos);
  EXPECT_NE(with(R"("name": "vibration")", R"("name": "rul_s")").find("'rul_s', which is taken"),
            std::string::npos);
  EXPECT_EQ(with(R"("rul": true)", R"("rul": false)"), "");
  std::string plain_text = engine_model;
  plain_text.replace(plain_text.find(R"("rul": true)"), 11, R"("rul": false)");
  auto plain = parse_model(plain_text, "engine.json");
  ASSERT_TRUE(plain);
  EXPECT_FALSE((*plain)->learns_rul());
  EXPECT_EQ((*plain)->property("rul_s"), nullptr);
  // An input must be a declared number whose history is kept.
  auto type = parse_model(engine_model, "engine.json");
  ASSERT_TRUE(type);
  for (auto [input, why] : std::vector<std::pair<std::string, std::string>>{
         {"vibration", "keeps no history"}, {"rul_s", "not a declared number"},
         {"nothing", "is no property"}}) {
    rul_model m;
    m.inputs = {"wear", input};
    auto err = rul_catalog::resolve(**type, m);
    EXPECT_NE(error_message(err).find(why), std::string::npos) << input << ": "
                                                              << error_message(err);
  }
  rul_model twice;
  twice.inputs = {"wear", "wear"};
  EXPECT_NE(error_message(rul_catalog::resolve(**type, twice)).find("named twice"),
            std::string::npos);
}

} // namespace
} // namespace twin::test
