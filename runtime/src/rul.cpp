#include "twin/runtime/rul.hpp"

#include <algorithm>
#include <cmath>

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/io.h>

#include "capnp_values.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/schema/twin.capnp.h"

namespace twin::runtime {

namespace {

/// The ridge penalty of the coefficients (not the intercept), on standardised columns.
constexpr double ridge = 1.0;
/// Errors a band of the estimate needs for its own interval; with fewer it takes all.
constexpr size_t min_band_errors = 20;

/// The feature rows of some runs, with their targets and the run each row is of.
struct rows {
  size_t width = 0;          ///< features a row
  std::vector<double> x;     ///< row by row
  std::vector<double> y;     ///< capped RUL, seconds
  std::vector<uint32_t> run;
};

rows feature_rows(const std::vector<rul_run>& runs, size_t inputs, const rul_options& opts) {
  rows out;
  out.width = 2 * inputs;
  for (uint32_t r = 0; r < runs.size(); ++r) {
    const auto& run = runs[r];
    rul_features f{inputs};
    int64_t end = run.ts_ms.back();
    double weight = rul_features::weight(opts.half_life);
    for (size_t i = 0; i < run.ts_ms.size(); ++i) {
      f.add(run.values.data() + i * inputs, weight);
      out.x.insert(out.x.end(), f.values(), f.values() + f.size());
      out.y.push_back(std::min(static_cast<double>(end - run.ts_ms[i]) / 1000, opts.cap_s));
      out.run.push_back(r);
    }
  }
  return out;
}

/// Solves `a x = b` for a symmetric positive definite `a` (n by n, overwritten) by
/// Cholesky's method; false if `a` is not positive definite.
bool solve_spd(std::vector<double>& a, std::vector<double>& b, size_t n) {
  for (size_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (size_t k = 0; k < j; ++k)
      d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0))
      return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (size_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (size_t k = 0; k < j; ++k)
        s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
  }
  for (size_t i = 0; i < n; ++i) {  // L z = b
    double s = b[i];
    for (size_t k = 0; k < i; ++k)
      s -= a[i * n + k] * b[k];
    b[i] = s / a[i * n + i];
  }
  for (size_t i = n; i-- > 0;) {  // L' x = z
    double s = b[i];
    for (size_t k = i + 1; k < n; ++k)
      s -= a[k * n + i] * b[k];
    b[i] = s / a[i * n + i];
  }
  return true;
}

/// The regression's value at features `f` (`width` of them), unclipped: `weights` are the
/// intercept, then one per standardised feature, then one per square.
double regress(const double* f, const double* mean, const double* inv_scale,
               const double* weights, size_t width) {
  double s = weights[0];
  for (size_t j = 0; j < width; ++j) {
    double z = (f[j] - mean[j]) * inv_scale[j];
    s += z * (weights[1 + j] + z * weights[1 + width + j]);
  }
  return s;
}

/// A regression fitted on some rows.
struct regression {
  std::vector<double> mean, inv_scale, weights;

