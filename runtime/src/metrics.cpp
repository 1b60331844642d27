#include "twin/runtime/metrics.hpp"

#include <algorithm>
#include <limits>
#include <map>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

namespace twin::runtime::metrics {

family single(std::string name, std::string help, metric_type type, double value) {
  family f{std::move(name), std::move(help), type, {}};
  f.samples.push_back(sample{{}, value, {}});
  return f;
}

family ingest_messages() {
  return family{"twin_ingest_messages_total",
                "Device messages by source and result: accepted, rejected by the twin, "
                "malformed, future_ts (stamped too far ahead), retained (replayed without "
                "ts) or deferred (not applied for now; QoS 1 ones come again).",
                metric_type::counter,
                {}};
}

// -- histogram ------------------------------------------------------------------

histogram::histogram(std::vector<double> bounds)
  : bounds_(std::move(bounds)),
    counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i)
    counts_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) noexcept {
  auto i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v)
                               - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  auto sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + v, std::memory_order_relaxed)) {
  }
}

histogram_snapshot histogram::snapshot() const {
  histogram_snapshot s;
  s.bounds = bounds_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> histogram::latency_bounds() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,    10};
}

// -- registry -------------------------------------------------------------------

collectable::~collectable() = default;

void registry::add(const collectable* c) {
  std::lock_guard<std::mutex> guard{mtx_};
  members_.push_back(c);
}

std::vector<family> registry::collect() const {
  std::vector<family> all;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto* c : members_)
      c->collect(all);
  }
  std::vector<family> out;
  std::map<std::string, size_t> index;
  for (auto& f : all) {
    auto [it, fresh] = index.emplace(f.name, out.size());
    if (fresh)
      out.push_back(std::move(f));
    else
      for (auto& s : f.samples)
        out[it->second].samples.push_back(std::move(s));
  }
  return out;
}

// -- Prometheus -----------------------------------------------------------------

namespace {

prometheus::MetricFamily to_prometheus(const family& f) {
  prometheus::MetricFamily out;
  out.name = f.name;
  out.help = f.help;
  out.type = f.type == metric_type::counter ? prometheus::MetricType::Counter
             : f.type == metric_type::gauge ? prometheus::MetricType::Gauge
                                            : prometheus::MetricType::Histogram;
  for (const auto& s : f.samples) {
    prometheus::ClientMetric m;
    for (const auto& l : s.labels)
      m.label.push_back({l.name, l.value});
    if (f.type == metric_type::counter) {
      m.counter.value = s.value;
    } else if (f.type == metric_type::gauge) {
      m.gauge.value = s.value;
    } else {
      const auto& h = s.histogram;
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        m.histogram.bucket.push_back(
          {cumulative,
           i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity()});
      }
      m.histogram.sample_count = cumulative;
      m.histogram.sample_sum = h.sum;
    }
    out.metric.push_back(std::move(m));
  }
  return out;
}

} // namespace

std::string to_text(const std::vector<family>& families) {
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families.size());
  for (const auto& f : families)
    out.push_back(to_prometheus(f));
  return prometheus::TextSerializer{}.Serialize(out);
}

} // namespace twin::runtime::metrics
