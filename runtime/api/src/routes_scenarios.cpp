// What-if scenarios over HTTP: the body decoded, the root's subtree read, the scenario run
// off the I/O threads, and its answer.

#include <chrono>
#include <cmath>

#include "route_helpers.hpp"
#include "twin/runtime/await.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/optimize.hpp"
#include "twin/runtime/scenario.hpp"

namespace twin::api::route_detail {

namespace {

caf::expected<twin_id> id_field(const json& j, const char* what) {
  if (!j.is_string())
    return bad(std::string{what} + " must be a twin id");
  return twin_id::parse(j.get<std::string>());
}

/// A series named "twin/property".
caf::expected<std::pair<twin_id, std::string>> series_of(const json& w) {
  auto text = w.is_string() ? w.get<std::string>() : std::string{};
  auto slash = text.rfind('/');
  if (slash == std::string::npos || slash + 1 == text.size())
    return bad("a series is \"twin/property\", not " + w.dump());
  auto id = twin_id::parse(text.substr(0, slash));
  if (!id)
    return id.error();
  return std::make_pair(std::move(*id), text.substr(slash + 1));
}

caf::expected<scenario_change> change_of(const json& c) {
  if (!c.is_object())
    return bad("a change is {\"twin\": id, \"desired\": {...}}, {\"twin\": id, \"properties\": "
               "{...}} or {\"twin\": id, \"command\": name}");
  if (auto err = check_fields(c, {"twin", "desired", "properties", "command"}))
    return err;
  scenario_change out;
  auto id = id_field(c.value("twin", json{}), "a change's \"twin\"");
  if (!id)
    return id.error();
  out.twin = std::move(*id);
  auto desired = map_field(c, "desired");
  if (!desired)
    return desired.error();
  out.desired = std::move(*desired);
  auto properties = map_field(c, "properties");
  if (!properties)
    return properties.error();
  out.properties = std::move(*properties);
  if (auto cmd = c.find("command"); cmd != c.end()) {
    if (!cmd->is_string() || cmd->get<std::string>().empty())
      return bad("a change's \"command\" must be a command's name");
    out.command = cmd->get<std::string>();
  }
  if (out.desired.empty() && out.properties.empty() && out.command.empty())
    return bad("a change of " + out.twin.str() + " changes nothing");
  return out;
}

caf::expected<scenario_request> request_of(const json& doc) {
  scenario_request r;
  auto root = id_field(doc.value("root", json{}), "\"root\"");
  if (!root)
    return root.error();
  r.root = std::move(*root);
  for (auto [key, field] : {std::pair{"horizon_s", &r.horizon_s}, {"step_s", &r.step_s}}) {
    auto i = doc.find(key);
    if (i == doc.end())
      continue;
    if (!i->is_number() || !std::isfinite(i->get<double>()) || i->get<double>() <= 0)
      return bad(std::string{"\""} + key + "\" must be a number of seconds above 0");
    *field = i->get<double>();
  }
  if (auto seed = doc.find("noise_seed"); seed != doc.end()) {
    if (!seed->is_number_unsigned())
      return bad("\"noise_seed\" must be a whole number");
    r.noise_seed = seed->get<uint64_t>();
  }
  auto changes = doc.value("changes", json::array());
  if (!changes.is_array())
    return bad("\"changes\" must be a list");
  for (const auto& c : changes) {
    auto change = change_of(c);
    if (!change)
      return change.error();
    r.changes.push_back(std::move(*change));
  }
  auto watch = doc.value("watch", json::array());
  if (!watch.is_array())
    return bad("\"watch\" must be a list of \"twin/property\"");
  for (const auto& w : watch) {
    auto series = series_of(w);
    if (!series)
      return series.error();
    r.watch.push_back(std::move(*series));
  }
  return r;
}

caf::expected<optimize_request> optimization_of(const json& doc) {
  optimize_request o;
  auto sc = request_of(doc);
  if (!sc)
    return sc.error();
  o.scenario = std::move(*sc);
  auto vary = doc.value("vary", json{});
  if (!vary.is_array() || vary.empty())
    return bad("\"vary\" must list the set-points: {\"twin\", \"desired\", \"min\", \"max\"}");
  for (const auto& v : vary) {
    if (!v.is_object())
      return bad("a set-point is {\"twin\": id, \"desired\": property, \"min\": x, \"max\": y}");
    if (auto err = check_fields(v, {"twin", "desired", "min", "max"}))
      return err;
    auto id = id_field(v.value("twin", json{}), "a set-point's \"twin\"");
    if (!id)
      return id.error();
    auto lo = v.value("min", json{});
    auto hi = v.value("max", json{});
    if (!v.value("desired", json{}).is_string() || !lo.is_number() || !hi.is_number())
      return bad("a set-point is {\"twin\": id, \"desired\": property, \"min\": x, \"max\": y}");
    o.vary.push_back({std::move(*id), v["desired"].get<std::string>(), lo.get<double>(),
                      hi.get<double>()});
  }
  auto objective = doc.value("objective", json{});
  if (!objective.is_object())
    return bad("\"objective\" must be {\"series\": \"twin/property\", \"minimize\" or "
               "\"maximize\": \"mean\", \"final\" or \"integral\"}");
  if (auto err = check_fields(objective, {"series", "minimize", "maximize"}))
    return err;
  auto series = series_of(objective.value("series", json{}));
  if (!series)
    return series.error();
  o.objective = std::move(*series);
  o.maximize = objective.contains("maximize");
  auto stat = objective.value(o.maximize ? "maximize" : "minimize", json{});
  if (objective.contains("maximize") == objective.contains("minimize") || !stat.is_string())
    return bad("\"objective\" needs one of \"minimize\" and \"maximize\": \"mean\", "
               "\"final\" or \"integral\"");
  auto what = stat.get<std::string>();
  if (what == "mean" || what == "final" || what == "integral")
    o.stat = what == "mean" ? series_stat::mean
             : what == "final" ? series_stat::final : series_stat::integral;
  else
    return bad("an objective is the \"mean\", \"final\" value or \"integral\" of its series");
  for (const auto& c : doc.value("constraints", json::array())) {
    if (!c.is_object())
      return bad("a constraint is {\"no_alert\": severity} or {\"series\": \"twin/property\", "
                 "\"min\"?, \"max\"?}");
    if (auto err = check_fields(c, {"no_alert", "series", "min", "max"}))
      return err;
    if (c.contains("no_alert")) {
      severity level;
      if (!c["no_alert"].is_string() || !from_string(c["no_alert"].get<std::string>(), level)
          || level == severity::ok)
        return bad("\"no_alert\" must be \"warning\" or \"critical\"");
      o.no_alert = level;
      continue;
    }
    auto bounded = series_of(c.value("series", json{}));
    if (!bounded)
      return bounded.error();
    series_bound b{bounded->first, bounded->second, std::nullopt, std::nullopt};
    for (auto [key, field] : {std::pair{"min", &b.min}, {"max", &b.max}})
      if (c.contains(key)) {
        if (!c[key].is_number())
          return bad(std::string{"a bound's \""} + key + "\" must be a number");
        *field = c[key].get<double>();
      }
    if (!b.min && !b.max)
      return bad("a bounded series needs a \"min\" or a \"max\"");
    o.bounds.push_back(std::move(b));
  }
  if (auto budget = doc.find("max_evaluations"); budget != doc.end()) {
    if (!budget->is_number_unsigned())
      return bad("\"max_evaluations\" must be a whole number");
    o.max_evaluations = budget->get<size_t>();
  }
  return o;
}

json answer_of(const scenario_request& req, const scenario_result& r, size_t twins,
               double seconds) {
  auto number = [](double x) { return std::isnan(x) ? json{} : json(x); };
  auto series = json::array();
  for (size_t w = 0; w < req.watch.size(); ++w) {
    auto points = json::array();
    for (size_t k = 0; k < r.times.size(); ++k)
      points.push_back({r.times[k], number(r.series[w][k])});
    series.push_back({{"twin", req.watch[w].first.str()},
                      {"property", req.watch[w].second},
                      {"points", std::move(points)}});
  }
  auto alerts = json::array();
  for (const auto& a : r.alerts)
    alerts.push_back({{"t_s", a.t_s},
                      {"twin", a.twin.str()},
                      {"alert", a.alert},
                      {"severity", to_string(a.level)},
                      {"state", a.raised ? "raised" : "cleared"}});
  auto final_state = json::object();
  for (const auto& [id, props] : r.final_state)
    final_state[id.str()] = to_json(props);
  return {{"root", req.root.str()},
          {"horizon_s", req.horizon_s},
          {"step_s", req.step_s},
          {"twins", twins},
          {"twin_steps", r.twin_steps},
          {"elapsed_s", seconds},
          {"series", std::move(series)},
          {"alerts", std::move(alerts)},
          {"final", std::move(final_state)}};
}

} // namespace

void post_scenario(const route_context& ctx, const request& req, respond_fn respond) {
  if (!ctx.be.types || !ctx.be.query || !ctx.be.rt)
    return respond(error_response(501, "not_implemented", "this node runs no scenarios"));
  auto doc = object_body(req, {"root", "horizon_s", "step_s", "changes", "watch", "noise_seed"});
  if (!doc)
    return respond(error_of(doc.error()));
  auto sr = request_of(*doc);
  if (!sr)
    return respond(error_of(sr.error()));
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, token = req.token, sr = std::move(*sr)] {
    auto t0 = std::chrono::steady_clock::now();
    auto twins = read_subtree(be, token.get(), sr.root, scenario_request::max_twins,
                              "a scenario runs that many at most");
    if (!twins)
      return error_of(twins.error());
    auto r = run_scenario(*be.types, *twins, sr);
    if (!r)
      return error_of(r.error());
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return json_response(200, answer_of(sr, *r, twins->size(), seconds));
  });
}

