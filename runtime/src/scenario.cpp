// What-if scenarios: a copy of a subtree run forward in virtual time through its types'
// dynamics, aggregates, derived properties, alerts and health.

#include "twin/runtime/scenario.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <random>

#include "aggregate_fold.hpp"
#include "twin/runtime/dynamics.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::runtime {

namespace {

constexpr double none = std::numeric_limits<double>::quiet_NaN();

caf::error bad(std::string why) {
  return make_error(runtime_errc::invalid_argument, std::move(why));
}

std::string number_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

bool numeric(property_type t) {
  return t == property_type::real || t == property_type::integer
         || t == property_type::boolean;
}

/// A twin of the scenario: its state, where it sits in the tree, and its alerts.
struct sim_twin {
  const twin_record* rec = nullptr;
  const twin_type* type = nullptr;
  dynamics_state s;
  value_map others;  ///< its reported values that are not numbers (unchanged by steps)
  int parent = -1;
  std::vector<int> children;
  /// Per aggregate of its type, per child: where the child keeps the source (-1: none).
  std::vector<std::vector<int>> sources;
  std::vector<int> aggregate_at;  ///< per aggregate of its type: its own position
  std::vector<bool> alerts_on;  ///< per alert of its type
  severity own = severity::ok;  ///< the worst of its own active alerts
  int health = -1;              ///< the position of `health`
};

class scenario {
public:
  scenario(const type_registry& types, const scenario_request& req) : types_(types), req_(req) {
    if (req.noise_seed)
      rng_.emplace(*req.noise_seed);
  }

  caf::error load(const std::vector<twin_record>& twins);
  caf::error apply(const scenario_change& c);
  caf::expected<std::vector<std::pair<int, int>>> watched() const;
  /// Recomputes every twin (leaves first); with `dt` > 0, after stepping its dynamics.
  void step(double dt, double t);
  void finish(scenario_result& out) const;

  std::vector<scenario_alert> alerts;
  size_t size() const { return order_.size(); }
  double value_at(std::pair<int, int> w) const {
    return twins_[static_cast<size_t>(w.first)].s[static_cast<size_t>(w.second)];
  }

private:
  void roll_up(sim_twin& x);
  void evaluate_alerts(sim_twin& x, double t);
  /// The value of `name` for an alert's condition (kept in `scratch_` until the next twin).
  const value* read(const sim_twin& x, std::string_view name);
  int find(const twin_id& id) const {
    auto i = index_.find(id);
    return i == index_.end() ? -1 : i->second;
  }

