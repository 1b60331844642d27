#include "routes.hpp"

#include <algorithm>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "auth.hpp"
#include "route_helpers.hpp"
#include "twin/api/audit.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace twin::api {

using namespace twin::runtime;
using namespace route_detail;
using nlohmann::json;

namespace {

/// Whether `host` (a Host header: name or name:port) is one of `allowed` (names, any
/// port, or name:port).
bool host_allowed(const std::string& host, const std::vector<std::string>& allowed) {
  auto colon = host.rfind(':');
  auto name = colon != std::string::npos && host.find(']', colon) == std::string::npos
                ? host.substr(0, colon)
                : host;
  return std::find(allowed.begin(), allowed.end(), host) != allowed.end()
         || std::find(allowed.begin(), allowed.end(), name) != allowed.end();
}

/// What a browser may do: a request from a page of an origin not allowed, or naming a host
/// not allowed, is refused before it reaches anything (403); a preflight of an allowed
/// origin is answered (204). Otherwise nullopt, and `respond` adds the CORS headers an
/// allowed origin needs.
std::optional<response> browser_check(const route_context& ctx, const request& req,
                                      respond_fn& respond) {
  if (ctx.allowed_hosts && !ctx.allowed_hosts->empty()
      && !host_allowed(req.host, *ctx.allowed_hosts))
    return error_response(403, "forbidden_host",
                          "this node does not answer for host '" + req.host
                            + "' (see --allowed-hosts)");
  if (req.origin.empty())
    return std::nullopt;
  const auto* allowed = ctx.cors_origins;
  if (!allowed || std::find(allowed->begin(), allowed->end(), req.origin) == allowed->end())
    return error_response(403, "forbidden_origin",
                          "requests from pages of " + req.origin
                            + " are not allowed (see --cors-origins)");
  auto cors = [origin = req.origin](response& r) {
    r.headers.emplace_back("Access-Control-Allow-Origin", origin);
    r.headers.emplace_back("Vary", "Origin");
  };
  if (req.method == "OPTIONS") {
    response r{204, {}, {}, {}, nullptr};
    cors(r);
    r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE");
    r.headers.emplace_back("Access-Control-Allow-Headers",
                           "Authorization, Content-Type, If-Match, If-None-Match");
    r.headers.emplace_back("Access-Control-Max-Age", "600");
    return r;
  }
  respond = [next = std::move(respond), cors](response r) {
    cors(r);
    next(std::move(r));
  };
  return std::nullopt;
}

} // namespace

const std::vector<const char*>& route_templates() {
  static const std::vector<const char*> all{
    "/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/twins", "/v1/telemetry",
    "/v1/events", "/v1/cluster", "/v1/scenarios", "/v1/scenarios/optimize", "/v1/tokens",
    "/v1/audit", "/v1/types", "/v1/alerts",
    // with parameters: `route_of` matches each
    "/v1/tokens/{id}", "/v1/types/{type}", "/v1/types/{type}/rul",
    "/v1/cluster/members/{node}/drain", "/v1/twins/{id}", "/v1/twins/{id}/history",
    "/v1/twins/{id}/anomalies", "/v1/twins/{id}/relationships",
    "/v1/twins/{id}/commands/{name}"};
  return all;
}

