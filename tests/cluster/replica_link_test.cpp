// Two members' replication links in one process over loopback: frames arrive whole, in
// order, with their sender, kind and incarnation; a member whose process is gone is
// reported down before anything more is lost on its connection, and one that returns on
// another port is reached there; one that takes nothing is reported down within the stall
// limit; two members that flood each other and confirm slowly do not hold each other; a
// connection that does not speak the link's protocol is closed and harms nothing. With
// TLS, frames cross between members of one authority, nobody else connects, and a client
// that trickles its handshake is cut off at the handshake's limit.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "replica_link.hpp"
#include "test_certs.hpp"
#include "test_support.hpp"
#include "tls_probe.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using namespace std::chrono_literals;

/// What one member's link received, and which members it reported down.
struct inbox {
  std::mutex mtx;
  std::vector<envelope> got;
  std::set<std::string> down;

  replica_link::receive_fn receive() {
    return [this](std::vector<envelope>& frames) {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& env : frames)
        got.push_back(std::move(env));
    };
  }
  replica_link::down_fn on_down() {
    return [this](const std::string& node) {
      std::lock_guard<std::mutex> guard{mtx};
      down.insert(node);
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> guard{mtx};
    return got.size();
  }
  bool is_down(const std::string& node) {
    std::lock_guard<std::mutex> guard{mtx};
    return down.count(node) > 0;
  }
};

template <class Pred>
bool within(std::chrono::milliseconds limit, Pred pred) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

envelope frame(uint8_t kind, int64_t incarnation, std::string bytes) {
  envelope env;
  env.kind = kind;
  env.incarnation = incarnation;
  env.bytes = std::move(bytes);
  return env;
}

/// The most a loopback connection whose receiver reads nothing holds in its socket
/// buffers: the sender's may grow to TCP's limit, the receiver's stays as it began.
size_t socket_buffers_max() {
  auto limits = [](const char* path) {
    std::ifstream in{path};
    std::array<size_t, 3> v{};  // least, initial, most
    in >> v[0] >> v[1] >> v[2];
    return v;
  };
  return limits("/proc/sys/net/ipv4/tcp_wmem")[2] + limits("/proc/sys/net/ipv4/tcp_rmem")[1];
}

/// Sends `env` until the link has a connection to `node` (it makes one in the background).
bool send_when_connected(replica_link& link, const std::string& node, const envelope& env) {
  return within(5s, [&] { return link.send(node, env); });
}

TEST(replica_link, frames_arrive_whole_and_in_order_with_their_sender) {
  inbox at_a, at_b;
  replica_link a{"a", at_a.receive(), at_a.on_down()};
  replica_link b{"b", at_b.receive(), at_b.on_down()};
  auto port_b = b.open("127.0.0.1", 0);
  ASSERT_TRUE(port_b);
  ASSERT_TRUE(a.open("127.0.0.1", 0));
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(*port_b)}});
  ASSERT_TRUE(send_when_connected(a, "b", frame(envelope::replicate, 7, "first")));
  constexpr int n = 2000;
  std::string big(300'000, 'x');  // more than a socket buffer: written in several parts
  for (int i = 1; i < n; ++i)
    ASSERT_TRUE(a.send("b", frame(envelope::replicate, 7, i % 500 == 0 ? big : std::to_string(i))));
  ASSERT_TRUE(within(10s, [&] { return at_b.count() == n; })) << at_b.count();
  std::lock_guard<std::mutex> guard{at_b.mtx};
  EXPECT_EQ(at_b.got[0].bytes, "first");
  for (int i = 1; i < n; ++i) {
    const auto& env = at_b.got[static_cast<size_t>(i)];
    ASSERT_EQ(env.bytes, i % 500 == 0 ? big : std::to_string(i)) << i;
    EXPECT_EQ(env.from, "a");
    EXPECT_EQ(env.kind, envelope::replicate);
    EXPECT_EQ(env.incarnation, 7);
  }
  EXPECT_EQ(a.sent(), static_cast<uint64_t>(n));
  EXPECT_FALSE(a.send("c", frame(envelope::replicate, 7, "to nobody")));  // not a peer
}

