// Remaining useful life over HTTP: a type's model fitted on the history of its
// run-to-failure twins, shown and removed.

#include <algorithm>

#include "route_helpers.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/rul_catalog.hpp"

namespace twin::api::route_detail {

namespace {

/// Twins a fit reads at most, and values (samples times inputs) in all.
constexpr size_t max_fit_twins = 10000;
constexpr size_t max_fit_values = 5000000;
constexpr size_t max_inputs = 64;

/// What POST /v1/types/{type}/rul asks for.
struct fit_request {
  std::string prefix;
  std::string twin_type;  ///< of the run-to-failure twins
  std::vector<std::string> inputs;
  rul_options options;
};

caf::expected<fit_request> fit_request_of(const json& doc, const std::string& type) {
  fit_request out;
  out.twin_type = type;
  if (auto t = doc.find("twins"); t != doc.end()) {
    if (!t->is_object())
      return bad("\"twins\" must be {\"prefix\": text, \"type\": name}: the run-to-failure "
                 "twins");
    if (auto err = check_fields(*t, {"prefix", "type"}))
      return err;
    for (auto [key, field] : {std::pair{"prefix", &out.prefix}, {"type", &out.twin_type}})
      if (auto v = t->find(key); v != t->end()) {
        if (!v->is_string())
          return bad(std::string{"\"twins\"."} + key + " must be text");
        *field = v->get<std::string>();
      }
  }
  auto inputs = doc.find("inputs");
  if (inputs == doc.end() || !inputs->is_array() || inputs->empty()
      || inputs->size() > max_inputs)
    return bad("\"inputs\" must list 1 to " + std::to_string(max_inputs)
               + " numeric properties of the type");
  for (const auto& i : *inputs) {
    if (!i.is_string())
      return bad("\"inputs\" must list property names");
    out.inputs.push_back(i.get<std::string>());
  }
  for (auto [key, field] : {std::pair{"cap_s", &out.options.cap_s},
                            {"half_life_samples", &out.options.half_life}})
    if (auto v = doc.find(key); v != doc.end()) {
      if (!v->is_number())
        return bad(std::string{"\""} + key + "\" must be a number");
      *field = v->get<double>();
    }
  if (auto v = doc.find("folds"); v != doc.end()) {
    if (!v->is_number_unsigned())
      return bad("\"folds\" must be a whole number");
    out.options.folds = static_cast<uint32_t>(std::min<uint64_t>(v->get<uint64_t>(), 1000));
  }
  if (auto why = out.options.check(); !why.empty())
    return bad(why);
  return out;
}

/// The history of one input of `id`: its numeric samples, by time.
caf::expected<std::vector<std::pair<int64_t, double>>>
input_history(const backend& be, const twin_id& id, const std::string& property,
              size_t& budget) {
  std::vector<std::pair<int64_t, double>> out;
  history_query q;
  q.id = id;
  q.property = property;
  q.limit = history_query::max_limit;
  while (true) {
    auto page = be.history(q);
    if (!page)
      return page.error();
    for (const auto& p : page->points) {
      if (!p.v.is_number())
        continue;
      if (budget == 0)
        return bad("the run-to-failure twins have more than "
                   + std::to_string(max_fit_values)
                   + " samples of the inputs in all: select fewer twins");
      --budget;
      out.emplace_back(p.ts_ms, p.v.as_double());
    }
    if (!page->next_from_ms)
      return out;
    q.from_ms = *page->next_from_ms;
  }
}

/// The run of one twin, from the history of its inputs (see `merge_inputs`).
caf::expected<rul_run> run_of(const backend& be, const twin_id& id,
                              const std::vector<std::string>& inputs, size_t& budget) {
  std::vector<std::vector<std::pair<int64_t, double>>> series;
  for (const auto& name : inputs) {
    auto h = input_history(be, id, name, budget);
    if (!h)
      return h.error();
    series.push_back(std::move(*h));
  }
  return merge_inputs(id.str(), series);
}

/// The runs of the selected twins that have at least 2 samples of every input.
caf::expected<std::vector<rul_run>> runs_of(const backend& be, const fit_request& f) {
  std::vector<rul_run> runs;
  twin_query q;
  q.type = f.twin_type;
  q.limit = twin_query::max_limit;
  size_t budget = max_fit_values;
  size_t selected = 0;
  while (true) {
    auto page = be.query(q);
    if (!page)
      return page.error();
    for (const auto& rec : page->items) {
      if (rec.id.str().compare(0, f.prefix.size(), f.prefix) != 0)
        continue;
      if (++selected > max_fit_twins)
        return bad("more than " + std::to_string(max_fit_twins)
                   + " twins are selected: narrow \"twins\".prefix");
      auto run = run_of(be, rec.id, f.inputs, budget);
      if (!run)
        return run.error();
      if (run->ts_ms.size() >= 2)
        runs.push_back(std::move(*run));
    }
    if (page->cursor.empty())
      break;
    auto after = decode_cursor(page->cursor);
    if (!after)
      return after.error();
    q.after = *after;
  }
  if (runs.size() < 2)
    return bad("no model without run-to-failure twins: " + std::to_string(runs.size()) + " of the "
               + std::to_string(selected) + " twins of type '" + f.twin_type
               + "' whose id starts with '" + f.prefix
               + "' have 2 samples or more of every input, and a fit needs 2 such twins");
  return runs;
}

json model_json(const rul_model& m) {
  const auto& r = m.report;
  return {{"type", m.type},
          {"version", m.version},
          {"fitted", m.fitted_ms},
          {"inputs", m.inputs},
          {"cap_s", m.options.cap_s},
          {"half_life_samples", m.options.half_life},
          {"twins", {{"prefix", m.selection_prefix}, {"type", m.selection_type}}},
          {"method", "ridge regression of the capped remaining life on the inputs smoothed "
                     "by Holt's method (level and trend) and their squares"},
          {"fit",
           {{"twins", r.twins},
            {"samples", r.samples},
            {"folds", r.folds},
            {"cv_rmse_s", r.cv_rmse_s},
            {"cv_mae_s", r.cv_mae_s},
            {"cv_bias_s", r.cv_bias_s}}}};
}

} // namespace

void handle_rul(const route_context& ctx, const std::string& type_name, const request& req,
                respond_fn respond) {
  const auto& be = ctx.be;
  if (be.rul == nullptr || be.types == nullptr || !be.query || !be.history)
    return respond(error_response(501, "not_implemented",
                                  "this node keeps no remaining-useful-life models"));
  auto type = be.types->find(type_name);
  if (!type)
    return respond(error_response(404, "not_found", "no twin type '" + type_name + "'"));
  if (req.method == "GET" || req.method == "DELETE") {
    auto model = type->rul();
    if (req.method == "GET")
      return respond(model ? json_response(200, model_json(*model))
                           : error_response(404, "not_found",
                                            "type '" + type_name + "' has no RUL model"));
    return answer_blocking(ctx, std::move(respond), [&be, type_name] {
      auto removed = be.rul->remove(type_name);
      if (!removed)
        return error_of(removed.error());
      return *removed ? response{204, {}, {}, {}, nullptr}
                      : error_response(404, "not_found",
                                       "type '" + type_name + "' has no RUL model");
    });
  }
  if (req.method != "POST") {
    auto res = error_response(405, "method_not_allowed", "this resource allows GET, POST, DELETE");
    res.headers.emplace_back("Allow", "GET, POST, DELETE");
    return respond(std::move(res));
  }
  if (!has_media_type(req, {"application/json"}))
    return respond(error_response(415, "unsupported_media_type",
                                  "POST takes Content-Type: application/json"));
  if (!type->learns_rul())
    return respond(error_response(
      409, "conflict",
      "type '" + type_name + "' does not learn a remaining useful life: its model needs "
        "\"rul\": true"));
  auto doc = object_body(req, {"twins", "inputs", "cap_s", "half_life_samples", "folds"});
  if (!doc)
    return respond(error_of(doc.error()));
  auto f = fit_request_of(*doc, type_name);
  if (!f)
    return respond(error_of(f.error()));
  rul_model probe;
  probe.inputs = f->inputs;
  if (auto err = rul_catalog::resolve(*type, probe))
    return respond(error_of(err));
  if (f->twin_type != type_name && !be.types->find(f->twin_type))
    return respond(error_response(422, "unknown_type",
                                  "\"twins\".type names no twin type '" + f->twin_type + "'"));
  answer_blocking(ctx, std::move(respond), [&be, type_name, f = std::move(*f)] {
    auto runs = runs_of(be, f);
    if (!runs)
      return error_of(runs.error());
    auto m = fit_rul(*runs, f.inputs, f.options);
    if (!m)
      return error_of(m.error());
    m->type = type_name;
    m->selection_prefix = f.prefix;
    m->selection_type = f.twin_type;
    if (auto err = rul_catalog::resolve(*be.types->find(type_name), *m))
      return error_of(err);
    auto installed = be.rul->install(std::move(*m));
    if (!installed)
      return error_of(installed.error());
    return json_response(201, model_json(**installed));
  });
}

} // namespace twin::api::route_detail
