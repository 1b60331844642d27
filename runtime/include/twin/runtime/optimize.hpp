#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/scenario.hpp"

namespace twin::runtime {

/// A set-point an optimisation varies: the desired `property` of `twin`, from `min` to `max`.
struct setpoint {
  twin_id twin;
  std::string property;
  double min = 0;
  double max = 0;
};

/// What an optimisation makes best: a statistic of a series over the horizon.
enum class series_stat : uint8_t { mean, final, integral };

/// A series that must stay within bounds over the horizon.
struct series_bound {
  twin_id twin;
  std::string property;
  std::optional<double> min;
  std::optional<double> max;
};

/// Finds the set-points that make a scenario's objective best within its constraints.
struct optimize_request {
  scenario_request scenario;  ///< what every candidate runs; its changes apply first
  std::vector<setpoint> vary;  ///< 1 to `max_vary`
  std::pair<twin_id, std::string> objective;
  series_stat stat = series_stat::mean;
  bool maximize = false;
  /// No alert of this severity or worse may be raised during the horizon.
  std::optional<severity> no_alert;
  std::vector<series_bound> bounds;
  size_t max_evaluations = 60;  ///< scenarios run at most, 4 to `max_budget`

  static constexpr size_t max_vary = 4;
  static constexpr size_t max_budget = 500;
  /// Twin-steps of all its scenarios together at most (max_evaluations times one's).
  static constexpr double max_work = 1e10;
};

struct optimize_result {
  std::vector<double> best;  ///< per set-point
  double objective = 0;      ///< the statistic at `best`
  bool feasible = false;     ///< `best` meets every constraint
  size_t evaluations = 0;
  scenario_request best_scenario;  ///< the scenario with `best` as changes
  scenario_result result;          ///< what it found
};

/// Optimises `req` over `twins` (as `run_scenario` takes them). The method: a grid of `k`
/// values per set-point (at least 2, k^n at most half the budget when it allows; the
/// budget cuts the grid short otherwise) finds the region, then Nelder-Mead
/// refines from its best point until the simplex is a thousandth of the ranges or the
/// budget is spent. Candidates compare by feasibility first (the sum of how far the bounds
/// are exceeded, over every step, and how many forbidden alerts are raised), then by the
/// objective. Set-points of integer properties take whole values. Errors:
/// those of `run_scenario`, and `invalid_argument` for set-points that are not writable
/// numbers of twins in the subtree, empty ranges, a budget out of bounds, more than
/// `max_work` twin-steps in all.
caf::expected<optimize_result> optimize_scenario(const type_registry& types,
                                                 const std::vector<twin_record>& twins,
                                                 const optimize_request& req);

} // namespace twin::runtime
