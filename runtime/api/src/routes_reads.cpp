// The routes that read across twins or over time, and commands and events: readiness,
// queries, history, commands and the change stream.

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
#include "twin/runtime/suggest.hpp"

namespace twin::api::route_detail {

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

namespace {

/// Checks `q` against the node's types: its type is one (and is given by its name), its
/// relationship is declared, and every property its condition reads is declared by a type it selects, or is one of the
/// twin's own fields. `invalid_argument` naming the nearest name otherwise.
caf::error check_query(const type_registry& types, twin_query& q) {
  type_ptr named;
  if (!q.type.empty()) {
    named = types.find(q.type);
    if (!named)
      return bad("unknown twin type '" + q.type + "'" + suggestion(q.type, types.names()));
    q.type = named->name();
  }
  if (q.related && !q.related->name.empty()) {
    std::vector<std::string> declared;
    for (const auto& t : named ? std::vector<type_ptr>{named} : types.types())
      for (const auto& r : t->relationships())
        declared.push_back(r.name);
    if (std::find(declared.begin(), declared.end(), q.related->name) == declared.end())
      return bad("related: no " + (named ? "type '" + q.type + "'" : std::string{"type"})
                 + " declares a relationship '" + q.related->name + "'"
                 + suggestion(q.related->name, declared, 0));
  }
  if (!q.where)
    return {};
  std::vector<type_ptr> selected;
  if (named)
    selected.push_back(named);
  else
    for (const auto& t : types.types())
      if (!q.kind || t->kind() == *q.kind)
        selected.push_back(t);
  for (const auto& name : q.where->properties()) {
    if (own_field(name) || std::any_of(selected.begin(), selected.end(), [&](const type_ptr& t) {
          return t->property(name) != nullptr;
        }))
      continue;
    std::vector<std::string> known;  // for the nearest name
    for (const auto& t : selected)
      for (const auto& p : t->properties())
        known.push_back(p.name);
    auto which = named ? "type '" + q.type + "'" : std::string{"selected type"};
    return bad("where: no " + which + " declares '" + name + "'" + suggestion(name, known, 0));
  }
  return {};
}

/// The query that the parameters of `req` (those of `known` only) ask for, checked against
/// the node's types, for the twins `req`'s token sees.
caf::expected<twin_query> query_of(const route_context& ctx, const request& req,
                                   std::initializer_list<std::string_view> known) {
  auto p = query_params(req.target, known);
  if (!p)
    return p.error();
  twin_query q;
  for (const auto& [key, text] : *p) {
    if (key == "type") {
      if (text.empty())
        return bad("type must name a twin type");
      q.type = text;
    } else if (key == "namespace") {
      if (!twin_id::parse(text + ":x"))
        return bad("namespace must be a twin id's namespace, not '" + text + "'");
      q.ns = text;
    } else if (key == "prefix") {
      q.prefix = text;
    } else if (key == "kind") {
      twin_kind k;
      if (!from_string(text, k))
        return bad("kind must be component, asset, system or process");
      q.kind = k;
    } else if (key == "severity") {
      severity level;
      if (!from_string(text, level) || level == severity::ok)
        return bad("severity must be warning or critical (at least)");
      q.alerting = level;
    } else if (key == "parent") {
      auto id = twin_id::parse(text);
      if (!id)
        return id.error();
      q.parent = std::move(*id);
    } else if (key == "related") {
      // NAME:TARGET, or *:TARGET for any name (a name has no ':', an id has one).
      auto colon = text.find(':');
      auto target = colon == std::string::npos ? caf::expected<twin_id>{bad("")}
                                               : twin_id::parse(text.substr(colon + 1));
      if (colon == 0 || !target)
        return bad("related must be NAME:TARGET (a relationship's name, or *, and a twin id), "
                   "not '" + text + "'");
      auto name = text.substr(0, colon);
      q.related = twin_query::relation{name == "*" ? std::string{} : name, std::move(*target)};
    } else if (key == "where") {
      auto e = expression::parse(text);
      if (!e)
        return e.error();
      q.where = std::move(*e);
    } else if (key == "limit") {
      auto n = int_param(key, text, 1, twin_query::max_limit);
      if (!n)
        return n.error();
      q.limit = static_cast<size_t>(*n);
    } else {
      auto after = decode_cursor(text);
      if (!after)
        return after.error();
      q.after = std::move(*after);
    }
  }
  if (ctx.be.types)
    if (auto err = check_query(*ctx.be.types, q))
      return err;
  if (req.token)
    q.namespaces = req.token->namespaces;
  return q;
}

} // namespace

void query_twins(const route_context& ctx, const request& req, respond_fn respond) {
  if (!ctx.be.query)
    return respond(error_response(501, "not_implemented", "this node serves no queries"));
  auto q = query_of(ctx, req, {"type", "kind", "parent", "namespace", "prefix", "related",
                               "where", "limit", "cursor"});
  if (!q)
    return respond(error_of(q.error()));
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, q = std::move(*q)] {
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

void list_alerts(const route_context& ctx, const request& req, respond_fn respond) {
  if (!ctx.be.query)
    return respond(error_response(501, "not_implemented", "this node serves no queries"));
  auto q = query_of(ctx, req, {"severity", "namespace", "prefix", "type", "limit", "cursor"});
  if (!q)
    return respond(error_of(q.error()));
  if (!q->alerting)
    q->alerting = severity::warning;
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, q = std::move(*q)] {
    auto page = be.query(q);
    if (!page)
      return error_of(page.error());
    auto items = json::array();
    for (const auto& rec : page->items)
      for (const auto& a : rec.alerts)
        if (a.level >= *q.alerting)
          items.push_back({{"twin", rec.id.str()},
                           {"type", rec.type},
                           {"alert", a.name},
                           {"severity", to_string(a.level)},
                           {"since", a.since_ms}});
    return json_response(200, {{"items", std::move(items)},
                               {"cursor", page->cursor.empty() ? json{} : json(page->cursor)}});
  });
}

