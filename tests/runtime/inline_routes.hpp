#pragma once

// The routes of the HTTP API called in-process, as the tests of runtime_tests call them.

#include <chrono>
#include <functional>
#include <future>
#include <memory>

#include <gtest/gtest.h>

#include "routes.hpp"

namespace twin::test {

/// A route context whose blocking work runs in the call: `handle` has answered (but for
/// what the router answers later) when it returns.
inline api::route_context inline_context(const api::backend& be, const api::node_info& node) {
  return api::route_context{be, node, [](std::function<void()> fn) {
                              fn();
                              return true;
                            }};
}

/// The answer of `handle` to `req` on `be` (with `tokens`: authentication is on), waiting
/// up to 10 s for what the router answers later; status 0 if nothing came.
inline api::response answer_of(const api::backend& be, api::request req,
                               api::token_registry* tokens = nullptr) {
  auto answered = std::make_shared<std::promise<api::response>>();
  api::node_info node{"n1", "http://127.0.0.1:8080"};
  auto ctx = inline_context(be, node);
  ctx.tokens = tokens;
  auto what = req.method + " " + req.target;
  api::handle(ctx, std::move(req),
              [answered](api::response r) { answered->set_value(std::move(r)); });
  auto f = answered->get_future();
  if (f.wait_for(std::chrono::seconds{10}) != std::future_status::ready) {
    ADD_FAILURE() << what << " was not answered";
    return api::response{0, {}, {}, {}, nullptr};
  }
  return f.get();
}

} // namespace twin::test