TEST(replica_link, a_member_that_is_gone_is_reported_down_and_reached_again_where_it_returns) {
  inbox at_a, at_b;
  replica_link a{"a", at_a.receive(), at_a.on_down()};
  ASSERT_TRUE(a.open("127.0.0.1", 0));
  auto b = std::make_unique<replica_link>("b", at_b.receive(), at_b.on_down());
  auto port_b = b->open("127.0.0.1", 0);
  ASSERT_TRUE(port_b);
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(*port_b)}});
  ASSERT_TRUE(send_when_connected(a, "b", frame(envelope::replicate, 1, "before")));
  ASSERT_TRUE(within(5s, [&] { return at_b.count() == 1; }));

  b.reset();  // its process is gone: a knows before it sends again
  ASSERT_TRUE(within(5s, [&] { return at_a.is_down("b"); }));
  EXPECT_FALSE(a.send("b", frame(envelope::replicate, 1, "lost")));

  inbox again;
  replica_link b2{"b", again.receive(), again.on_down()};
  auto port_b2 = b2.open("127.0.0.1", 0);
  ASSERT_TRUE(port_b2);
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(*port_b2)}});
  ASSERT_TRUE(send_when_connected(a, "b", frame(envelope::replica_acks, 2, "after")));
  ASSERT_TRUE(within(5s, [&] { return again.count() == 1; }));
  std::lock_guard<std::mutex> guard{again.mtx};
  EXPECT_EQ(again.got[0].bytes, "after");
  EXPECT_EQ(again.got[0].incarnation, 2);
}

TEST(replica_link, two_members_that_flood_each_other_and_confirm_slowly_never_hold_each_other) {
  // Each member's reader applies slowly and confirms what it applied to the other, while
  // both write far more batches than the sockets hold. A reader that waited on the member
  // it confirms to would wait on that member's reader, which waits on it: both would stall
  // until the stall limit closed the connections.
  struct member {
    std::mutex mtx;
    size_t applied = 0;  ///< the other's batches
    size_t confirmed = 0;  ///< its own batches the other confirmed
    std::set<std::string> down;
    replica_link* link = nullptr;
    std::string peer;
  };
  member ma, mb;
  ma.peer = "b";
  mb.peer = "a";
  auto receive = [](member& m) {
    return [&m](std::vector<envelope>& frames) {
      size_t batches = 0;
      for (const auto& env : frames) {
        if (env.kind == envelope::replicate) {
          ++batches;
          continue;
        }
        std::lock_guard<std::mutex> guard{m.mtx};
        m.confirmed += std::stoul(env.bytes);
      }
      if (batches == 0)
        return;
      std::this_thread::sleep_for(2ms);  // a slow store write
      {
        std::lock_guard<std::mutex> guard{m.mtx};
        m.applied += batches;
      }
      m.link->send(m.peer, frame(envelope::replica_acks, 1, std::to_string(batches)));
    };
  };
  auto on_down = [](member& m) {
    return [&m](const std::string& node) {
      std::lock_guard<std::mutex> guard{m.mtx};
      m.down.insert(node);
    };
  };
  replica_link a{"a", receive(ma), on_down(ma)};
  replica_link b{"b", receive(mb), on_down(mb)};
  ma.link = &a;
  mb.link = &b;
  auto port_a = a.open("127.0.0.1", 0);
  auto port_b = b.open("127.0.0.1", 0);
  ASSERT_TRUE(port_a && port_b);
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(*port_b)}});
  b.set_peers({{"a", "127.0.0.1:" + std::to_string(*port_a)}});
  // Both ways connected first (a confirmation of nothing), so that no confirmation is
  // sent before its connection is made.
  ASSERT_TRUE(send_when_connected(a, "b", frame(envelope::replica_acks, 1, "0")));
  ASSERT_TRUE(send_when_connected(b, "a", frame(envelope::replica_acks, 1, "0")));
  constexpr size_t n = 400;  // 25 MiB each way: several times what the sockets hold
  std::string batch(64u << 10, 'x');
  std::atomic<size_t> sent_a{0}, sent_b{0};
  auto flood = [&](replica_link& from, const std::string& to, std::atomic<size_t>& sent) {
    for (size_t i = 0; i < n && from.send(to, frame(envelope::replicate, 1, batch)); ++i)
      ++sent;
  };
  std::thread ta{[&] { flood(a, "b", sent_a); }};
  std::thread tb{[&] { flood(b, "a", sent_b); }};
  ta.join();
  tb.join();
  EXPECT_EQ(sent_a.load(), n);
  EXPECT_EQ(sent_b.load(), n);
  auto settled = [](member& m) {
    std::lock_guard<std::mutex> guard{m.mtx};
    return m.applied == n && m.confirmed == n;
  };
  EXPECT_TRUE(within(30s, [&] { return settled(ma) && settled(mb); }))
    << "a applied " << ma.applied << ", confirmed " << ma.confirmed << "; b applied "
    << mb.applied << ", confirmed " << mb.confirmed;
  EXPECT_TRUE(ma.down.empty() && mb.down.empty()) << "a connection was closed";
  EXPECT_EQ(a.failures() + b.failures(), 0u);
}

