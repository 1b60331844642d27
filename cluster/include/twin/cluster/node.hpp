#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <nlohmann/json.hpp>

#include "twin/cluster/peer_tls.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/metrics.hpp"
#include "twin/runtime/query.hpp"
#include "twin/runtime/router.hpp"
#include "twin/runtime/kv_store.hpp"
#include "twin/runtime/shard.hpp"

namespace caf {
class actor_system;
class actor_system_config;
} // namespace caf

namespace twin::cluster {

class tracking_store;

/// Adds what a cluster member needs to its actor system's configuration (CAF's
/// middleman, the envelope type, heartbeats between nodes, and CAF's OpenSSL module when
/// `tls` is enabled); call before making the system, with the `tls` of `node_options`.
void configure(caf::actor_system_config& cfg, const peer_tls& tls = {});

struct node_options {
  /// etcd's endpoints: `http://host:port` or `https://host:port`, separated by commas.
  /// Required.
  std::string etcd;
  /// For https endpoints: PEM certificates that sign etcd's (empty: the system's), and the
  /// node's own certificate and key when etcd asks clients for one (--client-cert-auth).
  std::string etcd_ca_file;
  std::string etcd_cert_file;
  std::string etcd_key_file;
  /// The cluster's name: its keys in etcd are under /twin/<name>/. Default: "twin".
  std::string cluster = "twin";
  runtime::node_id id;
  /// TLS between members (see `peer_tls`); the actor system must be configured with it.
  /// Every member of a cluster has it, or none.
  peer_tls tls;
  /// Address and port of the traffic between nodes (0: any free port).
  std::string bind = "127.0.0.1";
  uint16_t port = 0;
  /// host:port where the other members reach this one. Default: bind and the bound port.
  std::string advertise;
  /// Port of the direct connections that carry the shards' batches to their followers
  /// (with R > 1), on `bind`; the other members reach it on `advertise`'s host. 0: any
  /// free port.
  uint16_t replication_port = 0;
  /// This node's HTTP API, as members list it.
  std::string http_url;
  /// The membership lease's TTL: a node that cannot renew it for this long stops serving.
  std::chrono::seconds ttl{5};
  /// A request forwarded to another member fails (`unavailable`) without an answer in
  /// this time.
  std::chrono::milliseconds request_timeout{10'000};
  /// Shards without an owner are given out once the members have not changed for this
  /// long, so that members started together share them.
  std::chrono::milliseconds settle{2'000};
  /// Forwarded requests awaiting an answer, at most; more are answered `unavailable`.
  size_t max_pending = 100'000;
  /// How long `start` keeps trying to join while etcd cannot be reached or answers errors
  /// (it may be starting too).
  std::chrono::milliseconds join_timeout{60'000};
  /// How long `stop` waits for the node's shards to be handed to other members.
  std::chrono::milliseconds drain_timeout{60'000};
  /// Copies of each shard (R), the owner's included: the cluster's, agreed in etcd when it
  /// is created (a member configured otherwise is refused). Beyond one, the owner of a
  /// shard (its primary) acknowledges a change once R members hold it durably, and a
  /// follower takes over a shard whose owner's lease ran out.
  uint32_t replication_factor = 1;
  /// Copies a change needs before it is acknowledged (1 to R); 0: R. With fewer copies
  /// available, a write waits for them (at most `replication_timeout`), then fails
  /// `unavailable`.
  uint32_t min_insync = 0;
  std::chrono::milliseconds replication_timeout{5'000};
};

/// A member of a cluster: its membership in etcd, the shard table, and the router that
/// delivers each request to the owner of its twin's shard (this node's host, or another
/// member over CAF). The host must be made with `host_options::serve_all_shards` off and
/// be given `router()` as its router and fallback before it starts.
///
/// Shards without an owner are given to the members by the coordinator (the member that
/// holds the cluster's leader key), balanced; a member serves the shards the table gives
/// it and nothing else, and one that loses its lease stops serving them at once and joins
/// again with a new incarnation.
class node final : public runtime::router {
public:
  /// `store` wraps the host's store, and the host writes through it: shards handed off
  /// are copied out of it (while this node still serves them, their changes recorded)
  /// and into it.
  node(caf::actor_system& sys, runtime::host& host, tracking_store& store, node_options opts);
  ~node() override;  ///< stops

  /// Opens the port between nodes, joins the cluster and starts serving the shards the
  /// table gives this node. `config_mismatch` if the cluster has another shard count than
  /// the host's store, or a live member has this node's id; `etcd_unavailable` if etcd
  /// cannot be reached.
  caf::error start();
  /// Hands every shard of this node to the other members (if there are any; at most for
  /// `drain_timeout`), then leaves the cluster (revokes the lease) and closes the port.
  void stop();

  /// Marks member `id` draining: the coordinator moves its shards to the others, and gives
  /// it none until it starts again. `not_member` if no member has that id.
  caf::error drain(const std::string& id);

  using local_query_fn =
    std::function<caf::expected<runtime::query_page>(const runtime::twin_query&)>;
  /// Sets how this member runs a query on its own store (`run_query`); call before
  /// `start`. The member restricts it to the shards it serves.
  void set_local_query(local_query_fn fn);
  /// Runs `q` over every member's shards and merges the answers in id order; the cursor
  /// is an id, so it holds across changes of the members. `unavailable` if a member does
  /// not answer (a page without its twins would look whole). May block: not from an
  /// actor or an I/O thread.
  caf::expected<runtime::query_page> query(const runtime::twin_query& q);

  using local_history_fn =
    std::function<caf::expected<runtime::history_page>(const runtime::history_query&)>;
  /// Sets how this member reads history from its own store (`read_history`); before `start`.
  void set_local_history(local_history_fn fn);
  /// Reads `q` from the twin's owner. May block, like `query`.
  caf::expected<runtime::history_page> history(const runtime::history_query& q);

  /// Sets the host's feed of changes: this member relays its twins' events to the members
  /// whose clients watch them, and publishes them in `events()`. Before `start`.
  void set_local_feed(runtime::change_feed* local);
  /// The whole cluster's changes: this member's twins' events, and the events of the
  /// other members' twins that this member's subscribers watch (see `watch`), each twin's
  /// in version order. Streams that cannot be kept whole (a member went away, a relay fell
  /// behind) are marked lagged.
  runtime::change_feed& events();
  /// Tells the other members what this member's subscribers to `events()` watch, waiting
  /// for their answers (at most 2 s each): after a subscription, before its stream starts,
  /// so that it gets the events published anywhere after this returns. May block.
  void watch();

  /// Values the members share (RUL models under "rul/", API tokens under "tokens/"), kept
  /// in etcd under /twin/<name>/<prefix>: a store every member reads and writes, and
  /// follows (by a watch) as the others write it. Call after `start`; the store goes
  /// before the node.
  std::unique_ptr<runtime::kv_store> shared_kv_store(const std::string& prefix);

  /// Delivers to the owner of the twin's shard.
  void route(const runtime::twin_id& id, runtime::twin_request req) override;

  /// Whether this node serves what the table gives it, and why not.
  std::pair<bool, std::string> ready() const;
  /// Members, the shard table and handoffs, as GET /v1/cluster shows them.
  nlohmann::json status() const;
  /// The cluster's metrics (members, shards owned, forwarding, etcd).
  const runtime::metrics::collectable& probe() const;
  /// The port between nodes (after `start`).
  uint16_t port() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace twin::cluster
