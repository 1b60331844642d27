#include "host_impl.hpp"

#include <caf/all.hpp>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

router::~router() = default;
device_gateway::~device_gateway() = default;

host::impl::impl(caf::actor_system& sys, state_store& store, const type_registry& types,
                 host_options opts)
  : sys(sys), store(store), types(types), opts(opts), writer(store, stats) {
  stats.histograms = opts.histograms;
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

template <class T, class = void>
struct has_received : std::false_type {};
template <class T>
struct has_received<T, std::void_t<decltype(T::received)>> : std::true_type {};

} // namespace

caf::actor host::impl::spawn_twin(const twin_id& id) {
  active.fetch_add(1, std::memory_order_relaxed);
  return spawn_twin_actor(sys, this, id);
}

void host::impl::route(const twin_id& id, twin_request req) {
  auto [s, h] = locate(id);
  std::unique_lock<std::mutex> guard{s.mtx};
  if (!accepting.load(std::memory_order_acquire)) {
    // Checked under the lock: stop() clears `accepting` before it sweeps the stripes.
    guard.unlock();
    fail_request(req, make_error(runtime_errc::shutting_down, "the node is shutting down"));
    return;
  }
  auto& routed = s.messages[req.index()];
  routed.store(routed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
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
    e.actor = spawn_twin(id);
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
  std::unique_lock<std::mutex> guard{s.mtx};
  auto* found = s.entries.find(id, h);
  if (found == nullptr)
    return;
  auto& e = *found;
  if (e.held.empty() || !accepting.load(std::memory_order_acquire)) {
    for (auto& r : e.held)
      fail_request(r, make_error(runtime_errc::shutting_down, "the node is shutting down"));
    s.entries.erase(id, h);
    guard.unlock();
    if (active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> g{idle_mtx};
      idle_cv.notify_all();
    }
    return;
  }
  // Requests came while it passivated: a new activation takes them, in order.
  active.fetch_sub(1, std::memory_order_relaxed);
  e.actor = spawn_twin(id);
  resume_entry(s, e);
  enforce_cap(s, id);
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

void host::set_feed(change_feed* feed) {
  impl_->feed = feed;
}

void host::set_histograms(bool on) {
  impl_->stats.histograms.store(on, std::memory_order_relaxed);
}

void host::set_router(router* r) {
  impl_->rt = r;
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
  return impl_->commit->counts();
}

} // namespace twin::runtime