TEST(replica_link, a_member_that_takes_nothing_is_reported_down_and_its_sender_freed) {
  // A member that accepts the connection and then reads nothing (its process hangs): its
  // sender goes on while the connection holds what it sent, then waits at most the stall
  // limit, and the member is reported down.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::atomic<int> accepted{-1};
  std::thread acceptor{[&] { accepted = ::accept(listener, nullptr, nullptr); }};
  inbox at_a;
  replica_link a{"a", at_a.receive(), at_a.on_down()};
  ASSERT_TRUE(a.open("127.0.0.1", 0));
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(ntohs(addr.sin_port))}});
  std::string batch(1u << 20, 'x');
  ASSERT_TRUE(send_when_connected(a, "b", frame(envelope::replicate, 1, batch)));
  auto t0 = std::chrono::steady_clock::now();
  size_t sent = 1;
  while (sent < 14 && a.send("b", frame(envelope::replicate, 1, batch)))
    ++sent;
  EXPECT_EQ(sent, 14u) << "it was taken at once, short of the limit";
  if (socket_buffers_max() < (14u << 20)) {
    EXPECT_GT(a.unsent(), 0u) << "14 MiB that the sockets cannot all hold";
  }
  while (sent < 200 && a.send("b", frame(envelope::replicate, 1, batch)))
    ++sent;
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(sent, 200u) << "the sender never stopped";
  EXPECT_GT(sent, replica_link::max_pending >> 20) << "it stopped before its queue was full";
  EXPECT_LT(waited, replica_link::stall_limit + 3s);
  EXPECT_TRUE(within(5s, [&] { return at_a.is_down("b"); }));
  EXPECT_GE(a.failures(), 1u);
  EXPECT_EQ(a.unsent(), 0u) << "what the closed connection held is gone";
  acceptor.join();
  ::close(accepted);
  ::close(listener);
}

TEST(replica_link, a_connection_that_speaks_otherwise_is_closed) {
  inbox at_b;
  replica_link b{"b", at_b.receive(), at_b.on_down()};
  auto port = b.open("127.0.0.1", 0);
  ASSERT_TRUE(port);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(*port);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";  // a name far too long
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  char c;
  EXPECT_EQ(::read(fd, &c, 1), 0) << "the link closes it";
  ::close(fd);
  EXPECT_EQ(at_b.count(), 0u);
}

