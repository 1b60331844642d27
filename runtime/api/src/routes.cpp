#include "routes.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/query.hpp"

namespace twin::api {

using namespace twin::runtime;
using nlohmann::json;

namespace {


unsigned status_of(runtime_errc code) {
  switch (code) {
    case runtime_errc::invalid_id:
    case runtime_errc::invalid_argument:
      return 400;
    case runtime_errc::not_found:
      return 404;
    case runtime_errc::version_conflict:  // only conditional requests meet one
      return 412;
    case runtime_errc::conflict:
      return 409;
    case runtime_errc::unknown_type:
    case runtime_errc::unknown_property:
    case runtime_errc::type_mismatch:
    case runtime_errc::out_of_range:
    case runtime_errc::read_only:
    case runtime_errc::invalid_parent:
    case runtime_errc::future_timestamp:
      return 422;
    case runtime_errc::shutting_down:
    case runtime_errc::timeout:
    case runtime_errc::unavailable:
      return 503;
    case runtime_errc::insufficient_storage:
      return 507;
    default:
      return 500;
  }
}

/// The answer to a runtime error. For a conditional request (If-Match), no twin at all
/// is a failed precondition too.
response error_of(const caf::error& err, bool conditional = false) {
  auto code = error_code(err);
  auto status = status_of(code);
  if (conditional && code == runtime_errc::not_found)
    status = 412;
  return response{status, {}, {{"error", to_json(err)}}, {}, nullptr};
}

response json_response(unsigned status, json body) {
  return response{status, {}, std::move(body), {}, nullptr};
}

std::string etag(uint64_t version) {
  return "\"" + std::to_string(version) + "\"";
}

caf::error bad(std::string why) {
  return make_error(runtime_errc::invalid_argument, std::move(why));
}

/// Decodes %XX escapes of a path segment, or of a query parameter (`form`: where "+"
/// is a space too).
caf::expected<std::string> percent_decode(std::string_view s, bool form = false) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += form && s[i] == '+' ? ' ' : s[i];
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9')
        return c - '0';
      if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
      if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
      return -1;
    };
    int hi = i + 2 < s.size() ? hex(s[i + 1]) : -1;
    int lo = i + 2 < s.size() ? hex(s[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return bad("malformed %-escape in the request target");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

/// Whether the request's media type is one of `accepted` (parameters such as charset
/// are ignored).
bool has_media_type(const request& req, std::initializer_list<std::string_view> accepted) {
  std::string_view type = req.content_type;
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ')
    type.remove_suffix(1);
  for (auto a : accepted)
    if (type.size() == a.size()
        && std::equal(type.begin(), type.end(), a.begin(),
                      [](unsigned char x, unsigned char y) {
                        return std::tolower(x) == std::tolower(y);
                      }))
      return true;
  return false;
}

/// An error naming the first key of the object `obj` that is not one of `fields`.
caf::error check_fields(const json& obj, std::initializer_list<std::string_view> fields) {
  for (const auto& [key, v] : obj.items())
    if (std::find(fields.begin(), fields.end(), key) == fields.end())
      return bad("unknown field \"" + key + "\"");
  return {};
}

/// The body as JSON, nesting at most `depth` levels.
caf::expected<json> parse_body(const request& req, int depth) {
  if (nests_deeper_than(req.body, depth))
    return bad("the body nests deeper than " + std::to_string(depth) + " levels");
  auto doc = json::parse(req.body, nullptr, false);
  if (doc.is_discarded())
    return bad("the body is not valid JSON");
  return doc;
}

/// The body as a JSON object whose keys are all in `fields`.
caf::expected<json> object_body(const request& req,
                                std::initializer_list<std::string_view> fields) {
  auto doc = parse_body(req, max_document_depth);
  if (!doc)
    return doc;
  if (!doc->is_object())
    return bad("the body must be a JSON object");
  if (auto err = check_fields(*doc, fields))
    return err;
  return doc;
}

/// What If-Match asks for: nothing (absent), any version (`*`: the twin must exist) or
/// one version (one strong ETag of this API, `"<version>"`).
struct precondition {
  bool given = false;
  std::optional<uint64_t> version;
};

caf::expected<precondition> if_match(const request& req) {
  const auto& v = req.if_match;
  if (v.empty())
    return precondition{};
  if (v == "*")
    return precondition{true, std::nullopt};
  auto fail = bad("If-Match must be * or one ETag of this API, such as \"7\" (with the quotes)");
  if (v.size() < 3 || v.front() != '"' || v.back() != '"')
    return fail;
  uint64_t n = 0;
  for (size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9' || n > (UINT64_MAX - 9) / 10)
      return fail;
    n = n * 10 + static_cast<uint64_t>(v[i] - '0');
  }
  return precondition{true, n};
}

using params = std::map<std::string, std::string, std::less<>>;

/// The parameters of the query string of `target`, decoded; `invalid_argument` for a
/// malformed or repeated one, or one that is not in `known`.
caf::expected<params> query_params(std::string_view target,
                                   std::initializer_list<std::string_view> known) {
  params out;
  auto q = target.find('?');
  if (q == std::string_view::npos)
    return out;
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto pair = rest.substr(0, rest.find('&'));
    rest.remove_prefix(std::min(rest.size(), pair.size() + 1));
    if (pair.empty())
      continue;
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    if (!key)
      return key.error();
    auto val = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!val)
      return val.error();
    if (std::find(known.begin(), known.end(), *key) == known.end())
      return bad("unknown parameter \"" + *key + "\"");
    if (out.count(*key) > 0)
      return bad("parameter \"" + *key + "\" is given twice");
    out.emplace(std::move(*key), std::move(*val));
  }
  return out;
}

/// The integer of parameter `key`, from `lo` to `hi`.
caf::expected<int64_t> int_param(const std::string& key, const std::string& text, int64_t lo,
                                 int64_t hi) {
  auto fail = [&] {
    return bad(key + " must be an integer from " + std::to_string(lo) + " to "
               + std::to_string(hi));
  };
  int64_t n = 0;
  auto end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc{} || ptr != end || n < lo || n > hi)
    return fail();
  return n;
}

