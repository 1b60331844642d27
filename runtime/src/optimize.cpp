// Set-points that make a scenario's objective best: a grid, then Nelder-Mead.

#include "twin/runtime/optimize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

caf::error bad(std::string why) {
  return make_error(runtime_errc::invalid_argument, std::move(why));
}

/// How good a candidate is: first how far it breaks the constraints, then its objective
/// (smaller is better on both).
struct score {
  double violation = inf;
  double value = inf;
  bool operator<(const score& o) const {
    return violation < o.violation || (violation == o.violation && value < o.value);
  }
};

double statistic(const std::vector<double>& times, const std::vector<double>& xs,
                 series_stat stat) {
  double last = std::nan("");
  double sum = 0;
  double area = 0;
  size_t n = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    if (std::isnan(xs[k]))
      continue;
    if (!std::isnan(last) && k > 0 && !std::isnan(xs[k - 1]))
      area += (times[k] - times[k - 1]) * (xs[k] + xs[k - 1]) / 2;
    last = xs[k];
    sum += xs[k];
    ++n;
  }
  switch (stat) {
    case series_stat::final: return last;
    case series_stat::integral: return n > 0 ? area : std::nan("");
    default: return n > 0 ? sum / static_cast<double>(n) : std::nan("");
  }
}

class optimizer {
public:
  optimizer(const type_registry& types, const std::vector<twin_record>& twins,
            const optimize_request& req)
    : types_(types), twins_(twins), req_(req), base_(req.scenario) {
    // The objective first, then the bounded series.
    base_.watch = {req.objective};
    for (const auto& b : req.bounds)
      base_.watch.emplace_back(b.twin, b.property);
    base_.watch.insert(base_.watch.end(), req.scenario.watch.begin(), req.scenario.watch.end());
    // Set-points of integer properties take whole values.
    for (const auto& v : req.vary) {
      bool whole = false;
      for (const auto& r : twins)
        if (r.id == v.twin)
          if (auto type = types.find(r.type))
            if (const auto* p = type->property(v.property))
              whole = p->type == property_type::integer;
      integer_.push_back(whole);
    }
  }

  /// Scores the set-points at `u` (each in [0, 1] of its range); the best so far is kept.
  caf::expected<score> eval(std::vector<double> u) {
    for (auto& x : u)
      x = std::clamp(x, 0.0, 1.0);
    std::vector<long> key;
    for (double x : u)
      key.push_back(std::lround(x * 1e6));
    if (auto i = seen_.find(key); i != seen_.end())
      return i->second;
    if (spent())
      return score{};  // the budget is spent: no better than anything run
    auto sc = scenario_at(u);
    auto r = run_scenario(types_, twins_, sc);
    if (!r)
      return r.error();
    if (static_cast<double>(r->twin_steps) * static_cast<double>(req_.max_evaluations)
        > optimize_request::max_work)
      return bad("max_evaluations scenarios of " + std::to_string(r->twin_steps)
                 + " twin-steps each is more than an optimisation runs: shorten the horizon, "
                   "lengthen the step, pick a smaller root or allow fewer evaluations");
    ++evaluations;
    score s;
    s.violation = 0;
    for (size_t b = 0; b < req_.bounds.size(); ++b) {  // over every step
      auto [lo, hi] = r->extremes[b + 1];
      if (req_.bounds[b].min && lo < *req_.bounds[b].min)
        s.violation = std::max(s.violation, *req_.bounds[b].min - lo);
      if (req_.bounds[b].max && hi > *req_.bounds[b].max)
        s.violation = std::max(s.violation, hi - *req_.bounds[b].max);
    }
    if (req_.no_alert)
      for (const auto& a : r->alerts)
        if (a.raised && a.level >= *req_.no_alert)
          s.violation += 1;
    double stat = statistic(r->times, r->series[0], req_.stat);
    s.value = std::isnan(stat) ? inf : req_.maximize ? -stat : stat;
    seen_.emplace(std::move(key), s);
    if (!best_ || s < best_score_) {
      best_score_ = s;
      best_u_ = u;
      best_stat_ = stat;
      best_scenario_ = std::move(sc);
      best_ = std::move(*r);
    }
    return s;
  }

  bool spent() const { return evaluations >= req_.max_evaluations; }

  optimize_result result() {
    optimize_result out;
    for (size_t i = 0; i < req_.vary.size(); ++i)
      out.best.push_back(value_of(i, best_u_[i]));
    out.objective = best_stat_;
    out.feasible = best_score_.violation == 0;
    out.evaluations = evaluations;
    out.best_scenario = std::move(best_scenario_);
    out.result = std::move(*best_);
    return out;
  }

  const std::vector<double>& best_point() const { return best_u_; }
  size_t evaluations = 0;

private:
  double value_of(size_t i, double u) const {
    const auto& v = req_.vary[i];
    double x = v.min + u * (v.max - v.min);
    return integer_[i] ? std::clamp(std::round(x), std::ceil(v.min), std::floor(v.max)) : x;
  }
  scenario_request scenario_at(const std::vector<double>& u) const {
    auto sc = base_;
    for (size_t i = 0; i < req_.vary.size(); ++i)
      sc.changes.push_back(
        {req_.vary[i].twin,
         {{req_.vary[i].property, integer_[i] ? value{static_cast<int64_t>(value_of(i, u[i]))}
                                              : value{value_of(i, u[i])}}},
         {},
         {}});
    return sc;
  }

