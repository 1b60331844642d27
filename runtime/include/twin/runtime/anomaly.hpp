#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace twin::runtime {

/// How a property's anomaly detector behaves. Every field has a default, so a model may
/// declare `"anomaly": {"temperature": {}}`.
struct anomaly_options {
  /// In (0, 1]: how finely the detector tells values apart. The range of the warm-up is cut
  /// into 2^(1 + 4 * sensitivity) levels: 8 at the default 0.5, 32 at 1.
  double sensitivity = 0.5;
  /// Samples that set the detector's scale (the range of their values); they score 0.
  uint32_t warmup = 250;
  /// Samples an anomaly lasts after its last anomalous sample; a new anomaly starts only
  /// after that many ordinary ones.
  uint32_t hold = 30;
  /// Samples after which a level not visited since is new again (at most 2^28).
  uint32_t memory = 10000;
  /// A sample whose score is at least this is anomalous. The default flags levels never
  /// seen (score 1); 0.75 also flags levels seen once.
  double threshold = 0.9;

  /// Returns what is wrong with the options, empty if nothing.
  const char* check() const;
};

/// What the detector says of one sample.
struct anomaly_sample {
  double score = 0;      ///< in [0, 1]
  bool anomalous = false;  ///< an anomaly is under way (this sample or one `hold` before)
  bool onset = false;    ///< this sample starts an anomaly
  double low = 0;        ///< the span of the levels visited before (within `memory`)
  double high = 0;       ///< (only meaningful when `onset`)
};

/// A streaming, unsupervised anomaly detector for one numeric property: it scores each
/// sample by how new its value's level is. The warm-up's range is cut into levels, its
/// lowest and highest values in the middle of the first and the last (and 32 more levels on
/// each side, the outermost taking everything beyond); a sample in a level not visited
/// within `memory` samples scores 1, one visited `k` times 1 - k / 4, and one visited 4
/// times or more (a familiar level) 0. An anomaly starts with a sample scoring at least `threshold` and lasts until `hold`
/// samples pass without one. Spikes, level shifts, a value stuck where it never was, and
/// changes of variance reach new levels; a value that returns to a familiar level does
/// not, which keeps false alarms rare. No look-ahead: each score depends only on the
/// samples before it.
///
/// Memory is bounded: `bytes()` is 64 + 4 * (levels + 65) bytes (356 at the default
/// sensitivity), and 8 bytes a sample more during the warm-up. Not thread-safe: one owner (the twin's actor) feeds it.
class anomaly_detector {
public:
  explicit anomaly_detector(const anomaly_options& opts = {});

  /// Scores the next sample; a value that is not finite is ignored (score 0, state kept).
  anomaly_sample observe(double x);

  /// Whether an anomaly is under way.
  bool anomalous() const { return anomalous_; }
  /// Samples observed.
  uint64_t count() const { return n_; }
  /// The memory the detector holds.
  size_t bytes() const;

private:
  /// A level: the number of the sample that last visited it (modulo 2^29) and its visits
  /// since it was last new (0 to `familiar`), in one word.
  using level = uint32_t;
  static constexpr int margin = 32;        ///< levels beyond the warm-up's range, each side
  static constexpr uint32_t familiar = 4;  ///< visits that make a level familiar (score 0)
  static constexpr uint32_t visit_bits = 3;
  static constexpr uint32_t sample_mask = (1u << (32 - visit_bits)) - 1;

  size_t slots() const { return static_cast<size_t>(levels_ + 2 * margin + 1); }
  void start_levels();
  int level_of(double x) const;
  /// Visits level `k` at sample `i`; returns its visits before.
  uint32_t visit(int k, uint32_t i);

  double lo_ = 0;
  double per_step_ = 1;  ///< levels per unit of the value
  double threshold_;
  uint32_t hold_;
  uint32_t memory_;
  uint32_t warmup_;
  uint32_t n_ = 0;          ///< samples observed (wraps after 2^32, harmlessly)
  uint32_t last_high_ = 0;  ///< the last sample that scored at least the threshold
  uint16_t levels_;
  bool anomalous_ = false;
  std::unique_ptr<double[]> warm_;  ///< the warm-up's samples, freed after it
  std::unique_ptr<level[]> table_;  ///< `slots()` of them, once warmed up
};

} // namespace twin::runtime