/// The twin id of a path "/v1/twins/{id}..." that ends at `end` (a position in `path`).
caf::expected<twin_id> id_in_path(std::string_view path, size_t end = std::string_view::npos) {
  constexpr std::string_view twins = "/v1/twins/";
  auto text = percent_decode(path.substr(twins.size(), end - twins.size()));
  if (!text)
    return text.error();
  return twin_id::parse(*text);
}

void get_twin(router& rt, const twin_id& id, respond_fn respond) {
  rt.route(id, get_request{[respond = std::move(respond)](caf::expected<twin_record> r) {
             if (!r)
               return respond(error_of(r.error()));
             response res;
             res.text = to_json_text(*r);  // on the twin's thread, spreading the work
             res.headers.emplace_back("ETag", etag(r->version));
             respond(std::move(res));
           }});
}

void put_twin(router& rt, const twin_id& id, const request& req, respond_fn respond) {
  auto doc = object_body(req, {"type", "parent", "properties", "desired", "relationships"});
  if (!doc)
    return respond(error_of(doc.error()));
  put_request put;
  auto type = doc->find("type");
  if (type == doc->end() || !type->is_string() || type->get<std::string>().empty())
    return respond(error_of(bad("\"type\" is required: the name of a twin type")));
  put.type = type->get<std::string>();
  if (auto p = doc->find("parent"); p != doc->end() && !p->is_null()) {
    if (!p->is_string())
      return respond(error_of(bad("\"parent\" must be a twin id or null")));
    auto parent = twin_id::parse(p->get<std::string>());
    if (!parent)
      return respond(error_of(parent.error()));
    put.parent = std::move(*parent);
  }
  auto state = state_fields(*doc);
  if (!state)
    return respond(error_of(state.error()));
  put.properties = std::move(state->properties);
  put.desired = std::move(state->desired);
  if (auto rels = doc->find("relationships"); rels != doc->end() && !rels->is_null()) {
    if (!rels->is_array())
      return respond(error_of(bad("\"relationships\" must be an array")));
    for (const auto& r : *rels) {
      auto name = r.find("name");
      auto target = r.find("target");
      if (!r.is_object() || r.size() != 2 || name == r.end() || !name->is_string()
          || name->get<std::string>().empty() || target == r.end() || !target->is_string())
        return respond(error_of(bad("a relationship is {\"name\": text, \"target\": twin id}")));
      auto t = twin_id::parse(target->get<std::string>());
      if (!t)
        return respond(error_of(t.error()));
      put.relationships.push_back(relationship{name->get<std::string>(), std::move(*t)});
    }
  }
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
}

