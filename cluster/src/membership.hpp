#pragma once

// A node's membership in the cluster: its lease and member key in etcd, the lease kept
// alive at a third of its TTL, the node's own reckoning of when the lease runs out, and
// the other members as etcd lists them. Private to the cluster module.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/error.hpp>

#include "etcd.hpp"
#include "twin/runtime/shard.hpp"

namespace twin::cluster {

/// A member as its key in etcd describes it.
struct member {
  runtime::node_id id;
  int64_t incarnation = 0;  ///< the revision its key was created at: new at every join
  std::string cluster_address;  ///< host:port of its traffic between nodes
  std::string replication_address;  ///< host:port of its replication link; "": none
  std::string http_url;         ///< its HTTP API
  std::string state = "up";     ///< up, or draining (its shards move away)
  bool tls = false;             ///< speaks TLS to the other members
};

/// The keys of a cluster named `name` in etcd.
struct keyspace {
  std::string root;  ///< "/twin/<name>/"
  explicit keyspace(const std::string& name) : root("/twin/" + name + "/") {}
  std::string config() const { return root + "config"; }
  std::string members() const { return root + "members/"; }
  std::string member(const runtime::node_id& id) const { return members() + id.str(); }
  std::string shards() const { return root + "shards/"; }
  std::string drains() const { return root + "drain/"; }
  std::string leader() const { return root + "leader"; }
};

struct membership_options {
  etcd::endpoints etcd;
  std::string cluster = "twin";
  runtime::node_id node;
  std::string cluster_address;
  std::string replication_address;
  std::string http_url;
  uint32_t shard_count = runtime::default_shard_count;
  uint32_t replication = 1;  ///< copies of each shard: agreed like the shard count
  /// Whether this member speaks TLS to the others: all live members alike, or it is refused.
  bool tls = false;
  std::chrono::seconds ttl{5};
};

class membership {
public:
  using members_fn = std::function<void(const std::vector<member>&)>;

  /// `on_members`: the members changed (called on the watch's thread); `on_lost`: the
  /// lease ran out by the node's own clock or etcd's (called once, on the keep-alive
  /// thread): the node must stop serving at once.
  membership(membership_options opts, members_fn on_members, std::function<void()> on_lost);
  ~membership();  ///< leaves

  /// Joins: agrees on the cluster's configuration, its shard count and replication factor
  /// (the first member writes it; a node configured otherwise is refused with
  /// `config_mismatch`), checks that the live members speak TLS to each other as it does
  /// (or plain text; else `config_mismatch`), takes a lease, writes its member key (refused
  /// with `config_mismatch` if a live member has its id) and starts keeping the lease alive
  /// and watching the members.
  caf::error join();

  /// Leaves: stops keeping the lease alive and revokes it (its member key goes with it).
  void leave();

  /// Whether the lease is held: renewed before its TTL ran out by the node's clock.
  bool alive() const;
  /// This node's incarnation (0 before it joined).
  int64_t incarnation() const;
  /// The lease this node's keys go with (0 before it joined).
  int64_t lease() const;
  const runtime::node_id& node() const { return opts_.node; }
  std::vector<member> members() const;

  etcd::client& etcd() { return etcd_; }
  const membership_options& options() const { return opts_; }
  const keyspace& keys() const { return keys_; }

  /// Renewals of the lease that succeeded, and those that failed.
  uint64_t renewals() const;
  uint64_t renewal_failures() const;

private:
  void keep_alive_loop();
  /// `config_mismatch` if a live member that joined before incarnation `before` speaks TLS
  /// to the others and this one does not, or the other way round.
  caf::error check_tls(int64_t before);
  void read_members();
  void apply(const std::vector<etcd::event>& events);
  void publish();

  membership_options opts_;
  keyspace keys_;
  members_fn on_members_;
  std::function<void()> on_lost_;
  etcd::client etcd_;
  etcd::client renew_;  ///< the keep-alive's own connection: never behind another call

  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::map<std::string, member> members_;
  int64_t lease_ = 0;
  int64_t incarnation_ = 0;
  std::chrono::steady_clock::time_point expires_{};  ///< the lease's end by this node's clock
  bool alive_ = false;
  bool stopping_ = false;
  uint64_t renewals_ = 0;
  uint64_t renewal_failures_ = 0;
  std::thread keeper_;
  std::unique_ptr<etcd::watch> watch_;
};

/// A member's key value (JSON) and back; nullopt if it is not one.
std::string encode_member(const member& m);
std::optional<member> decode_member(const std::string& text);

} // namespace twin::cluster
