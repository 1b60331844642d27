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

/// Streaming, unsupervised anomaly detectors, one per numeric property of a twin, in one
/// block; each scores every sample by how new its value's level is. The warm-up's range is
/// cut into levels, its lowest and highest values in the middle of the first and the last
/// (and 32 more levels on each side, the outermost taking everything beyond); a sample in a
/// level not visited within `memory` samples scores 1, one visited `k` times 1 - k / 4, and
/// one visited 4 times or more (a familiar level) 0. An anomaly starts with a sample
/// scoring at least `threshold` and lasts until `hold` samples pass without one. Spikes,
/// level shifts, a value stuck where it never was, and changes of variance reach new levels;
/// a value that returns to a familiar level does not, which keeps false alarms rare. No
/// look-ahead: each score depends only on the samples before it.
///
/// Memory is bounded: a detector takes 28 + 4 * (levels + 65) bytes rounded up to 64 (320
/// at the default sensitivity), its state and the levels of the warm-up's range in its
/// first 64 (so that most samples read one cache line), and 8 bytes a sample more during
/// the warm-up. A detector is told its options with each sample: the bank keeps none. Not
/// thread-safe: one owner (the twin's actor) feeds it.
class anomaly_bank {
public:
  anomaly_bank() = default;
  /// Detectors with `opts[0]` to `opts[n - 1]`.
  anomaly_bank(const anomaly_options* const* opts, size_t n);
  anomaly_bank(anomaly_bank&& other) noexcept;
  anomaly_bank& operator=(anomaly_bank&&) noexcept;
  ~anomaly_bank();

  size_t size() const { return count_; }
  /// Scores the next sample of detector `k`, made with `opts`; a value that is not finite
  /// is ignored (score 0, state kept).
  anomaly_sample observe(size_t k, double x, const anomaly_options& opts);
  /// Whether an anomaly is under way at detector `k`.
  bool anomalous(size_t k) const;
  /// Samples detector `k` observed.
  uint64_t count(size_t k) const;
  /// The memory the bank holds.
  size_t bytes() const;
  /// Starts loading into the cache what scoring a sample of each detector reads (its first
  /// 64 bytes), for a sample about to come.
  void prefetch() const {
    for (size_t k = 0; k < count_; ++k)
      __builtin_prefetch(block_ + static_cast<size_t>(stride_) * k, 1);
  }

private:
  /// A level: the number of the sample that last visited it (modulo 2^29) and its visits
  /// since it was last new (0 to `familiar`), in one word.
  using level = uint32_t;
  static constexpr int margin = 32;        ///< levels beyond the warm-up's range, each side
  static constexpr uint32_t familiar = 4;  ///< visits that make a level familiar (score 0)
  static constexpr uint32_t visit_bits = 3;
  static constexpr uint32_t sample_mask = (1u << (32 - visit_bits)) - 1;

  /// The state of one detector, at the start of its part of the block; its levels follow
  /// (those of the warm-up's range first, then the 32 below, then the 32 above) or, during
  /// the warm-up, the address of its samples and their count.
  struct head {
    double lo;
    double per_step;      ///< levels per unit of the value
    uint32_t n;           ///< samples observed (wraps after 2^32, harmlessly)
    uint32_t last_high;   ///< the last sample that scored at least the threshold
    uint16_t levels;      ///< in the warm-up's range
    uint8_t anomalous;
    uint8_t warm;         ///< 1 during the warm-up
  };
  static constexpr size_t head_bytes = 28;

  static size_t slots(uint16_t levels) { return static_cast<size_t>(levels + 2 * margin + 1); }
  head& at(size_t k) const {
    return *reinterpret_cast<head*>(block_ + static_cast<size_t>(stride_) * k);
  }
  /// Where level `j` (from -margin to levels + margin) of `h` is kept.
  static level& slot(head& h, int j);
  /// The warm-up's samples of `h` so far, and their room, kept where its levels go.
  static double* samples(const head& h);
  static uint32_t room(const head& h);
  void start_levels(head& h, uint32_t memory);
  static int level_of(const head& h, double x);
  /// Visits level `j` at sample `i`; returns its visits before.
  static uint32_t visit(head& h, int j, uint32_t i, uint32_t memory);
  void release();

  unsigned char* block_ = nullptr;  ///< 64-byte aligned
  uint32_t count_ = 0;
  uint32_t stride_ = 0;  ///< bytes a detector, a multiple of 64
};

/// One anomaly detector (see `anomaly_bank`) with its options.
class anomaly_detector {
public:
  explicit anomaly_detector(const anomaly_options& opts = {});

  anomaly_sample observe(double x) { return bank_.observe(0, x, opts_); }
  bool anomalous() const { return bank_.anomalous(0); }
  uint64_t count() const { return bank_.count(0); }
  /// The memory the detector holds.
  size_t bytes() const { return sizeof(opts_) + bank_.bytes(); }

private:
  anomaly_options opts_;
  anomaly_bank bank_;
};

} // namespace twin::runtime
