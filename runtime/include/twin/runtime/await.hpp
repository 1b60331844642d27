#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>

#include <caf/expected.hpp>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

/// Calls `start` with an answer callback (the `done` of a request) and waits at most
/// `timeout` for the answer; returns `runtime_errc::timeout` if none came. For threads
/// outside the runtime (main, tools, tests): on a runtime thread it could wait for itself.
template <class T>
caf::expected<T>
await_answer(const std::function<void(std::function<void(caf::expected<T>)>)>& start,
             std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
  auto p = std::make_shared<std::promise<caf::expected<T>>>();
  auto f = p->get_future();
  start([p](caf::expected<T> x) { p->set_value(std::move(x)); });
  if (f.wait_for(timeout) != std::future_status::ready)
    return make_error(runtime_errc::timeout, "no answer within "
                                               + std::to_string(timeout.count()) + " ms");
  return f.get();
}

} // namespace twin::runtime
