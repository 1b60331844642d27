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
  uint32_t warmup = 200;
  /// Samples an anomaly lasts after its last anomalous sample; a new anomaly starts only
  /// after that many ordinary ones.
  uint32_t hold = 60;
  /// Samples after which a level not visited since is new again.
  uint32_t memory = 10000;
  /// A sample whose score is at least this is anomalous. The default flags levels never
  /// seen (score 1); 0.5 also flags levels seen once.
  double threshold = 0.75;

  /// Returns what is wrong with the options, empty if nothing.
  const char* check() const;
};

/// What the detector says of one sample.
struct anomaly_sample {
  double score = 0;      ///< in [0, 1]
  bool anomalous = false;  ///< an anomaly is under way (this sample or one `hold` before)
  bool onset = false;    ///< this sample starts an anomaly
  double low = 0;        ///< the range of values seen often enough to be familiar
  double high = 0;       ///< (only meaningful when `onset`)
};

/// A streaming, unsupervised anomaly detector for one numeric property: it scores each
/// sample by how new its value's level is. The warm-up's range is cut into levels (and
/// 32 more on each side, the outermost taking everything beyond); a sample in a level not
/// visited within `memory` samples scores 1, one in a level visited `k` times 1 / (1 + k).
/// An anomaly starts with a sample scoring at least `threshold` and lasts until `hold`
/// samples pass without one. Spikes, level shifts, a value stuck where it never was, and
/// changes of variance reach new levels; a value that returns to a familiar level does
/// not, which keeps false alarms rare. No look-ahead: each score depends only on the
/// samples before it.
///
/// Memory is bounded: `bytes()` is about 40 + 8 * (levels + 64) bytes (552 at the default
/// sensitivity), plus 4 bytes a sample during the warm-up. Not thread-safe: one owner
/// (the twin's actor) feeds it.
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
  struct level {
    uint32_t last = 0;    ///< the sample that last visited it
    uint32_t visits = 0;  ///< since it was last new
  };
  static constexpr int margin = 32;  ///< levels beyond the warm-up's range, each side

  void start_levels();
  int level_of(double x) const;
  /// Visits level `k` at sample `i`; returns its visits before.
  uint32_t visit(int k, uint32_t i);

  anomaly_options opts_;
  int levels_ = 8;
  uint32_t n_ = 0;            ///< samples observed (wraps after 2^32, harmlessly)
  uint32_t last_high_ = 0;    ///< the last sample that scored at least the threshold
  bool anomalous_ = false;
  double lo_ = 0;
  double step_ = 1;
  std::vector<float> warm_;           ///< the warm-up's samples, freed after it
  std::unique_ptr<level[]> table_;    ///< levels_ + 2 * margin, once warmed up
};

} // namespace twin::runtime
