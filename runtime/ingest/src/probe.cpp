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
}

} // namespace twin::ingest
