#pragma once

// The parts of a cluster member, shared by its files: routing (node.cpp), ownership and
// handoffs (ownership.cpp), queries and history (query.cpp), the change stream
// (events.cpp, through `change_streams`) and its figures (node_status.cpp). Private to the
// cluster module.

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <deque>
#include <set>

#include <caf/actor_system.hpp>

#include "events.hpp"
#include "membership.hpp"
#include "replica_link.hpp"
#include "replication.hpp"
#include "shard_table.hpp"
#include "transport.hpp"
#include "twin/cluster/node.hpp"
#include "twin/cluster/tracking_store.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/query.hpp"
#include "twin/runtime/wire.hpp"

namespace twin::cluster {

using runtime::shard_id;
using runtime::twin_id;
using runtime::twin_request;
using clock_type = std::chrono::steady_clock;

/// Requests forwarded to other members, by token, until their answer or their deadline.
class pending_requests {
public:
  struct entry {
    twin_request req;
    std::string node;
    clock_type::time_point sent;
    clock_type::time_point deadline;
  };

  /// Keeps `req` under a new token; 0 (and `req` untouched) if `limit` are pending.
  uint64_t keep(twin_request& req, const std::string& node, std::chrono::milliseconds timeout,
                size_t limit) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (map_.size() >= limit)
      return 0;
    auto token = ++next_;
    auto now = clock_type::now();
    map_.emplace(token, entry{std::move(req), node, now, now + timeout});
    return token;
  }

  std::optional<entry> take(uint64_t token) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = map_.find(token);
    if (i == map_.end())
      return std::nullopt;
    auto e = std::move(i->second);
    map_.erase(i);
    return e;
  }

  /// Takes those past their deadline, or (if `node` is given) sent to `node`.
  std::vector<entry> take_if(const std::string* node) {
    std::vector<entry> out;
    auto now = clock_type::now();
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto i = map_.begin(); i != map_.end();) {
      if (node != nullptr ? i->second.node == *node : i->second.deadline <= now) {
        out.push_back(std::move(i->second));
        i = map_.erase(i);
      } else {
        ++i;
      }
    }
    return out;
  }

  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return map_.size();
  }

private:
  mutable std::mutex mtx_;
  uint64_t next_ = 0;
  std::unordered_map<uint64_t, entry> map_;
};

struct node::impl : runtime::metrics::collectable {
  impl(caf::actor_system& sys, runtime::host& host, tracking_store& store, node_options opts);

  // -- routing ------------------------------------------------------------------------

  void route(const twin_id& id, twin_request req, uint8_t hops);
  /// For the host: a request for a shard it does not serve.
  void route_unserved(const twin_id& id, twin_request req);
  void forward(const std::string& owner, shard_id shard, int64_t epoch, const twin_id& id,
               twin_request req, uint8_t hops);
  void on_envelope(envelope&& env);
  /// Answers the question `asked` (a copy, query or history request) with `bytes` as an
  /// envelope of `kind`, or with a refusal that carries the error.
  void answer(const envelope& asked, uint8_t kind, caf::expected<std::string> bytes);
  void on_request(envelope&& env);
  void on_reply(envelope&& env);
  void on_peer_down(const std::string& node);

  // -- ownership ------------------------------------------------------------------------

