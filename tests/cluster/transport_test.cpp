// Two members' transports in one process over loopback: envelopes arrive in the order they
// were sent, and a member that takes nothing holds its peer to a bounded number in flight
// and queued; once it takes them again, everything sent arrives. With TLS, members whose
// certificates one authority signs talk, nobody else is taken, and a member greets the
// other again once the other learns of it, or after it returns.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "test_certs.hpp"
#include "test_support.hpp"
#include "tls_probe.hpp"
#include "transport.hpp"
#include "twin/cluster/peer_tls.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using namespace std::chrono_literals;

/// An actor system configured as a member's.
struct member {
  explicit member(const peer_tls& tls = {}) {
    configure_transport(cfg, tls);
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

/// Certificates the test makes: `ours`, of the test authority, and `theirs`, of another.
struct authorities {
  temp_dir dir;
  bool made = make_test_certs(dir.path());
  peer_tls ours{dir.sub("server.pem"), dir.sub("server.key"), dir.sub("ca.pem")};
  peer_tls theirs{dir.sub("other.pem"), dir.sub("other.key"), dir.sub("other.pem")};
};

TEST(transport, with_tls_members_of_one_authority_talk_and_nobody_else_is_taken) {
  authorities certs;
  ASSERT_TRUE(certs.made);
  auto& dir = certs.dir;
  member a_sys{certs.ours}, b_sys{certs.ours}, c_sys{certs.theirs};
  std::atomic<uint64_t> received{0}, out_of_order{0}, downs{0};
  auto ignore = [](envelope&&) {};
  auto no_down = [](const std::string&) {};
  auto count_down = [&](const std::string&) { ++downs; };
  transport a{*a_sys.sys, "a", ignore, count_down};
  transport b{*b_sys.sys, "b",
              [&](envelope&& env) {
                if (env.token != ++received)
                  ++out_of_order;
              },
              count_down};
  // Its id is the least: it is the one that connects, so a and b refuse it as servers.
  transport c{*c_sys.sys, "0", ignore, no_down};
  auto pa = a.open("127.0.0.1", 0);
  auto pb = b.open("127.0.0.1", 0);
  auto pc = c.open("127.0.0.1", 0);
  ASSERT_TRUE(pa && pb && pc);
  auto at = [](uint16_t port) { return "127.0.0.1:" + std::to_string(port); };
  a.set_peers({{"b", at(*pb)}, {"0", at(*pc)}});
  b.set_peers({{"a", at(*pa)}, {"0", at(*pc)}});
  c.set_peers({{"a", at(*pa)}, {"b", at(*pb)}});
  ASSERT_TRUE(eventually([&] { return a.connected("b") && b.connected("a"); }, 10s));
  constexpr uint64_t n = 1000;
  auto send_from = [&](uint64_t first) {
    for (uint64_t i = first; i < first + n; ++i) {
      envelope env;
      env.from = "a";
      env.token = i;
      env.bytes = std::string(i % 100 == 0 ? 100'000 : 64, 'x');
      ASSERT_TRUE(a.send("b", std::move(env))) << "envelope " << i;
    }
  };
  ASSERT_NO_FATAL_FAILURE(send_from(1));
  ASSERT_TRUE(eventually([&] { return received.load() == n; }, 10s)) << received.load();
  EXPECT_EQ(out_of_order.load(), 0u);
  // Another authority's member reaches nobody, and is reached by nobody.
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(a.connected("0"));
  EXPECT_FALSE(b.connected("0"));
  EXPECT_FALSE(c.connected("a"));
  EXPECT_FALSE(c.connected("b"));
  // The port speaks TLS, and takes only a client that shows a certificate of the authority.
  EXPECT_TRUE(tls_port_takes(*pb, dir.sub("ca.pem"), dir.sub("client.pem"), dir.sub("client.key")));
  EXPECT_FALSE(tls_port_takes(*pb, dir.sub("ca.pem"), "", ""));
  EXPECT_FALSE(tls_port_takes(*pb, dir.sub("ca.pem"), dir.sub("other.pem"), dir.sub("other.key")));
  // None of those refusals (c's, every 250 ms, and the probes') cut a and b apart.
  ASSERT_NO_FATAL_FAILURE(send_from(n + 1));
  ASSERT_TRUE(eventually([&] { return received.load() == 2 * n; }, 10s)) << received.load();
  EXPECT_EQ(out_of_order.load(), 0u);
  EXPECT_EQ(downs.load(), 0u);
  a.close();
  b.close();
  c.close();
}

TEST(transport, with_tls_a_member_that_learns_of_another_late_or_sees_it_return_is_greeted) {
  authorities certs;
  ASSERT_TRUE(certs.made);
  const auto& ours = certs.ours;
  member a_sys{ours}, b_sys{ours};
  std::atomic<uint64_t> at_a{0}, at_b{0};
  auto no_down = [](const std::string&) {};
  auto count = [](std::atomic<uint64_t>& n) { return [&n](envelope&&) { ++n; }; };
  auto at = [](uint16_t port) { return "127.0.0.1:" + std::to_string(port); };
  auto send = [](transport& t, const std::string& to) {
    envelope env;
    env.bytes = "x";
    return t.send(to, std::move(env));
  };
  transport b{*b_sys.sys, "b", count(at_b), no_down};
  auto pb = b.open("127.0.0.1", 0);
  ASSERT_TRUE(pb);
  {
    transport a{*a_sys.sys, "a", count(at_a), no_down};
    auto pa = a.open("127.0.0.1", 0);
    ASSERT_TRUE(pa);
    // a (the lesser id) connects, but b does not know a yet: its hellos are not taken.
    a.set_peers({{"b", at(*pb)}});
    ASSERT_TRUE(eventually([&] { return a.connected("b"); }, 10s));
    std::this_thread::sleep_for(600ms);
    EXPECT_FALSE(b.connected("a"));
    // Once b knows a, a's next hello makes it a peer, and both ways carry envelopes.
    b.set_peers({{"a", at(*pa)}});
    ASSERT_TRUE(eventually([&] { return b.connected("a"); }, 2s));
    ASSERT_TRUE(send(a, "b") && send(b, "a"));
    ASSERT_TRUE(eventually([&] { return at_a.load() == 1 && at_b.load() == 1; }, 5s));
    a.close();
  }
  ASSERT_TRUE(eventually([&] { return !b.connected("a"); }, 5s));  // its actor is gone
  // a returns, another process on another port: b takes it again from its hello.
  member again_sys{ours};
  transport again{*again_sys.sys, "a", count(at_a), no_down};
  auto pa2 = again.open("127.0.0.1", 0);
  ASSERT_TRUE(pa2);
  b.set_peers({{"a", at(*pa2)}});
  again.set_peers({{"b", at(*pb)}});
  ASSERT_TRUE(eventually([&] { return again.connected("b") && b.connected("a"); }, 10s));
  ASSERT_TRUE(eventually([&] { return send(b, "a"); }, 2s));
  ASSERT_TRUE(eventually([&] { return at_a.load() == 2; }, 5s));
  again.close();
  b.close();
}

} // namespace
} // namespace twin::test
