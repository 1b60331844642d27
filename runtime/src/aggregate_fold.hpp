#pragma once

// One aggregate over a twin's children, folded a child at a time: the live roll-up
// (twin_rollup.cpp) and scenarios (scenario.cpp) share it, so both compute the same.

#include <algorithm>
#include <cstddef>
#include <limits>

#include "twin/runtime/model.hpp"

namespace twin::runtime {

/// Each child adds one number: for sum, avg, min, max and a `count` of a source, the
/// source's number (the caller leaves out children whose source is not a number); for any
/// and all its truth (1 or 0); for worst its severity (0 ok, 1 warning, 2 critical).
/// `member` counts a child for a `count` without a source.
class aggregate_fold {
public:
  explicit aggregate_fold(aggregate_fn fn) : fn_(fn) {}

  void add(double x) {
    lo_ = n_ == 0 ? x : std::min(lo_, x);
    hi_ = n_ == 0 ? x : std::max(hi_, x);
    sum_ += x;
    all_ = all_ && x != 0;
    ++n_;
  }
  void member() { ++n_; }

  /// The aggregate: a count; any and all as 1 or 0; worst as the highest severity (0 with
  /// no child); the others NaN (no value) with no child.
  double result() const {
    switch (fn_) {
      case aggregate_fn::count: return static_cast<double>(n_);
      case aggregate_fn::any: return n_ > 0 && hi_ != 0 ? 1 : 0;
      case aggregate_fn::all: return n_ > 0 && all_ ? 1 : 0;
      case aggregate_fn::worst: return n_ > 0 ? hi_ : 0;
      default: break;
    }
    if (n_ == 0)
      return std::numeric_limits<double>::quiet_NaN();
    switch (fn_) {
      case aggregate_fn::sum: return sum_;
      case aggregate_fn::avg: return sum_ / static_cast<double>(n_);
      case aggregate_fn::min: return lo_;
      default: return hi_;
    }
  }

private:
  aggregate_fn fn_;
  size_t n_ = 0;
  double sum_ = 0;
  double lo_ = 0;
  double hi_ = 0;
  bool all_ = true;
};

} // namespace twin::runtime