namespace {

/// Properties one history request reads at most.
constexpr size_t max_series = 16;

/// One property's page of history: {"property", "points"} or {"property", "step",
/// "buckets"}, and "next_from".
json series_json(const history_query& q, const history_page& page) {
  json doc{{"property", q.property}};
  if (q.step_ms > 0) {
    auto buckets = json::array();
    for (const auto& b : page.buckets)
      buckets.push_back(
        {{"ts", b.ts_ms}, {"min", b.min}, {"max", b.max}, {"avg", b.avg}, {"count", b.count}});
    doc["step"] = q.step_ms;
    doc["buckets"] = std::move(buckets);
  } else {
    auto points = json::array();
    for (const auto& x : page.points)
      points.push_back({{"ts", x.ts_ms}, {"value", to_json(x.v)}});
    doc["points"] = std::move(points);
  }
  doc["next_from"] = page.next_from_ms ? json(*page.next_from_ms) : json{};
  return doc;
}

} // namespace

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
                             : time_param(key, text);
    if (!n)
      return respond(error_of(n.error()));
    if (key == "limit")
      q.limit = static_cast<size_t>(*n);
    else if (key == "step")
      q.step_ms = *n;
    else
      (key == "from" ? q.from_ms : q.to_ms) = *n;
  }
  // One property, or several separated by commas: a series each.
  std::vector<std::string> properties;
  for (size_t at = 0; at <= q.property.size();) {
    auto comma = std::min(q.property.find(',', at), q.property.size());
    auto name = q.property.substr(at, comma - at);
    if (name.empty())
      return respond(error_of(bad("property is required: whose history to read (a, b, ...)")));
    if (std::find(properties.begin(), properties.end(), name) == properties.end())
      properties.push_back(std::move(name));
    at = comma + 1;
  }
  if (properties.size() > max_series)
    return respond(error_of(bad("at most " + std::to_string(max_series) + " properties at once")));
  if (q.from_ms > q.to_ms)
    return respond(error_of(bad("from is later than to")));
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, q = std::move(q),
                                            properties = std::move(properties)]() mutable {
    auto series = json::array();
    for (const auto& name : properties) {
      q.property = name;
      auto page = be.history(q);
      if (!page)
        return error_of(page.error());
      series.push_back(series_json(q, *page));
    }
    if (series.size() == 1) {  // one property: its series is the answer
      series[0]["twin"] = q.id.str();
      return json_response(200, std::move(series[0]));
    }
    return json_response(200, {{"twin", q.id.str()}, {"series", std::move(series)}});
  });
}