void post_optimize(const route_context& ctx, const request& req, respond_fn respond) {
  if (!ctx.be.types || !ctx.be.query || !ctx.be.rt)
    return respond(error_response(501, "not_implemented", "this node runs no scenarios"));
  auto doc = object_body(req, {"root", "horizon_s", "step_s", "changes", "watch", "noise_seed",
                               "vary", "objective", "constraints", "max_evaluations"});
  if (!doc)
    return respond(error_of(doc.error()));
  auto o = optimization_of(*doc);
  if (!o)
    return respond(error_of(o.error()));
  answer_blocking(ctx, std::move(respond), [&be = ctx.be, token = req.token, o = std::move(*o)] {
    auto t0 = std::chrono::steady_clock::now();
    auto twins = read_subtree(be, token.get(), o.scenario.root, scenario_request::max_twins,
                              "a scenario runs that many at most");
    if (!twins)
      return error_of(twins.error());
    auto r = optimize_scenario(*be.types, *twins, o);
    if (!r)
      return error_of(r.error());
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto best = json::array();
    for (size_t i = 0; i < o.vary.size(); ++i)
      best.push_back(
        {{"twin", o.vary[i].twin.str()}, {"desired", o.vary[i].property}, {"value", r->best[i]}});
    return json_response(
      200, {{"best", std::move(best)},
            {"objective", std::isnan(r->objective) ? json{} : json(r->objective)},
            {"feasible", r->feasible},
            {"evaluations", r->evaluations},
            {"elapsed_s", seconds},
            {"scenario", answer_of(r->best_scenario, r->result, twins->size(), seconds)}});
  });
}

} // namespace twin::api::route_detail
