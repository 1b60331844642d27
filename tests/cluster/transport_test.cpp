// Two members' transports in one process over loopback: envelopes arrive in the order they
// were sent, and a member that takes nothing holds its peer to a bounded number in flight
// and queued; once it takes them again, everything sent arrives.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "transport.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using namespace std::chrono_literals;

/// An actor system configured as a member's.
struct member {
  member() {
    configure_transport(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  caf::actor_system_config cfg;  ///< outlives the system, which keeps a reference
  std::unique_ptr<caf::actor_system> sys;
};

TEST(transport, a_member_that_takes_nothing_holds_its_peer_to_a_bounded_queue) {
  std::mutex mtx;
  std::condition_variable cv;
  bool open = false;
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> out_of_order{0};
  member a_sys, b_sys;
  transport b{*b_sys.sys, "b",
              [&](envelope&& env) {
                if (env.token != received + 1)
                  ++out_of_order;
                ++received;
                std::unique_lock<std::mutex> guard{mtx};
                cv.wait(guard, [&] { return open; });  // takes nothing until opened
              },
              [](const std::string&) {}};
  transport a{*a_sys.sys, "a", [](envelope&&) {}, [](const std::string&) {}};
  auto pb = b.open("127.0.0.1", 0);
  auto pa = a.open("127.0.0.1", 0);
  ASSERT_TRUE(pb && pa);
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(*pb)}});
  b.set_peers({{"a", "127.0.0.1:" + std::to_string(*pa)}});
  for (int i = 0; i < 200 && !(a.connected("b") && b.connected("a")); ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(a.connected("b") && b.connected("a"));

  uint64_t sent = 0;
  for (; sent < 500'000; ++sent) {
    envelope env;
    env.kind = envelope::request;
    env.from = "a";
    env.token = sent + 1;
    env.bytes = std::string(64, 'x');
    if (!a.send("b", std::move(env)))
      break;
  }
  // 8,192 in flight (and what b granted back before it stopped taking), 65,536 queued.
  EXPECT_GE(sent, 65'536u + 8'192u);
  EXPECT_LE(sent, 65'536u + 3 * 8'192u);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(received.load(), 1u);  // b is stuck in its first

  {
    std::lock_guard<std::mutex> guard{mtx};
    open = true;
  }
  cv.notify_all();
  for (int i = 0; i < 400 && received.load() < sent; ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(received.load(), sent);
  EXPECT_EQ(out_of_order.load(), 0u);
  envelope more;
  more.from = "a";
  more.token = sent + 1;
  EXPECT_TRUE(a.send("b", std::move(more)));  // room again
  for (int i = 0; i < 100 && received.load() <= sent; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(received.load(), sent + 1);
  a.close();
  b.close();
}

} // namespace
} // namespace twin::test
