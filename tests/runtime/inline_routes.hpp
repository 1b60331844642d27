#pragma once

// The routes of the HTTP API called in-process, as the tests of runtime_tests call them.

#include <functional>

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

} // namespace twin::test
