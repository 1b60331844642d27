#pragma once

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "twin/runtime/router.hpp"

namespace twin::node {

/// Requests as JSON lines, one object per line, e.g.
///   {"op":"put","id":"f:m1","type":"motor","parent":"f:r1","properties":{...},"desired":{...}}
///   {"op":"telemetry","id":"f:m1","values":{"temperature":71.5},"ts":1700000000000}
///   {"op":"patch","id":"f:m1","properties":{...},"desired":{...},"if_version":3}
///   {"op":"get","id":"f:m1"}     {"op":"delete","id":"f:m1"}
/// Each line gets one answer line once the change is durable:
///   {"seq":N,"ok":true,"version":V}  {"seq":N,"ok":true,"twin":{...}}
///   {"seq":N,"ok":false,"error":{"code":"...","message":"..."}}
/// where N counts the request lines from 1. Answers of different twins may come out of
/// order; answers of one twin come in order. Lines longer than 1 MiB are rejected.
///
/// Thread-safe: answers are written under a lock from the twins' threads.
class line_requests {
public:
  line_requests(runtime::router& rt, std::FILE* out);

  /// Handles one line; `seq` is its number.
  void handle(const std::string& line, uint64_t seq);

  /// Requests not answered yet.
  uint64_t pending() const { return pending_.load(); }

  static constexpr size_t max_line = 1 << 20;

private:
  void answer(const std::string& json);

  runtime::router& rt_;
  std::FILE* out_;
  std::mutex out_mtx_;
  std::atomic<uint64_t> pending_{0};
};

} // namespace twin::node
