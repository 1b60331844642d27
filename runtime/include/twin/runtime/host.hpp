#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "twin/runtime/commit_point.hpp"
#include "twin/runtime/metrics.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/router.hpp"
#include "twin/runtime/state_store.hpp"

namespace caf {
class actor_system;
}

namespace twin::runtime {

class change_feed;

struct host_options {
  /// Idle twins are passivated after this long without a request. Default: 5 minutes.
  std::chrono::milliseconds idle_timeout = std::chrono::minutes{5};
  /// The most twins active at once; beyond it an approximately least recently used twin
  /// (the oldest of a few sampled) is passivated. A twin waiting on another twin stays.
  /// Default: 2,000,000.
  size_t max_active = 2'000'000;
  /// Delay before a parent recomputes after a child change, to coalesce bursts.
  /// Default: 0 (recompute once the changes already queued are applied).
  std::chrono::milliseconds aggregate_delay{0};
  /// Records the update latency and the store writes' durations and sizes in the
  /// histograms of `host_stats` (the counters are kept either way); see also
  /// `host::set_histograms`. Default: on.
  bool histograms = true;
  /// How far ahead of the node's clock a device sample's timestamp may be; a sample
  /// further ahead is refused (`runtime_errc::future_timestamp`), so that a device whose
  /// clock runs ahead cannot pin a property. Default: 60 s.
  std::chrono::milliseconds max_clock_skew = std::chrono::seconds{60};
  /// Serves every shard from the start, as a node alone does; off, it serves none until
  /// it adopts them (a cluster member). Default: on.
  bool serve_all_shards = true;
};

/// A request held for a twin, with the twin it is for.
struct routed_request {
  twin_id id;
  twin_request req;
};

/// Counters of a host, readable from any thread.
struct host_stats {
  std::atomic<uint64_t> activations{0};
  std::atomic<uint64_t> passivations{0};
  std::atomic<uint64_t> updates{0};          ///< accepted changes made durable
  std::atomic<uint64_t> rejected{0};         ///< requests rejected by validation
  std::atomic<uint64_t> store_writes{0};     ///< batches written
  std::atomic<uint64_t> store_records{0};    ///< records written
  std::atomic<uint64_t> store_errors{0};     ///< batches the store failed to write
  std::atomic<bool> histograms{true};        ///< the three below are recorded
  /// Seconds from a change's request reaching the host to the change being durable.
  metrics::histogram update_latency{metrics::histogram::latency_bounds()};
  /// Seconds one store write (a group commit) took.
  metrics::histogram write_duration{metrics::histogram::latency_bounds()};
  /// Twin records (written or deleted) per store write.
  metrics::histogram write_records{{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536}};
};

/// Requests routed to twins, by kind.
struct message_count {
  const char* kind;  ///< "telemetry", "put", "patch", "get", "delete", "command", ...
  uint64_t count;
};

/// The twins of one node: persistent virtual actors, one CAF actor per active twin.
///
/// A request to a twin that is not active activates it (its record is loaded from the
/// store on the actor's first message). Idle twins are passivated after
/// `idle_timeout`; beyond `max_active` approximately least recently used ones are. While a
/// twin passivates, requests to it are held and handed to its next activation, so none
/// is lost or reordered. Changes are acknowledged once the store made them durable;
/// writes of all twins are batched (group commit), and the writer thread completes the
/// callers through the commit point. A parent asks the children its record lists for
/// their states when it activates (`child_query`, through the router, so the children
/// may live on other nodes), so aggregates catch up with child changes that a crash kept
/// from reaching it.
///
/// Owned by the node's `main`; `start` before use, `stop` before destroying it, and
/// before the actor system and the store. `route` is thread-safe.
class host final : public router {
public:
  host(caf::actor_system& sys, state_store& store, const type_registry& types,
       host_options opts = {});
  ~host() override;

  host(const host&) = delete;
  host& operator=(const host&) = delete;

  /// Reads the durable counts and starts the writer and the idle sweep.
  caf::error start();

  /// Takes no new requests (they fail with `shutting_down`), passivates every twin
  /// (which flushes every change) and stops the writer. Waits at most `deadline`;
  /// returns `timeout` if twins were still active then.
  caf::error stop(std::chrono::milliseconds deadline = std::chrono::seconds{30});

  /// Delivers `req` to twin `id` if this host serves the twin's shard; while the shard
  /// is being released, holds it; otherwise hands it to the fallback router.
  void route(const twin_id& id, twin_request req) override;

  using release_fn = std::function<void(shard_id shard, std::vector<routed_request> held)>;

  /// Stops serving `shards`: from now on their requests are held, in the order they
  /// came, and their active twins passivate (which makes each one's writes durable).
  /// Once no twin of a shard is active, the shard is released and `done` gets its held
  /// requests (those of one twin in order), to deliver wherever the shard goes: `done`
  /// runs once per shard, on a runtime thread or in this call, and must not block.
  /// Requests for the shard routed while it runs go to the fallback router after it
  /// returned, so those it hands on synchronously stay ahead of them. Returns
  /// `conflict` (and releases nothing) if a shard is not served here.
  caf::error release(const std::vector<shard_id>& shards, release_fn done);

  /// Serves `shard` (again): reads its durable counts, then takes its requests.
  caf::error adopt(shard_id shard);

  /// Whether this host serves `shard` now (not while releasing it).
  bool serves(shard_id shard) const;
  /// The number of shards this host serves now.
  uint32_t shards_served() const;
  /// The number of shards of its store.
  uint32_t shard_count() const;

  /// Sets where requests for shards this host does not serve go; call before `start`.
  /// Default: none, they are answered with `not_owner`.
  void set_fallback(router* r);

  /// Sets where desired deltas and commands go; call before `start`. Default: nowhere.
  void set_gateway(device_gateway* gw);
  /// The host's own commit point: its store writer, with group commit.
  commit_point& local_commit();
  /// Sets where twins' changes go (one that wraps `local_commit()`, e.g. to acknowledge
  /// only once other members hold copies); call before `start`. Default: `local_commit()`.
  void set_commit(commit_point* c);
  /// Sets where durable changes and sent commands are published; call before `start`.
  /// Default: nowhere.
  void set_feed(change_feed* feed);
  /// Turns the histograms of `host_stats` on or off; any time, from any thread.
  void set_histograms(bool on);
  /// Sets the router twins use to reach other twins; call before `start`.
  /// Default: this host.
  void set_router(router* r);

  size_t active_count() const;
  const host_stats& stats() const;
  /// Requests routed so far, one entry per kind of `twin_request`.
  std::vector<message_count> message_counts() const;
  /// The durable counts of the shards served now.
  host_counts counts() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace twin::runtime