  const type_registry& types_;
  const scenario_request& req_;
  std::vector<sim_twin> twins_;
  std::map<twin_id, int> index_;
  std::vector<int> order_;  ///< leaves first: every child before its parent
  std::vector<bool> in_tree_;  ///< per twin: under the root
  std::deque<value> scratch_;  ///< stable addresses for the values a condition reads
  std::optional<std::mt19937_64> rng_;  ///< the noise's, given a seed
  bool started_ = false;
};

caf::error scenario::load(const std::vector<twin_record>& records) {
  for (const auto& r : records) {
    auto type = types_.find(r.type);
    if (!type)
      return bad("twin " + r.id.str() + " has type '" + r.type + "', which no model defines");
    sim_twin x;
    x.rec = &r;
    x.type = type.get();
    x.s = dynamics_state_of(*type, r.reported, r.desired);
    for (const auto& [k, v] : r.reported)
      if (!v.is_number() && !v.is_bool())
        x.others.emplace(k, v);
    x.alerts_on.assign(type->alerts().size(), false);
    x.health = type->index_of("health");
    index_.emplace(r.id, static_cast<int>(twins_.size()));
    twins_.push_back(std::move(x));
  }
  int root = find(req_.root);
  if (root < 0)
    return bad("no twin " + req_.root.str() + " to run a scenario on");
  for (size_t i = 0; i < twins_.size(); ++i) {
    int p = static_cast<int>(i) == root ? -1 : find(twins_[i].rec->parent);
    twins_[i].parent = p;
    if (p >= 0)
      twins_[static_cast<size_t>(p)].children.push_back(static_cast<int>(i));
  }
  // Breadth first from the root, then reversed: children before parents. Twins not
  // under the root are left out.
  std::vector<int> bfs{root};
  for (size_t k = 0; k < bfs.size(); ++k)
    for (int c : twins_[static_cast<size_t>(bfs[k])].children)
      bfs.push_back(c);
  order_.assign(bfs.rbegin(), bfs.rend());
  in_tree_.assign(twins_.size(), false);
  for (int i : order_)
    in_tree_[static_cast<size_t>(i)] = true;
  if (order_.size() > scenario_request::max_twins)
    return bad("the subtree has " + std::to_string(order_.size()) + " twins; a scenario runs "
               + std::to_string(scenario_request::max_twins) + " at most");
  for (int i : order_) {
    auto& x = twins_[static_cast<size_t>(i)];
    for (const auto& a : x.type->aggregates()) {
      // Where each child keeps the source, if it is of the kind the function folds (as the
      // live roll-up takes it: severities for worst, numbers and booleans for any and all,
      // numbers for the others).
      std::vector<int> src;
      for (int c : x.children) {
        const auto& child = twins_[static_cast<size_t>(c)];
        int at = a.source.empty() ? -1 : child.type->index_of(a.source);
        auto t = at < 0 ? property_type::object : child.type->properties()[static_cast<size_t>(at)].type;
        bool kind = a.fn == aggregate_fn::worst ? t == property_type::string
                    : a.fn == aggregate_fn::any || a.fn == aggregate_fn::all
                      ? numeric(t)
                      : t == property_type::real || t == property_type::integer;
        src.push_back(kind ? at : -1);
      }
      x.sources.push_back(std::move(src));
      x.aggregate_at.push_back(x.type->index_of(a.name));
    }
  }
  return {};
}

caf::error scenario::apply(const scenario_change& c) {
  int i = find(c.twin);
  if (i < 0 || !in_tree_[static_cast<size_t>(i)])
    return bad("twin " + c.twin.str() + " is not in the subtree of " + req_.root.str());
  auto& x = twins_[static_cast<size_t>(i)];
  const auto& props = x.type->properties();
  auto set_desired = [&](sim_twin& t, const value_map& desired) -> caf::error {
    if (auto err = t.type->check_desired(desired))
      return bad("twin " + t.rec->id.str() + ": " + error_message(err));
    for (const auto& [k, v] : desired) {
      auto at = static_cast<size_t>(t.type->index_of(k));
      t.s[t.type->properties().size() + at] =
        v.is_number() ? v.as_double() : v.is_bool() ? (v.as_bool() ? 1 : 0) : none;
    }
    return {};
  };
  if (auto err = set_desired(x, c.desired))
    return err;
  if (auto err = x.type->check_reported(c.properties))
    return bad("twin " + c.twin.str() + ": " + error_message(err));
  for (const auto& [k, v] : c.properties) {
    auto at = static_cast<size_t>(x.type->index_of(k));
    if (numeric(props[at].type)) {
      x.s[at] = v.is_number() ? v.as_double() : v.is_bool() ? (v.as_bool() ? 1 : 0) : none;
    } else {
      x.others.erase(k);
      if (!v.is_null())
        x.others.emplace(k, v);
    }
  }
  if (c.command.empty())
    return {};
  const auto* cmd = x.type->command(c.command);
  if (cmd == nullptr)
    return bad("type '" + x.type->name() + "' has no command '" + c.command + "'");
  for (const auto& e : cmd->effects) {
    if (e.child_type.empty()) {
      if (auto err = set_desired(x, e.desired))
        return err;
      continue;
    }
    for (int ci : x.children) {
      auto& child = twins_[static_cast<size_t>(ci)];
      if (e.child_type == "*" || child.type->name() == e.child_type)
        if (auto err = set_desired(child, e.desired))
          return err;
    }
  }
  return {};
}

caf::expected<std::vector<std::pair<int, int>>> scenario::watched() const {
  std::vector<std::pair<int, int>> out;
  for (const auto& [id, property] : req_.watch) {
    int i = find(id);
    if (i < 0 || !in_tree_[static_cast<size_t>(i)])
      return bad("watched twin " + id.str() + " is not in the subtree of " + req_.root.str());
    const auto& x = twins_[static_cast<size_t>(i)];
    int at = x.type->index_of(property);
    if (at < 0)
      return bad("type '" + x.type->name() + "' has no property '" + property + "'");
    const auto& p = x.type->properties()[static_cast<size_t>(at)];
    if (!numeric(p.type) && p.name != "health" && !(p.computed && p.type == property_type::string))
      return bad("'" + property + "' of " + id.str() + " is not a number: it has no series");
    out.emplace_back(i, at);
  }
  return out;
}

void scenario::roll_up(sim_twin& x) {
  const auto& aggregates = x.type->aggregates();
  for (size_t k = 0; k < aggregates.size(); ++k) {
    const auto& a = aggregates[k];
    aggregate_fold fold{a.fn};
    for (size_t j = 0; j < x.children.size(); ++j) {
      const auto& child = twins_[static_cast<size_t>(x.children[j])];
      if (!a.child_type.empty() && child.type->name() != a.child_type)
        continue;
      if (a.source.empty()) {
        fold.member();
        continue;
      }
      int at = x.sources[k][j];
      double v = at < 0 ? none : child.s[static_cast<size_t>(at)];
      if (!std::isnan(v))
        fold.add(v);
    }
    x.s[static_cast<size_t>(x.aggregate_at[k])] = fold.result();
  }
}

const value* scenario::read(const sim_twin& x, std::string_view name) {
  int at = x.type->index_of(name);
  if (at < 0)
    return nullptr;
  const auto& p = x.type->properties()[static_cast<size_t>(at)];
  double v = x.s[static_cast<size_t>(at)];
  if (p.computed && p.type == property_type::string) {  // health and worst: as simulated
    if (std::isnan(v))
      return nullptr;
    scratch_.emplace_back(std::string{to_string(static_cast<severity>(std::lround(v)))});
    return &scratch_.back();
  }
  if (!numeric(p.type)) {
    auto o = x.others.find(name);
    return o == x.others.end() ? nullptr : &o->second;
  }
  if (std::isnan(v))
    return nullptr;
  if (p.type == property_type::boolean)
    scratch_.emplace_back(v != 0);
  else if (p.type == property_type::integer)
    scratch_.emplace_back(static_cast<int64_t>(std::llround(v)));
  else
    scratch_.emplace_back(v);
  return &scratch_.back();
}

void scenario::evaluate_alerts(sim_twin& x, double t) {
  scratch_.clear();
  auto lookup = [this, &x](std::string_view name) { return read(x, name); };
  const auto& rules = x.type->alerts();
  x.own = severity::ok;
  for (size_t k = 0; k < rules.size(); ++k) {
    bool on = rules[k].condition.eval(lookup);
    if (on)
      x.own = std::max(x.own, rules[k].level);
    if (started_ && on != x.alerts_on[k])
      alerts.push_back({t, x.rec->id, rules[k].name, rules[k].level, on});
    x.alerts_on[k] = on;
  }
}

void scenario::step(double dt, double t) {
  for (int i : order_) {
    auto& x = twins_[static_cast<size_t>(i)];
    bool stepped = dt > 0 && !x.type->dynamics().empty();
    if (stepped)  // derived properties included
      step_dynamics(*x.type, x.s, dt, rng_ ? &*rng_ : nullptr);
    if (!x.type->aggregates().empty())
      roll_up(x);
    if (!x.type->derived().empty() && (!stepped || !x.type->aggregates().empty()))
      compute_derived(*x.type, x.s);  // over new aggregates, or changed properties
    evaluate_alerts(x, t);
    if (x.health >= 0) {
      double worst = static_cast<double>(x.own);
      for (int c : x.children) {
        const auto& child = twins_[static_cast<size_t>(c)];
        if (child.health >= 0)
          worst = std::max(worst, child.s[static_cast<size_t>(child.health)]);
      }
      x.s[static_cast<size_t>(x.health)] = worst;
    }
  }
  started_ = true;
}

void scenario::finish(scenario_result& out) const {
  for (int i : order_) {
    const auto& x = twins_[static_cast<size_t>(i)];
    value_map props;
    const auto& specs = x.type->properties();
    for (size_t k = 0; k < specs.size(); ++k) {
      double v = x.s[k];
      if (std::isnan(v))
        continue;
      if (specs[k].type == property_type::string)  // health and worst: severities
        props.emplace(specs[k].name, value{to_string(static_cast<severity>(std::lround(v)))});
      else if (specs[k].type == property_type::boolean)
        props.emplace(specs[k].name, value{v != 0});
      else if (specs[k].type == property_type::integer)
        props.emplace(specs[k].name, value{static_cast<int64_t>(std::llround(v))});
      else
        props.emplace(specs[k].name, value{v});
    }
    out.final_state.emplace_back(x.rec->id, std::move(props));
  }
}

} // namespace

