#pragma once

// twinctl's what-if scenarios: run one from a file, compare several, or optimise one.

#include <string>
#include <vector>

#include "client.hpp"

namespace twinctl {

/// `twinctl scenario run FILE` (one file) or `compare FILE...`: posts each file's body to
/// POST /v1/scenarios. One scenario prints its watched series (min, mean, max and final
/// value), the alerts it raised and cleared with their times, and its size; several print
/// their series and alerts side by side, a column per file. `as_json` prints the answers.
/// Returns the exit code (of the first failure).
int run_scenarios(client& c, const std::vector<std::string>& files, bool compare, bool as_json);

/// `twinctl scenario optimize FILE`: posts the file's body to POST /v1/scenarios/optimize
/// and prints the best set-points, the objective they reach, and their scenario (as
/// `run` does). `as_json` prints the answer. Returns the exit code.
int run_optimization(client& c, const std::string& file, bool as_json);

} // namespace twinctl
