#include "node_metrics.hpp"

#include <limits>

#include <prometheus/metric_family.h>

#include "twin/runtime/version.hpp"

namespace twin::node {

namespace {

prometheus::MetricFamily empty_family(const char* name, const char* help,
                                      prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

/// A counter's or a gauge's sample with `labels`.
prometheus::ClientMetric sample(prometheus::MetricType type, double v,
                                std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter)
    m.counter.value = v;
  else
    m.gauge.value = v;
  return m;
}

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type,
                                double v) {
  auto f = empty_family(name, help, type);
  f.metric.push_back(sample(type, v));
  return f;
}

} // namespace

node_metrics::node_metrics(const runtime::host& h) : host_(h) {
}

std::vector<prometheus::MetricFamily> node_metrics::Collect() const {
  using prometheus::MetricType;
  const auto& s = host_.stats();
  auto c = host_.counts();
  std::vector<prometheus::MetricFamily> out;
  out.push_back(family("twin_twins_active", "Twins active in memory (one actor each).",
                       MetricType::Gauge, static_cast<double>(host_.active_count())));
  out.push_back(family("twin_twins_stored", "Twins stored on this node.", MetricType::Gauge,
                       static_cast<double>(c.twins)));
  out.push_back(family("twin_activations_total", "Twin activations (record loaded).",
                       MetricType::Counter, static_cast<double>(s.activations.load())));
  out.push_back(family("twin_passivations_total", "Twin passivations.", MetricType::Counter,
                       static_cast<double>(s.passivations.load())));
  out.push_back(family("twin_updates_total", "Accepted changes made durable.",
                       MetricType::Counter, static_cast<double>(s.updates.load())));
  out.push_back(family("twin_requests_rejected_total", "Requests rejected by validation.",
                       MetricType::Counter, static_cast<double>(s.rejected.load())));
  out.push_back(family("twin_store_write_batches_total", "Batches written to the store.",
                       MetricType::Counter, static_cast<double>(s.store_writes.load())));
  out.push_back(family("twin_store_records_written_total", "Twin records written to the store.",
                       MetricType::Counter, static_cast<double>(s.store_records.load())));
  auto alerts = empty_family("twin_alerts_active", "Active alerts by severity.", MetricType::Gauge);
  for (auto [sev, n] : {std::pair{"warning", c.alerts_warning}, {"critical", c.alerts_critical}})
    alerts.metric.push_back(
      sample(MetricType::Gauge, static_cast<double>(n), {{"severity", sev}}));
  out.push_back(std::move(alerts));
  if (const auto* mqtt = mqtt_.load()) {
    auto m = mqtt->counts();
    auto ingest = empty_family("twin_ingest_messages_total",
                               "Device messages by source and result: accepted, rejected by "
                               "the twin, malformed or overloaded (both dropped before any "
                               "twin saw them).",
                               MetricType::Counter);
    for (auto [result, n] : {std::pair{"accepted", m.accepted}, {"rejected", m.rejected},
                             {"malformed", m.malformed}, {"overloaded", m.overloaded}})
      ingest.metric.push_back(sample(MetricType::Counter, static_cast<double>(n),
                                     {{"source", "mqtt"}, {"result", result}}));
    out.push_back(std::move(ingest));
    out.push_back(family("twin_mqtt_published_total",
                         "Desired deltas and commands published to devices.",
                         MetricType::Counter, static_cast<double>(m.published)));
    out.push_back(family("twin_mqtt_connected",
                         "1 while the node is connected to the broker and subscribed.",
                         MetricType::Gauge, mqtt->connected() ? 1 : 0));
  }
  if (const auto* http = http_.load()) {
    auto h = http->metrics();
    auto requests = empty_family("twin_http_requests_total",
                                 "HTTP requests answered, by route template and status code.",
                                 MetricType::Counter);
    for (const auto& r : h.requests)
      requests.metric.push_back(sample(MetricType::Counter, static_cast<double>(r.count),
                                       {{"route", r.route}, {"code", std::to_string(r.status)}}));
    out.push_back(std::move(requests));
    auto latency = empty_family("twin_http_request_duration_seconds",
                                "Time from a request's last byte to its answer, by route "
                                "template.",
                                MetricType::Histogram);
    const auto& bounds = api::http_metrics::bounds_s();
    for (const auto& l : h.latency) {
      prometheus::ClientMetric m;
      m.label.push_back({"route", l.route});
      uint64_t cumulative = 0;
      for (size_t i = 0; i < l.buckets.size(); ++i) {
        cumulative += l.buckets[i];
        prometheus::ClientMetric::Bucket b;
        b.cumulative_count = cumulative;
        b.upper_bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back(b);
      }
      m.histogram.sample_count = l.count;
      m.histogram.sample_sum = l.sum_s;
      latency.metric.push_back(std::move(m));
    }
    out.push_back(std::move(latency));
  }
  auto build = empty_family("twin_build_info", "Build of this node; the value is always 1.",
                            MetricType::Gauge);
  build.metric.push_back(sample(MetricType::Gauge, 1, {{"version", runtime::version}}));
  out.push_back(std::move(build));
  return out;
}

} // namespace twin::node