const char* route_of(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  for (const char* fixed : route_templates())
    if (path == fixed)
      return fixed;
  constexpr std::string_view tokens = "/v1/tokens/";
  if (path.size() > tokens.size() && path.substr(0, tokens.size()) == tokens
      && path.find('/', tokens.size()) == std::string_view::npos)
    return "/v1/tokens/{id}";
  constexpr std::string_view twins = "/v1/twins/";
  constexpr std::string_view commands = "/commands/";
  constexpr std::string_view members = "/v1/cluster/members/";
  constexpr std::string_view types = "/v1/types/";
  constexpr std::string_view rul = "/rul";
  if (path.size() > types.size() + rul.size() && path.substr(0, types.size()) == types
      && path.substr(path.size() - rul.size()) == rul
      && path.substr(types.size(), path.size() - types.size() - rul.size()).find('/')
           == std::string_view::npos)
    return "/v1/types/{type}/rul";
  if (path.size() > types.size() && path.substr(0, types.size()) == types
      && path.find('/', types.size()) == std::string_view::npos)
    return "/v1/types/{type}";
  constexpr std::string_view drain = "/drain";
  if (path.size() > members.size() + drain.size() && path.substr(0, members.size()) == members
      && path.substr(path.size() - drain.size()) == drain
      && path.substr(members.size(), path.size() - members.size() - drain.size()).find('/')
           == std::string_view::npos)
    return "/v1/cluster/members/{node}/drain";
  if (path.substr(0, twins.size()) == twins && path.size() > twins.size()) {
    auto rest = path.substr(twins.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos)
      return "/v1/twins/{id}";
    auto sub = rest.substr(slash);
    if (sub == "/history")
      return "/v1/twins/{id}/history";
    if (sub == "/anomalies")
      return "/v1/twins/{id}/anomalies";
    if (sub == "/relationships")
      return "/v1/twins/{id}/relationships";
    if (sub.substr(0, commands.size()) == commands && sub.size() > commands.size())
      return "/v1/twins/{id}/commands/{name}";
  }
  return "other";
}

std::string sse_event(const change_event& ev, const std::string& id) {
  json doc{{"id", ev.id.str()}, {"type", ev.type}, {"ts", ev.ts_ms}};
  if (ev.kind == change_event::kind_t::command) {
    doc["command"] = ev.command;
    doc["args"] = to_json(ev.args);
  } else {
    doc["version"] = ev.version;
  }
  if (ev.kind == change_event::kind_t::changed) {
    doc["properties"] = to_json(ev.properties);
    doc["desired"] = to_json(ev.desired);
  }
  std::string out;
  if (!id.empty())
    out += "id: " + id + "\n";
  out += "event: ";
  out += to_string(ev.kind);
  out += "\ndata: ";
  out += doc.dump(-1, ' ', false, json::error_handler_t::replace);
  out += "\n\n";
  return out;
}

response error_response(unsigned status, const std::string& code, const std::string& message) {
  return json_response(status, {{"error", {{"code", code}, {"message", message}}}});
}