  /// Makes the host serve what the table gives this node, and nothing else; starts and
  /// ends the handoffs this node takes part in.
  void reconcile();
  /// `reconcile` for shard `shard`: serves it, lets it go, or takes part in its handoff.
  void reconcile_shard(shard_id shard, const shard_owner& e, std::vector<shard_id>& leaving);
  /// `reconcile` for shard `shard`, which this node hands off (under `h`, on
  /// `handoff_mtx`, which it may release): follows the table's changes to the handoff,
  /// ends it once the new owner took the shard, and calls it off.
  void reconcile_outgoing(shard_id shard, const shard_owner& e, std::unique_lock<std::mutex>& h,
                          std::vector<shard_id>& leaving);
  /// Keeps `req` behind the requests of a shard this node is releasing to hand it off, to
  /// follow them to the new owner; false (and `req` untouched) if its shard is not being
  /// released for a handoff (while it is copied, this node serves it).
  bool wait_behind_handoff(shard_id shard, const twin_id& id, twin_request& req);
  /// Sends `req` to the owner the table names, never to this node's host.
  void forward_now(const twin_id& id, twin_request req);
  /// Routes the requests that waited for shard `s` (to the host, or to its owner).
  void flush_waiting(uint32_t s, bool local);
  /// Keeps `req` with those waiting for shard `s`; false (`req` untouched) if too many wait.
  bool wait(uint32_t s, const twin_id& id, twin_request& req);
  /// Keeps `req` behind the requests of its shard that wait or are being passed on, so
  /// that it does not overtake them; false (`req` untouched) if none wait.
  bool wait_behind_waiting(shard_id shard, const twin_id& id, twin_request& req);
  /// Ends the handoff of shard `s` (done, or called off): routes what waited behind it
  /// (to the host, or to the new owner) until nothing is left, then forgets the handoff.
  void finish_outgoing(uint32_t s, bool local);
  /// The old owner's side of a handoff: a page of the shard for its new owner (`copy`),
  /// or of its changes since the copy began, once released (`catch_up`, which starts
  /// the release).
  void on_copy_request(envelope&& env);
  /// Stops serving `shard`, whose new owner has its copy; its held requests follow it.
  void release_outgoing(shard_id shard);
  /// The new owner's side: copies the shard, then takes it in one transaction.
  void copy_loop();
  caf::error copy_in(uint32_t s);
  /// Copies `shard` from its old owner `from`, then its changes once released.
  caf::error fetch_shard(shard_id shard, const std::string& from);
  /// Sends `env` to `node` and waits for its answer (a page, a query's answer, or why
  /// not), at most `timeout`.
  caf::expected<std::string> ask(const std::string& node, envelope env,
                                 std::chrono::milliseconds timeout);
  /// The other members, by node id.
  std::vector<std::string> peers() const;

  // -- replication (replicas.cpp) ---------------------------------------------------------

  /// `reconcile` of shard `shard`'s copies: leads it (before the host serves it), follows
  /// it, or neither. False: this member owns it but must not serve it (its store lost the
  /// copy it led before it restarted).
  bool reconcile_replica(shard_id shard, const shard_owner& e);
  /// Makes an in-sync follower of `shard` (live, in the incarnation that copied it) its
  /// owner, if there is one.
  void hand_to_follower(shard_id shard, const shard_owner& e);
  /// Records in etcd that `node` (in `incarnation`) holds (or not) every change of `shard`
  /// this member acknowledged as its primary at `epoch`; the revision, 0 if not recorded.
  int64_t record_insync(shard_id shard, int64_t epoch, const std::string& node,
                        int64_t incarnation, bool add);
  /// A follower's request to receive the shard's batches, or a page of the shard.
  void on_follow(const envelope& env);
  void on_snapshot(const envelope& env);

  // -- queries (query.cpp) ----------------------------------------------------------------

  /// A query over every member's shards, merged in id order.
  caf::expected<runtime::query_page> query(const runtime::twin_query& q);
  /// A history read, from the twin's owner.
  caf::expected<runtime::history_page> history(const runtime::history_query& q);
  /// This member's part: its own shards.
  caf::expected<runtime::query_page> query_here(runtime::twin_query q);
  /// Answers other members' queries and requests for pages of a shard, on a thread of its
  /// own (both read the store).
  void query_loop();
  void on_lease_lost();
  /// Asks the supervisor to reconcile (from a host callback, which must not block).
  void want_reconcile();
  /// Whether etcd says shard `s` is still this node's at `epoch`, with no handoff.
  bool still_owner(uint32_t s, int64_t epoch);
  /// Whether a member other than this one is up and not draining.
  bool others_can_take();
  /// Expires forwarded requests; rejoins after a lost lease.
  void supervise();

  void collect(std::vector<runtime::metrics::family>& out) const override;
  /// The members now, with their incarnations.
  std::map<std::string, int64_t> incarnations() const;
  /// The replication link's TLS (null: plain), its files checked; an error if the actor
  /// system's configuration disagrees with `opts.tls`.
  caf::expected<std::shared_ptr<const peer_tls_context>> peer_tls() const;

