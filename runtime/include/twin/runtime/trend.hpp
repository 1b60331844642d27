#pragma once

#include <cstdint>
#include <optional>

namespace twin::runtime {

/// When a trend meets a limit, in seconds from the last sample: `eta_s`, and an interval
/// from the trend's uncertainty (`high_s` is infinite when the slowest plausible trend
/// never gets there).
struct limit_projection {
  double eta_s = 0;
  double low_s = 0;
  double high_s = 0;
};

/// A property's recent trend: a least-squares line through its samples, each weighing half
/// as much for every `half_life_s` seconds it is older than the newest, kept in ten
/// numbers (80 bytes with the options). Where the line meets a limit is `time_to`. Not
/// thread-safe: one owner (the twin's actor) feeds it.
class trend_estimator {
public:
  explicit trend_estimator(double half_life_s = 600);

  /// Adds a sample at `t_s` seconds (any origin); one no newer than the last is ignored.
  void add(double t_s, double x);

  /// When the line, from its value now, reaches `limit` rising to it (`upper`) or falling
  /// to it: 0 if it is there already; the interval takes the slope two standard errors
  /// either way (no high bound when the trend is within two of flat). nullopt before 5
  /// samples, or when the trend does not approach the limit by more than one standard
  /// error.
  std::optional<limit_projection> time_to(double limit, bool upper) const;

private:
  double decay_per_s_;
  double last_t_ = 0;
  double x0_ = 0;  ///< the first sample's value: the others are kept relative to it
  uint32_t samples_ = 0;
  // Weighted sums, times relative to the newest sample.
  double w_ = 0;    ///< of the weights
  double w2_ = 0;   ///< of the squared weights
  double t_ = 0;
  double x_ = 0;
  double tt_ = 0;
  double tx_ = 0;
  double xx_ = 0;
};

} // namespace twin::runtime
