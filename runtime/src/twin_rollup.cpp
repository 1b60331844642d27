// A twin's anomaly scores, derived properties, alerts, health and aggregates over its
// children, recomputed as they change.

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "aggregate_fold.hpp"
#include "twin_actor.hpp"

namespace twin::runtime::twin_detail {

// -- derived properties, alerts, health, aggregates -----------------------------

bool compute_derived(live_record& rec) {
  const auto& derived = rec.type()->derived();
  if (derived.empty())
    return false;
  thread_local std::vector<double> inputs;
  bool changed = false;
  for (const auto& d : derived) {
    inputs.clear();
    int64_t newest = 0;
    for (int i : d.inputs) {
      const auto* p = rec.at(static_cast<size_t>(i));
      double x = std::nan("");
      if (p != nullptr && p->v.is_number())
        x = p->v.as_double();
      else if (p != nullptr && p->v.is_bool())
        x = p->v.as_bool() ? 1 : 0;
      if (p != nullptr)
        newest = std::max(newest, p->updated_ms);
      inputs.push_back(x);
    }
    double r = d.expr.eval(inputs.data());
    const auto* cur = rec.at(static_cast<size_t>(d.position));
    if (!std::isfinite(r)) {
      changed = rec.erase(d.name) || changed;
      continue;
    }
    if (cur != nullptr && cur->v.is_double() && cur->v.as_double() == r)
      continue;
    rec.set(d.name, value{r}, newest != 0 ? newest : now_ms(), computed_source());
    changed = true;
  }
  return changed;
}

namespace {

/// A record of an anomaly as its series keeps it: a JSON text (see `read_history`).
std::string anomaly_text(const std::string& property, double x, const anomaly_sample& r) {
  return nlohmann::json{{"property", property},
                        {"value", x},
                        {"score", r.score},
                        {"expected", {r.low, r.high}}}
    .dump();
}

} // namespace

void prefetch_predictions(twin_state& st) {
  if (st.anomalies) {
    __builtin_prefetch(st.anomalies->scored_ms.get(), 1);
    st.anomalies->detectors.prefetch();
  }
  if (st.rul) {
    __builtin_prefetch(st.rul->features.values(), 1);
    __builtin_prefetch(&st.rec.slot(static_cast<size_t>(st.rec.type()->rul_position())), 1);
  }
}

void score_anomalies(twin_state& st, int64_t ts) {
  const auto& specs = st.rec.type()->anomalies();
  if (!st.anomalies) {
    std::vector<const anomaly_options*> opts;
    for (const auto& a : specs)
      opts.push_back(&a.options);
    st.anomalies.reset(new watched_properties{anomaly_bank{opts.data(), opts.size()},
                                              std::make_unique<int64_t[]>(specs.size())});
    std::fill_n(st.anomalies->scored_ms.get(), specs.size(), INT64_MIN);
  }
  auto& watched = *st.anomalies;
  for (size_t k = 0; k < specs.size(); ++k) {
    const auto& a = specs[k];
    if (ts <= watched.scored_ms[k])
      continue;
    // Set by this sample: the property has its time (an older sample was not applied).
    const auto* p = st.rec.at(static_cast<size_t>(a.source_position));
    if (p == nullptr || p->updated_ms != ts || !p->v.is_number())
      continue;
    watched.scored_ms[k] = ts;
    double x = p->v.as_double();
    auto r = watched.detectors.observe(k, x, a.options);
    auto& score = st.rec.slot(static_cast<size_t>(a.score_position));
    if (score.v.is_null() || score.v.as_double() != r.score) {  // kept as it changes
      score = live_record::property{value{r.score}, ts, computed_source()};
      const auto& name = st.rec.type()->properties()[static_cast<size_t>(a.score_position)].name;
      st.cold().pending.history.push_back(history_entry{st.rec.id, name, ts, encode_sample(score.v)});
    }
    if (r.onset)
      st.cold().pending.history.push_back(history_entry{
        st.rec.id, anomaly_series(a.source), ts, encode_sample(value{anomaly_text(a.source, x, r)})});
  }
}

void project_limits(twin_state& st, int64_t ts) {
  const auto& specs = st.rec.type()->limits();
  if (!st.trends) {
    st.trends = std::make_unique<trend_estimator[]>(specs.size());
    for (size_t k = 0; k < specs.size(); ++k)
      st.trends[k] = trend_estimator{specs[k].half_life_s};
  }
  for (size_t k = 0; k < specs.size(); ++k) {
    const auto& l = specs[k];
    const auto* p = st.rec.at(static_cast<size_t>(l.source_position));
    if (p == nullptr || p->updated_ms != ts || !p->v.is_number())
      continue;  // not in this sample
    st.trends[k].add(static_cast<double>(ts) / 1000, p->v.as_double());
    auto r = st.trends[k].time_to(l.limit, l.upper);
    double parts[] = {r ? r->eta_s : 0, r ? r->low_s : 0, r ? r->high_s : 0};
    for (size_t i = 0; i < 3; ++i) {
      auto& slot = st.rec.slot(static_cast<size_t>(l.eta_position) + i);
      slot = r && std::isfinite(parts[i])
               ? live_record::property{value{parts[i]}, ts, computed_source()}
               : live_record::property{};
    }
  }
}

namespace {

/// Feeds `r` the twin's samples of its model's inputs before `ts`, from their history (the
/// last twelve half-lives of them, six of the trend's, which weigh all but 2 % of what the
/// smoothing holds): a twin activated again, or whose model reads other inputs now, goes on
/// from its samples rather than from nothing. Without a history to read, the smoothing
/// starts at this sample.
void replay_inputs(twin_state& st, rul_tracker& r, int64_t ts) {
  const auto& m = *r.model;
  auto n = static_cast<size_t>(std::clamp(std::ceil(12 * m.options.half_life), 32.0, 1024.0));
  std::vector<std::vector<std::pair<int64_t, double>>> series(m.inputs.size());
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    auto h = st.host->store.latest_history(st.rec.id, m.inputs[i], ts, n);
    if (!h)
      return;
    for (const auto& [t, bytes] : *h)
      if (auto v = decode_sample(bytes); v && v->is_number())
        series[i].emplace_back(t, v->as_double());
  }
  auto run = merge_inputs({}, series);
  for (size_t row = 0; row < run.ts_ms.size(); ++row)
    r.features.add(run.values.data() + row * m.inputs.size(), r.weight);
  if (!run.ts_ms.empty())
    r.added_ms = run.ts_ms.back();
}

} // namespace

