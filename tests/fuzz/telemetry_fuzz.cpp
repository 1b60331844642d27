// libFuzzer target: a device's telemetry message (MQTT payload) and the HTTP API's sample
// time, from untrusted bytes. Whatever the input, the parser answers a value or an error,
// and an accepted message holds only finite numbers and no deeper nesting than allowed.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "twin/runtime/json.hpp"

namespace {

using namespace twin::runtime;

/// Depth of a value: a scalar is 0, a list or map one more than its deepest element.
int depth_of(const value& v) {
  int d = 0;
  if (v.type() == value::kind::list)
    for (const auto& x : v.as_list())
      d = std::max(d, 1 + depth_of(x));
  if (v.type() == value::kind::map)
    for (const auto& [k, x] : v.as_map())
      d = std::max(d, 1 + depth_of(x));
  return d;
}

void check(const value& v) {
  if (v.type() == value::kind::real && !std::isfinite(v.as_double()))
    std::abort();  // a non-finite number got in
  if (v.type() == value::kind::list)
    for (const auto& x : v.as_list())
      check(x);
  if (v.type() == value::kind::map)
    for (const auto& [k, x] : v.as_map())
      check(x);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  auto t = device_telemetry_from_json(text);
  if (!t)
    return 0;
  if (t->values.empty() || t->ts_ms < 0)
    std::abort();  // accepted without values, or with a negative time
  for (const auto& [k, v] : t->values) {
    check(v);
    if (depth_of(v) > twin::runtime::max_value_depth)
      std::abort();
  }
  return 0;
}
