#pragma once

// How the fixtures that start a twind stop it.

#include <signal.h>

#include <chrono>
#include <memory>

#include <gtest/gtest.h>

#include "process.hpp"

namespace twin::test {

/// Stops a node a test started: SIGTERM, then it must exit with 0 within 30 s (a failure
/// shows its stderr). `p` is empty afterwards; nothing happens if it was already.
inline void stop_node(std::unique_ptr<process>& p) {
  if (!p)
    return;
  p->signal(SIGTERM);
  EXPECT_EQ(p->wait(std::chrono::seconds{30}), 0) << p->stderr_text();
  p.reset();
}

} // namespace twin::test
