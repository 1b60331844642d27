#include "twin/api/probe.hpp"

#include <string>

#include "twin/api/http_server.hpp"

namespace twin::api {

using runtime::metrics::family;
using runtime::metrics::metric_type;

void probe::collect(std::vector<family>& out) const {
  auto m = server_.metrics();
  family requests{"twin_http_requests_total",
                  "HTTP requests answered, by route template and status code.",
                  metric_type::counter,
                  {}};
  for (const auto& r : m.requests)
    requests.samples.push_back(
      {{{"route", r.route}, {"code", std::to_string(r.status)}}, static_cast<double>(r.count), {}});
  out.push_back(std::move(requests));
  family latency{"twin_http_request_duration_seconds",
                 "Time from a request's last byte to its answer, by route template.",
                 metric_type::histogram,
                 {}};
  for (auto& [route, h] : m.latency)
    latency.samples.push_back({{{"route", route}}, 0, std::move(h)});
  out.push_back(std::move(latency));
  out.push_back(runtime::metrics::single("twin_http_connections_open", "Open HTTP connections.",
                                         metric_type::gauge,
                                         static_cast<double>(m.connections)));
  auto ingest = runtime::metrics::ingest_messages();
  ingest.samples.push_back({{{"source", "http"}, {"result", "accepted"}},
                            static_cast<double>(m.telemetry_accepted), {}});
  ingest.samples.push_back({{{"source", "http"}, {"result", "rejected"}},
                            static_cast<double>(m.telemetry_rejected), {}});
  out.push_back(std::move(ingest));
}

} // namespace twin::api