caf::expected<scenario_result> run_scenario(const type_registry& types,
                                            const std::vector<twin_record>& twins,
                                            const scenario_request& req) {
  if (!(req.step_s > 0) || !(req.horizon_s > 0) || !std::isfinite(req.horizon_s))
    return bad("horizon_s and step_s must be above 0");
  double steps = std::ceil(req.horizon_s / req.step_s - 1e-9);
  if (steps > scenario_request::max_steps)
    return bad("a horizon of " + number_text(req.horizon_s) + " s in steps of "
               + number_text(req.step_s) + " s is " + number_text(steps)
               + " steps; a scenario runs " + number_text(scenario_request::max_steps)
               + " at most");
  if (req.changes.size() > scenario_request::max_changes)
    return bad("a scenario makes " + std::to_string(scenario_request::max_changes)
               + " changes at most");
  if (req.watch.size() > scenario_request::max_watch)
    return bad("a scenario watches " + std::to_string(scenario_request::max_watch)
               + " series at most");
  scenario sc{types, req};
  if (auto err = sc.load(twins))
    return err;
  if (steps * static_cast<double>(sc.size()) > scenario_request::max_twin_steps)
    return bad(std::to_string(sc.size()) + " twins for " + number_text(steps)
               + " steps is more than " + number_text(scenario_request::max_twin_steps)
               + " twin-steps: shorten the horizon, lengthen the step or pick a smaller root");
  auto watched = sc.watched();
  if (!watched)
    return watched.error();
  sc.step(0, 0);  // the state as it is: its alerts are not news
  for (const auto& c : req.changes)
    if (auto err = sc.apply(c))
      return err;
  scenario_result out;
  auto n = static_cast<uint64_t>(steps);
  uint64_t every = std::max<uint64_t>(1, (n + scenario_request::max_points - 1)
                                           / scenario_request::max_points);
  out.series.resize(watched->size());
  out.extremes.assign(watched->size(), {none, none});
  auto track = [&] {
    for (size_t w = 0; w < watched->size(); ++w) {
      double x = sc.value_at((*watched)[w]);
      auto& [lo, hi] = out.extremes[w];
      if (!std::isnan(x)) {
        lo = std::isnan(lo) ? x : std::min(lo, x);
        hi = std::isnan(hi) ? x : std::max(hi, x);
      }
    }
  };
  auto sample = [&](double t) {
    out.times.push_back(t);
    for (size_t w = 0; w < watched->size(); ++w)
      out.series[w].push_back(sc.value_at((*watched)[w]));
  };
  track();
  sample(0);
  for (uint64_t k = 1; k <= n; ++k) {
    double t = std::min(req.horizon_s, static_cast<double>(k) * req.step_s);
    double dt = t - static_cast<double>(k - 1) * req.step_s;
    sc.step(dt, t);
    track();
    if (k % every == 0 || k == n)
      sample(t);
  }
  out.alerts = std::move(sc.alerts);
  out.twin_steps = n * sc.size();
  sc.finish(out);
  return out;
}

} // namespace twin::runtime