void estimate_rul(twin_state& st, int64_t ts) {
  const auto* type = st.rec.type();
  uint64_t generation = type->rul_generation();
  if (generation == 0)
    return;  // the type never had a model
  if (!st.rul || st.rul->generation != generation) {
    auto model = type->rul();
    if (!st.rul)
      st.rul = std::make_unique<rul_tracker>();
    auto& r = *st.rul;
    bool same_inputs = model && r.model && model->positions == r.model->positions;
    if (!same_inputs) {
      r.features = rul_features{model ? model->positions.size() : 0};
      r.added_ms = INT64_MIN;
    }
    r.weight = model ? model->weight() : 0;
    r.model = std::move(model);
    r.generation = generation;
    if (!same_inputs && r.model)
      replay_inputs(st, r, ts);
  }
  auto& r = *st.rul;
  auto shown = static_cast<size_t>(type->rul_position());
  auto show = [&](const rul_estimate* e) {
    double parts[] = {e ? e->rul_s : 0, e ? e->low_s : 0, e ? e->high_s : 0};
    for (size_t i = 0; i < 3; ++i)
      st.rec.slot(shown + i) = e ? live_record::property{value{parts[i]}, ts, computed_source()}
                                 : live_record::property{};
  };
  if (!r.model)
    return show(nullptr);  // removed
  const auto& positions = r.model->positions;
  thread_local std::vector<double> x;
  x.resize(positions.size());
  bool sampled = false;
  for (size_t i = 0; i < positions.size(); ++i) {
    const auto* p = st.rec.at(static_cast<size_t>(positions[i]));
    if (p == nullptr || !p->v.is_number())
      return show(nullptr);  // an input never sampled: nothing to go by
    x[i] = p->v.as_double();
    sampled = sampled || p->updated_ms == ts;
  }
  if (!sampled || ts <= r.added_ms)
    return;  // no input in this sample, or an older one applied out of order
  r.added_ms = ts;
  r.features.add(x.data(), r.weight);
  auto e = r.model->estimate(r.features);
  show(&e);
}