void patch_twin(router& rt, const twin_id& id, const request& req, respond_fn respond) {
  auto doc = object_body(req, {"properties", "desired"});
  if (!doc)
    return respond(error_of(doc.error()));
  patch_request patch;
  auto state = state_fields(*doc);
  if (!state)
    return respond(error_of(state.error()));
  patch.properties = std::move(state->properties);
  patch.desired = std::move(state->desired);
  auto pre = if_match(req);
  if (!pre)
    return respond(error_of(pre.error()));
  patch.if_version = pre->version;
  patch.done = [respond = std::move(respond), conditional = pre->given](caf::expected<uint64_t> v) {
    if (!v)
      return respond(error_of(v.error(), conditional));
    auto res = json_response(200, {{"version", *v}});
    res.headers.emplace_back("ETag", etag(*v));
    respond(std::move(res));
  };
  rt.route(id, std::move(patch));
}

void delete_twin(router& rt, const twin_id& id, const request& req, respond_fn respond) {
  auto pre = if_match(req);
  if (!pre)
    return respond(error_of(pre.error()));
  remove_request remove;
  remove.if_version = pre->version;
  remove.done = [respond = std::move(respond),
                 conditional = pre->given](caf::expected<uint64_t> v) {
    if (!v)
      return respond(error_of(v.error(), conditional));
    respond(response{204, {}, {}, {}, nullptr});
  };
  rt.route(id, std::move(remove));
}

/// POST /v1/telemetry: items `{"twin": id, "ts": ms?, "values": {...}}`. Each item is
/// routed on its own; the answer (202) comes once every accepted item is durable, with a
/// result per item in the order of the request, so one bad item does not sink the batch.
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

/// GET /readyz: 200 when every check is ok, else 503 naming what is not. Each check is
/// shown either way.
response readiness(const std::vector<readiness_check>& checks) {
  json shown = json::object();
  std::string failing;
  for (const auto& c : checks) {
    shown[c.name] = {{"ok", c.ok}, {"detail", c.detail}};
    if (!c.ok)
      failing += (failing.empty() ? "" : "; ") + c.name + ": " + c.detail;
  }
  if (failing.empty())
    return json_response(200, {{"status", "ready"}, {"checks", std::move(shown)}});
  auto r = error_response(503, "not_ready", failing);
  r.body["status"] = "not_ready";
  r.body["checks"] = std::move(shown);
  return r;
}

/// Answers with what `work` returns, run off the I/O threads: 500 if it throws, 429 at
/// once if too much such work is queued already.
void answer_blocking(const route_context& ctx, respond_fn respond,
                     std::function<response()> work) {
  auto task = [respond, work = std::move(work)] {
    try {
      respond(work());
    } catch (const std::exception& e) {  // a defect: answered, and the node goes on
      respond(error_response(500, "internal", e.what()));
    }
  };
  if (!ctx.run_blocking(std::move(task))) {
    auto res = error_response(429, "too_many_requests",
                              "too many queries and history reads are under way; retry later");
    res.headers.emplace_back("Retry-After", "1");
    respond(std::move(res));
  }
}

/// GET /v1/twins: a page of the twins that match, with the cursor of the next page.
void query_twins(const route_context& ctx, const request& req, respond_fn respond) {
  if (!ctx.be.query)
    return respond(error_response(501, "not_implemented", "this node serves no queries"));
  auto p = query_params(req.target, {"type", "kind", "parent", "where", "limit", "cursor"});
  if (!p)
    return respond(error_of(p.error()));
  twin_query q;
  for (const auto& [key, text] : *p) {
    if (key == "type") {
      if (text.empty())
        return respond(error_of(bad("type must name a twin type")));
      q.type = text;
    } else if (key == "kind") {
      twin_kind k;
      if (!from_string(text, k))
        return respond(error_of(bad("kind must be component, asset, system or process")));
      q.kind = k;
    } else if (key == "parent") {
      auto id = twin_id::parse(text);
      if (!id)
        return respond(error_of(id.error()));
      q.parent = std::move(*id);
    } else if (key == "where") {
      auto e = expression::parse(text);
      if (!e)
        return respond(error_of(e.error()));
      q.where = std::move(*e);
    } else if (key == "limit") {
      auto n = int_param(key, text, 1, twin_query::max_limit);
      if (!n)
        return respond(error_of(n.error()));
      q.limit = static_cast<size_t>(*n);
    } else {
      auto after = decode_cursor(text);
      if (!after)
        return respond(error_of(after.error()));
      q.after = std::move(*after);
    }
  }
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, q = std::move(q)] {
    auto page = be.query(q);
    if (!page)
      return error_of(page.error());
    // Written as text, the way a single twin is (the cursor is base64url: no escapes).
    response res;
    res.text = R"({"cursor":)";
    res.text += page->cursor.empty() ? "null" : '"' + page->cursor + '"';
    res.text += R"(,"items":[)";
    for (size_t i = 0; i < page->items.size(); ++i) {
      if (i > 0)
        res.text += ',';
      res.text += to_json_text(page->items[i]);
    }
    res.text += "]}";
    return res;
  });
}

