#include "host_impl.hpp"

#include <caf/all.hpp>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::runtime {

router::~router() = default;
device_gateway::~device_gateway() = default;

host::impl::impl(caf::actor_system& sys, state_store& store, const type_registry& types,
                 host_options opts)
  : sys(sys),
    store(store),
    types(types),
    opts(opts),
    writer(store, stats),
    shard_count(store.shard_count()),
    shard_modes(new std::atomic<uint8_t>[shard_count]),
    shard_active(new std::atomic<uint32_t>[shard_count]) {
  stats.histograms = opts.histograms;
  for (uint32_t i = 0; i < shard_count; ++i) {
    shard_modes[i] = opts.serve_all_shards ? serving : released;
    shard_active[i] = 0;
  }
  not_served = opts.serve_all_shards ? 0 : shard_count;
}

namespace {

/// The name of each kind of `twin_request`, in its order.
constexpr std::array<const char*, std::variant_size_v<twin_request>> message_kinds{
  "telemetry", "put",    "patch",  "get",    "delete",        "command",
  "child_update", "attach", "detach", "orphan", "ancestor_query", "child_query"};

constexpr bool every_kind_named() {
  for (const char* k : message_kinds)
    if (k == nullptr)
      return false;
  return true;
}
static_assert(every_kind_named(), "a kind of twin_request has no name in message_kinds");

/// What twins wait on: a shard being released still delivers it (see `route`).
bool awaited(const twin_request& req) {
  return std::holds_alternative<attach_request>(req)
         || std::holds_alternative<ancestor_query>(req);
}

template <class T, class = void>
struct has_received : std::false_type {};
template <class T>
struct has_received<T, std::void_t<decltype(T::received)>> : std::true_type {};

} // namespace

caf::actor host::impl::spawn_twin(const twin_id& id, shard_id shard) {
  active.fetch_add(1, std::memory_order_relaxed);
  shard_active[shard.value()].fetch_add(1, std::memory_order_relaxed);
  return spawn_twin_actor(sys, this, id);
}

