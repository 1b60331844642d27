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
  if (const auto* mqtt = mqtt_.load()) {
    auto m = mqtt->counts();
    prometheus::MetricFamily ingest;
    ingest.name = "twin_ingest_messages_total";
    ingest.help = "Device messages by source and result: accepted, rejected by the twin, "
                  "malformed or overloaded (both dropped before any twin saw them).";
    ingest.type = MetricType::Counter;
    for (auto [result, n] : {std::pair{"accepted", m.accepted}, {"rejected", m.rejected},
                             {"malformed", m.malformed}, {"overloaded", m.overloaded}}) {
      prometheus::ClientMetric cm;
      cm.label.push_back({"source", "mqtt"});
      cm.label.push_back({"result", result});
      cm.counter.value = static_cast<double>(n);
      ingest.metric.push_back(std::move(cm));
    }
    out.push_back(std::move(ingest));
    out.push_back(family("twin_mqtt_published_total",
                         "Desired deltas and commands published to devices.",
                         MetricType::Counter, static_cast<double>(m.published)));
    out.push_back(family("twin_mqtt_connected",
                         "1 while the node is connected to the broker and subscribed.",
                         MetricType::Gauge, mqtt->connected() ? 1 : 0));
  }
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
