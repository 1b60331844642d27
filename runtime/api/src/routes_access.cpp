// Who calls, over HTTP: API tokens made (the secret shown once), listed, shown and revoked,
// and the audit log read. Admin only (the routes' permission); the registry's writes and
// the log's reads may wait for a store, so they run like queries.

#include "route_helpers.hpp"
#include "twin/api/audit.hpp"
#include "twin/api/tokens.hpp"
#include "twin/runtime/record.hpp"

namespace twin::api::route_detail {

namespace {

constexpr int64_t max_lifetime_s = int64_t{10} * 365 * 24 * 3600;

json token_json(const access_token& t, int64_t now_ms) {
  auto ms = [](int64_t x) { return x == 0 ? json{} : json(x); };
  const char* state = t.revoked_ms != 0 ? "revoked" : t.expired(now_ms) ? "expired" : "active";
  json out{{"id", t.id},
           {"name", t.name},
           {"role", to_string(t.role)},
           {"state", state},
           {"created_ms", t.created_ms},
           {"expires_ms", ms(t.expires_ms)},
           {"revoked_ms", ms(t.revoked_ms)},
           {"created_by", t.created_by.empty() ? json{} : json(t.created_by)}};
  if (t.role == runtime::role::device)
    out["twins"] = t.twins;
  else
    out["namespaces"] = t.namespaces.empty() ? json::array({"*"}) : json(t.namespaces);
  return out;
}


caf::expected<std::vector<std::string>> texts(const json& doc, const char* key) {
  std::vector<std::string> out;
  auto v = doc.find(key);
  if (v == doc.end())
    return out;
  if (!v->is_array())
    return bad(std::string{"\""} + key + "\" must be a list of text");
  for (const auto& x : *v) {
    if (!x.is_string())
      return bad(std::string{"\""} + key + "\" must be a list of text");
    out.push_back(x.get<std::string>());
  }
  return out;
}

/// The token that a POST asks for: name, role, namespaces (absent or ["*"]: every one),
/// a device's twins, and a lifetime.
caf::expected<access_token> spec_of(const json& doc) {
  access_token t;
  auto name = doc.find("name");
  auto role_name = doc.find("role");
  if (name == doc.end() || !name->is_string())
    return bad("\"name\" must be text: what the token is for");
  t.name = name->get<std::string>();
  if (role_name == doc.end() || !role_name->is_string()
      || !from_string(role_name->get<std::string>(), t.role))
    return bad("\"role\" must be reader, operator, writer, admin or device");
  auto ns = texts(doc, "namespaces");
  if (!ns)
    return ns.error();
  if (!(ns->size() == 1 && ns->front() == "*"))
    t.namespaces = std::move(*ns);
  auto twins = texts(doc, "twins");
  if (!twins)
    return twins.error();
  t.twins = std::move(*twins);
  if (auto v = doc.find("expires_in_s"); v != doc.end()) {
    if (!v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > max_lifetime_s)
      return bad("\"expires_in_s\" must be 1 to " + std::to_string(max_lifetime_s)
                 + " seconds");
    t.expires_ms = now_ms() + v->get<int64_t>() * 1000;
  }
  return t;
}

} // namespace

void handle_tokens(const route_context& ctx, std::string_view path, const request& req,
                   respond_fn respond) {
  if (ctx.tokens == nullptr)
    return respond(error_response(501, "not_implemented",
                                  "authentication is off on this node: it has no tokens"));
  auto& tokens = *ctx.tokens;
  constexpr std::string_view prefix = "/v1/tokens/";
  if (path.size() <= prefix.size()) {  // the collection
    if (req.method == "GET") {
      auto items = json::array();
      auto now = now_ms();
      for (const auto& t : tokens.list())
        items.push_back(token_json(t, now));
      return respond(json_response(200, {{"items", std::move(items)}}));
    }
    if (req.method != "POST")
      return respond(method_not_allowed("GET, POST"));
    if (!has_media_type(req, {"application/json"}))
      return respond(error_response(415, "unsupported_media_type",
                                    "POST /v1/tokens takes Content-Type: application/json"));
    auto doc = object_body(req, {"name", "role", "namespaces", "twins", "expires_in_s"});
    if (!doc)
      return respond(error_of(doc.error()));
    auto spec = spec_of(*doc);
    if (!spec)
      return respond(error_of(spec.error()));
    auto by = req.token ? req.token->id : std::string{};
    return answer_blocking(ctx, std::move(respond), [&tokens, spec = std::move(*spec), by] {
      auto made = tokens.create(spec, by);
      if (!made)
        return error_of(made.error());
      auto body = token_json(made->token, made->token.created_ms);
      body["token"] = made->text;
      auto res = json_response(201, std::move(body));
      res.headers.emplace_back("Cache-Control", "no-store");
      return res;
    });
  }
  auto id = std::string{path.substr(prefix.size())};
  auto t = tokens.find(id);  // an id of another form is none
  if (req.method == "GET") {
    if (!t)
      return respond(error_response(404, "not_found", "no token " + id));
    return respond(json_response(200, token_json(*t, now_ms())));
  }
  if (req.method != "DELETE")
    return respond(method_not_allowed("GET, DELETE"));
  if (!t)
    return respond(error_response(404, "not_found", "no token " + id));
  answer_blocking(ctx, std::move(respond), [&tokens, id] {
    auto revoked = tokens.revoke(id);
    if (!revoked)
      return error_of(revoked.error());
    if (!*revoked)
      return error_response(404, "not_found", "no token " + id);
    return response{204, {}, {}, {}, nullptr};
  });
}

void read_audit(const route_context& ctx, const request& req, respond_fn respond) {
  if (ctx.be.audit == nullptr)
    return respond(error_response(501, "not_implemented", "this node keeps no audit log"));
  auto p = query_params(req.target, {"from", "to", "token", "twin", "limit", "cursor"});
  if (!p)
    return respond(error_of(p.error()));
  audit_query q;
  for (const auto& [key, text] : *p) {
    if (key == "from" || key == "to") {
      auto t = time_param(key, text);
      if (!t)
        return respond(error_of(t.error()));
      (key == "from" ? q.from_ms : q.to_ms) = *t;
    } else if (key == "limit") {
      auto n = int_param(key, text, 1, audit_query::max_limit);
      if (!n)
        return respond(error_of(n.error()));
      q.limit = static_cast<size_t>(*n);
    } else {
      (key == "token" ? q.token_id : key == "twin" ? q.twin : q.cursor) = text;
    }
  }
  answer_blocking(ctx, std::move(respond), [&log = *ctx.be.audit, q = std::move(q)] {
    auto page = log.read(q);
    if (!page)
      return error_of(page.error());
    auto items = json::array();
    for (const auto& e : page->items)
      items.push_back({{"ts", e.ts_ms},
                       {"token", e.token_id.empty() ? json{}
                                                    : json{{"id", e.token_id},
                                                           {"name", e.token_name}}},
                       {"peer", e.peer},
                       {"method", e.method},
                       {"path", e.path},
                       {"twin", e.twin.empty() ? json{} : json(e.twin)},
                       {"status", e.status},
                       {"outcome", e.outcome}});
    return json_response(200, {{"items", std::move(items)},
                               {"cursor", page->cursor.empty() ? json{} : json(page->cursor)}});
  });
}

} // namespace twin::api::route_detail
