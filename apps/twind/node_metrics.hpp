#pragma once

#include <prometheus/collectable.h>

#include "twin/runtime/host.hpp"

namespace twin::node {

/// Exposes the host's counters to Prometheus, read at scrape time (nothing is added on
/// the hot path). Owned by main; lives as long as the host.
class node_metrics final : public prometheus::Collectable {
public:
  explicit node_metrics(const runtime::host& h);
  std::vector<prometheus::MetricFamily> Collect() const override;

private:
  const runtime::host& host_;
};

} // namespace twin::node