/// GET /v1/twins/{id}/history: samples of one property, or their buckets with `step`.
void get_history(const route_context& ctx, const twin_id& id, const request& req,
                 respond_fn respond) {
  if (!ctx.be.history)
    return respond(error_response(501, "not_implemented", "this node keeps no history"));
  auto p = query_params(req.target, {"property", "from", "to", "step", "limit"});
  if (!p)
    return respond(error_of(p.error()));
  history_query q;
  q.id = id;
  for (const auto& [key, text] : *p) {
    if (key == "property") {
      q.property = text;
      continue;
    }
    auto n = key == "limit" ? int_param(key, text, 1, history_query::max_limit)
             : key == "step" ? int_param(key, text, 1, INT64_MAX)
                             : int_param(key, text, INT64_MIN + 1, INT64_MAX);
    if (!n)
      return respond(error_of(n.error()));
    if (key == "limit")
      q.limit = static_cast<size_t>(*n);
    else if (key == "step")
      q.step_ms = *n;
    else
      (key == "from" ? q.from_ms : q.to_ms) = *n;
  }
  if (q.property.empty())
    return respond(error_of(bad("property is required: whose history to read")));
  if (q.from_ms > q.to_ms)
    return respond(error_of(bad("from is later than to")));
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, q = std::move(q)] {
    auto page = be.history(q);
    if (!page)
      return error_of(page.error());
    json doc{{"twin", q.id.str()}, {"property", q.property}};
    if (q.step_ms > 0) {
      auto buckets = json::array();
      for (const auto& b : page->buckets)
        buckets.push_back(
          {{"ts", b.ts_ms}, {"min", b.min}, {"max", b.max}, {"avg", b.avg}, {"count", b.count}});
      doc["step"] = q.step_ms;
      doc["buckets"] = std::move(buckets);
    } else {
      auto points = json::array();
      for (const auto& x : page->points)
        points.push_back({{"ts", x.ts_ms}, {"value", to_json(x.v)}});
      doc["points"] = std::move(points);
    }
    doc["next_from"] = page->next_from_ms ? json(*page->next_from_ms) : json{};
    return json_response(200, std::move(doc));
  });
}

/// POST /v1/twins/{id}/commands/{name}: the body (optional) holds the arguments. 202
/// once the twin took the command and sent it to the device, with its handler's result.
void post_command(router& rt, const twin_id& id, std::string name, const request& req,
                  respond_fn respond) {
  constexpr size_t max_name = 128;
  bool valid = !name.empty() && name.size() <= max_name;
  for (unsigned char c : name)
    valid = valid && (std::isalnum(c) || c == '_' || c == '-' || c == '.');
  if (!valid)
    return respond(error_of(bad("a command name is 1 to 128 letters, digits, _ - or .")));
  command_request cmd;
  cmd.name = std::move(name);
  if (!req.body.empty()) {
    if (!has_media_type(req, {"application/json"}))
      return respond(error_response(415, "unsupported_media_type",
                                    "a command's arguments take Content-Type: application/json"));
    auto doc = parse_body(req, max_document_depth);
    if (!doc)
      return respond(error_of(doc.error()));
    auto args = value_from_json(*doc);
    if (!args)
      return respond(error_of(args.error()));
    cmd.args = std::move(*args);
  }
  cmd.done = [respond = std::move(respond), twin = id.str(),
              command = cmd.name](caf::expected<value> r) {
    if (!r)
      return respond(error_of(r.error()));
    respond(json_response(202, {{"twin", twin}, {"command", command}, {"result", to_json(*r)}}));
  };
  rt.route(id, std::move(cmd));
}

