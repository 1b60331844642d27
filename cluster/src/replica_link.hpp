#pragma once

// A direct TCP connection from each member to each other for the shards' batches: the
// primary's store writer writes each envelope onto the socket itself, and a thread of
// each connection on the follower reads it and hands it on (with the frames that came
// with it), with none of the actor system's mailboxes and I/O threads in between. Everything else between members goes
// through `transport`. Private to the cluster module.
//
// A connection starts with a hello (the sender's node id); each frame then carries a kind,
// the sender's incarnation and the envelope's bytes:
//
//   hello: u32 length, node id
//   frame: u32 length of the bytes, u8 kind, 3 bytes zero, i64 incarnation, bytes
//
// (little-endian). With TLS, both ends show a certificate of the cluster's CA, and the
// stream above is inside it. A frame is written at once as far as the socket takes it, and the
// rest by the link's writing thread as the socket drains, so a sender never waits on
// the receiver, except a sender of batches while the receiver is `max_pending` behind.
// A connection that fails, or takes nothing for `stall_limit`, is closed and its member
// reported down; nothing is sent again on it, so a receiver sees each connection's frames
// in order and without a gap, and a member that missed frames learns it from the sequence
// numbers they carry.

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

#include "peer_tls_context.hpp"
#include "transport.hpp"

namespace twin::cluster {

class replica_link {
public:
  /// The frames that were read together, in the order they were sent.
  using receive_fn = std::function<void(std::vector<envelope>& frames)>;
  using down_fn = std::function<void(const std::string& node)>;

  /// `on_receive` runs on the thread of the connection the frames came on, which reads
  /// nothing more until it returns; `on_down` on the link's connecting thread, once a
  /// connection to a member failed.
  replica_link(std::string self, receive_fn on_receive, down_fn on_down);
  ~replica_link();  ///< closes

  /// Listens on `bind`:`port` (0: any free port); returns the port. With `tls`,
  /// connections are made and accepted with it only.
  caf::expected<uint16_t> open(const std::string& bind, uint16_t port,
                               std::shared_ptr<const peer_tls_context> tls = nullptr);
  /// The members to connect to, by node id: their host:port. Connections to new ones are
  /// made in the background; those to members no longer listed are closed.
  void set_peers(std::map<std::string, std::string> addresses);
  /// Writes `env` (its kind, incarnation and bytes) to `node`'s connection, after what was
  /// sent before; false if there is none yet (the connecting thread makes one within 0.1 s),
  /// or if the write failed (the connection is then closed, and `node` reported down).
  /// Batches (`replicate`) wait while `max_pending` bytes are not written yet.
  bool send(const std::string& node, const envelope& env);
  /// Whether `node` has a link address (a member of an earlier version has none).
  bool reaches(const std::string& node) const;
  /// Stops listening, connecting and sending; returns once no frame is handed on any more.
  void close();

  /// Frames this link wrote, and writes that failed.
  uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  /// Bytes its connections took and have not written yet.
  uint64_t unsent() const;

  /// The largest frame a receiver takes (bigger ones close the connection).
  static constexpr uint32_t max_frame = 256u << 20;
  /// Bytes of a connection not written yet beyond which its batches wait.
  static constexpr size_t max_pending = 16u << 20;
  /// A connection whose bytes wait this long without any of them written is closed.
  static constexpr std::chrono::seconds stall_limit{2};
  /// A TLS handshake takes at most this long.
  static constexpr std::chrono::seconds handshake_limit{2};

private:
  struct outbound;
  struct inbound;

  void accept_loop();
  void read_loop(inbound& in);
  /// Connects to the peers without a connection, and closes (and reports) failed ones.
  void connect_loop();
  /// Writes what waits on the connections as they drain, and watches them for their end.
  void write_loop();
  /// Connects to `address` (host:port); -1 if it could not.
  int connect_to(const std::string& address) const;
  /// A write on `c` failed or stalled (with its lock): nothing more goes on it.
  void broke(outbound& c);
  /// Wakes the writing thread: a connection has bytes waiting.
  void wake();

  const std::string self_;
  const receive_fn on_receive_;
  const down_fn on_down_;
  std::shared_ptr<const peer_tls_context> tls_;
  std::atomic<bool> closing_{false};
  int listener_ = -1;
  const int wake_fd_;  ///< an eventfd the writing thread polls
  std::thread acceptor_, connector_, writer_;

  mutable std::mutex mtx_;  ///< the peers and connections
  std::map<std::string, std::string> peers_;
  std::map<std::string, std::shared_ptr<outbound>> out_;
  std::list<std::unique_ptr<inbound>> in_;

  std::atomic<uint64_t> sent_{0}, failures_{0};
};

} // namespace twin::cluster
