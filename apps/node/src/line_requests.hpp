#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "twin/runtime/router.hpp"

namespace twin::runtime {
class type_registry;
}

namespace twin::node {

/// Requests as JSON lines, one object per line, e.g.
///   {"op":"put","id":"f:m1","type":"motor","parent":"f:r1","properties":{...},"desired":{...},
///    "relationships":[{"name":"feeds","target":"f:m2"}]}
///   {"op":"telemetry","id":"f:m1","values":{"temperature":71.5},"ts":1700000000000}
///   {"op":"patch","id":"f:m1","properties":{...},"desired":{...},"if_version":3}
///   {"op":"get","id":"f:m1"}     {"op":"delete","id":"f:m1"}
/// Each line gets one answer line once the change is durable:
///   {"seq":N,"ok":true,"version":V}  {"seq":N,"ok":true,"twin":{...}}
///   {"seq":N,"ok":false,"error":{"code":"...","message":"..."}}
/// where N counts the request lines from 1. Lines longer than 1 MiB are refused.
///
/// Order: a line is applied once every earlier line that names the same twin is answered,
/// where a line names its twin and, for a put or a patch, its parent and the targets of
/// its relationships (which must exist, as the API checks them). So the lines of one twin apply in input order, and a twin created under
/// a parent made by an earlier line finds it. Lines that name no common twin run at once,
/// and their answers may come out of input order.
///
/// Thread-safe: answers are written under a lock from the twins' threads.
class line_requests {
public:
  /// Relationships are checked against `types` (their targets, as the API checks them).
  line_requests(runtime::router& rt, const runtime::type_registry& types, std::FILE* out);

  /// Handles one line; `seq` is its number. Waits while `max_pending` lines are
  /// unanswered, so that memory stays bounded whatever the input.
  void handle(const std::string& line, uint64_t seq);

  /// Waits until every line is answered, at most `limit`; returns whether they all were.
  bool drain(std::chrono::milliseconds limit);

  /// Requests not answered yet.
  uint64_t pending() const;

  /// Lines answered with an error.
  uint64_t failed() const { return failed_.load(); }

  static constexpr size_t max_line = 1 << 20;
  static constexpr size_t max_pending = 10000;

private:
  /// A parsed line: the twins it names, and what sends it (given what to call with its
  /// answer's text).
  struct job {
    uint64_t seq = 0;
    std::vector<std::string> keys;
    std::function<void(std::function<void(std::string, bool)>)> send;
    size_t blocked = 0;  ///< keys whose queue holds an earlier line
  };

  caf::expected<job> parse(const std::string& line, uint64_t seq);
  /// Routes `req` to `target` once the targets of `rels` (relationships of a twin of
  /// `type`; empty: the type it has) are checked; else calls `refuse` with why.
  void route_checked(const runtime::twin_id& target, std::string type,
                     std::vector<runtime::relationship> rels, runtime::twin_request req,
                     std::function<void(const caf::error&)> refuse);
  void start(job* j);
  void finish(job* j, const std::string& text, bool ok);
  void answer(const std::string& text, bool ok);

  runtime::router& rt_;
  const runtime::type_registry& types_;
  std::FILE* out_;
  std::mutex out_mtx_;
  std::atomic<uint64_t> failed_{0};
  mutable std::mutex mtx_;
  std::condition_variable changed_;
  size_t pending_ = 0;  ///< under mtx_
  std::unordered_map<std::string, std::deque<job*>> queues_;  ///< under mtx_, per twin
};

} // namespace twin::node
