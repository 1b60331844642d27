#include "twin/ingest/probe.hpp"

#include "twin/ingest/mqtt_gateway.hpp"

namespace twin::ingest {

using runtime::metrics::family;
using runtime::metrics::metric_type;

void probe::collect(std::vector<family>& out) const {
  auto m = gateway_.counts();
  auto ingest = runtime::metrics::ingest_messages();
  for (auto [result, n] : {std::pair{"accepted", m.accepted}, {"rejected", m.rejected},
                           {"malformed", m.malformed}, {"future_ts", m.future_ts},
                           {"retained", m.retained}, {"deferred", m.deferred}})
    ingest.samples.push_back(
      {{{"source", "mqtt"}, {"result", result}}, static_cast<double>(n), {}});
  out.push_back(std::move(ingest));
  out.push_back(runtime::metrics::single("twin_mqtt_published_total",
                                         "Desired deltas and commands published to devices.",
                                         metric_type::counter,
                                         static_cast<double>(m.published)));
  out.push_back(runtime::metrics::single(
    "twin_mqtt_publish_dropped_total",
    "Desired deltas and commands dropped: too many were waiting for the broker.",
    metric_type::counter, static_cast<double>(m.refused)));
  out.push_back(runtime::metrics::single(
    "twin_mqtt_connected", "1 while the node is connected to the broker and subscribed.",
    metric_type::gauge, gateway_.connected() ? 1 : 0));
  out.push_back(runtime::metrics::single(
    "twin_mqtt_connections_total",
    "Connections to the broker that came up, the first included: more mean reconnections.",
    metric_type::counter, static_cast<double>(m.connections)));
  out.push_back(runtime::metrics::single(
    "twin_mqtt_telemetry_retries_total",
    "Times telemetry was held in the node to be tried again: its twin's shard was between "
    "owners (a member died, a shard moved).",
    metric_type::counter, static_cast<double>(m.retries)));
}

} // namespace twin::ingest
