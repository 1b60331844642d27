#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <nlohmann/json.hpp>

#include "twin/runtime/metrics.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/query.hpp"
#include "twin/runtime/router.hpp"

namespace twin::runtime {
class change_feed;
class model_catalog;
class rul_catalog;
}

namespace twin::api {

class audit_log;
class token_registry;

/// One thing a node needs before it serves, as /readyz shows it.
struct readiness_check {
  std::string name;    ///< "node", "store", "models", "mqtt", ...
  bool ok = false;
  std::string detail;  ///< what it is, or what is wrong with it
};

/// What the API serves from. `ready` is required; a route whose part is missing answers
/// 501. Without `rt`, only /healthz, /readyz and /metrics are served (an operations port).
struct backend {
  runtime::router* rt = nullptr;
  /// Answers GET /metrics: the Prometheus text format. Runs on the I/O threads. None: 404.
  std::function<std::string()> metrics;
  /// Answers /readyz: the node is ready when every check is ok. Runs on the I/O threads:
  /// it must be quick.
  std::function<std::vector<readiness_check>()> ready;
  /// Runs a query on the durable state of the twins; may block (it runs on a thread of
  /// its own, never an I/O thread).
  std::function<caf::expected<runtime::query_page>(const runtime::twin_query&)> query;
  /// Reads a property's history; may block, like `query`.
  std::function<caf::expected<runtime::history_page>(const runtime::history_query&)> history;
  /// The changes that GET /v1/events streams.
  runtime::change_feed* feed = nullptr;
  /// On a cluster member: makes a new subscription to `feed` known to the other members
  /// before its stream starts; may block (it runs like `query`).
  std::function<void()> watch;
  /// Answers GET /v1/cluster on a cluster member: its members, shard table and handoffs.
  /// None: the node is alone, and shows itself as the only member.
  std::function<nlohmann::json()> cluster;
  /// Marks a member draining (POST /v1/cluster/members/{node}/drain); none: 501.
  std::function<caf::error(const std::string& node)> drain;
  /// The node's twin types, for what-if scenarios (with `rt` and `query`); none: 501.
  const runtime::type_registry* types = nullptr;
  /// The types added and upgraded at run time (PUT /v1/types/{type}), and those twins
  /// have that no model defines; none: PUT answers 501.
  runtime::model_catalog* models = nullptr;
  /// The node's RUL models (/v1/types/{type}/rul, with `types`, `query` and `history`);
  /// none: 501.
  runtime::rul_catalog* rul = nullptr;
  /// The tokens callers must show (and /v1/tokens); none: authentication is off, every
  /// caller may do everything.
  token_registry* tokens = nullptr;
  /// Where the requests that change something or are refused are recorded (and GET
  /// /v1/audit reads); none: not recorded.
  audit_log* audit = nullptr;
};

struct http_options {
  std::string bind = "127.0.0.1";  ///< address to listen on
  uint16_t port = 8080;            ///< 0: any free port (see `http_server::port`)
  size_t max_body = 1u << 20;      ///< larger bodies get 413
  int threads = 1;                 ///< I/O threads
  /// Open connections at most; one more is answered 503 and closed.
  size_t max_connections = 10000;
  std::string node_id = "twind";   ///< the node's name in GET /v1/cluster
  /// Events a /v1/events stream may fall behind by; beyond it the stream gets a
  /// "lagged" event and ends. Default: 4,096.
  size_t event_buffer = 4096;
  /// Bytes of events (as JSON text, about) a stream may fall behind by, likewise. A stream
  /// also holds at most 16 KiB of text being written and 32 KiB in the kernel's socket
  /// buffer, and one whose client takes nothing for 10 s ends. Default: 1 MiB.
  size_t event_buffer_bytes = 1u << 20;
  /// Request bodies in memory at once, in bytes (a body without a length counts as
  /// `max_body`); a request beyond it is answered 503. Default: 128 MiB.
  size_t max_inflight_body_bytes = 128u << 20;
  /// A connection idle for this long, or a request that takes this long to arrive, is
  /// closed. At `max_connections`, the oldest connection waiting for a request is closed
  /// for a new one (503 only when none waits). Default: 60 s.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds{60};
  /// The origins (`scheme://host[:port]`) whose web pages may call the API: their requests
  /// get CORS answers (and preflights). A request with any other `Origin` is refused (403).
  /// Default: none, so no web page can.
  std::vector<std::string> cors_origins;
  /// The `Host` values requests may name (`name`, any port, or `name:port`); another is
  /// refused (403), against DNS rebinding. Empty (the default): any.
  std::vector<std::string> allowed_hosts;
  /// TLS: the server's certificate chain and its key (PEM files); both empty (the default):
  /// plain HTTP. A client that does not speak TLS gets no answer.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// With TLS: the certificates (PEM) that sign the clients' certificates; a client must show
  /// one (mutual TLS) before anything is read. Empty (the default): none asked for.
  std::string tls_client_ca_file;
  /// Failed authentications in a row from one address before it must wait: 1 s, then 2,
  /// 4, ... up to 60 s after each further failure (429 meanwhile). 0: never. Default: 5.
  int auth_failure_limit = 5;
  /// Without `backend::rt` (an operations port): the token that GET /metrics needs, as
  /// `Authorization: Bearer <token>`; empty (the default): none.
  std::string metrics_token;
};

/// Requests answered by one route with one status.
struct http_route_count {
  std::string route;  ///< the route's template, e.g. "/v1/twins/{id}"; "other": none
  unsigned status = 0;
  uint64_t count = 0;
};

/// What the server answered so far.
struct http_metrics {
  std::vector<http_route_count> requests;
  /// By route template: seconds from a request's last byte to its answer.
  std::vector<std::pair<std::string, runtime::metrics::histogram_snapshot>> latency;
  uint64_t telemetry_accepted = 0;  ///< items of POST /v1/telemetry applied, durably
  uint64_t telemetry_rejected = 0;  ///< items refused (bad item, unknown twin, bad values)
  uint64_t connections = 0;         ///< open now
  uint64_t refused_bodies = 0;      ///< requests answered 503: too many bodies in memory
  uint64_t refused_no_fds = 0;      ///< connections answered 503: no file descriptor left
};

/// The node's HTTP/JSON API on Boost.Beast: HTTP/1.1 with keep-alive. Requests go
/// to the router and are answered when the router answers (a change once it is
/// durable), so a slow store never blocks an I/O thread.
class http_server {
public:
  /// What `be` points to must outlive the server.
  http_server(backend be, http_options opts);
  ~http_server();  ///< stops

  /// Binds and starts serving, once; an error if the address cannot be bound.
  caf::error start();
  /// The bound port (the chosen one if the options asked for port 0).
  uint16_t port() const;
  /// The requests answered so far, by route and status, and their latency by route.
  /// Thread-safe.
  http_metrics metrics() const;
  /// Why the server cannot take every connection now ("" when it can): it ran out of
  /// file descriptors in the last 5 seconds. Thread-safe.
  std::string saturation() const;
  /// Stops accepting, writes the answers that come within `drain`, then closes every
  /// connection; later answers are dropped. Not from an I/O thread or an answer.
  void stop(std::chrono::milliseconds drain = std::chrono::seconds{5});

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace twin::api
