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
  if (memory < 1 || memory > (1u << 30))
    return "memory must be 1 to 1073741824 samples";
  if (!(threshold > 0 && threshold <= 1))
    return "threshold must be above 0 and at most 1";
  return nullptr;
}

anomaly_detector::anomaly_detector(const anomaly_options& opts)
  : opts_(opts),
    levels_(static_cast<int>(std::lround(std::pow(2.0, 1 + 4 * opts.sensitivity)))) {
  warm_.reserve(opts_.warmup);
}

size_t anomaly_detector::bytes() const {
  size_t table = table_ ? sizeof(level) * static_cast<size_t>(levels_ + 2 * margin) : 0;
  return sizeof(*this) + table + warm_.capacity() * sizeof(float);
}

int anomaly_detector::level_of(double x) const {
  double k = std::floor((x - lo_) / step_);
  return static_cast<int>(std::clamp(k, -static_cast<double>(margin), static_cast<double>(levels_ + margin - 1)));
}

uint32_t anomaly_detector::visit(int k, uint32_t i) {
  auto& l = table_[static_cast<size_t>(k + margin)];
  if (l.visits > 0 && i - l.last > opts_.memory)
    l.visits = 0;  // forgotten: new again
  auto before = l.visits;
  l.last = i;
  l.visits = std::min<uint32_t>(l.visits, UINT32_MAX - 1) + 1;
  return before;
}

void anomaly_detector::start_levels() {
  auto [lo, hi] = std::minmax_element(warm_.begin(), warm_.end());
  lo_ = *lo;
  double range = double{*hi} - double{*lo};
  step_ = range > 0 ? range / levels_ : std::max(std::fabs(lo_) * 1e-3, 1e-9);
  table_ = std::make_unique<level[]>(static_cast<size_t>(levels_ + 2 * margin));
  uint32_t i = 0;
  for (float x : warm_)
    visit(level_of(x), i++);
  std::vector<float>{}.swap(warm_);
}

anomaly_sample anomaly_detector::observe(double x) {
  anomaly_sample out;
  if (!std::isfinite(x))
    return out;
  uint32_t i = n_++;
  if (!table_) {
    warm_.push_back(static_cast<float>(x));
    if (warm_.size() >= opts_.warmup)
      start_levels();
    return out;
  }
  int k = level_of(x);
  out.score = 1.0 / (1.0 + visit(k, i));
  if (out.score < opts_.threshold) {
    if (anomalous_ && i - last_high_ > opts_.hold)
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
  for (int j = -margin; j < levels_ + margin; ++j) {
    const auto& l = table_[static_cast<size_t>(j + margin)];
    if (j == k || l.visits == 0 || i - l.last > opts_.memory)
      continue;
    first = std::min(first, j);
    last = std::max(last, j);
  }
  if (first <= last) {
    out.low = lo_ + first * step_;
    out.high = lo_ + (last + 1) * step_;
  } else {
    out.low = out.high = x;
  }
  return out;
}

} // namespace twin::runtime
