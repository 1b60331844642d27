#include "node_metrics.hpp"

#include <prometheus/metric_family.h>

#include "twin/runtime/version.hpp"

namespace twin::node {

namespace {

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type,
                                double v) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = v;
  else
    m.gauge.value = v;
  f.metric.push_back(std::move(m));
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
  prometheus::MetricFamily alerts;
  alerts.name = "twin_alerts_active";
  alerts.help = "Active alerts by severity.";
  alerts.type = MetricType::Gauge;
  for (auto [sev, n] : {std::pair{"warning", c.alerts_warning}, {"critical", c.alerts_critical}}) {
    prometheus::ClientMetric m;
    m.label.push_back({"severity", sev});
    m.gauge.value = static_cast<double>(n);
    alerts.metric.push_back(std::move(m));
  }
  out.push_back(std::move(alerts));
  prometheus::MetricFamily build;
  build.name = "twin_build_info";
  build.help = "Build of this node; the value is always 1.";
  build.type = MetricType::Gauge;
  prometheus::ClientMetric bm;
  bm.label.push_back({"version", runtime::version});
  bm.gauge.value = 1;
  build.metric.push_back(std::move(bm));
  out.push_back(std::move(build));
  return out;
}

} // namespace twin::node
