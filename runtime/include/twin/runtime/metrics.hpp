#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace twin::runtime::metrics {

// The runtime's own view of metrics: each module has one `probe` that reads its figures
// when a scrape asks for them (`collectable`); the node serves them in the text format
// that prometheus-cpp writes (`to_text`). Only `histogram::observe` is on a hot path.

enum class metric_type { counter, gauge, histogram };

struct label {
  std::string name;
  std::string value;
};

/// A histogram as read: per upper bound, how many observations were above the bound
/// before it and at most this one; the last count is those above every bound.
struct histogram_snapshot {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  ///< bounds.size() + 1
  double sum = 0;
  uint64_t count = 0;
};

struct sample {
  std::vector<label> labels;
  double value = 0;              ///< counters and gauges
  histogram_snapshot histogram;  ///< histograms
};

/// One metric: a name prefixed `twin_`, with its unit in the name, and its help text.
struct family {
  std::string name;
  std::string help;
  metric_type type = metric_type::gauge;
  std::vector<sample> samples;
};

/// A family of one counter or gauge.
family single(std::string name, std::string help, metric_type type, double value);

/// `twin_ingest_messages_total`, empty: each front door adds its samples, labelled with
/// its `source` and each `result` (accepted, rejected, malformed, future_ts,
/// retained, deferred).
family ingest_messages();

/// Observations counted in fixed buckets. `observe` is lock-free and may be called from
/// any thread; a snapshot read while observations land may be off by those observations.
class histogram {
public:
  explicit histogram(std::vector<double> bounds);

  void observe(double v) noexcept;
  histogram_snapshot snapshot() const;

  /// Bounds of latencies in seconds, 50 µs to 10 s.
  static std::vector<double> latency_bounds();

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

/// Something that has metrics to show. `collect` may be called from any thread, at any
/// time while the object lives, and must not block for long.
class collectable {
public:
  virtual ~collectable();
  /// Appends this object's families to `out`.
  virtual void collect(std::vector<family>& out) const = 0;
};

/// The collectables of a node. Thread-safe. Families of the same name from different
/// collectables are served as one (e.g. ingest counted by the MQTT and the HTTP front
/// doors); the first one's help and type win.
class registry {
public:
  /// `c` must outlive the registry's last `collect`.
  void add(const collectable* c);
  std::vector<family> collect() const;

private:
  mutable std::mutex mtx_;
  std::vector<const collectable*> members_;
};

/// The families in the Prometheus text format (version 0.0.4).
std::string to_text(const std::vector<family>& families);

} // namespace twin::runtime::metrics
