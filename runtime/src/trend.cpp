// A property's recent trend and when it meets a limit.

#include "twin/runtime/trend.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace twin::runtime {

trend_estimator::trend_estimator(double half_life_s)
  : decay_per_s_(std::log(2.0) / half_life_s) {}

void trend_estimator::add(double t_s, double x) {
  if (!std::isfinite(t_s) || !std::isfinite(x) || (samples_ > 0 && t_s <= last_t_))
    return;
  if (samples_ > 0) {
    // Older samples weigh less, and the origin moves to the new sample (times become
    // t - d): the sums of t and t^2 shift with it.
    double d = t_s - last_t_;
    double f = std::exp(-decay_per_s_ * d);
    w_ *= f;
    w2_ *= f * f;
    t_ *= f;
    x_ *= f;
    tt_ *= f;
    tx_ *= f;
    xx_ *= f;
    tt_ += -2 * d * t_ + d * d * w_;
    t_ -= d * w_;
    tx_ -= d * x_;
  }
  double dx = samples_ > 0 ? x - x0_ : 0;  // relative to the first: squares stay in range
  if (!std::isfinite(dx * dx) || !std::isfinite(tt_)) {  // beyond what the sums hold: anew
    samples_ = 0;
    w_ = w2_ = t_ = x_ = tt_ = tx_ = xx_ = 0;
    dx = 0;
  }
  if (samples_ == 0)
    x0_ = x;
  samples_ = std::min<uint32_t>(samples_, UINT32_MAX - 1) + 1;
  last_t_ = t_s;
  w_ += 1;
  w2_ += 1;
  x_ += dx;
  xx_ += dx * dx;
}

std::optional<limit_projection> trend_estimator::time_to(double limit, bool upper) const {
  if (samples_ < 5)
    return std::nullopt;
  double stt = tt_ - t_ * t_ / w_;  // the spread of the times
  if (!(stt > 0))
    return std::nullopt;
  double slope = (tx_ - t_ * x_ / w_) / stt;
  double now = x0_ + (x_ - slope * t_) / w_;  // the line at the newest sample (t = 0)
  if (upper ? now >= limit : now <= limit)
    return limit_projection{};  // there already
  double gap = std::fabs(limit - now);
  double speed = upper ? slope : -slope;
  // The slope's standard error, with the effective number of samples of the weights; a
  // change over the samples' spread of time that rounding could make is flat.
  double n = w_ * w_ / w2_;
  double sse = xx_ - x_ * x_ / w_ - slope * slope * stt;
  double se = n > 2 && sse > 0 ? std::sqrt(sse / (n - 2) * (n / w_) / stt) : 0;
  double flat = 1e-9 * std::max(1.0, std::fabs(now)) / std::sqrt(stt / w_);
  if (!(speed > std::max(se, flat)))
    return std::nullopt;  // flat, moving away, or not clearly approaching
  limit_projection p;
  p.eta_s = gap / speed;
  p.low_s = gap / (speed + 2 * se);
  p.high_s = speed > 2 * se ? gap / (speed - 2 * se) : std::numeric_limits<double>::infinity();
  return p;
}

} // namespace twin::runtime