  double operator()(const double* f) const {
    return regress(f, mean.data(), inv_scale.data(), weights.data(), mean.size());
  }
};

/// Fits a regression on the rows whose run `use` accepts.
template <class Use>
caf::expected<regression> fit_rows(const rows& data, Use use) {
  size_t w = data.width;
  size_t n = data.y.size();
  regression out;
  out.mean.assign(w, 0);
  out.inv_scale.assign(w, 0);
  size_t count = 0;
  for (size_t i = 0; i < n; ++i)
    if (use(data.run[i])) {
      ++count;
      for (size_t j = 0; j < w; ++j)
        out.mean[j] += data.x[i * w + j];
    }
  for (auto& m : out.mean)
    m /= static_cast<double>(count);
  for (size_t i = 0; i < n; ++i)
    if (use(data.run[i]))
      for (size_t j = 0; j < w; ++j) {
        double d = data.x[i * w + j] - out.mean[j];
        out.inv_scale[j] += d * d;
      }
  for (auto& s : out.inv_scale) {
    s = std::sqrt(s / static_cast<double>(count));
    s = s > 1e-12 ? 1 / s : 0;  // a constant feature weighs nothing
  }
  size_t d = 1 + 2 * w;
  std::vector<double> gram(d * d, 0), rhs(d, 0), a(d);
  for (size_t i = 0; i < n; ++i) {
    if (!use(data.run[i]))
      continue;
    a[0] = 1;
    for (size_t j = 0; j < w; ++j) {
      double z = (data.x[i * w + j] - out.mean[j]) * out.inv_scale[j];
      a[1 + j] = z;
      a[1 + w + j] = z * z;
    }
    for (size_t p = 0; p < d; ++p) {
      rhs[p] += a[p] * data.y[i];
      for (size_t q = 0; q <= p; ++q)
        gram[p * d + q] += a[p] * a[q];
    }
  }
  for (size_t p = 0; p < d; ++p) {
    for (size_t q = 0; q < p; ++q)
      gram[q * d + p] = gram[p * d + q];
    gram[p * d + p] += p == 0 ? 1e-9 : ridge;
  }
  if (!solve_spd(gram, rhs, d))
    return make_error(runtime_errc::invalid_argument,
                      "the inputs' samples cannot be fitted (too few, or not numbers)");
  out.weights = std::move(rhs);
  return out;
}

double quantile(std::vector<double>& v, double q) {
  auto k = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

} // namespace

std::string rul_options::check() const {
  if (!(cap_s > 0 && cap_s <= 1e10))
    return "cap_s must be above 0 seconds (and at most 1e10)";
  if (!(half_life >= 1 && half_life <= 1e6))
    return "half_life_samples must be from 1 to 1e6";
  if (folds < 2 || folds > 100)
    return "folds must be from 2 to 100";
  return {};
}

rul_features::rul_features(size_t inputs)
  : inputs_(inputs), state_(std::make_unique<double[]>(2 * inputs)) {
}

rul_run merge_inputs(std::string twin,
                     const std::vector<std::vector<std::pair<int64_t, double>>>& series) {
  std::vector<int64_t> times;
  for (const auto& s : series)
    for (const auto& sample : s)
      times.push_back(sample.first);
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  rul_run run;
  run.twin = std::move(twin);
  std::vector<size_t> next(series.size(), 0);
  std::vector<double> row(series.size());
  for (int64_t t : times) {
    bool all = true;
    for (size_t i = 0; i < series.size(); ++i) {
      const auto& s = series[i];
      while (next[i] < s.size() && s[next[i]].first <= t)
        row[i] = s[next[i]++].second;
      all = all && next[i] > 0;
    }
    if (!all)
      continue;
    run.ts_ms.push_back(t);
    run.values.insert(run.values.end(), row.begin(), row.end());
  }
  return run;
}

double rul_features::weight(double half_life) {
  return 1 - std::exp2(-1 / half_life);
}

void rul_features::add(const double* x, double weight) {
  double* level = state_.get();
  double* trend = level + inputs_;
  if (samples_++ == 0) {
    std::copy(x, x + inputs_, level);
    std::fill(trend, trend + inputs_, 0.0);
    return;
  }
  double a = weight;
  double b = a / 2;
  for (size_t i = 0; i < inputs_; ++i) {
    double next = a * x[i] + (1 - a) * (level[i] + trend[i]);
    trend[i] = b * (next - level[i]) + (1 - b) * trend[i];
    level[i] = next;
  }
}

rul_estimate rul_model::estimate(const rul_features& f) const {
  double cap = options.cap_s;
  double e = std::clamp(regress(f.values(), mean_.data(), inv_scale_.data(), weights_.data(),
                                mean_.size()),
                        0.0, cap);
  auto band = std::min(bands - 1, static_cast<size_t>(e / cap * bands));
  return {e, std::clamp(e + low_[band], 0.0, e), std::clamp(e + high_[band], e, cap)};
}

caf::expected<rul_model> fit_rul(const std::vector<rul_run>& runs,
                                 const std::vector<std::string>& inputs,
                                 const rul_options& opts) {
  if (auto why = opts.check(); !why.empty())
    return make_error(runtime_errc::invalid_argument, why);
  size_t k = inputs.size();
  size_t usable = std::count_if(runs.begin(), runs.end(), [](const rul_run& r) {
    return r.ts_ms.size() >= 2;
  });
  if (usable < 2 || usable != runs.size())
    return make_error(runtime_errc::invalid_argument,
                      "a fit needs at least 2 run-to-failure twins, each with 2 samples or "
                      "more; " + std::to_string(usable) + " of "
                        + std::to_string(runs.size()) + " have them");
  auto data = feature_rows(runs, k, opts);
  auto folds = std::min<uint32_t>(opts.folds, static_cast<uint32_t>(runs.size()));
  // Cross-validation: run r is held out in fold r % folds.
  std::vector<double> estimate(data.y.size());
  for (uint32_t fold = 0; fold < folds; ++fold) {
    auto r = fit_rows(data, [&](uint32_t run) { return run % folds != fold; });
    if (!r)
      return r.error();
    for (size_t i = 0; i < data.y.size(); ++i)
      if (data.run[i] % folds == fold)
        estimate[i] = std::clamp((*r)(data.x.data() + i * data.width), 0.0, opts.cap_s);
  }
  auto all = fit_rows(data, [](uint32_t) { return true; });
  if (!all)
    return all.error();
  rul_model m;
  m.inputs = inputs;
  m.options = opts;
  m.mean_ = std::move(all->mean);
  m.inv_scale_ = std::move(all->inv_scale);
  m.weights_ = std::move(all->weights);
  std::vector<std::vector<double>> errors(rul_model::bands + 1);  // the last: all
  double sq = 0, abs = 0, bias = 0;
  for (size_t i = 0; i < estimate.size(); ++i) {
    double e = data.y[i] - estimate[i];
    sq += e * e;
    abs += std::fabs(e);
    bias -= e;
    auto band = std::min(rul_model::bands - 1,
                         static_cast<size_t>(estimate[i] / opts.cap_s * rul_model::bands));
    errors[band].push_back(e);
    errors.back().push_back(e);
  }
  auto n = static_cast<double>(estimate.size());
  m.report = rul_fit_report{static_cast<uint32_t>(runs.size()), estimate.size(), folds,
                            std::sqrt(sq / n), abs / n, bias / n};
  for (size_t b = 0; b < rul_model::bands; ++b) {
    auto& e = errors[b].size() >= min_band_errors ? errors[b] : errors.back();
    m.low_.push_back(quantile(e, 0.1));
    m.high_.push_back(quantile(e, 0.9));
  }
  return m;
}

namespace {

using capn::str;
using capn::text;

std::vector<double> numbers(capnp::List<double>::Reader in) {
  std::vector<double> out;
  out.reserve(in.size());
  for (double x : in)
    out.push_back(x);
  return out;
}

void set_numbers(capnp::List<double>::Builder out, const std::vector<double>& v) {
  for (unsigned i = 0; i < v.size(); ++i)
    out.set(i, v[i]);
}

} // namespace

std::string rul_model::encode() const {
  capnp::MallocMessageBuilder msg;
  auto r = msg.initRoot<schema::RulModel>();
  r.setType(text(type));
  r.setVersion(version);
  r.setFittedMs(fitted_ms);
  auto names = r.initInputs(static_cast<unsigned>(inputs.size()));
  for (unsigned i = 0; i < inputs.size(); ++i)
    names.set(i, text(inputs[i]));
  r.setCapS(options.cap_s);
  r.setHalfLife(options.half_life);
  r.setFolds(options.folds);
  r.setSelectionPrefix(text(selection_prefix));
  r.setSelectionType(text(selection_type));
  r.setTwins(report.twins);
  r.setSamples(report.samples);
  r.setCvRmseS(report.cv_rmse_s);
  r.setCvMaeS(report.cv_mae_s);
  r.setCvBiasS(report.cv_bias_s);
  set_numbers(r.initMean(static_cast<unsigned>(mean_.size())), mean_);
  set_numbers(r.initScale(static_cast<unsigned>(inv_scale_.size())), inv_scale_);
  set_numbers(r.initWeights(static_cast<unsigned>(weights_.size())), weights_);
  set_numbers(r.initLow(static_cast<unsigned>(low_.size())), low_);
  set_numbers(r.initHigh(static_cast<unsigned>(high_.size())), high_);
  r.setRetired(retired);
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

caf::expected<rul_model> rul_model::decode(std::string_view bytes) {
  rul_model m;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::PackedMessageReader reader{in};
    auto r = reader.getRoot<schema::RulModel>();
    m.type = str(r.getType());
    m.version = r.getVersion();
    m.fitted_ms = r.getFittedMs();
    for (auto name : r.getInputs())
      m.inputs.push_back(str(name));
    m.options.cap_s = r.getCapS();
    m.options.half_life = r.getHalfLife();
    m.options.folds = r.getFolds();
    m.selection_prefix = str(r.getSelectionPrefix());
    m.selection_type = str(r.getSelectionType());
    m.report = rul_fit_report{r.getTwins(), r.getSamples(),
                              std::min(r.getFolds(), r.getTwins()), r.getCvRmseS(),
                              r.getCvMaeS(), r.getCvBiasS()};
    m.mean_ = numbers(r.getMean());
    m.inv_scale_ = numbers(r.getScale());
    m.weights_ = numbers(r.getWeights());
    m.low_ = numbers(r.getLow());
    m.high_ = numbers(r.getHigh());
    m.retired = r.getRetired();
  });
  size_t w = 2 * m.inputs.size();
  bool whole = m.retired
               || (m.mean_.size() == w && m.inv_scale_.size() == w && m.weights_.size() == 1 + 2 * w
                   && m.low_.size() == bands && m.high_.size() == bands && m.options.check().empty());
  if (failure != nullptr || !whole)
    return make_error(runtime_errc::store_corrupt,
                      "a stored RUL model of type '" + m.type + "' cannot be read");
  return m;
}

} // namespace twin::runtime
