// The streaming anomaly detectors of a twin's properties: how new the level of each sample
// is.

#include "twin/runtime/anomaly.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <utility>

namespace twin::runtime {

namespace {

constexpr size_t line = 64;

uint16_t levels_of(const anomaly_options& opts) {
  return static_cast<uint16_t>(std::lround(std::pow(2.0, 1 + 4 * opts.sensitivity)));
}

} // namespace

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

anomaly_bank::anomaly_bank(const anomaly_options* const* opts, size_t n)
  : count_(static_cast<uint32_t>(n)) {
  size_t widest = 0;
  for (size_t k = 0; k < n; ++k)
    widest = std::max(widest, head_bytes + sizeof(level) * slots(levels_of(*opts[k])));
  stride_ = static_cast<uint32_t>((widest + line - 1) / line * line);
  block_ = static_cast<unsigned char*>(
    ::operator new(static_cast<size_t>(stride_) * n, std::align_val_t{line}));
  std::memset(block_, 0, static_cast<size_t>(stride_) * n);
  for (size_t k = 0; k < n; ++k) {
    auto& h = at(k);
    h.levels = levels_of(*opts[k]);
    h.warm = 1;
    double* buffer = new double[opts[k]->warmup];
    uint32_t warmup = opts[k]->warmup;
    auto* rest = reinterpret_cast<unsigned char*>(&h) + head_bytes;
    std::memcpy(rest, &buffer, sizeof buffer);
    std::memcpy(rest + sizeof buffer, &warmup, sizeof warmup);
  }
}

anomaly_bank::anomaly_bank(anomaly_bank&& other) noexcept
  : block_(std::exchange(other.block_, nullptr)),
    count_(std::exchange(other.count_, 0)),
    stride_(other.stride_) {
}

anomaly_bank& anomaly_bank::operator=(anomaly_bank&& other) noexcept {
  if (this != &other) {
    release();
    block_ = std::exchange(other.block_, nullptr);
    count_ = std::exchange(other.count_, 0);
    stride_ = other.stride_;
  }
  return *this;
}

anomaly_bank::~anomaly_bank() {
  release();
}

void anomaly_bank::release() {
  if (block_ == nullptr)
    return;
  for (size_t k = 0; k < count_; ++k)
    if (at(k).warm)
      delete[] samples(at(k));
  ::operator delete(block_, std::align_val_t{line});
  block_ = nullptr;
}

double* anomaly_bank::samples(const head& h) {
  double* out;
  std::memcpy(&out, reinterpret_cast<const unsigned char*>(&h) + head_bytes, sizeof out);
  return out;
}

uint32_t anomaly_bank::room(const head& h) {
  uint32_t out;
  std::memcpy(&out, reinterpret_cast<const unsigned char*>(&h) + head_bytes + sizeof(double*),
              sizeof out);
  return out;
}

anomaly_bank::level& anomaly_bank::slot(head& h, int j) {
  auto* table = reinterpret_cast<level*>(reinterpret_cast<unsigned char*>(&h) + head_bytes);
  int at = j < 0 ? h.levels - j : j > h.levels ? j + margin : j;
  return table[at];
}

bool anomaly_bank::anomalous(size_t k) const {
  return at(k).anomalous != 0;
}

uint64_t anomaly_bank::count(size_t k) const {
  return at(k).n;
}

size_t anomaly_bank::bytes() const {
  size_t out = sizeof(*this) + static_cast<size_t>(stride_) * count_;
  for (size_t k = 0; k < count_; ++k)
    if (at(k).warm)
      out += sizeof(double) * room(at(k));
  return out;
}

int anomaly_bank::level_of(const head& h, double x) {
  double k = std::floor((x - h.lo) * h.per_step);
  if (std::isnan(k))  // only where finite numbers overflow: beyond every level
    return x < h.lo ? -margin : h.levels + margin;
  return static_cast<int>(std::clamp(k, -double{margin}, static_cast<double>(h.levels + margin)));
}

uint32_t anomaly_bank::visit(head& h, int j, uint32_t i, uint32_t memory) {
  auto& l = slot(h, j);
  uint32_t visits = l & ((1u << visit_bits) - 1);
  if (visits > 0 && ((i - (l >> visit_bits)) & sample_mask) > memory)
    visits = 0;  // forgotten: new again
  l = ((i & sample_mask) << visit_bits) | std::min(visits + 1, familiar);
  return visits;
}

void anomaly_bank::start_levels(head& h, uint32_t memory) {
  std::unique_ptr<double[]> warm{samples(h)};
  uint32_t n = room(h);
  auto [lo, hi] = std::minmax_element(warm.get(), warm.get() + n);
  // Divided first: the range of two finite extremes may not be finite.
  double step = *hi / h.levels - *lo / h.levels;
  if (!(step > 0 && std::isfinite(1 / step)))
    step = std::max(std::fabs(*lo) * 1e-3, 1e-9);
  h.lo = *lo - step / 2;  // the extremes sit mid-level: a hair beyond either is familiar
  h.per_step = 1 / step;
  h.warm = 0;
  std::memset(reinterpret_cast<unsigned char*>(&h) + head_bytes, 0, sizeof(level) * slots(h.levels));
  for (uint32_t i = 0; i < n; ++i)
    visit(h, level_of(h, warm[i]), i, memory);
}

anomaly_sample anomaly_bank::observe(size_t k, double x, const anomaly_options& opts) {
  anomaly_sample out;
  if (!std::isfinite(x))
    return out;
  auto& h = at(k);
  uint32_t i = h.n++;
  if (h.warm) {
    samples(h)[i] = x;
    if (i + 1 == room(h))
      start_levels(h, opts.memory);
    return out;
  }
  int j = level_of(h, x);
  out.score = 1.0 - std::min(visit(h, j, i, opts.memory), familiar) / double{familiar};
  if (out.score < opts.threshold) {
    if (h.anomalous && i - h.last_high > opts.hold)
      h.anomalous = 0;
    out.anomalous = h.anomalous;
    return out;
  }
  h.last_high = i;
  out.anomalous = true;
  if (h.anomalous)
    return out;
  h.anomalous = 1;
  out.onset = true;
  // What was familiar: the span of the levels visited within memory, this one aside.
  int first = INT32_MAX;
  int last = INT32_MIN;
  for (int m = -margin; m <= h.levels + margin; ++m) {
    auto l = slot(h, m);
    if (m == j || (l & ((1u << visit_bits) - 1)) == 0
        || ((i - (l >> visit_bits)) & sample_mask) > opts.memory)
      continue;
    first = std::min(first, m);
    last = std::max(last, m);
  }
  if (first <= last) {
    out.low = h.lo + first / h.per_step;
    out.high = h.lo + (last + 1) / h.per_step;
  } else {
    out.low = out.high = x;
  }
  return out;
}

anomaly_detector::anomaly_detector(const anomaly_options& opts) : opts_(opts) {
  const anomaly_options* one = &opts_;
  bank_ = anomaly_bank{&one, 1};
}

} // namespace twin::runtime