void host::impl::route(const twin_id& id, twin_request req) {
  auto [s, h] = locate(id);
  shard_id shard{static_cast<uint32_t>(h % shard_count)};  // as shard_of(id)
  std::unique_lock<std::mutex> guard{s.mtx};
  if (!accepting.load(std::memory_order_acquire)) {
    // Checked under the lock: stop() clears `accepting` before it sweeps the stripes.
    guard.unlock();
    fail_request(req, make_error(runtime_errc::shutting_down, "the node is shutting down"));
    return;
  }
  auto& routed = s.messages[req.index()];
  routed.store(routed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Checked under the lock: `release` marks a shard before it sweeps the stripes. While
  // a shard is released, what twins wait on (attach requests, ancestor queries) still
  // reaches its twins, so that those busy with them finish and passivate; such a request
  // holds the release lock until its twin counts as active, so that the release does not
  // complete in between.
  std::unique_lock<std::mutex> releasing_guard;
  if (not_served.load(std::memory_order_acquire) != 0) {
    auto mode = shard_modes[shard.value()].load(std::memory_order_acquire);
    if (mode == releasing && awaited(req)) {
      releasing_guard = std::unique_lock<std::mutex>{release_mtx};
      mode = shard_modes[shard.value()].load(std::memory_order_acquire);
    }
    if (mode == released || (mode == releasing && !awaited(req))) {
      if (releasing_guard)
        releasing_guard.unlock();
      guard.unlock();
      route_elsewhere(shard, id, std::move(req));
      return;
    }
  }
  auto now = std::chrono::steady_clock::now();
  std::visit(
    [now](auto& r) {
      if constexpr (has_received<std::decay_t<decltype(r)>>::value)
        r.received = now;
    },
    req);
  auto [slot, inserted] = s.entries.try_emplace(id, h);
  auto& e = *slot;
  if (inserted) {
    e.actor = spawn_twin(id, shard);
    ++s.active;
  } else if (e.deactivating) {
    e.held.push_back(std::move(req));
    return;
  }
  e.last_used = now;
  // Sent under the stripe lock: a passivation (also under the lock) is queued after it.
  caf::anon_send(e.actor, std::move(req));
  if (inserted)
    enforce_cap(s, id);
}

void host::impl::enforce_cap(stripe& s, const twin_id& keep) {
  // Each stripe holds an equal share of the cap.
  size_t cap = std::max<size_t>(1, opts.max_active / stripe_count);
  constexpr int samples = 8;
  while (s.active > cap) {
    entry* victim = nullptr;
    int seen = 0;
    auto slots = s.entries.slot_count();
    for (size_t tries = 0; seen < samples && tries < 16 * samples; ++tries) {
      s.rng ^= s.rng << 13;
      s.rng ^= s.rng >> 7;
      s.rng ^= s.rng << 17;
      auto* n = s.entries.slot_at(s.rng % slots);
      if (n == nullptr || n->value.deactivating || n->id == keep)
        continue;
      ++seen;
      if (victim == nullptr || n->value.last_used < victim->last_used)
        victim = &n->value;
    }
    if (victim == nullptr) {
      // Sampling found nothing (a sparse table): take the first candidate in order.
      auto* n = s.entries.find_if(
        [&](const twin_id& k, const entry& e) { return !e.deactivating && k != keep; });
      if (n != nullptr)
        victim = &n->value;
    }
    if (victim == nullptr)
      return;
    begin_passivation(s, *victim);
  }
}

void host::impl::begin_passivation(stripe& s, entry& e) {
  e.deactivating = true;
  --s.active;
  send_passivate(e.actor);
}

void host::impl::request_passivation(const twin_id& id, const caf::actor_addr& who) {
  auto [s, h] = locate(id);
  std::lock_guard<std::mutex> guard{s.mtx};
  auto* e = s.entries.find(id, h);
  if (e == nullptr || e->deactivating || e->actor.address() != who)
    return;
  begin_passivation(s, *e);
}

void host::impl::cancel_passivation(const twin_id& id, const caf::actor_addr& who) {
  auto [s, h] = locate(id);
  std::lock_guard<std::mutex> guard{s.mtx};
  auto* e = s.entries.find(id, h);
  if (e == nullptr || !e->deactivating || e->actor.address() != who)
    return;
  resume_entry(s, *e);
}

void host::impl::resume_entry(stripe& s, entry& e) {
  e.deactivating = false;
  e.last_used = std::chrono::steady_clock::now();
  ++s.active;
  for (auto& r : e.held)
    caf::anon_send(e.actor, std::move(r));
  e.held.clear();
}

void host::impl::on_passivated(const twin_id& id) {
  auto [s, h] = locate(id);
  shard_id shard{static_cast<uint32_t>(h % shard_count)};
  std::unique_lock<std::mutex> guard{s.mtx};
  auto* found = s.entries.find(id, h);
  if (found == nullptr)
    return;
  auto& e = *found;
  std::vector<twin_request> held;
  if (shard_modes[shard.value()].load(std::memory_order_acquire) != serving) {
    // Its shard is being released: what other twins wait on is answered by a new
    // activation; the rest waits with the shard's held requests, ahead of them.
    auto rest = std::stable_partition(e.held.begin(), e.held.end(), awaited);
    held.assign(std::make_move_iterator(rest), std::make_move_iterator(e.held.end()));
    e.held.erase(rest, e.held.end());
  }
  if (e.held.empty() || !accepting.load(std::memory_order_acquire)) {
    for (auto& r : e.held)
      held.push_back(std::move(r));
    s.entries.erase(id, h);
    guard.unlock();
    hold_first(shard, id, held);
    for (auto& r : held)
      fail_request(r, make_error(runtime_errc::shutting_down, "the node is shutting down"));
    if (active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> g{idle_mtx};
      idle_cv.notify_all();
    }
    on_twin_gone(shard);
    return;
  }
  // Requests came while it passivated: a new activation takes them, in order. (Counted
  // before the old one is uncounted: a release never sees its shard without it.)
  e.actor = spawn_twin(id, shard);
  active.fetch_sub(1, std::memory_order_relaxed);
  shard_active[shard.value()].fetch_sub(1, std::memory_order_relaxed);
  resume_entry(s, e);
  enforce_cap(s, id);
  guard.unlock();
  hold_first(shard, id, held);
}

void host::impl::hold_first(shard_id shard, const twin_id& id, std::vector<twin_request>& reqs) {
  if (reqs.empty() || !accepting.load(std::memory_order_acquire))
    return;
  std::lock_guard<std::mutex> guard{release_mtx};
  auto i = releases.find(shard.value());
  if (i == releases.end())
    return;
  std::vector<routed_request> first;
  for (auto& r : reqs)
    first.push_back({id, std::move(r)});
  auto& q = i->second.held;
  q.insert(q.begin(), std::make_move_iterator(first.begin()), std::make_move_iterator(first.end()));
  reqs.clear();
}

void host::impl::route_elsewhere(shard_id shard, const twin_id& id, twin_request req) {
  {
    std::lock_guard<std::mutex> guard{release_mtx};
    auto i = releases.find(shard.value());
    if (i != releases.end()) {
      i->second.held.push_back({id, std::move(req)});
      return;
    }
  }
  if (shard_modes[shard.value()].load(std::memory_order_acquire) == serving)
    return route(id, std::move(req));  // adopted again meanwhile
  send_elsewhere(shard, id, std::move(req));
}

void host::impl::on_twin_gone(shard_id shard) {
  if (shard_active[shard.value()].fetch_sub(1, std::memory_order_acq_rel) == 1
      && shard_modes[shard.value()].load(std::memory_order_acquire) == releasing)
    complete_release(shard);
}

void host::impl::complete_release(shard_id shard) {
  // The callback runs without the lock; what is routed meanwhile is held behind the
  // requests it got and goes to the fallback once it returned.
  std::vector<routed_request> held;
  host::release_fn done;
  {
    std::lock_guard<std::mutex> guard{release_mtx};
    auto i = releases.find(shard.value());
    if (i == releases.end() || !i->second.done
        || shard_modes[shard.value()].load(std::memory_order_acquire) != releasing
        || shard_active[shard.value()].load(std::memory_order_acquire) != 0)
      return;
    held.swap(i->second.held);
    done = std::move(i->second.done);
    i->second.done = nullptr;  // taken: the completion happens once
    shard_modes[shard.value()].store(released, std::memory_order_release);
  }
  done(shard, std::move(held));
  for (;;) {
    {
      std::lock_guard<std::mutex> guard{release_mtx};
      auto i = releases.find(shard.value());
      held.clear();
      held.swap(i->second.held);
      if (held.empty()) {
        releases.erase(i);
        return;
      }
    }
    for (auto& r : held)
      send_elsewhere(shard, r.id, std::move(r.req));
  }
}

void host::impl::send_elsewhere(shard_id shard, const twin_id& id, twin_request req) {
  if (fallback != nullptr)
    return fallback->route(id, std::move(req));
  fail_request(req, make_error(runtime_errc::not_owner,
                               "this node does not serve shard " + std::to_string(shard.value())
                                 + ", where twin " + id.str() + " lives"));
}

void host::impl::sweep_idle() {
  auto cutoff = std::chrono::steady_clock::now() - opts.idle_timeout;
  for (auto& s : stripes) {
    std::lock_guard<std::mutex> guard{s.mtx};
    s.entries.for_each([&](const twin_id&, entry& e) {
      if (!e.deactivating && e.last_used <= cutoff)
        begin_passivation(s, e);
    });
  }
}

// -- host -----------------------------------------------------------------------

host::host(caf::actor_system& sys, state_store& store, const type_registry& types,
           host_options opts)
  : impl_(std::make_unique<impl>(sys, store, types, opts)) {
  impl_->rt = this;
}

host::~host() {
  stop(std::chrono::seconds{5});
}

caf::error host::start() {
  if (auto err = impl_->writer.load_counts())
    return err;
  impl_->writer.start();
  impl_->accepting = true;
  impl_->sweep_stop = false;
  impl_->sweeper = std::thread{[this] {
    name_thread("twin.sweeper");
    auto& d = *impl_;
    auto period = std::clamp(d.opts.idle_timeout / 4, std::chrono::milliseconds{10},
                             std::chrono::milliseconds{10'000});
    std::unique_lock<std::mutex> guard{d.sweep_mtx};
    while (!d.sweep_cv.wait_for(guard, period, [&] { return d.sweep_stop; })) {
      guard.unlock();
      d.sweep_idle();
      guard.lock();
    }
  }};
  return {};
}

caf::error host::stop(std::chrono::milliseconds deadline) {
  auto& d = *impl_;
  if (!d.sweeper.joinable())
    return {};
  d.accepting = false;
  {
    std::lock_guard<std::mutex> guard{d.sweep_mtx};
    d.sweep_stop = true;
  }
  d.sweep_cv.notify_all();
  d.sweeper.join();
  for (auto& s : d.stripes) {
    std::lock_guard<std::mutex> guard{s.mtx};
    s.entries.for_each([&](const twin_id&, impl::entry& e) {
      if (!e.deactivating)
        d.begin_passivation(s, e);
    });
  }
  caf::error result;
  {
    std::unique_lock<std::mutex> guard{d.idle_mtx};
    if (!d.idle_cv.wait_for(guard, deadline, [&] { return d.active.load() == 0; }))
      result = make_error(runtime_errc::timeout,
                          std::to_string(d.active.load()) + " twins did not passivate in time");
  }
  if (result) {
    // Stop the stragglers: nothing may run against this host once it is gone.
    for (auto& s : d.stripes) {
      std::lock_guard<std::mutex> guard{s.mtx};
      s.entries.for_each([](const twin_id&, impl::entry& e) {
        caf::anon_send_exit(e.actor, caf::exit_reason::kill);
      });
      s.entries.clear();
    }
  }
  d.writer.stop();
  return result;
}

void host::route(const twin_id& id, twin_request req) {
  impl_->route(id, std::move(req));
}

void host::set_gateway(device_gateway* gw) {
  impl_->gateway = gw;
}

commit_point& host::local_commit() {
  return impl_->writer;
}

void host::set_commit(commit_point* c) {
  impl_->commit = c != nullptr ? c : &impl_->writer;
}

void host::set_feed(change_feed* feed) {
  impl_->feed = feed;
}

void host::set_histograms(bool on) {
  impl_->stats.histograms.store(on, std::memory_order_relaxed);
}

void host::set_router(router* r) {
  impl_->rt = r;
}

void host::set_fallback(router* r) {
  impl_->fallback = r;
}

caf::error host::release(const std::vector<shard_id>& shards, release_fn done) {
  auto& d = *impl_;
  std::vector<bool> leaving(d.shard_count);
  {
    std::lock_guard<std::mutex> guard{d.release_mtx};
    for (auto shard : shards)
      if (shard.value() >= d.shard_count
          || d.shard_modes[shard.value()].load(std::memory_order_acquire) != impl::serving)
        return make_error(runtime_errc::conflict,
                          "shard " + std::to_string(shard.value()) + " is not served here");
    for (auto shard : shards) {
      d.releases[shard.value()] = impl::release_state{{}, done};
      d.shard_modes[shard.value()].store(impl::releasing, std::memory_order_release);
      d.not_served.fetch_add(1, std::memory_order_acq_rel);
      leaving[shard.value()] = true;
    }
  }
  // One sweep for all: each active twin of a leaving shard passivates.
  for (auto& s : d.stripes) {
    std::lock_guard<std::mutex> guard{s.mtx};
    s.entries.for_each([&](const twin_id& id, impl::entry& e) {
      if (!e.deactivating && leaving[impl::id_table_hash(id) % d.shard_count])
        d.begin_passivation(s, e);
    });
  }
  for (auto shard : shards)
    if (d.shard_active[shard.value()].load(std::memory_order_acquire) == 0)
      d.complete_release(shard);
  return {};
}

caf::error host::adopt(shard_id shard) {
  auto& d = *impl_;
  if (shard.value() >= d.shard_count)
    return make_error(runtime_errc::invalid_argument,
                      "shard " + std::to_string(shard.value()) + " is not one of the "
                        + std::to_string(d.shard_count));
  std::lock_guard<std::mutex> guard{d.release_mtx};
  auto mode = d.shard_modes[shard.value()].load(std::memory_order_acquire);
  if (mode == impl::serving)
    return {};
  if (mode == impl::releasing || d.releases.count(shard.value()) > 0)
    return make_error(runtime_errc::conflict, "shard " + std::to_string(shard.value())
                                                + " is still being released");
  if (auto err = d.writer.load_counts(shard))
    return err;
  d.shard_modes[shard.value()].store(impl::serving, std::memory_order_release);
  d.not_served.fetch_sub(1, std::memory_order_acq_rel);
  return {};
}

bool host::serves(shard_id shard) const {
  return shard.value() < impl_->shard_count
         && impl_->shard_modes[shard.value()].load(std::memory_order_acquire) == impl::serving;
}

uint32_t host::shards_served() const {
  return impl_->shard_count - impl_->not_served.load(std::memory_order_acquire);
}

uint32_t host::shard_count() const {
  return impl_->shard_count;
}

size_t host::active_count() const {
  return impl_->active.load(std::memory_order_relaxed);
}

const host_stats& host::stats() const {
  return impl_->stats;
}

std::vector<message_count> host::message_counts() const {
  std::vector<message_count> out;
  for (size_t k = 0; k < message_kinds.size(); ++k) {
    uint64_t n = 0;
    for (const auto& s : impl_->stripes)
      n += s.messages[k].load(std::memory_order_relaxed);
    out.push_back({message_kinds[k], n});
  }
  return out;
}

host_counts host::counts() const {
  auto& d = *impl_;
  if (d.not_served.load(std::memory_order_acquire) == 0)
    return d.commit->counts();
  host_counts sum;
  for (uint32_t i = 0; i < d.shard_count; ++i)
    if (d.shard_modes[i].load(std::memory_order_acquire) == impl::serving)
      sum += d.commit->counts(shard_id{i});
  return sum;
}

} // namespace twin::runtime
