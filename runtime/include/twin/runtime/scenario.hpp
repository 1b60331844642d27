#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/model.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// What a scenario changes at its start, on one twin of its subtree.
struct scenario_change {
  twin_id twin;
  value_map desired;     ///< desired values to set (null clears one)
  value_map properties;  ///< reported values to set
  std::string command;   ///< a command whose declared effects apply (empty: none)
};

/// A what-if scenario: the subtree under `root`, copied, with `changes` applied, run
/// forward `horizon_s` seconds of virtual time in steps of `step_s`; `watch` names the
/// (twin, property) series to answer.
struct scenario_request {
  twin_id root;
  double horizon_s = 600;
  double step_s = 1;
  std::vector<scenario_change> changes;
  std::vector<std::pair<twin_id, std::string>> watch;
  /// With a seed, the dynamics' noise is added, from a generator seeded so: one run of
  /// what the devices might do. None: without noise, what the model expects.
  std::optional<uint64_t> noise_seed;

  static constexpr size_t max_twins = 100000;
  static constexpr double max_steps = 1e6;       ///< horizon_s / step_s
  static constexpr double max_twin_steps = 1e9;  ///< twins times steps
  static constexpr size_t max_watch = 100;
  static constexpr size_t max_changes = 10000;
  /// Per watched series, besides its start: the points are evenly spaced steps.
  static constexpr size_t max_points = 1000;
};

/// An alert of a twin that a scenario raised or cleared, at `t_s` seconds from its start.
struct scenario_alert {
  double t_s = 0;
  twin_id twin;
  std::string alert;
  severity level = severity::warning;
  bool raised = true;
};

/// What a scenario found.
struct scenario_result {
  std::vector<double> times;                ///< of the points of every series, s from the start
  std::vector<std::vector<double>> series;  ///< per watch, its value at each time (NaN: none)
  /// Per watch, its lowest and highest value over every step (NaN: it had none).
  std::vector<std::pair<double, double>> extremes;
  std::vector<scenario_alert> alerts;       ///< in time order
  /// Every twin's numbers at the end, and its health.
  std::vector<std::pair<twin_id, value_map>> final_state;
  uint64_t twin_steps = 0;
};

/// Runs `req` over `twins`: the records of the root and of everything below it (in any
/// order; twins not under the root are ignored). Each step, leaves first, every twin steps
/// its type's dynamics (with their noise only given a `noise_seed`), then its aggregates over its children, its
/// derived properties, its alerts and its health are computed again, as the live twin
/// would. The records are not changed. Errors (`invalid_argument`, with the reason): the
/// root missing, a horizon or step out of bounds, too many twins or steps, a change or a
/// watch naming a twin outside the subtree, an unknown or non-numeric property, a change
/// its type refuses, an unknown command. Anomaly detectors do not run in scenarios.
caf::expected<scenario_result> run_scenario(const type_registry& types,
                                            const std::vector<twin_record>& twins,
                                            const scenario_request& req);

} // namespace twin::runtime
