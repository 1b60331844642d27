// The declared dynamics of a twin type, stepped in simulated time.

#include "twin/runtime/dynamics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace twin::runtime {

namespace {

constexpr double none = std::numeric_limits<double>::quiet_NaN();

double number_of(const value& v) {
  if (v.is_number())
    return v.as_double();
  if (v.is_bool())
    return v.as_bool() ? 1 : 0;
  return none;
}

/// `f` over the places `inputs` of `state`.
double eval_over(const formula& f, const std::vector<int>& inputs, const dynamics_state& state) {
  thread_local std::vector<double> args;
  args.clear();
  for (int i : inputs)
    args.push_back(state[static_cast<size_t>(i)]);
  return f.eval(args.data());
}

} // namespace

dynamics_state dynamics_state_of(const twin_type& type, const value_map& reported,
                                 const value_map& desired) {
  const auto& props = type.properties();
  dynamics_state state(2 * props.size(), none);
  for (size_t i = 0; i < props.size(); ++i) {
    if (auto r = reported.find(props[i].name); r != reported.end())
      state[i] = number_of(r->second);
    if (auto d = desired.find(props[i].name); d != desired.end())
      state[props.size() + i] = number_of(d->second);
  }
  return state;
}

void step_dynamics(const twin_type& type, dynamics_state& state, double dt_s,
                   std::mt19937_64* rng) {
  const auto& dynamics = type.dynamics();
  const auto& props = type.properties();
  thread_local std::vector<double> next;
  next.clear();
  for (const auto& d : dynamics) {
    double x = state[static_cast<size_t>(d.position)];
    double e = eval_over(d.expr, d.inputs, state);
    if (std::isfinite(e)) {
      if (d.lag_s > 0)
        x = std::isnan(x) ? e : x + (e - x) * std::min(1.0, dt_s / d.lag_s);
      else
        x += e * dt_s;  // no value stays none
    }
    next.push_back(x);
  }
  std::normal_distribution<double> unit{0.0, 1.0};
  for (size_t k = 0; k < dynamics.size(); ++k) {
    const auto& d = dynamics[k];
    double x = next[k];
    if (rng != nullptr && d.noise > 0 && std::isfinite(x))
      x += d.noise * std::sqrt(dt_s) * unit(*rng);
    const auto& spec = props[static_cast<size_t>(d.position)];
    if (spec.min && x < *spec.min)
      x = *spec.min;
    if (spec.max && x > *spec.max)
      x = *spec.max;
    state[static_cast<size_t>(d.position)] = x;
  }
  compute_derived(type, state);
}

void compute_derived(const twin_type& type, dynamics_state& state) {
  for (const auto& d : type.derived()) {
    double r = eval_over(d.expr, d.inputs, state);
    state[static_cast<size_t>(d.position)] = std::isfinite(r) ? r : none;
  }
}

} // namespace twin::runtime