bool evaluate_alerts(twin_actor* self) {
  auto& st = self->state;
  auto& rec = st.rec;
  bool changed = false;
  auto set_alert = [&](const std::string& name, severity level, bool active) {
    const auto& alerts = rec.alerts();
    auto i = std::find_if(alerts.begin(), alerts.end(),
                          [&](const alert_state& a) { return a.name == name; });
    if (active && i == alerts.end()) {
      rec.mutable_alerts().push_back(alert_state{name, level, now_ms()});
      count_alert(st.pending_counts, level, 1);
      changed = true;
    } else if (!active && i != alerts.end()) {
      count_alert(st.pending_counts, i->level, -1);
      rec.mutable_alerts().erase(i);
      rec.trim();
      changed = true;
    }
  };
  auto lookup = [&](std::string_view n) { return rec.get(n); };
  for (const auto& rule : rec.type()->alerts())
    set_alert(rule.name, rule.level, rule.condition.eval(lookup));
  if (const auto& specs = rec.type()->anomalies(); !specs.empty()) {
    static const std::string name{anomaly_alert};
    bool any = false;
    for (size_t k = 0; st.anomalies && k < specs.size(); ++k)
      any = any || st.anomalies->detectors.anomalous(k);
    set_alert(name, severity::warning, any);
  }
  severity worst = severity::ok;
  for (const auto& a : rec.alerts())
    worst = std::max(worst, a.level);
  for (const auto& c : rec.children())
    worst = std::max(worst, c.health);
  const char* health = to_string(worst);
  auto* cur = rec.get("health");
  if (cur == nullptr || !cur->is_string() || cur->as_string() != health) {
    rec.set("health", value{health}, now_ms(), computed_source());
    changed = true;
  }
  return changed;
}

value compute_aggregate(const aggregate_spec& a, const std::vector<child_state>& children) {
  aggregate_fold fold{a.fn};
  for (const auto& c : children) {
    if (!a.child_type.empty() && c.type != a.child_type)
      continue;
    if (a.fn == aggregate_fn::count && a.source.empty()) {
      fold.member();
      continue;
    }
    auto i = c.values.find(a.source);
    if (i == c.values.end())
      continue;
    const value& v = i->second;
    if (a.fn == aggregate_fn::worst) {
      severity s;
      if (v.is_string() && from_string(v.as_string(), s))
        fold.add(static_cast<double>(s));
    } else if (a.fn == aggregate_fn::any || a.fn == aggregate_fn::all) {
      fold.add(v.is_bool() ? v.as_bool() : v.is_number() && v.as_double() != 0);
    } else if (v.is_number()) {
      fold.add(v.as_double());
    }
  }
  double r = fold.result();
  switch (a.fn) {
    case aggregate_fn::count: return value{static_cast<int64_t>(r)};
    case aggregate_fn::any:
    case aggregate_fn::all: return value{r != 0};
    case aggregate_fn::worst: return value{std::string{to_string(static_cast<severity>(r))}};
    default: return std::isnan(r) ? value{} : value{r};  // no child to aggregate: absent
  }
}

void recompute(twin_actor* self) {
  auto& st = self->state;
  st.recompute_scheduled = false;
  if (!st.exists)
    return;
  auto& rec = st.rec;
  for (const auto& a : rec.type()->aggregates()) {
    auto v = compute_aggregate(a, rec.children());
    auto* cur = rec.get(a.name);
    if (v.is_null())
      rec.erase(a.name);
    else if (cur == nullptr || *cur != v)
      rec.set(a.name, std::move(v), now_ms(), computed_source());
  }
  compute_derived(rec);
  evaluate_alerts(self);
  if (!rec.parent.empty())
    st.notify_parent = true;
  commit(self, nullptr);
}

void schedule_recompute(twin_actor* self) {
  auto& st = self->state;
  if (st.recompute_scheduled)
    return;
  st.recompute_scheduled = true;
  auto delay = st.host->opts.aggregate_delay;
  self->send_self(twin_signal(signal_kind::recompute), delay);
}

void after_reported_change(twin_actor* self, const value_map* reported) {
  auto& st = self->state;
  compute_derived(st.rec);
  evaluate_alerts(self);
  if (!st.rec.parent.empty())
    st.notify_parent = true;
  if (reported != nullptr && !st.rec.desired().empty())
    for (const auto& [k, v] : *reported)
      if (st.rec.desired().count(k) > 0) {
        st.publish_desired = true;
        break;
      }
}

bool upsert_child(live_record& rec, child_state cs) {
  auto& children = rec.mutable_children();
  for (auto& c : children)
    if (c.id == cs.id) {
      if (c.values == cs.values && c.health == cs.health && c.type == cs.type)
        return false;
      c = std::move(cs);
      return true;
    }
  children.push_back(std::move(cs));
  return true;
}

} // namespace twin::runtime::twin_detail
