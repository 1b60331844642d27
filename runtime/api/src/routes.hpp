#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "twin/api/http_server.hpp"
#include "twin/runtime/access.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/router.hpp"

namespace twin::api {

class failure_throttle;
class token_registry;

/// An HTTP request as the routes see it (the server's transport stays out of them).
struct request {
  std::string method;  ///< "GET", "PUT", ...
  std::string target;  ///< path and query
  const char* route = nullptr;  ///< `route_of(target)`; nullptr: the routes find it
  std::string content_type;
  std::string origin;         ///< the `Origin` header; empty: none (not a browser's page)
  std::string host;           ///< the `Host` header
  std::string if_match;       ///< empty: none
  std::string if_none_match;  ///< empty: none
  std::string last_event_id;  ///< the `Last-Event-ID` header; empty: none
  std::string authorization;  ///< the `Authorization` header; empty: none
  std::string peer;           ///< the client's address
  std::string body;
  /// The caller's token, set once it is authenticated; nullptr while it is not, or when
  /// authentication is off (then every twin exists for it).
  std::shared_ptr<const runtime::access_token> token;
};

struct response {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  nlohmann::json body;  ///< null: no body. Serialized by the server on its own thread.
  std::string text;     ///< set: the body, JSON already serialized (`body` is ignored)
  /// Set: the answer is a stream of server-sent events of this subscription (no body).
  std::shared_ptr<runtime::change_feed::subscription> stream;
};

/// The server-sent event of `ev`: "id: <id>" (if any), "event: <kind>" and its JSON as
/// "data".
std::string sse_event(const runtime::change_event& ev, const std::string& id = {});

using respond_fn = std::function<void(response)>;

/// The node that serves, as GET /v1/cluster shows it while it is alone.
struct node_info {
  std::string id;
  std::string http_url;  ///< where its API listens
};

/// Telemetry items the routes have answered, for metrics.
struct telemetry_counts {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected{0};
};

/// What the routes need of the server: the node's parts, the node's name, where work
/// that blocks runs (not on an I/O thread), and what they count.
struct route_context {
  const backend& be;
  const node_info& node;
  /// Queues the work; false (and it is dropped) if too much is queued already.
  std::function<bool(std::function<void()>)> run_blocking;
  size_t event_buffer = 4096;  ///< see `http_options::event_buffer`
  size_t event_buffer_bytes = 1u << 20;  ///< see `http_options::event_buffer_bytes`
  telemetry_counts* telemetry = nullptr;  ///< nullptr: not counted
  const std::vector<std::string>* cors_origins = nullptr;   ///< see `http_options`; none
  const std::vector<std::string>* allowed_hosts = nullptr;  ///< see `http_options`; any
  /// The tokens a caller must show; nullptr: authentication is off.
  token_registry* tokens = nullptr;
  /// Slows down the addresses that keep failing to authenticate; nullptr: none.
  failure_throttle* throttle = nullptr;
  /// The operations port: the token /metrics needs; empty: none.
  std::string metrics_token{};
};

/// Answers `req` through `respond`, exactly once: at once for bad requests and reads of
/// the node, from a runtime thread once the router has answered, or from `run_blocking`
/// for queries. GET /v1/events answers with a subscription in `stream`.
void handle(const route_context& ctx, request req, respond_fn respond);

/// Authenticates a request whose headers alone have come (`head`: method, target, peer and
/// headers, no body), setting its token: the answer if it is refused (recorded in the audit
/// log), before its body is read.
std::optional<response> refuse_early(const route_context& ctx, request& head);

/// The template of the route that serves `target` (path and query), for metrics:
/// "/v1/twins/{id}", "/healthz", ...; "other" if no route serves it.
const char* route_of(std::string_view target);

/// Every template `route_of` answers.
const std::vector<const char*>& route_templates();

/// The OpenAPI 3.1 document of the API (docs/openapi.json, built in), as JSON text.
const char* openapi_document();

/// The error shape of every non-2xx answer: {"error":{"code":..,"message":..}}.
response error_response(unsigned status, const std::string& code, const std::string& message);

} // namespace twin::api