  caf::actor_system& sys;
  runtime::host& host;
  tracking_store& store;
  node_options opts;
  uint32_t shard_count;
  std::string me;
  std::unique_ptr<membership> members;
  std::unique_ptr<shard_table> table;
  std::mutex coord_mtx;  ///< `coord` is made and reset while the members' watch pokes it
  std::unique_ptr<coordinator> coord;
  std::unique_ptr<transport> links;
  std::unique_ptr<change_streams> streams;
  std::unique_ptr<replication> replicas;  ///< with R > 1
  /// The shards' batches to their followers (with R > 1); gone before `replicas`, whose
  /// batches its threads hand on.
  std::unique_ptr<replica_link> replica_links;
  uint16_t port = 0;
  pending_requests pending;

  /// Requests for shards the table gives this node before its host serves them.
  std::mutex waiting_mtx;
  struct waiting_list {
    std::vector<runtime::routed_request> requests;
    bool flushing = false;  ///< a thread passes them on (see `flush_waiting`)
  };
  std::unordered_map<uint32_t, waiting_list> waiting;
  static constexpr size_t max_waiting = 100'000;
  size_t waiting_count = 0;
  /// Entries of `waiting`, readable without the lock: 0 lets routing skip it.
  std::atomic<size_t> waiting_shards{0};

  /// Handoffs of shards away from this node: where to, whether released, and the
  /// requests the release held, to follow the shard.
  struct outgoing_handoff {
    std::string to;
    bool copied = false;     ///< `to` began copying the shard since its changes are recorded
    std::pair<int64_t, int64_t> attempt{0, 0};  ///< of that copy: (incarnation, pass)
    bool releasing = false;  ///< the new owner has its copy; requests wait from now on
    clock_type::time_point releasing_since{};
    bool released = false;
    std::optional<envelope> parked;  ///< the new owner's request for changes, until released
    std::vector<runtime::routed_request> held;
  };
  std::mutex handoff_mtx;
  std::map<uint32_t, outgoing_handoff> outgoing;
  /// Entries of `outgoing`, readable without the lock: 0 lets routing skip it.
  std::atomic<size_t> outgoing_count{0};
  std::atomic<bool> reconcile_wanted{false};
  std::set<uint32_t> incoming;    ///< shards this node copies in
  std::atomic<int64_t> copy_attempts{0};  ///< passes of copies into this node, so far
  std::deque<uint32_t> to_copy;   ///< of them, those not started yet
  std::condition_variable copy_cv;
  std::thread copier;
  std::function<caf::expected<runtime::query_page>(const runtime::twin_query&)> local_query;
  std::function<caf::expected<runtime::history_page>(const runtime::history_query&)>
    local_history;
  std::deque<envelope> queries;  ///< queries and copy requests, waiting for `query_loop`
  std::condition_variable query_cv;
  std::thread query_worker;
  /// Answers awaited by `ask`, by token.
  std::mutex page_mtx;
  std::condition_variable page_cv;
  std::map<uint64_t, std::optional<caf::expected<std::string>>> pages;
  uint64_t next_page = 0;
  std::atomic<uint64_t> handoffs_done{0};
  std::atomic<uint64_t> handoffs_failed{0};
  runtime::metrics::histogram handoff_duration{runtime::metrics::histogram::latency_bounds()};
  /// From the release of a shard handed off to the new owner's taking it: how long its
  /// requests wait.
  runtime::metrics::histogram handoff_pause{runtime::metrics::histogram::latency_bounds()};

  std::recursive_mutex reconcile_mtx;
  std::atomic<bool> started{false};
  std::atomic<bool> lost{false};
  std::mutex sup_mtx;
  std::condition_variable sup_cv;
  std::atomic<bool> stopping{false};
  std::thread supervisor;

  // Figures.
  std::atomic<uint64_t> forwarded{0};
  std::atomic<uint64_t> forward_failures{0};
  std::atomic<uint64_t> redirected{0};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> leases_lost{0};
  std::atomic<uint64_t> failovers{0};
  runtime::metrics::histogram forward_latency{runtime::metrics::histogram::latency_bounds()};

  /// The host's fallback: requests for shards the host does not serve.
  struct fallback_router final : runtime::router {
    impl* n = nullptr;
    void route(const twin_id& id, twin_request req) override {
      n->route_unserved(id, std::move(req));
    }
  } fallback;
};


} // namespace twin::cluster
