// GET /v1/types and /v1/types/{type}: the node's twin types as their models declare them.

#include "route_helpers.hpp"
#include "twin/runtime/model_catalog.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/suggest.hpp"

namespace twin::api::route_detail {

namespace {

json property_json(const property_spec& p) {
  json out{{"name", p.name},
           {"schema", p.schema ? to_json(*p.schema) : json(to_string(p.type))},
           {"writable", p.writable && !p.computed}};
  if (p.telemetry)
    out["telemetry"] = true;
  if (p.computed)
    out["computed"] = true;
  if (p.history)
    out["history"] = true;
  if (!p.unit.empty())
    out["unit"] = p.unit;
  if (!p.semantic_type.empty())
    out["semanticType"] = p.semantic_type;
  if (p.min)
    out["minimum"] = *p.min;
  if (p.max)
    out["maximum"] = *p.max;
  if (!p.description.empty())
    out["description"] = p.description;
  return out;
}

/// The type's summary, as GET /v1/types lists it.
json summary_json(const twin_type& t) {
  json out{{"name", t.name()}, {"kind", to_string(t.kind())}};
  if (!t.dtmi().empty())
    out["dtmi"] = t.dtmi();
  if (!t.display_name().empty())
    out["displayName"] = t.display_name();
  return out;
}

/// Everything a type declares, as GET /v1/types/{type} shows it.
json type_json(const twin_type& t) {
  auto out = summary_json(t);
  if (!t.description().empty())
    out["description"] = t.description();
  out["extends"] = t.extends();
  auto& props = out["properties"] = json::array();
  for (const auto& p : t.properties())
    if (!p.transient)
      props.push_back(property_json(p));
  auto& rels = out["relationships"] = json::array();
  for (const auto& r : t.relationships()) {
    json j{{"name", r.name}, {"writable", r.writable}};
    if (!r.target.empty())
      j["target"] = r.target;
    if (r.max)
      j["maxMultiplicity"] = *r.max;
    if (!r.description.empty())
      j["description"] = r.description;
    if (r.external)
      j["externalTargets"] = true;
    rels.push_back(std::move(j));
  }
  auto& commands = out["commands"] = json::array();
  for (const auto& c : t.commands()) {
    json effects = json::array();
    for (const auto& e : c.effects) {
      json j{{"desired", to_json(e.desired)}};
      if (!e.child_type.empty())
        j["childType"] = e.child_type;
      effects.push_back(std::move(j));
    }
    commands.push_back({{"name", c.name}, {"description", c.description}, {"effects", effects}});
  }
  auto& aggregates = out["aggregates"] = json::array();
  for (const auto& a : t.aggregates()) {
    json j{{"name", a.name}, {"function", to_string(a.fn)}, {"source", a.source}};
    if (!a.child_type.empty())
      j["childType"] = a.child_type;
    aggregates.push_back(std::move(j));
  }
  auto& derived = out["derived"] = json::array();
  for (const auto& d : t.derived())
    derived.push_back({{"name", t.properties()[static_cast<size_t>(d.position)].name},
                       {"formula", d.expr.text()}});
  auto& alerts = out["alerts"] = json::array();
  for (const auto& a : t.alerts())
    alerts.push_back(
      {{"name", a.name}, {"when", a.condition.text()}, {"severity", to_string(a.level)}});
  return out;
}

} // namespace

namespace {

/// PUT /v1/types/{name}: the body is the type's model (one Interface or an array).
void put_type(const route_context& ctx, const std::string& name, const request& req,
              respond_fn respond) {
  if (ctx.be.models == nullptr)
    return respond(error_response(501, "not_implemented",
                                  "this node takes no types at run time"));
  if (!has_media_type(req, {"application/json"}))
    return respond(error_response(415, "unsupported_media_type",
                                  "PUT takes Content-Type: application/json"));
  answer_blocking(ctx, std::move(respond), [&ctx, name, text = req.body] {
    auto done = ctx.be.models->put(name, text);
    if (!done)
      return error_of(done.error());
    // As the upload named it: a change another node stores meanwhile may follow it.
    auto type = ctx.be.types->find(name);
    auto shown = type ? type->name() : name;
    bool added = std::find(done->added.begin(), done->added.end(), shown) != done->added.end();
    return json_response(added ? 201 : 200, {{"name", shown},
                                             {"dtmi", type ? json(type->dtmi()) : json{}},
                                             {"added", done->added},
                                             {"upgraded", done->upgraded},
                                             {"unchanged", done->unchanged}});
  });
}

} // namespace

void handle_types(const route_context& ctx, std::string_view path, const request& req,
                  respond_fn respond) {
  auto target = path.substr(0, path.find('?'));
  bool one = target != "/v1/types";
  if (req.method != "GET" && !(one && req.method == "PUT"))
    return respond(method_not_allowed(one ? "GET, PUT" : "GET"));
  const auto* types = ctx.be.types;
  if (types == nullptr)
    return respond(error_response(501, "not_implemented", "this node serves no twin types"));
  if (!one) {
    auto p = query_params(req.target, {});
    if (!p)
      return respond(error_of(p.error()));
    json items = json::array();
    for (const auto& t : types->types())
      items.push_back(summary_json(*t));
    json doc{{"items", items}};
    if (ctx.be.models)
      doc["missing"] = ctx.be.models->missing();
    return respond(json_response(200, std::move(doc)));
  }
  auto name = percent_decode(target.substr(10));  // after /v1/types/
  if (!name)
    return respond(error_of(name.error()));
  if (req.method == "PUT")
    return put_type(ctx, *name, req, std::move(respond));
  auto type = types->find(*name);
  if (!type)
    return respond(error_response(404, "unknown_type",
                                  "no twin type '" + *name + "'"
                                    + suggestion(*name, types->names())));
  respond(json_response(200, type_json(*type)));
}

} // namespace twin::api::route_detail
