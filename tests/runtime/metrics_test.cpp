// The runtime's metrics: histograms, the registry and its text, and what the runtime's
// probe reports of a host, its store and the process. (The RocksDB store's figures are
// tested with the store, in state_store_test.cpp.)

#include <chrono>
#include <future>
#include <map>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/metrics.hpp"
#include "twin/runtime/probe.hpp"

namespace twin::test {
namespace {

using namespace runtime;
using metrics::family;
using metrics::metric_type;

TEST(histogram, counts_each_value_in_the_first_bucket_whose_bound_it_does_not_exceed) {
  metrics::histogram h{{1, 10}};
  for (double v : {0.5, 1.0, 1.5, 10.0, 11.0, 1e9})
    h.observe(v);
  auto s = h.snapshot();
  EXPECT_EQ(s.counts, (std::vector<uint64_t>{2, 2, 2}));
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.sum, 0.5 + 1 + 1.5 + 10 + 11 + 1e9);
}

class fixed final : public metrics::collectable {
public:
  explicit fixed(std::vector<family> f) : families_(std::move(f)) {}
  void collect(std::vector<family>& out) const override {
    out.insert(out.end(), families_.begin(), families_.end());
  }

private:
  std::vector<family> families_;
};

TEST(metrics_registry, serves_a_family_of_two_sources_once_with_cumulative_buckets) {
  auto mqtt = metrics::ingest_messages();
  mqtt.samples.push_back({{{"source", "mqtt"}, {"result", "accepted"}}, 3, {}});
  auto http = metrics::ingest_messages();
  http.samples.push_back({{{"source", "http"}, {"result", "accepted"}}, 4, {}});
  metrics::histogram h{{0.5, 2}};
  h.observe(0.25);
  h.observe(1);
  h.observe(4);
  fixed a{{mqtt, family{"twin_x_seconds", "X.", metric_type::histogram, {{{}, 0, h.snapshot()}}}}};
  fixed b{{http}};
  metrics::registry r;
  r.add(&a);
  r.add(&b);
  auto families = r.collect();
  ASSERT_EQ(families.size(), 2u);
  EXPECT_EQ(families[0].samples.size(), 2u);
  auto text = metrics::to_text(families);
  EXPECT_EQ(text.find("# TYPE twin_ingest_messages_total counter"),
            text.rfind("# TYPE twin_ingest_messages_total counter"));
  for (const char* line :
       {"twin_ingest_messages_total{source=\"mqtt\",result=\"accepted\"} 3\n",
        "twin_ingest_messages_total{source=\"http\",result=\"accepted\"} 4\n",
        "twin_x_seconds_bucket{le=\"0.5\"} 1\n", "twin_x_seconds_bucket{le=\"2\"} 2\n",
        "twin_x_seconds_bucket{le=\"+Inf\"} 3\n", "twin_x_seconds_count 3\n",
        "twin_x_seconds_sum 5.25\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}

/// The samples of `families`, by name and labels as in the text format, e.g.
/// `twin_messages_total{kind="put"}`; a histogram's count by its name, its sum as `_sum`.
std::map<std::string, double> samples_of(const std::vector<family>& families) {
  std::map<std::string, double> out;
  for (const auto& f : families)
    for (const auto& s : f.samples) {
      std::string key = f.name;
      for (size_t i = 0; i < s.labels.size(); ++i)
        key += (i == 0 ? "{" : ",") + s.labels[i].name + "=\"" + s.labels[i].value + "\"";
      if (!s.labels.empty())
        key += "}";
      if (f.type == metric_type::histogram) {
        out[key] = static_cast<double>(s.histogram.count);
        out[key + "_sum"] = s.histogram.sum;
      } else {
        out[key] = s.value;
      }
    }
  return out;
}

class probe_test : public ::testing::TestWithParam<bool> {};

TEST_P(probe_test, reports_the_hosts_requests_updates_and_their_latency) {
  bool histograms = GetParam();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto store = make_memory_store();
  type_registry types;
  add_test_types(types);
  host_options opts;
  opts.histograms = histograms;
  host h{sys, *store, types, opts};
  ASSERT_FALSE(h.start());
  ASSERT_TRUE(put(h, "t:m1", "motor"));
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(ingest(h, "t:m1", {{"temperature", value{20.0 + i}}}));
  ASSERT_FALSE(ingest(h, "t:m1", {{"nonsense", value{1.0}}}));
  probe p{h, *store};
  std::vector<family> families;
  p.collect(families);
  for (const auto& f : families) {
    EXPECT_TRUE(f.name.rfind("twin_", 0) == 0 || f.name.rfind("process_", 0) == 0) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
  }
  auto s = samples_of(families);
  EXPECT_EQ(s["twin_updates_total"], 11);
  EXPECT_EQ(s["twin_requests_rejected_total"], 1);
  EXPECT_EQ(s["twin_messages_total{kind=\"telemetry\"}"], 11);
  EXPECT_EQ(s["twin_messages_total{kind=\"put\"}"], 1);
  EXPECT_EQ(s["twin_twins_stored"], 1);
  EXPECT_EQ(s["twin_twins_active"], 1);
  EXPECT_EQ(s["twin_store_keys{column_family=\"twins\"}"], 1);
  EXPECT_EQ(s["twin_update_latency_seconds"], histograms ? 11 : 0);
  if (histograms) {  // eleven changes, each durable within a few milliseconds
    EXPECT_GT(s["twin_update_latency_seconds_sum"], 0);
    EXPECT_LT(s["twin_update_latency_seconds_sum"], 11 * 1.0);
  }
  EXPECT_EQ(s["twin_store_write_duration_seconds"] > 0, histograms);
  EXPECT_GT(s["process_resident_memory_bytes"], 1e6);
  EXPECT_GE(s["twin_memory_limit_bytes"], s["process_resident_memory_bytes"]);
  EXPECT_GE(s["process_threads"], 2);
  EXPECT_GT(s["process_open_fds"], 2);
  auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch());
  EXPECT_NEAR(s["process_start_time_seconds"], now.count(), 3600);
  // Switched while the host runs: the next change is timed only if they are on now.
  h.set_histograms(!histograms);
  ASSERT_TRUE(ingest(h, "t:m1", {{"temperature", value{99.0}}}));
  EXPECT_EQ(h.stats().update_latency.snapshot().count, histograms ? 11u : 1u);
  ASSERT_FALSE(h.stop());
}

INSTANTIATE_TEST_SUITE_P(histograms, probe_test, ::testing::Bool());

} // namespace
} // namespace twin::test
