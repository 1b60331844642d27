#pragma once

// Internals of the host shared by host.cpp and twin_actor.cpp. Includes CAF: keep it
// out of public headers.

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "id_table.hpp"
#include "store_writer.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/host.hpp"

namespace twin::runtime {

struct host::impl {
  impl(caf::actor_system& sys, state_store& store, const type_registry& types,
       host_options opts);

  /// One slot of the activation directory.
  struct entry {
    caf::actor actor;
    bool deactivating = false;
    std::vector<twin_request> held;  ///< routed while deactivating, in order
    std::chrono::steady_clock::time_point last_used;
  };

  /// A lock stripe of the directory. Eviction beyond the cap is approximately LRU: the
  /// least recently used of a few sampled entries goes (as in Redis), which keeps
  /// `route` free of list maintenance.
  struct stripe {
    std::mutex mtx;
    id_table<entry> entries;
    size_t active = 0;  ///< entries not deactivating
    uint64_t rng = 0x9e3779b97f4a7c15;  ///< xorshift state for sampling
    /// Requests routed, by index in `twin_request`; written under the lock, read by
    /// metrics without it.
    std::array<std::atomic<uint64_t>, std::variant_size_v<twin_request>> messages{};
  };

  static constexpr size_t stripe_count = 64;

  /// The id's hash in the stripes' tables: the one its shard is taken from.
  static uint64_t id_table_hash(const twin_id& id) { return id_table<entry>::hash(id); }

  /// The stripe that owns `id`, and the id's hash for the stripe's table.
  std::pair<stripe&, uint64_t> locate(const twin_id& id) {
    auto h = id_table_hash(id);
    return {stripes[h % stripe_count], h};
  }

  void route(const twin_id& id, twin_request req);
  /// Whether the shard of `id` is being released (its twins passivate once idle).
  bool leaving(const twin_id& id) const {
    return not_served.load(std::memory_order_acquire) != 0
           && shard_modes[id_table_hash(id) % shard_count].load(std::memory_order_acquire)
                == releasing;
  }
  /// Routes a request for a shard this host does not serve now: held while the shard is
  /// released, else handed to the fallback. Without a stripe lock.
  void route_elsewhere(shard_id shard, const twin_id& id, twin_request req);
  /// Hands a request for a shard not served here to the fallback, or answers `not_owner`.
  void send_elsewhere(shard_id shard, const twin_id& id, twin_request req);
  caf::actor spawn_twin(const twin_id& id, shard_id shard);
  /// Puts `reqs` of twin `id` ahead of the requests held for `shard` while it is being
  /// released (they came before); leaves them in `reqs` if it is not.
  void hold_first(shard_id shard, const twin_id& id, std::vector<twin_request>& reqs);
  /// One twin of `shard` is no longer active; completes a release of the shard once
  /// none is. Without a stripe lock.
  void on_twin_gone(shard_id shard);
  /// Hands the held requests of a released shard to its release callback (once).
  void complete_release(shard_id shard);
  /// Marks `e` deactivating and tells its actor; caller holds the stripe lock.
  void begin_passivation(stripe& s, entry& e);
  /// Passivates approximately least recently used twins of `s` beyond its share of
  /// `max_active`, never `keep`.
  void enforce_cap(stripe& s, const twin_id& keep);
  /// A twin asks to be passivated (it holds nothing worth keeping).
  void request_passivation(const twin_id& id, const caf::actor_addr& who);
  /// A twin that was told to passivate is busy: it stays active and takes the held requests.
  void cancel_passivation(const twin_id& id, const caf::actor_addr& who);
  /// Marks `e` active again and hands it the held requests; caller holds the lock.
  void resume_entry(stripe& s, entry& e);
  /// A twin finished passivating: reactivate it for held requests, or forget it.
  void on_passivated(const twin_id& id);
  void sweep_idle();

  caf::actor_system& sys;
  state_store& store;
  const type_registry& types;
  host_options opts;
  router* rt = nullptr;
  device_gateway* gateway = nullptr;
  change_feed* feed = nullptr;
  host_stats stats;
  store_writer writer;
  commit_point* commit = &writer;  ///< where twins' changes go (the writer, on one node)
  std::array<stripe, stripe_count> stripes;
  std::atomic<bool> accepting{false};
  std::atomic<size_t> active{0};

  // Shards: whether each is served, and its active twins (deactivating ones included).
  enum shard_mode : uint8_t { serving, releasing, released };
  const uint32_t shard_count;
  std::unique_ptr<std::atomic<uint8_t>[]> shard_modes;
  std::unique_ptr<std::atomic<uint32_t>[]> shard_active;
  std::atomic<uint32_t> not_served{0};  ///< shards not serving; 0: no shard check in route
  router* fallback = nullptr;
  /// Shards being released: their held requests and callbacks.
  struct release_state {
    std::vector<routed_request> held;
    host::release_fn done;
  };
  std::mutex release_mtx;  ///< taken after a stripe lock, never before one
  std::unordered_map<uint32_t, release_state> releases;

  std::mutex sweep_mtx;
  std::condition_variable sweep_cv;
  bool sweep_stop = false;
  std::thread sweeper;

  std::mutex idle_mtx;
  std::condition_variable idle_cv;  ///< signalled when `active` drops to zero
};

/// Spawns the actor of twin `id` (lazily initialised: the record is loaded on its first
/// message).
caf::actor spawn_twin_actor(caf::actor_system& sys, host::impl* host, const twin_id& id);

/// Tells a twin actor to passivate.
void send_passivate(const caf::actor& twin);

} // namespace twin::runtime
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(twin::runtime::twin_request)
