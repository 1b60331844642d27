#pragma once

#include <atomic>

#include <prometheus/collectable.h>

#include "twin/api/http_server.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "twin/runtime/host.hpp"

namespace twin::node {

/// Exposes the host's counters to Prometheus, read at scrape time (nothing is added on
/// the hot path). Owned by main; lives as long as the host.
class node_metrics final : public prometheus::Collectable {
public:
  explicit node_metrics(const runtime::host& h);
  /// Adds the MQTT gateway's figures (nullptr: none); it must outlive the scrapes.
  void set_mqtt(const ingest::mqtt_gateway* g) { mqtt_.store(g); }
  /// Adds the HTTP API's figures (nullptr: none); it must outlive the scrapes.
  void set_http(const api::http_server* s) { http_.store(s); }
  std::vector<prometheus::MetricFamily> Collect() const override;

private:
  const runtime::host& host_;
  std::atomic<const ingest::mqtt_gateway*> mqtt_{nullptr};
  std::atomic<const api::http_server*> http_{nullptr};
};

} // namespace twin::node
