// The streaming anomaly detector of one property: how new the level of each sample is.

#include "twin/runtime/anomaly.hpp"

#include <algorithm>
#include <cmath>

namespace twin::runtime {

const char* anomaly_options::check() const {
  if (!(sensitivity > 0 && sensitivity <= 1))
    return "sensitivity must be above 0 and at most 1";
  if (warmup < 2 || warmup > 100000)
    return "warmup must be 2 to 100000 samples";
  if (hold > 1000000)
    return "hold must be at most 1000000 samples";
  if (memory < 1 || memory > (1u << 28))
    return "memory must be 1 to 268435456 samples";
  if (!(threshold > 0 && threshold <= 1))
    return "threshold must be above 0 and at most 1";
  return nullptr;
}

anomaly_detector::anomaly_detector(const anomaly_options& opts)
  : threshold_(opts.threshold),
    hold_(opts.hold),
    memory_(opts.memory),
    warmup_(opts.warmup),
    levels_(static_cast<uint16_t>(std::lround(std::pow(2.0, 1 + 4 * opts.sensitivity)))),
    warm_(std::make_unique<double[]>(opts.warmup)) {}

size_t anomaly_detector::bytes() const {
  return sizeof(*this) + (table_ ? sizeof(level) * slots() : 0)
         + (warm_ ? sizeof(double) * warmup_ : 0);
}

int anomaly_detector::level_of(double x) const {
  double k = std::floor((x - lo_) * per_step_);
  if (std::isnan(k))  // only where finite numbers overflow: beyond every level
    return x < lo_ ? -margin : levels_ + margin;
  return static_cast<int>(std::clamp(k, -double{margin}, static_cast<double>(levels_ + margin)));
}

uint32_t anomaly_detector::visit(int k, uint32_t i) {
  auto& l = table_[static_cast<size_t>(k + margin)];
  uint32_t visits = l & ((1u << visit_bits) - 1);
  if (visits > 0 && ((i - (l >> visit_bits)) & sample_mask) > memory_)
    visits = 0;  // forgotten: new again
  l = ((i & sample_mask) << visit_bits) | std::min(visits + 1, familiar);
  return visits;
}

void anomaly_detector::start_levels() {
  auto [lo, hi] = std::minmax_element(warm_.get(), warm_.get() + warmup_);
  // Divided first: the range of two finite extremes may not be finite.
  double step = *hi / levels_ - *lo / levels_;
  if (!(step > 0 && std::isfinite(1 / step)))
    step = std::max(std::fabs(*lo) * 1e-3, 1e-9);
  lo_ = *lo - step / 2;  // the extremes sit mid-level: a hair beyond either is familiar
  per_step_ = 1 / step;
  table_ = std::make_unique<level[]>(slots());
  for (uint32_t i = 0; i < warmup_; ++i)
    visit(level_of(warm_[i]), i);
  warm_.reset();
}

anomaly_sample anomaly_detector::observe(double x) {
  anomaly_sample out;
  if (!std::isfinite(x))
    return out;
  uint32_t i = n_++;
  if (!table_) {
    warm_[i] = x;
    if (i + 1 == warmup_)
      start_levels();
    return out;
  }
  int k = level_of(x);
  out.score = 1.0 - std::min(visit(k, i), familiar) / double{familiar};
  if (out.score < threshold_) {
    if (anomalous_ && i - last_high_ > hold_)
      anomalous_ = false;
    out.anomalous = anomalous_;
    return out;
  }
  last_high_ = i;
  out.anomalous = true;
  if (anomalous_)
    return out;
  anomalous_ = true;
  out.onset = true;
  // What was familiar: the span of the levels visited within memory, this one aside.
  int first = INT32_MAX;
  int last = INT32_MIN;
  for (int j = -margin; j <= levels_ + margin; ++j) {
    auto l = table_[static_cast<size_t>(j + margin)];
    if (j == k || (l & ((1u << visit_bits) - 1)) == 0
        || ((i - (l >> visit_bits)) & sample_mask) > memory_)
      continue;
    first = std::min(first, j);
    last = std::max(last, j);
  }
  if (first <= last) {
    out.low = lo_ + first / per_step_;
    out.high = lo_ + (last + 1) / per_step_;
  } else {
    out.low = out.high = x;
  }
  return out;
}

} // namespace twin::runtime