  const type_registry& types_;
  const std::vector<twin_record>& twins_;
  const optimize_request& req_;
  scenario_request base_;
  std::vector<bool> integer_;  ///< per set-point: of an integer property
  std::map<std::vector<long>, score> seen_;
  std::optional<scenario_result> best_;
  score best_score_;
  std::vector<double> best_u_;
  double best_stat_ = std::nan("");
  scenario_request best_scenario_;
};

/// Nelder-Mead over [0, 1]^n from `start` with a first step of `step`, until the budget is
/// spent or the simplex is smaller than `tolerance`.
caf::error nelder_mead(optimizer& opt, std::vector<double> start, double step, double tolerance) {
  size_t n = start.size();
  std::vector<std::pair<score, std::vector<double>>> simplex;
  auto add = [&](std::vector<double> x) -> caf::error {
    for (auto& c : x)
      c = std::clamp(c, 0.0, 1.0);
    auto s = opt.eval(x);
    if (!s)
      return s.error();
    simplex.emplace_back(*s, std::move(x));
    return {};
  };
  if (auto err = add(start))
    return err;
  for (size_t i = 0; i < n; ++i) {
    if (opt.spent())
      return {};
    auto x = start;
    x[i] += x[i] + step <= 1 ? step : -step;
    if (auto err = add(std::move(x)))
      return err;
  }
  auto size = [&] {
    double d = 0;
    for (size_t v = 1; v < simplex.size(); ++v)
      for (size_t i = 0; i < n; ++i)
        d = std::max(d, std::fabs(simplex[v].second[i] - simplex[0].second[i]));
    return d;
  };
  auto point = [&](const std::vector<double>& c, const std::vector<double>& w, double t) {
    std::vector<double> x(n);
    for (size_t i = 0; i < n; ++i)
      x[i] = std::clamp(c[i] + t * (w[i] - c[i]), 0.0, 1.0);
    return x;
  };
  // Candidates met before cost nothing: the rounds are bounded too.
  for (size_t round = 0; round < 10 * optimize_request::max_budget && !opt.spent()
                         && size() > tolerance;
       ++round) {
    std::sort(simplex.begin(), simplex.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<double> centroid(n, 0.0);
    for (size_t v = 0; v < n; ++v)
      for (size_t i = 0; i < n; ++i)
        centroid[i] += simplex[v].second[i] / static_cast<double>(n);
    auto& worst = simplex.back();
    auto reflected = point(centroid, worst.second, -1);
    auto r = opt.eval(reflected);
    if (!r)
      return r.error();
    if (*r < simplex[0].first) {
      auto expanded = point(centroid, worst.second, -2);
      auto e = opt.eval(expanded);
      if (!e)
        return e.error();
      worst = *e < *r ? std::make_pair(*e, expanded) : std::make_pair(*r, reflected);
      continue;
    }
    if (*r < simplex[n - 1].first) {
      worst = {*r, reflected};
      continue;
    }
    auto contracted = point(centroid, worst.second, 0.5);
    auto c = opt.eval(contracted);
    if (!c)
      return c.error();
    if (*c < worst.first) {
      worst = {*c, contracted};
      continue;
    }
    for (size_t v = 1; v < simplex.size() && !opt.spent(); ++v) {  // shrink toward the best
      simplex[v].second = point(simplex[0].second, simplex[v].second, 0.5);
      auto s = opt.eval(simplex[v].second);
      if (!s)
        return s.error();
      simplex[v].first = *s;
    }
  }
  return {};
}

} // namespace

caf::expected<optimize_result> optimize_scenario(const type_registry& types,
                                                 const std::vector<twin_record>& twins,
                                                 const optimize_request& req) {
  if (req.vary.empty() || req.vary.size() > optimize_request::max_vary)
    return bad("an optimisation varies 1 to " + std::to_string(optimize_request::max_vary)
               + " set-points");
  for (const auto& v : req.vary)
    if (!std::isfinite(v.min) || !std::isfinite(v.max) || !(v.min < v.max))
      return bad("the range of " + v.twin.str() + "/" + v.property
                 + " must be finite, with min below max");
  if (req.max_evaluations < 4 || req.max_evaluations > optimize_request::max_budget)
    return bad("max_evaluations must be 4 to " + std::to_string(optimize_request::max_budget));
  if (req.scenario.watch.size() + req.bounds.size() + 1 > scenario_request::max_watch)
    return bad("too many bounded series");
  optimizer opt{types, twins, req};
  // A grid of k values per set-point, k^n at most half the budget.
  size_t n = req.vary.size();
  size_t k = 2;
  while (k < 9 && static_cast<size_t>(std::pow(k + 1, n)) <= req.max_evaluations / 2)
    ++k;
  std::vector<size_t> at(n, 0);
  for (;;) {
    std::vector<double> u(n);
    for (size_t i = 0; i < n; ++i)
      u[i] = static_cast<double>(at[i]) / static_cast<double>(k - 1);
    if (auto s = opt.eval(u); !s)
      return s.error();
    if (opt.spent())
      break;
    size_t i = 0;
    while (i < n && ++at[i] == k)
      at[i++] = 0;
    if (i == n)
      break;
  }
  if (!opt.spent())
    if (auto err = nelder_mead(opt, opt.best_point(), 0.5 / static_cast<double>(k - 1), 1e-3))
      return err;
  return opt.result();
}

} // namespace twin::runtime