void get_anomalies(const route_context& ctx, const twin_id& id, const request& req,
                   respond_fn respond) {
  if (!ctx.be.history)
    return respond(error_response(501, "not_implemented", "this node keeps no history"));
  auto p = query_params(req.target, {"property", "from", "to", "limit"});
  if (!p)
    return respond(error_of(p.error()));
  history_query q;
  q.id = id;
  q.limit = 100;
  std::string property;
  for (const auto& [key, text] : *p) {
    if (key == "property") {
      if (text.empty())
        return respond(error_of(bad("property must name a property")));
      property = text;
      continue;
    }
    auto n = key == "limit" ? int_param(key, text, 1, history_query::max_limit)
                            : time_param(key, text);
    if (!n)
      return respond(error_of(n.error()));
    if (key == "limit")
      q.limit = static_cast<size_t>(*n);
    else
      (key == "from" ? q.from_ms : q.to_ms) = *n;
  }
  if (q.from_ms > q.to_ms)
    return respond(error_of(bad("from is later than to")));
  q.property = runtime::anomaly_series(property);  // "@anomaly" alone: every property's
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, q = std::move(q)] {
    auto page = be.history(q);
    if (!page)
      return error_of(page.error());
    auto items = json::array();
    for (const auto& x : page->points) {
      auto doc = x.v.is_string() ? json::parse(x.v.as_string(), nullptr, false) : json{};
      if (!doc.is_object())
        return error_response(500, "internal", "a stored anomaly record is malformed");
      doc["ts"] = x.ts_ms;
      items.push_back(std::move(doc));
    }
    return json_response(200, {{"twin", q.id.str()},
                               {"items", std::move(items)},
                               {"next_from", page->next_from_ms ? json(*page->next_from_ms)
                                                                : json{}}});
  });
}

void post_command(router& rt, const twin_id& id, std::string name, const request& req,
                  respond_fn respond) {
  constexpr size_t max_name = 128;
  bool valid = !name.empty() && name.size() <= max_name;
  for (unsigned char c : name)
    valid = valid && (std::isalnum(c) || c == '_' || c == '-' || c == '.');
  if (!valid)
    return respond(error_of(bad("a command name is 1 to 128 letters, digits, _ - or .")));
  // Even without arguments: a page of another site can send a simple request (a form's
  // types), never this one without the node's CORS consent.
  if (!has_media_type(req, {"application/json"}))
    return respond(error_response(415, "unsupported_media_type",
                                  "a command takes Content-Type: application/json (its "
                                  "arguments, if any, in the body)"));
  command_request cmd;
  cmd.name = std::move(name);
  if (!req.body.empty()) {
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

void stream_events(const route_context& ctx, const request& req, respond_fn respond) {
  if (ctx.be.feed == nullptr)
    return respond(error_response(501, "not_implemented", "this node streams no events"));
  auto p = query_params(req.target, {"namespace", "type", "prefix", "segment", "id"});
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
  f.id = field("id");
  auto segment = field("segment");
  if (!segment.empty() && segment != "true" && segment != "false")
    return respond(error_of(bad("segment must be true or false")));
  f.segment = segment == "true";
  if (!f.id.empty())
    if (auto id = twin_id::parse(f.id); !id)
      return respond(error_of(id.error()));
  if (ctx.be.types && !f.type.empty()) {
    auto t = ctx.be.types->find(f.type);
    if (!t)
      return respond(error_of(bad("unknown twin type '" + f.type + "'"
                                  + suggestion(f.type, ctx.be.types->names()))));
    f.type = t->name();
  }
  // A token's stream has the events of its namespaces only: one filter each.
  std::vector<event_filter> filters;
  if (!req.token || req.token->namespaces.empty()) {
    filters.push_back(std::move(f));
  } else {
    for (const auto& ns : req.token->namespaces)
      if (f.ns.empty() || f.ns == ns)
        filters.push_back(event_filter{ns, f.type, f.prefix, f.segment, f.id});
  }
  response res;
  res.stream = ctx.be.feed->subscribe_any(std::move(filters), ctx.event_buffer,
                                          ctx.event_buffer_bytes, req.last_event_id);
  if (!ctx.be.watch)
    return respond(std::move(res));
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, res = std::move(res)] {
    be.watch();
    return res;
  });
}

} // namespace twin::api::route_detail
