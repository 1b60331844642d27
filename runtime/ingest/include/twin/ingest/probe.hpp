#pragma once

#include <vector>

#include "twin/runtime/metrics.hpp"

namespace twin::ingest {

class mqtt_gateway;

/// The MQTT device path's metrics: messages by result (as ingest from source "mqtt"),
/// what was published to devices, and whether the node is connected to the broker. Read
/// when a scrape asks. The gateway must outlive the last `collect`.
class probe final : public runtime::metrics::collectable {
public:
  explicit probe(const mqtt_gateway& g) : gateway_(g) {}
  void collect(std::vector<runtime::metrics::family>& out) const override;

private:
  const mqtt_gateway& gateway_;
};

} // namespace twin::ingest