/// GET /v1/events: a stream of the changes that match the filters.
void stream_events(const route_context& ctx, const request& req, respond_fn respond) {
  if (ctx.be.feed == nullptr)
    return respond(error_response(501, "not_implemented", "this node streams no events"));
  auto p = query_params(req.target, {"namespace", "type", "prefix"});
  if (!p)
    return respond(error_of(p.error()));
  event_filter f;
  auto field = [&](const char* key) {
    auto it = p->find(key);
    return it == p->end() ? std::string{} : it->second;
  };
  f.ns = field("namespace");
  f.type = field("type");
  f.prefix = field("prefix");
  response res;
  res.stream = ctx.be.feed->subscribe(std::move(f), ctx.event_buffer, ctx.event_buffer_bytes);
  respond(std::move(res));
}

response method_not_allowed(const std::string& allow) {
  auto res = error_response(405, "method_not_allowed", "this resource allows " + allow);
  res.headers.emplace_back("Allow", allow);
  return res;
}

} // namespace

const char* route_of(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  for (const char* fixed :
       {"/healthz", "/readyz", "/metrics", "/v1/twins", "/v1/telemetry", "/v1/events",
        "/v1/cluster"})
    if (path == fixed)
      return fixed;
  constexpr std::string_view twins = "/v1/twins/";
  constexpr std::string_view commands = "/commands/";
  if (path.substr(0, twins.size()) == twins && path.size() > twins.size()) {
    auto rest = path.substr(twins.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos)
      return "/v1/twins/{id}";
    auto sub = rest.substr(slash);
    if (sub == "/history")
      return "/v1/twins/{id}/history";
    if (sub.substr(0, commands.size()) == commands && sub.size() > commands.size())
      return "/v1/twins/{id}/commands/{name}";
  }
  return "other";
}

std::string sse_event(const change_event& ev) {
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
  std::string out = "event: ";
  out += to_string(ev.kind);
  out += "\ndata: ";
  out += doc.dump(-1, ' ', false, json::error_handler_t::replace);
  out += "\n\n";
  return out;
}

response error_response(unsigned status, const std::string& code, const std::string& message) {
  return json_response(status, {{"error", {{"code", code}, {"message", message}}}});
}

void handle(const route_context& ctx, request req, respond_fn respond) {
  // Dispatched on the route template, as the metrics count it.
  std::string_view route = req.route != nullptr ? req.route : route_of(req.target);
  std::string_view path = req.target;
  path = path.substr(0, path.find('?'));
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
  auto& rt = *ctx.be.rt;
  if (route == "/v1/twins/{id}/history") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
    auto id = id_in_path(path, path.rfind("/history"));
    if (!id)
      return respond(error_of(id.error()));
    return get_history(ctx, *id, req, std::move(respond));
  }
  if (route == "/v1/twins/{id}/commands/{name}") {
    if (req.method != "POST")
      return respond(method_not_allowed("POST"));
    auto at = path.find("/commands/");
    auto id = id_in_path(path, at);
    if (!id)
      return respond(error_of(id.error()));
    auto name = percent_decode(path.substr(at + std::string_view{"/commands/"}.size()));
    if (!name)
      return respond(error_of(name.error()));
    return post_command(rt, *id, std::move(*name), req, std::move(respond));
  }
  if (route == "/v1/twins/{id}") {
    auto id = id_in_path(path);
    if (!id)
      return respond(error_of(id.error()));
    if (req.method == "GET")
      return get_twin(rt, *id, std::move(respond));
    if (req.method == "DELETE")
      return delete_twin(rt, *id, req, std::move(respond));
    if (req.method != "PUT" && req.method != "PATCH")
      return respond(method_not_allowed("GET, PUT, PATCH, DELETE"));
    if (req.method == "PUT") {
      if (!has_media_type(req, {"application/json"}))
        return respond(error_response(415, "unsupported_media_type",
                                      "PUT takes Content-Type: application/json"));
      return put_twin(rt, *id, req, std::move(respond));
    }
    if (!has_media_type(req, {"application/merge-patch+json", "application/json"}))
      return respond(error_response(
        415, "unsupported_media_type",
        "PATCH takes Content-Type: application/merge-patch+json or application/json"));
    return patch_twin(rt, *id, req, std::move(respond));
  }
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
  if (route == "/v1/cluster") {
    if (req.method != "GET")
      return respond(method_not_allowed("GET"));
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

} // namespace twin::api