namespace {

/// Bytes of a path the audit log keeps, at most.
constexpr size_t max_audit_path = 512;

/// What the audit log keeps of `req`, before its answer.
audit_entry audit_of(const request& req, std::string_view path) {
  audit_entry e;
  if (req.token) {
    e.token_id = req.token->id;
    e.token_name = req.token->name;
  }
  e.peer = req.peer;
  e.method = req.method;
  e.path = std::string{path.substr(0, max_audit_path)};
  constexpr std::string_view twins = "/v1/twins/";
  if (path.substr(0, twins.size()) == twins) {
    auto id = percent_decode(path.substr(twins.size(), path.find('/', twins.size()) - twins.size()));
    if (id)
      e.twin = std::move(*id);
  }
  return e;
}

/// `e` with the status and outcome of `answer`.
audit_entry finished(audit_entry e, const response& answer) {
  e.status = answer.status;
  e.outcome = "ok";
  if (answer.body.is_object() && answer.body.contains("error")
      && answer.body["error"].is_object())
    e.outcome = answer.body["error"].value("code", "error");
  return e;
}

/// The routes of one twin: /v1/twins/{id}, its history, anomalies and commands.
void serve_twin(const route_context& ctx, std::string_view route, std::string_view path,
                const request& req, respond_fn respond) {
  auto& rt = *ctx.be.rt;
  if (route == "/v1/twins/{id}/history") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    auto id = id_in_path(path, path.rfind("/history"));
    if (!id)
      return respond(error_of(id.error()));
    if (!visible(req, *id))
      return respond(error_of(no_such_twin(*id, true)));
    return get_history(ctx, *id, req, std::move(respond));
  }
  if (route == "/v1/twins/{id}/anomalies") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    auto id = id_in_path(path, path.rfind("/anomalies"));
    if (!id)
      return respond(error_of(id.error()));
    if (!visible(req, *id))
      return respond(error_of(no_such_twin(*id, true)));
    return get_anomalies(ctx, *id, req, std::move(respond));
  }
  if (route == "/v1/twins/{id}/relationships") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    auto id = id_in_path(path, path.rfind("/relationships"));
    if (!id)
      return respond(error_of(id.error()));
    if (!visible(req, *id))
      return respond(error_of(no_such_twin(*id)));
    return get_relationships(ctx, *id, req, std::move(respond));
  }
  if (route == "/v1/twins/{id}/commands/{name}") {
    if (req.method != "POST")
      return respond(method_not_allowed("POST"));
    auto at = path.find("/commands/");
    auto id = id_in_path(path, at);
    if (!id)
      return respond(error_of(id.error()));
    if (!visible(req, *id))
      return respond(error_of(no_such_twin(*id)));
    auto name = percent_decode(path.substr(at + std::string_view{"/commands/"}.size()));
    if (!name)
      return respond(error_of(name.error()));
    return post_command(rt, *id, std::move(*name), req, std::move(respond));
  }
  if (route == "/v1/twins/{id}") {
    auto id = id_in_path(path);
    if (!id)
      return respond(error_of(id.error()));
    if (!visible(req, *id))
      return respond(error_of(no_such_twin(*id), !req.if_match.empty()));
    if (req.method == "GET")
      return get_twin(ctx, *id, std::move(respond));
    if (req.method == "DELETE")
      return delete_twin(ctx, *id, req, std::move(respond));
    if (req.method != "PUT" && req.method != "PATCH")
      return respond(method_not_allowed("GET, PUT, PATCH, DELETE"));
    if (req.method == "PUT") {
      if (!has_media_type(req, {"application/json"}))
        return respond(error_response(415, "unsupported_media_type",
                                      "PUT takes Content-Type: application/json"));
      return put_twin(ctx, *id, req, std::move(respond));
    }
    if (!has_media_type(req, {"application/merge-patch+json", "application/json"}))
      return respond(error_response(
        415, "unsupported_media_type",
        "PATCH takes Content-Type: application/merge-patch+json or application/json"));
    return patch_twin(ctx, *id, req, std::move(respond));
  }
  respond(error_response(404, "not_found", "no route " + std::string{path}));
}

/// The routes of the node: queries, events, telemetry, scenarios, models, tokens, the
/// audit log and the cluster.
void serve_node(const route_context& ctx, std::string_view route, std::string_view path,
                const request& req, respond_fn respond) {
  if (route == "/v1/twins" || route == "/v1/events") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    if (route == "/v1/twins")
      return query_twins(ctx, req, std::move(respond));
    return stream_events(ctx, req, std::move(respond));
  }
  if (route == "/v1/telemetry") {
    if (req.method != "POST")
      return respond(method_not_allowed("POST"));
    if (!has_media_type(req, {"application/json"}))
      return respond(error_response(415, "unsupported_media_type",
                                    "POST /v1/telemetry takes Content-Type: application/json"));
    return post_telemetry(ctx, req, std::move(respond));
  }
  if (route == "/v1/scenarios" || route == "/v1/scenarios/optimize") {
    if (req.method != "POST")
      return respond(method_not_allowed("POST"));
    if (!has_media_type(req, {"application/json"}))
      return respond(error_response(415, "unsupported_media_type",
                                    "POST " + std::string{route}
                                      + " takes Content-Type: application/json"));
    if (route == "/v1/scenarios")
      return post_scenario(ctx, req, std::move(respond));
    return post_optimize(ctx, req, std::move(respond));
  }
  if (route == "/v1/alerts") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    return list_alerts(ctx, req, std::move(respond));
  }
  if (route == "/v1/types" || route == "/v1/types/{type}")
    return handle_types(ctx, path, req, std::move(respond));
  if (route == "/v1/types/{type}/rul") {
    auto name = percent_decode(path.substr(10, path.size() - 10 - 4));  // between /types/ and /rul
    if (!name)
      return respond(error_of(name.error()));
    return handle_rul(ctx, *name, req, std::move(respond));
  }
  if (route == "/v1/tokens" || route == "/v1/tokens/{id}")
    return handle_tokens(ctx, path, req, std::move(respond));
  if (route == "/v1/audit") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    return read_audit(ctx, req, std::move(respond));
  }
  if (route == "/v1/cluster/members/{node}/drain") {
    if (req.method != "POST")
      return respond(method_not_allowed("POST"));
    if (!has_media_type(req, {"application/json"}))  // a browser's form cannot send it
      return respond(error_response(415, "unsupported_media_type",
                                    "POST takes Content-Type: application/json"));
    if (!ctx.be.drain)
      return respond(error_response(501, "not_implemented",
                                    "this node is alone: there is no member to drain"));
    auto target = path.substr(0, path.find('?'));
    auto name = target.substr(20, target.size() - 20 - 6);  // between /members/ and /drain
    auto node = node_id::parse(name);
    if (!node)
      return respond(error_of(node.error()));
    if (auto err = ctx.be.drain(node->str()))
      return respond(error_response(404, "not_found", error_message(err)));
    return respond(json_response(202, {{"node", node->str()}, {"state", "draining"}}));
  }
  if (route == "/v1/cluster") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    if (ctx.be.cluster)
      return respond(json_response(200, ctx.be.cluster()));
    // One node, alone: it owns every shard (1,024 by default).
    const auto& node = ctx.node;
    auto checks = ctx.be.ready();  // its membership follows the "node" check only
    bool up = std::all_of(checks.begin(), checks.end(),
                          [](const auto& c) { return c.name != "node" || c.ok; });
    json me{{"node", node.id}, {"state", up ? "up" : "starting"},
            {"shards", default_shard_count}, {"http", node.http_url}};
    return respond(json_response(
      200, {{"node", node.id}, {"shards", default_shard_count}, {"members", json::array({me})}}));
  }
  respond(error_response(404, "not_found", "no route " + std::string{path}));
}

} // namespace

