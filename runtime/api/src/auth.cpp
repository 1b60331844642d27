#include "auth.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include "twin/api/tokens.hpp"
#include "twin/runtime/record.hpp"

namespace twin::api {

using runtime::now_ms;
using runtime::permission;

namespace {

constexpr auto forget_after = std::chrono::minutes{10};
constexpr int max_wait_s = 60;

/// Whether a PATCH body changes only the desired state (what an operator may change).
bool only_desired(const std::string& body) {
  auto doc = nlohmann::json::parse(body, nullptr, false);
  return doc.is_object() && doc.size() == 1 && doc.contains("desired");
}


response unauthorized(const std::string& code, const std::string& message, bool invalid) {
  auto res = error_response(401, code, message);
  res.headers.emplace_back("WWW-Authenticate",
                           invalid ? R"(Bearer realm="twind", error="invalid_token")"
                                   : R"(Bearer realm="twind")");
  return res;
}

} // namespace

int failure_throttle::wait_s(const std::string& peer, clock::time_point now) {
  if (size_.load(std::memory_order_relaxed) == 0)
    return 0;
  std::lock_guard<std::mutex> guard{mu_};
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.blocked_until <= now)
    return 0;
  auto left = std::chrono::ceil<std::chrono::seconds>(it->second.blocked_until - now);
  return static_cast<int>(std::max<int64_t>(1, left.count()));
}

void failure_throttle::failed(const std::string& peer, clock::time_point now) {
  if (limit_ <= 0)
    return;
  std::lock_guard<std::mutex> guard{mu_};
  if (peers_.size() >= max_addresses && peers_.find(peer) == peers_.end()) {
    for (auto it = peers_.begin(); it != peers_.end();)  // the forgotten go first
      it = it->second.last + forget_after < now ? peers_.erase(it) : std::next(it);
    for (auto it = peers_.begin(); it != peers_.end() && peers_.size() >= max_addresses;)
      it = it->second.blocked_until <= now ? peers_.erase(it) : std::next(it);
    if (peers_.size() >= max_addresses)
      peers_.erase(peers_.begin());
  }
  auto& r = peers_[peer];
  size_.store(peers_.size(), std::memory_order_relaxed);
  if (r.failures > 0 && r.last + forget_after < now)
    r.failures = 0;
  r.last = now;
  if (++r.failures >= limit_) {
    int wait = 1 << std::min(r.failures - limit_, 6);
    r.blocked_until = now + std::chrono::seconds{std::min(wait, max_wait_s)};
  }
}

void failure_throttle::succeeded(const std::string& peer) {
  if (size_.load(std::memory_order_relaxed) == 0)
    return;
  std::lock_guard<std::mutex> guard{mu_};
  peers_.erase(peer);
  size_.store(peers_.size(), std::memory_order_relaxed);
}

permission permission_of(std::string_view route, const request& req) {
  const auto& m = req.method;
  if (route == "/v1/twins/{id}") {
    if (m == "GET")
      return permission::read;
    return m == "PATCH" && only_desired(req.body) ? permission::control : permission::write;
  }
  if (route == "/v1/twins/{id}/commands/{name}")
    return permission::control;
  if (route == "/v1/telemetry")
    return permission::telemetry;
  if (route == "/v1/types/{type}/rul" || route == "/v1/types/{type}")
    return m == "GET" ? permission::read : permission::admin;
  if (route == "/v1/cluster/members/{node}/drain" || route == "/v1/tokens"
      || route == "/v1/tokens/{id}" || route == "/v1/audit")
    return permission::admin;
  return permission::read;
}

std::optional<response> identify(const route_context& ctx, request& req,
                                 std::string_view route) {
  // A browser's preflight carries no credentials: the origin check answers it.
  if (route == "/healthz" || route == "/readyz"
      || (req.method == "OPTIONS" && !req.origin.empty()))
    return std::nullopt;
  if (ctx.be.rt == nullptr) {  // the operations port
    if (ctx.metrics_token.empty() || route != "/metrics")
      return std::nullopt;
    auto text = runtime::bearer_token(req.authorization);
    if (text && text->size() == ctx.metrics_token.size()
        && CRYPTO_memcmp(text->data(), ctx.metrics_token.data(), text->size()) == 0)
      return std::nullopt;
    return unauthorized("unauthorized", "/metrics here needs the metrics token", text.has_value());
  }
  if (ctx.tokens == nullptr)
    return std::nullopt;  // authentication is off
  auto now = failure_throttle::clock::now();
  if (ctx.throttle != nullptr) {
    if (int wait = ctx.throttle->wait_s(req.peer, now)) {
      auto res = error_response(429, "too_many_failures",
                                "too many failed authentications from " + req.peer
                                  + "; retry in " + std::to_string(wait) + " s");
      res.headers.emplace_back("Retry-After", std::to_string(wait));
      return res;
    }
  }
  // A request without a token counts as a failure too: an address that keeps sending them
  // waits like one that guesses (and fills no log meanwhile).
  auto fail = [&](const std::string& code, const std::string& message) {
    if (ctx.throttle != nullptr)
      ctx.throttle->failed(req.peer, now);
    return unauthorized(code, message, code == "invalid_token");
  };
  if (req.authorization.empty())
    return fail("unauthorized", "this API needs a token: Authorization: Bearer <token>");
  auto text = runtime::bearer_token(req.authorization);
  if (!text)
    return fail("invalid_token", "the Authorization header is not \"Bearer <token>\"");
  auto v = ctx.tokens->verify(*text, now_ms());
  switch (v.verdict) {
    case token_verdict::ok: break;
    case token_verdict::malformed:
      return fail("invalid_token", "the token is not of the form twn_<id>_<secret>");
    case token_verdict::unknown: return fail("invalid_token", "the token is not known here");
    case token_verdict::expired:
      return fail("invalid_token", "token " + v.token->id + " has expired");
    case token_verdict::revoked:
      return fail("invalid_token", "token " + v.token->id + " is revoked");
  }
  if (ctx.throttle != nullptr)
    ctx.throttle->succeeded(req.peer);
  req.token = std::move(v.token);
  return std::nullopt;
}

std::optional<response> authenticate(const route_context& ctx, request& req,
                                     std::string_view route) {
  if (!req.token) {
    if (auto refused = identify(ctx, req, route))
      return refused;
    if (!req.token)
      return std::nullopt;  // no token needed here
  }
  auto need = permission_of(route, req);
  if (!runtime::grants(req.token->role, need))
    return error_response(403, "forbidden",
                          "token '" + req.token->name + "' (" + to_string(req.token->role)
                            + ") may not " + req.method + " " + std::string{route}
                            + ": it needs the " + to_string(need) + " permission");
  return std::nullopt;
}

} // namespace twin::api
