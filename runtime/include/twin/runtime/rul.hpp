#pragma once

// Remaining useful life (RUL) learned from a fleet: a model fitted on the histories of
// twins that ran until they failed, and the state each live twin keeps to apply it.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace twin::runtime {

/// How a RUL model is fitted.
struct rul_options {
  /// The RUL of a healthy twin, in seconds: a twin's life before its last `cap_s` seconds
  /// is learned as `cap_s` left (a twin shows no sign of its end that early).
  double cap_s = 125;
  /// The samples over which each input is smoothed (see `rul_features`).
  double half_life = 10;
  /// Of the cross-validation, by twin (at most the number of twins).
  uint32_t folds = 5;

  /// Returns what is wrong with the options, empty if nothing.
  std::string check() const;
};

/// What a twin's inputs say of its remaining life, in seconds: the estimate and an
/// interval holding 80 % of the cross-validation's errors at that estimate.
struct rul_estimate {
  double rul_s = 0;
  double low_s = 0;
  double high_s = 0;
};

/// The smoothed state of a twin's inputs: per input, a level and a trend per sample
/// (Holt's linear exponential smoothing, the level's weight `1 - 2^(-1/half_life)`, the
/// trend's half of it), 16 bytes an input. Fed one sample of every input at a time; a
/// twin's first sample sets the levels. Not thread-safe: one owner feeds it.
class rul_features {
public:
  rul_features() = default;
  explicit rul_features(size_t inputs);

  size_t inputs() const { return inputs_; }
  /// Samples added.
  uint64_t samples() const { return samples_; }
  /// The weight of a new sample in the level for a half-life of `half_life` samples.
  static double weight(double half_life);
  /// Adds one sample: `x[i]` the value of input i; `weight` from `weight()`.
  void add(const double* x, double weight);
  /// The features: level then trend of each input.
  const double* values() const { return state_.get(); }
  size_t size() const { return 2 * inputs_; }

private:
  size_t inputs_ = 0;
  uint64_t samples_ = 0;
  std::unique_ptr<double[]> state_;  ///< levels, then trends
};

/// One twin run until it failed: its samples of the model's inputs in time order, each
/// input carrying its last value forward to the samples that lack it. Its end of life is
/// its last sample.
struct rul_run {
  std::string twin;
  std::vector<int64_t> ts_ms;
  std::vector<double> values;  ///< row by row: `ts_ms.size()` rows of one value per input
};

/// A twin's samples of some inputs, as a run: `series[i]` holds input i's samples (time,
/// value) by time; the run's rows are the union of their times from the first at which
/// every input has a value, each input carrying its last value forward.
rul_run merge_inputs(std::string twin,
                     const std::vector<std::vector<std::pair<int64_t, double>>>& series);

/// How well a model did on the twins it was not fitted on.
struct rul_fit_report {
  uint32_t twins = 0;     ///< run-to-failure twins fitted on
  uint64_t samples = 0;   ///< their samples
  uint32_t folds = 0;     ///< of the cross-validation
  double cv_rmse_s = 0;   ///< root mean square error over every held-out sample
  double cv_mae_s = 0;    ///< mean absolute error, likewise
  double cv_bias_s = 0;   ///< mean of estimate - truth (below 0: early)
};

/// A fitted model: ridge regression of the capped RUL on the features of `rul_features`
/// and their squares (standardised), an intercept, and the errors of the cross-validation
/// by band of the estimate for the interval. Immutable once made; shared by the twins of
/// its type.
class rul_model {
public:
  std::string type;                 ///< the twin type it serves
  std::vector<std::string> inputs;  ///< the properties it reads, in order
  rul_options options;
  rul_fit_report report;
  uint64_t version = 0;             ///< 1 for a type's first model, +1 per fit
  int64_t fitted_ms = 0;
  std::string selection_prefix;     ///< the run-to-failure twins: ids starting with this
  std::string selection_type;       ///< and of this type
  bool retired = false;             ///< removed: kept only so that versions go on rising

  /// The positions of `inputs` in the type's properties (set by whoever installs it).
  std::vector<int> positions;

  /// The estimate for a twin whose inputs are in `f` (which has `inputs.size()` inputs).
  rul_estimate estimate(const rul_features& f) const;
  /// The weight with which `rul_features` adds a sample for this model.
  double weight() const { return rul_features::weight(options.half_life); }

  /// The model's bytes, as stored; `decode` reads them back (without `positions`).
  std::string encode() const;
  static caf::expected<rul_model> decode(std::string_view bytes);

private:
  friend caf::expected<rul_model> fit_rul(const std::vector<rul_run>&,
                                          const std::vector<std::string>&, const rul_options&);
  static constexpr size_t bands = 5;  ///< of the estimate, over [0, cap_s]

  std::vector<double> mean_, inv_scale_;  ///< of each feature: the mean, 1 / its deviation
  std::vector<double> weights_;       ///< intercept, then one per standardised column
  std::vector<double> low_, high_;    ///< per band: error quantiles 10 % and 90 %
};

/// Fits a model of `inputs` on `runs` (at least 2 twins with 2 samples each, else
/// `invalid_argument`), cross-validated over folds of whole twins. The returned model
/// has no type, version or selection yet.
caf::expected<rul_model> fit_rul(const std::vector<rul_run>& runs,
                                 const std::vector<std::string>& inputs,
                                 const rul_options& opts);

} // namespace twin::runtime
