#pragma once

#include <random>
#include <vector>

#include "twin/runtime/model.hpp"

namespace twin::runtime {

/// What a type's dynamics step: the value of each of its properties by position in
/// `properties()` (numbers; booleans as 1 and 0; NaN: none), then the desired value of each
/// (NaN: none). A plain vector, so that many twins step without allocating.
using dynamics_state = std::vector<double>;

/// The state of a twin of `type` whose reported and desired values are these.
dynamics_state dynamics_state_of(const twin_type& type, const value_map& reported,
                                 const value_map& desired);

/// Advances `state` by `dt_s` seconds of `type`'s dynamics. Explicit Euler: every target
/// and rate is computed from the state before the step; a lag moves by
/// `(target - x) * min(1, dt / lag)` (a property without a value takes its target), a rate
/// by `rate * dt`. With `rng`, each property's noise is added, a normal step of standard
/// deviation `noise * sqrt(dt)`. Values stay within the property's declared range. The
/// derived properties are computed again on the new state. Thread-safe for distinct states.
void step_dynamics(const twin_type& type, dynamics_state& state, double dt_s,
                   std::mt19937_64* rng = nullptr);

/// Computes the derived properties of `type` over `state` (in the type's order).
void compute_derived(const twin_type& type, dynamics_state& state);

} // namespace twin::runtime