std::optional<response> refuse_early(const route_context& ctx, request& head) {
  std::string_view route = head.route != nullptr ? head.route : route_of(head.target);
  auto refused = identify(ctx, head, route);
  // The throttle's refusals repeat failures already recorded: they are not, so that a
  // flood of bad requests cannot fill the log.
  if (refused && ctx.be.audit && refused->status != 429) {
    std::string_view path = head.target;
    ctx.be.audit->record(finished(audit_of(head, path.substr(0, path.find('?'))), *refused));
  }
  return refused;
}

void handle(const route_context& ctx, request req, respond_fn respond) {
  // Dispatched on the route template, as the metrics count it.
  std::string_view route = req.route != nullptr ? req.route : route_of(req.target);
  std::string_view path = req.target;
  path = path.substr(0, path.find('?'));
  auto refused = browser_check(ctx, req, respond);
  if (!refused)
    refused = authenticate(ctx, req, route);
  if (refused) {
    if (ctx.be.audit && refused->status != 429)
      ctx.be.audit->record(finished(audit_of(req, path), *refused));
    return respond(std::move(*refused));
  }
  if (route == "/healthz" || route == "/readyz" || (route == "/metrics" && ctx.be.metrics)) {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    if (route == "/healthz")
      return respond(json_response(200, {{"status", "ok"}}));
    if (route == "/readyz")
      return respond(readiness(ctx.be.ready()));
    response r;
    r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    r.text = ctx.be.metrics();
    return respond(std::move(r));
  }
  if (ctx.be.rt == nullptr)  // the operations port: nothing else
    return respond(error_response(404, "not_found", "no route " + std::string{path}));
  if (route == "/v1/openapi.json") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    response r;
    r.text = openapi_document();
    return respond(std::move(r));
  }
  if (ctx.be.audit && req.method != "GET" && req.method != "OPTIONS") {
    // What changes something is recorded with its outcome (reads are not).
    respond = [audit = ctx.be.audit, entry = audit_of(req, path),
               next = std::move(respond)](response r) mutable {
      audit->record(finished(std::move(entry), r));
      next(std::move(r));
    };
  }
  if (path.substr(0, 10) == "/v1/twins/")
    return serve_twin(ctx, route, path, req, std::move(respond));
  serve_node(ctx, route, path, req, std::move(respond));
}

} // namespace twin::api
