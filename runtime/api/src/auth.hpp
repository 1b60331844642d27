#pragma once

// Who calls the API and what they may do: the token of each request, the permission its
// route needs, and the addresses that keep failing. Private to runtime/api.

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "routes.hpp"
#include "twin/runtime/access.hpp"

namespace twin::api {

/// Slows down the addresses that keep failing to authenticate: from the `limit`-th failure
/// in a row, an address is refused for 1 s, then 2, 4, ... up to 60 s after each failure.
/// A success forgets its failures, and so do 10 minutes without one. Keeps at most 16,384
/// addresses: past that, those forgotten go first, then those not blocked, then any.
/// Thread-safe.
class failure_throttle {
public:
  using clock = std::chrono::steady_clock;
  static constexpr size_t max_addresses = 16384;

  /// `limit` 0: never slowed down.
  explicit failure_throttle(int limit) : limit_(limit) {}

  /// 0 if `peer` may try now; else the seconds it must wait.
  int wait_s(const std::string& peer, clock::time_point now);
  void failed(const std::string& peer, clock::time_point now);
  void succeeded(const std::string& peer);

private:
  struct record {
    int failures = 0;
    clock::time_point last;
    clock::time_point blocked_until;
  };
  const int limit_;
  std::atomic<size_t> size_{0};  ///< of `peers_`: none, and nothing is locked
  std::mutex mu_;
  std::unordered_map<std::string, record> peers_;
};

/// What a request to `route` needs (an operator may PATCH only the desired state).
runtime::permission permission_of(std::string_view route, const request& req);

/// Authenticates `req` from its headers alone, setting `req.token` (before its body is
/// read): the refusal if its token is missing, malformed, unknown, expired or revoked (401)
/// or its address keeps failing (429). /healthz, /readyz and a browser's preflights
/// (OPTIONS with an Origin) need no token; the operations port's /metrics needs
/// `ctx.metrics_token` if it is set.
std::optional<response> identify(const route_context& ctx, request& req,
                                 std::string_view route);

/// `identify` (unless it ran already), then whether the token may do what the route needs:
/// 403 if its role is too weak.
std::optional<response> authenticate(const route_context& ctx, request& req,
                                     std::string_view route);

} // namespace twin::api
