#pragma once

// Traffic between nodes: one actor per node, published on its cluster port with CAF's
// middleman, that takes envelopes (Cap'n Proto bytes and what routes them) from the other
// nodes' actors; connections to the members made in the background and watched, so that
// a member's loss is known at once. With TLS, of two members the one with the lesser id
// connects and says hello (its actor) over the connection: one connection a pair. Private
// to the cluster module.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/meta/type_name.hpp>

namespace twin::cluster {

/// What crosses between nodes: a request to a twin or for a page of a shard being handed
/// off, and the reply to one (or its refusal).
struct envelope {
  uint8_t kind = 0;          ///< `request`, `reply` or `redirect`
  std::string from;          ///< the sending node: where replies go
  int64_t incarnation = 0;   ///< of the sending node
  uint64_t seq = 0;          ///< per link, from 1: the receiver checks the order
  uint64_t token = 0;        ///< the sender's key of a request that expects a reply; 0: none
  uint32_t shard = 0;
  int64_t epoch = 0;         ///< the sender's view of the shard's epoch
  uint8_t hops = 0;          ///< times the request was passed on
  std::string bytes;         ///< a request or reply (schemas/requests.capnp)

  static constexpr uint8_t request = 0;
  static constexpr uint8_t reply = 1;
  static constexpr uint8_t copy = 2;      ///< asks for a page of `shard` from cursor `bytes`
  static constexpr uint8_t page = 3;      ///< answers `copy` or `catch_up` with a page
  static constexpr uint8_t refusal = 4;   ///< answers `copy` or `query` with why not
  static constexpr uint8_t query = 5;     ///< a query over the receiver's shards (`bytes`: JSON)
  static constexpr uint8_t answer = 6;    ///< answers `query` or `history`
  static constexpr uint8_t history = 7;   ///< a history read for a twin the receiver owns (JSON)
  static constexpr uint8_t watch = 8;     ///< the filters the sender's clients watch (JSON)
  static constexpr uint8_t events = 9;    ///< change events of the sender's twins
  static constexpr uint8_t gap = 10;      ///< events for the receiver were lost
  static constexpr uint8_t sync = 11;     ///< asks for an answer once all sent before is in
  static constexpr uint8_t catch_up = 12; ///< asks for a page of the changes of `shard`
  static constexpr uint8_t replicate = 13;    ///< a primary's batches for a follower
  static constexpr uint8_t replica_acks = 14; ///< a follower's acknowledgements
  static constexpr uint8_t follow = 15;   ///< asks to receive `shard`'s batches of `epoch`
  static constexpr uint8_t snapshot = 16; ///< asks the primary for a page of `shard`
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(caf::meta::type_name("twin.envelope"), x.kind, x.from, x.incarnation, x.seq, x.token,
           x.shard, x.epoch, x.hops, x.bytes);
}

/// Envelopes to one member, in the order they were sent: what crosses a link at once.
struct envelopes {
  std::vector<envelope> items;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelopes& x) {
  return f(caf::meta::type_name("twin.envelopes"), x.items);
}

struct peer_tls;

/// Adds what the cluster needs to an actor system's configuration: the middleman, the
/// envelope type, heartbeats so that a frozen peer is noticed within a second, and with
/// `tls` enabled CAF's OpenSSL module showing its certificate. A transport of a system
/// with that module speaks TLS only, to members whose certificates the CA signs.
void configure_transport(caf::actor_system_config& cfg, const peer_tls& tls);

class transport {
public:
  using receive_fn = std::function<void(envelope&&)>;
  using down_fn = std::function<void(const std::string& node)>;

  /// `on_receive` and `on_down` run on the actor system's threads: they must not block.
  transport(caf::actor_system& sys, std::string self, receive_fn on_receive, down_fn on_down);
  ~transport();  ///< closes

  /// Publishes this node's actor on `bind`:`port` (0: any); returns the port.
  caf::expected<uint16_t> open(const std::string& bind, uint16_t port);
  /// The members to be connected with, by node id: their host:port. Connections to new
  /// ones are made in the background (with TLS, to those with greater ids only: the others
  /// connect to this one); those to members no longer listed are dropped.
  void set_peers(std::map<std::string, std::string> addresses);
  /// Sends `env` to `node` in order after what was sent before; false if not connected,
  /// or if the link's queue is full. Envelopes sent to one member while the previous ones
  /// wait to go cross together (at most 4 MiB at once). A member has at most 8,192
  /// envelopes out that the other has not said it took (it says the last sequence number
  /// it took every 1,024 and every 250 ms); beyond, they queue, at most 65,536 and 64 MiB
  /// a link.
  bool send(const std::string& node, envelope env);
  bool connected(const std::string& node) const;
  /// Stops connecting and sending, and unpublishes.
  void close();

  /// Envelopes that came out of order on their link (none on a healthy one).
  uint64_t out_of_order() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace twin::cluster
