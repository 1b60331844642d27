// The routes of one twin (GET, PUT, PATCH, DELETE) and of telemetry.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include "route_helpers.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/query.hpp"

namespace twin::api::route_detail {

void get_twin(const route_context& ctx, const twin_id& id, respond_fn respond) {
  ctx.be.rt->route(id, get_request{[types = ctx.be.types, respond = std::move(respond)](
                                     caf::expected<twin_record> r) {
             if (!r)
               return respond(error_of(r.error()));
             response res;
             res.text = to_json_text(*r);  // on the twin's thread, spreading the work
             if (types != nullptr && !types->find(r->type))  // it can be read and deleted
               res.text.insert(1, R"("type_missing":true,)");
             res.headers.emplace_back("ETag", etag(r->version));
             respond(std::move(res));
           }});
}

namespace {

/// The `parent` of a body: a twin id the request's token sees, or null (none: an empty id).
caf::expected<twin_id> parent_field(const request& req, const json& p) {
  if (p.is_null())
    return twin_id{};
  if (!p.is_string())
    return bad("\"parent\" must be a twin id or null");
  auto parent = twin_id::parse(p.get<std::string>());
  if (!parent)
    return parent.error();
  if (!visible(req, *parent))  // as a parent that does not exist
    return make_error(runtime_errc::invalid_parent, "parent " + parent->str() + " does not exist");
  return parent;
}

/// The `relationships` of a body (none: empty), each to a twin the request's token sees.
caf::expected<std::vector<relationship>> relationships_of(const request& req, const json& doc) {
  auto rels = relationships_field(doc);
  if (!rels)
    return rels.error();
  for (const auto& r : *rels)
    if (!visible(req, r.target))  // as a twin that does not exist
      return no_such_twin(r.target);
  return rels;
}

} // namespace

void put_twin(const route_context& ctx, const twin_id& id, const request& req,
              respond_fn respond) {
  auto doc = object_body(req, {"type", "parent", "properties", "desired", "relationships"});
  if (!doc)
    return respond(error_of(doc.error()));
  put_request put;
  auto type = doc->find("type");
  if (type == doc->end() || !type->is_string() || type->get<std::string>().empty())
    return respond(error_of(bad("\"type\" is required: the name of a twin type")));
  put.type = type->get<std::string>();
  if (auto p = doc->find("parent"); p != doc->end()) {
    auto parent = parent_field(req, *p);
    if (!parent)
      return respond(error_of(parent.error()));
    put.parent = std::move(*parent);
  }
  auto state = state_fields(*doc);
  if (!state)
    return respond(error_of(state.error()));
  put.properties = std::move(state->properties);
  put.desired = std::move(state->desired);
  auto rels = relationships_of(req, *doc);
  if (!rels)
    return respond(error_of(rels.error()));
  put.relationships = std::move(*rels);
  auto pre = if_match(req);
  if (!pre)
    return respond(error_of(pre.error()));
  if (pre->given && !pre->version)
    return respond(error_of(bad("PUT takes If-Match with the twin's ETag, not *")));
  // To a put, version 0 means "must not exist"; as an ETag it matches no twin.
  if (pre->version == uint64_t{0})
    return respond(error_response(412, "version_conflict", "no twin has version 0"));
  bool conditional = pre->given;
  if (req.if_none_match == "*") {
    if (conditional)
      return respond(error_of(bad("If-Match and If-None-Match exclude each other")));
    put.if_version = 0;  // create only
    conditional = true;
  } else if (!req.if_none_match.empty()) {
    return respond(error_of(bad("If-None-Match takes only *")));
  } else {
    put.if_version = pre->version;
  }
  auto checked = put.relationships;
  auto type_name = put.type;  // not `put.type`: `put` moves into the last argument
  with_targets_checked(
    ctx, id, std::move(type_name), std::move(checked), conditional, std::move(respond),
    [&rt = *ctx.be.rt, id, conditional, put = std::move(put)](respond_fn respond) mutable {
      put.done = [respond = std::move(respond), conditional,
                  path = "/v1/twins/" + id.str()](caf::expected<put_result> r) {
        if (!r)
          return respond(error_of(r.error(), conditional));
        auto res = json_response(r->created ? 201 : 200,
                                 {{"version", r->version}, {"created", r->created}});
        res.headers.emplace_back("ETag", etag(r->version));
        if (r->created)
          res.headers.emplace_back("Location", path);
        respond(std::move(res));
      };
      rt.route(id, std::move(put));
    });
}

void patch_twin(const route_context& ctx, const twin_id& id, const request& req,
                respond_fn respond) {
  auto doc = object_body(req, {"properties", "desired", "parent", "relationships"});
  if (!doc)
    return respond(error_of(doc.error()));
  patch_request patch;
  auto state = state_fields(*doc);
  if (!state)
    return respond(error_of(state.error()));
  patch.properties = std::move(state->properties);
  patch.desired = std::move(state->desired);
  if (auto p = doc->find("parent"); p != doc->end()) {
    auto parent = parent_field(req, *p);
    if (!parent)
      return respond(error_of(parent.error()));
    patch.parent = std::move(*parent);
  }
  if (doc->contains("relationships")) {
    auto rels = relationships_of(req, *doc);
    if (!rels)
      return respond(error_of(rels.error()));
    patch.relationships = std::move(*rels);
  }
  auto pre = if_match(req);
  if (!pre)
    return respond(error_of(pre.error()));
  patch.if_version = pre->version;
  auto rels = patch.relationships.value_or(std::vector<relationship>{});
  with_targets_checked(
    ctx, id, {}, std::move(rels), pre->given, std::move(respond),
    [&rt = *ctx.be.rt, id, conditional = pre->given,
     patch = std::move(patch)](respond_fn respond) mutable {
      patch.done = [respond = std::move(respond), conditional](caf::expected<uint64_t> v) {
        if (!v)
          return respond(error_of(v.error(), conditional));
        auto res = json_response(200, {{"version", *v}});
        res.headers.emplace_back("ETag", etag(*v));
        respond(std::move(res));
      };
      rt.route(id, std::move(patch));
    });
}

void post_telemetry(const route_context& ctx, const request& req, respond_fn respond) {
  auto parsed = parse_body(req, max_document_depth + 1);  // items sit in an array
  if (!parsed)
    return respond(error_of(parsed.error()));
  const auto& doc = *parsed;
  if (!doc.is_array())
    return respond(error_of(bad("the body must be an array of telemetry items")));
  struct batch {
    std::mutex mtx;
    std::vector<json> results;
    size_t pending = 0;
    size_t accepted = 0;
    respond_fn respond;
    telemetry_counts* counts = nullptr;

    /// Records item `i`'s result (an `i` past the items: the routing's own count); the
    /// last one answers.
    void done(size_t i, json result) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (i < results.size()) {
          accepted += result["ok"].get<bool>() ? 1 : 0;
          results[i] = std::move(result);
        }
        if (--pending > 0)
          return;
      }
      if (counts != nullptr) {
        counts->accepted.fetch_add(accepted, std::memory_order_relaxed);
        counts->rejected.fetch_add(results.size() - accepted, std::memory_order_relaxed);
      }
      respond(json_response(202, {{"accepted", accepted},
                                  {"rejected", results.size() - accepted},
                                  {"results", std::move(results)}}));
    }
  };
  auto b = std::make_shared<batch>();
  b->results.resize(doc.size());
  b->pending = doc.size() + 1;  // + 1 until every item is routed
  b->respond = std::move(respond);
  b->counts = ctx.telemetry;
  auto fail = [](const json& twin, const caf::error& err) {
    return json{{"twin", twin},
                {"ok", false},
                {"status", status_of(error_code(err))},
                {"error", to_json(err)}};
  };
  for (size_t i = 0; i < doc.size(); ++i) {
    const auto& item = doc[i];
    json twin = item.is_object() && item.contains("twin") ? item["twin"] : json{};
    auto reject = [&](const caf::error& err) { b->done(i, fail(twin, err)); };
    if (!item.is_object()) {
      reject(bad("an item is {\"twin\": id, \"ts\": ms?, \"values\": {...}}"));
      continue;
    }
    if (auto err = check_fields(item, {"twin", "ts", "values"})) {
      reject(err);
      continue;
    }
    if (!twin.is_string()) {
      reject(bad("\"twin\" must be a twin id"));
      continue;
    }
    auto id = twin_id::parse(twin.get<std::string>());
    if (!id) {
      reject(id.error());
      continue;
    }
    if (!visible(req, *id)) {
      reject(no_such_twin(*id));
      continue;
    }
    ingest_request ingest;
    if (auto ts = item.find("ts"); ts != item.end()) {
      auto t = ts_from_json(*ts);
      if (!t) {
        reject(t.error());
        continue;
      }
      ingest.ts_ms = *t;
    }
    auto values = map_field(item, "values");
    if (!values || values->empty()) {
      reject(values ? bad("\"values\" must be an object of property values") : values.error());
      continue;
    }
    ingest.values = std::move(*values);
    ingest.source = "http";
    ingest.done = [b, i, twin, fail](caf::expected<uint64_t> v) {
      if (v)
        b->done(i, json{{"twin", twin}, {"ok", true}, {"version", *v}});
      else
        b->done(i, fail(twin, v.error()));
    };
    ctx.be.rt->route(*id, std::move(ingest));
  }
  b->done(doc.size(), {});  // every item is routed: the routing's own count
}

} // namespace twin::api::route_detail