TEST(replica_link, with_tls_frames_cross_between_members_of_one_authority_only) {
  temp_dir dir;
  ASSERT_TRUE(make_test_certs(dir.path()));
  auto ours = peer_tls_context::load({dir.sub("server.pem"), dir.sub("server.key"), dir.sub("ca.pem")});
  auto theirs = peer_tls_context::load({dir.sub("other.pem"), dir.sub("other.key"), dir.sub("other.pem")});
  ASSERT_TRUE(ours && theirs);
  auto bad = peer_tls_context::load({dir.sub("server.pem"), dir.sub("other.key"), dir.sub("ca.pem")});
  ASSERT_FALSE(bad);
  EXPECT_NE(runtime::error_message(bad.error()).find("other.key"), std::string::npos);

  inbox at_a, at_b, at_c;
  replica_link a{"a", at_a.receive(), at_a.on_down()};
  replica_link b{"b", at_b.receive(), at_b.on_down()};
  replica_link c{"c", at_c.receive(), at_c.on_down()};
  auto port_b = b.open("127.0.0.1", 0, *ours);
  auto port_c = c.open("127.0.0.1", 0, *theirs);
  ASSERT_TRUE(port_b && port_c);
  ASSERT_TRUE(a.open("127.0.0.1", 0, *ours));
  a.set_peers({{"b", "127.0.0.1:" + std::to_string(*port_b)},
               {"c", "127.0.0.1:" + std::to_string(*port_c)}});
  ASSERT_TRUE(send_when_connected(a, "b", frame(envelope::replicate, 3, "first")));
  constexpr int n = 1000;
  std::string big(1'000'000, 'y');  // more than TLS records and socket buffers take at once
  for (int i = 1; i < n; ++i)
    ASSERT_TRUE(a.send("b", frame(envelope::replicate, 3, i % 200 == 0 ? big : std::to_string(i))))
      << "frame " << i << ", failed writes " << a.failures();
  ASSERT_TRUE(within(10s, [&] { return at_b.count() == n; })) << at_b.count();
  {
    std::lock_guard<std::mutex> guard{at_b.mtx};
    for (int i = 1; i < n; ++i)
      ASSERT_EQ(at_b.got[static_cast<size_t>(i)].bytes, i % 200 == 0 ? big : std::to_string(i));
    EXPECT_EQ(at_b.got[0].bytes, "first");
    EXPECT_EQ(at_b.got[0].from, "a");
  }
  EXPECT_FALSE(at_a.is_down("b"));
  // A member of another authority is never connected: nothing goes to it.
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(a.send("c", frame(envelope::replicate, 3, "refused")));
  EXPECT_EQ(at_c.count(), 0u);
  // A client that trickles its handshake is cut off once the handshake's limit is over.
  int slow = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(*port_b);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(slow, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const unsigned char record[] = {0x16, 0x03, 0x01, 0x02, 0x00};  // a 512-byte handshake
  ASSERT_EQ(::send(slow, record, sizeof record, MSG_NOSIGNAL), 5);
  auto t0 = std::chrono::steady_clock::now();
  bool cut = false;
  for (int i = 0; i < 30 && !cut; ++i) {  // a byte every 200 ms: never all of it in time
    std::this_thread::sleep_for(200ms);
    char byte = 1, got;
    cut = ::send(slow, &byte, 1, MSG_NOSIGNAL) < 0 || ::recv(slow, &got, 1, MSG_DONTWAIT) == 0;
  }
  ::close(slow);
  EXPECT_TRUE(cut);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, replica_link::handshake_limit + 1s);
  EXPECT_TRUE(tls_port_takes(*port_b, dir.sub("ca.pem"), dir.sub("client.pem"), dir.sub("client.key")));
  EXPECT_FALSE(tls_port_takes(*port_b, dir.sub("ca.pem"), "", ""));
  EXPECT_FALSE(tls_port_takes(*port_b, dir.sub("ca.pem"), dir.sub("other.pem"), dir.sub("other.key")));
}

} // namespace
} // namespace twin::test
