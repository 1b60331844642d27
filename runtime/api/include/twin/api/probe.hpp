#pragma once

#include <vector>

#include "twin/runtime/metrics.hpp"

namespace twin::api {

class http_server;

/// The HTTP API's metrics: requests by route template and status, their latency by
/// route, open connections, and telemetry items by result (as ingest from source
/// "http"). Read when a scrape asks. The server must outlive the last `collect`.
class probe final : public runtime::metrics::collectable {
public:
  explicit probe(const http_server& s) : server_(s) {}
  void collect(std::vector<runtime::metrics::family>& out) const override;

private:
  const http_server& server_;
};

} // namespace twin::api
