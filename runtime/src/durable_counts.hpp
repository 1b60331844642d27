#pragma once

// How a shard's durable counts are stored: metadata `counts` of the shard, as the text
// "<twins> <warning alerts> <critical alerts>". Private to the runtime.

#include <optional>
#include <sstream>
#include <string>

#include "twin/runtime/commit_point.hpp"
#include "twin/runtime/record.hpp"

namespace twin::runtime {

constexpr const char* counts_key = "counts";

inline std::string encode_counts(const host_counts& c) {
  return std::to_string(c.twins) + " " + std::to_string(c.alerts_warning) + " "
         + std::to_string(c.alerts_critical);
}

/// Moves the durable count of active alerts of `level` by `by`.
inline void count_alert(host_counts& counts, severity level, int64_t by) {
  if (level == severity::warning)
    counts.alerts_warning += by;
  else if (level == severity::critical)
    counts.alerts_critical += by;
}

/// The counts in `text`; none if it is malformed.
inline std::optional<host_counts> decode_counts(const std::string& text) {
  std::istringstream in{text};
  host_counts c;
  if (!(in >> c.twins >> c.alerts_warning >> c.alerts_critical))
    return std::nullopt;
  return c;
}

} // namespace twin::runtime
