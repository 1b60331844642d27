#pragma once

// The shard table: each shard's owner and epoch as etcd holds them (key
// `<root>shards/<n>`, value {"owner": node}; the epoch is the key's mod revision), kept
// current by a watch; and the coordinator, elected through etcd, that gives shards
// without an owner to the members. Private to the cluster module.

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "membership.hpp"
#include "twin/cluster/placement.hpp"

namespace twin::cluster {

/// A follower that holds every change its primary acknowledged, in the incarnation that
/// copied it (a member that restarted has to copy the shard again).
struct insync_follower {
  std::string node;
  int64_t incarnation = 0;
  friend bool operator==(const insync_follower& a, const insync_follower& b) {
    return a.node == b.node && a.incarnation == b.incarnation;
  }
};

struct shard_owner {
  std::string owner;  ///< a node id; empty: none
  int64_t epoch = 0;  ///< the etcd revision that made it the owner
  /// A handoff under way (key `<root>shards/<n>/to`): the member it goes to, and the
  /// revision of the handoff's key; empty and 0: none.
  std::string moving_to;
  int64_t handoff = 0;
  int64_t handoff_seen = 0;  ///< the last revision of the handoff's key this node applied
  /// The shard's followers (key `<root>shards/<n>/replicas`, {"followers": [...],
  /// "insync": [...]}): members that keep a copy the owner ships its changes to, and of
  /// them those that hold every change the owner acknowledged (only those may become
  /// owner); the key's mod revision, 0: none.
  std::vector<std::string> followers;
  std::vector<insync_follower> insync;
  int64_t replicas = 0;

  bool follows(const std::string& node) const {
    return std::find(followers.begin(), followers.end(), node) != followers.end();
  }
  /// The ids of the followers in sync.
  std::vector<std::string> insync_nodes() const {
    std::vector<std::string> out;
    for (const auto& f : insync)
      out.push_back(f.node);
    return out;
  }
};

/// The copies of shard `e` that hold every acknowledged change, with `live` the members and
/// their incarnations: its owner's, if it is a member, and those of its followers in sync
/// in the incarnation that copied it (one that restarted has not copied it yet).
uint32_t copies_in_sync(const shard_owner& e, const std::map<std::string, int64_t>& live);

/// The value of a shard's replicas key, and back (nullopt: not one).
std::string encode_replicas(const std::vector<std::string>& followers,
                            const std::vector<insync_follower>& insync);
bool decode_replicas(const std::string& value, std::vector<std::string>& followers,
                     std::vector<insync_follower>& insync);

class shard_table {
public:
  using changed_fn = std::function<void()>;

  /// Reads the table from etcd and watches it; `on_change` runs (on the watch's thread)
  /// after each change it applied.
  shard_table(membership& m, uint32_t shard_count, changed_fn on_change);
  ~shard_table();

  caf::error start();
  /// Stops following etcd; the table stays as it was.
  void stop();
  /// Reads the whole table from etcd again (the watch may lag far behind, as after the
  /// node was stopped for a while); the watch goes on.
  caf::error refresh();

  shard_owner get(runtime::shard_id shard) const;
  /// Takes the outcome of this node's own transaction before the watch brings it.
  void set_owner(runtime::shard_id shard, std::string owner, int64_t epoch);
  std::vector<shard_owner> all() const;
  uint32_t shard_count() const { return static_cast<uint32_t>(table_.size()); }

  /// The keys of a shard: its owner, a handoff under way, its followers.
  enum class key_kind : uint8_t { owner, handoff, replicas };
  /// The shard number of a table key, or -1; `kind`: which of the shard's keys it is.
  static int64_t shard_of_key(const std::string& key, const std::string& prefix,
                              key_kind* kind = nullptr);

private:
  /// Reads the whole table; returns the revision it was read at.
  caf::expected<int64_t> load();
  void apply(const std::vector<etcd::event>& events);
  /// Applies one key of the table (with the lock).
  void set_entry(const etcd::key_value& kv, bool deleted);

  membership& membership_;
  changed_fn on_change_;
  mutable std::shared_mutex mtx_;
  std::vector<shard_owner> table_;
  std::unique_ptr<etcd::watch> watch_;
};

/// The coordinator: while this node holds the cluster's leader key (with its own lease),
/// it balances the shards over the members that are up and not draining. A shard without
/// an owner is given at once (once the members have not changed for `settle`, so that
/// nodes started together share them); an owned one moves by handoff: the coordinator
/// writes the handoff's key, at most `max_handoffs` at once, and the new owner completes
/// it. Shards of a member that is gone stay where they are: only it has their data. A
/// handoff whose old or new owner is gone is called off.
class coordinator {
public:
  /// `replication`: copies of each shard (R); beyond one, the coordinator also gives each
  /// shard R-1 followers, and makes an in-sync follower the owner of a shard whose owner
  /// is gone.
  coordinator(membership& m, shard_table& table, std::chrono::milliseconds settle,
              uint32_t replication = 1, size_t max_handoffs = 64);
  ~coordinator();
  void start();
  /// The members changed.
  void poke();
  bool leading() const;

private:
  void loop();
  bool try_lead();
  /// Promotes and recruits followers (with R > 1); once the members have not changed for
  /// `settle` (`settled`), also balances the shards.
  void rebalance(bool settled);
  /// Promotes followers of shards whose owner is gone, drops followers that are gone, and
  /// recruits followers for shards short of them; once `settled`, also spreads the
  /// follower roles.
  void replicate(const std::vector<shard_owner>& table, const std::map<std::string, int64_t>& live,
                 const std::set<std::string>& draining, bool settled);
  /// Spreads follower roles over the members (`roles`: each one's count) as evenly as the
  /// shards, make before break: a member with two roles fewer than a follower of the shard
  /// `e` becomes an extra follower, and once its copy is in sync the busiest follower in
  /// sync leaves. `followers` and `insync` are the shard's next lists; `moving` counts the
  /// shards with an extra follower (at most `max_role_moves`).
  void spread_roles(const shard_owner& e, size_t wanted, std::map<std::string, size_t>& roles,
                    std::vector<std::string>& followers, std::vector<insync_follower>& insync,
                    size_t& moving);
  static constexpr size_t max_role_moves = 32;

  membership& membership_;
  shard_table& table_;
  std::chrono::milliseconds settle_;
  uint32_t replication_;
  size_t max_handoffs_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool leading_ = false;
  std::chrono::steady_clock::time_point changed_at_;
  std::thread thread_;
};

} // namespace twin::cluster
