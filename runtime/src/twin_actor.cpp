// The actor of one twin: applies requests to its record, keeps aggregates, alerts and
// health, persists through the host's group-commit writer and acknowledges only once a
// change is durable.

#include <algorithm>
#include <map>

#include <caf/all.hpp>
#include <caf/intrusive/lifo_inbox.hpp>

#include "host_impl.hpp"
#include "live_record.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::runtime {

using host_impl = host::impl;

namespace {

using waiter = std::function<void(caf::error)>;

/// A put that waits for the new parent to accept the child.
struct pending_put {
  put_request req;
  bool created = false;
};

/// The parts of a twin's state that are only in use now and then (a create, a parent
/// change, a delete, a put waiting for its parent); allocated while in use, so an idle
/// twin does not carry them.
struct twin_cold {
  store_batch pending;          ///< index changes for the next write
  twin_id detach_from;          ///< old parent to notify after the next write
  std::vector<twin_id> orphans; ///< children to notify of a deletion after the next write
  std::map<uint64_t, attach_request> checking;  ///< attaches waiting for the cycle check
  std::optional<pending_put> waiting_put;       ///< a put waiting for its new parent
  std::vector<twin_request> deferred;           ///< client requests behind that put
  uint64_t next_token = 0;                      ///< of the next entry in `checking`

  bool empty() const {
    return pending.empty() && detach_from.empty() && orphans.empty() && checking.empty()
           && !waiting_put && deferred.empty();
  }
};

/// The last sample written of each property whose history the twin's type keeps, by
/// position in `history_properties()`.
struct history_marks {
  const twin_type* type = nullptr;
  std::vector<std::pair<int64_t, value>> written;
};

struct twin_state {
  host_impl* host = nullptr;
  caf::error load_error;  ///< set if the record could not be loaded
  bool exists = false;
  bool delete_pending = false;
  bool notify_parent = false;   ///< after the next write
  bool publish_desired = false; ///< after the next write
  bool recompute_scheduled = false;
  bool passivating = false;
  bool draining = false;        ///< waiting for the writer to make every write durable
  bool passivation_requested = false;
  bool loaded = false;          ///< the record was read (on the first message)
  bool reloading = false;       ///< a write failed: waiting to read the store's state again
  live_record rec;
  host_counts pending_counts;
  std::unique_ptr<twin_cold> cold_;
  std::unique_ptr<history_marks> history;  ///< set once a twin whose type keeps any commits

  twin_cold& cold() {
    if (!cold_)
      cold_ = std::make_unique<twin_cold>();
    return *cold_;
  }
  bool waiting() const { return cold_ && cold_->waiting_put; }
  /// Something is pending that passivation must wait for.
  bool busy() const {
    return reloading
           || (cold_
               && (cold_->waiting_put || !cold_->deferred.empty() || !cold_->checking.empty()));
  }
  void trim() {
    if (cold_ && cold_->empty())
      cold_.reset();
  }
};

/// The runtime's own messages to a twin actor.
enum class signal_kind : uint8_t {
  failed,     ///< a write failed: reload once the writer holds nothing more of the twin
  reload,     ///< the writer holds nothing more: read the store's state again
  drained,    ///< every write is durable: passivation ends
  recompute,  ///< recompute aggregates after child changes
  passivate,  ///< the host asks the twin to passivate
  timer,      ///< a handler's timer fired
  attached,   ///< the new parent answered (`err`)
  checked,    ///< the ancestor walk for attach `token` answered (`flag`: a cycle)
};

struct twin_signal {
  explicit twin_signal(signal_kind kind, uint64_t token = 0, bool flag = false,
                       caf::error err = {})
    : kind(kind), token(token), flag(flag), err(std::move(err)) {}

  signal_kind kind;
  uint64_t token;
  bool flag;
  caf::error err;
};

} // namespace
} // namespace twin::runtime

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(twin::runtime::twin_signal)

namespace twin::runtime {
namespace {

/// Fails a request that reached a twin actor after it ended.
struct bouncer {
  void operator()(caf::mailbox_element* x) const noexcept {
    auto& content = x->content();
    if (content.match_elements<twin_request>())
      fail_request(content.get_mutable_as<twin_request>(0),
                   make_error(runtime_errc::shutting_down, "the twin was passivated"));
    caf::detail::disposer{}(x);
  }
};

/// The actor of one twin. A CAF actor (it has an address, monitors and links, and runs
/// on the actor system's scheduler) without behaviors, response handling or streams:
/// with a lock-free mailbox and one dispatch function it takes about 200 bytes, where
/// an event_based_actor takes over a kilobyte.
class twin_actor final : public caf::monitorable_actor, public caf::resumable {
public:
  twin_actor(caf::actor_config& cfg, host_impl* host, twin_id id);

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* eu) override;
  resume_result resume(caf::execution_unit* eu, size_t max_throughput) override;
  void intrusive_ptr_add_ref_impl() override { intrusive_ptr_add_ref(ctrl()); }
  void intrusive_ptr_release_impl() override { intrusive_ptr_release(ctrl()); }
  const char* name() const override { return "twin"; }

  caf::actor as_actor() const { return caf::actor_cast<caf::actor>(caf::strong_actor_ptr{ctrl()}); }
  /// Sends `s` to this actor after `delay` (at once if it is zero).
  void send_self(twin_signal s, std::chrono::milliseconds delay = {});
  /// Ends the actor after the current message.
  void quit() { quitting_ = true; }

private:
  struct inbox_policy {
    using mapped_type = caf::mailbox_element;
    using unique_pointer = std::unique_ptr<caf::mailbox_element, bouncer>;
  };

  void dispatch(caf::type_erased_tuple& content);

  // First after the bases: right behind the resumable's vtable pointer, where the
  // scheduler prefetches.
  caf::intrusive::lifo_inbox<inbox_policy> inbox_;
  caf::mailbox_element* cache_ = nullptr;  ///< taken from the inbox, in order, not handled yet
  bool quitting_ = false;

public:
  twin_state state;
};

caf::error not_found(const twin_id& id) {
  return make_error(runtime_errc::not_found, "twin " + id.str() + " does not exist");
}

caf::error check_version(const twin_state& st, const std::optional<uint64_t>& expected) {
  if (!expected)
    return {};
  if (*expected == 0) {
    if (st.exists)
      return make_error(runtime_errc::version_conflict,
                        "twin " + st.rec.id.str() + " already exists (version "
                          + std::to_string(st.rec.version) + ")");
    return {};
  }
  if (!st.exists)
    return not_found(st.rec.id);
  if (st.rec.version != *expected)
    return make_error(runtime_errc::version_conflict,
                      "twin " + st.rec.id.str() + " has version " + std::to_string(st.rec.version)
                        + ", not " + std::to_string(*expected));
  return {};
}

/// Adds what a parent keeps of a child's reported property: numbers, booleans, health.
void keep_for_parent(child_state& cs, const std::string& name, const value& v) {
  if (name == "health") {
    if (v.is_string())
      from_string(v.as_string(), cs.health);
  } else if (!v.is_number() && !v.is_bool()) {
    return;
  }
  cs.values.emplace(name, v);
}

/// What a parent keeps of the twin `rec`.
child_state child_state_of(const live_record& rec) {
  child_state cs{rec.id, {}, severity::ok, rec.type()->name()};
  rec.for_each([&](const std::string& name, const live_record::property& p) {
    keep_for_parent(cs, name, p.v);
  });
  return cs;
}

child_state child_state_of(const twin_record& rec) {
  child_state cs{rec.id, {}, severity::ok, rec.type};
  for (const auto& [name, v] : rec.reported)
    keep_for_parent(cs, name, v);
  return cs;
}

severity health_of(const live_record& rec) {
  severity out = severity::ok;
  if (auto* h = rec.get("health"); h != nullptr && h->is_string())
    from_string(h->as_string(), out);
  return out;
}

/// The interned metadata sources of the runtime's own changes.
const std::string* handler_source() {
  static const std::string* x = intern_source("handler");
  return x;
}

const std::string* computed_source() {
  static const std::string* x = intern_source("computed");
  return x;
}

/// Moves the durable count of active alerts of `level` by `by`.
void count_alert(host_counts& counts, severity level, int64_t by) {
  if (level == severity::warning)
    counts.alerts_warning += by;
  else if (level == severity::critical)
    counts.alerts_critical += by;
}

/// Answers `done` with the error of a write, or with the twin's `version` after it.
void answer_version(const version_fn& done, caf::error err, uint64_t version) {
  if (err)
    done(std::move(err));
  else
    done(version);
}

/// The twin_context handed to custom handlers.
class context_impl final : public twin_context {
public:
  context_impl(twin_actor* self, bool& changed) : self_(self), changed_(changed) {}

  const twin_record& record() const override {
    snapshot_ = self_->state.rec.to_record();
    return snapshot_;
  }

  const value* get(std::string_view name) const override { return self_->state.rec.get(name); }

  caf::error set(std::string_view name, value v) override {
    auto& st = self_->state;
    const auto& type = *st.rec.type();
    auto* spec = type.property(name);
    if (spec == nullptr)
      return make_error(runtime_errc::unknown_property,
                        "type '" + type.name() + "' has no property '" + std::string{name} + "'");
    if (spec->computed)
      return make_error(runtime_errc::read_only, "property '" + spec->name + "' is computed");
    if (auto err = type.check_value(*spec, v))
      return err;
    auto* cur = st.rec.get(name);
    if (cur == nullptr || *cur != v) {
      st.rec.set(name, std::move(v), now_ms(), handler_source());
      if (st.rec.desired().count(name) > 0)
        st.publish_desired = true;
      changed_ = true;
    }
    return {};
  }

  caf::error set_desired(std::string_view name, value v) override {
    auto& st = self_->state;
    value_map one;
    one.emplace(std::string{name}, v);
    if (auto err = st.rec.type()->check_desired(one))
      return err;
    auto& slot = st.rec.mutable_desired()[std::string{name}];
    if (slot != v) {
      slot = std::move(v);
      st.publish_desired = true;
      changed_ = true;
    }
    return {};
  }

  void start_timer(std::chrono::milliseconds delay) override {
    self_->send_self(twin_signal(signal_kind::timer), delay);
  }

private:
  twin_actor* self_;
  bool& changed_;
  mutable twin_record snapshot_;
};

// -- persistence --------------------------------------------------------------

/// Tells the active twin `id` that one of its writes failed.
void notify_write_failed(host_impl* host, const twin_id& id) {
  auto [s, h] = host->locate(id);
  std::lock_guard<std::mutex> guard{s.mtx};
  if (auto* e = s.entries.find(id, h))
    caf::anon_send(e->actor, twin_signal(signal_kind::failed));
}

/// The event of the change being committed, if anyone listens; the record holds its
/// state after the change.
std::shared_ptr<change_event> change_of(const twin_state& st) {
  auto* feed = st.host->feed;
  const auto* type = st.rec.type();
  if (feed == nullptr || !feed->active() || type == nullptr
      || !feed->wants(st.rec.id, type->name()))
    return nullptr;
  auto ev = std::make_shared<change_event>();
  ev->id = st.rec.id;
  ev->version = st.rec.version;
  ev->type = type->name();
  if (st.delete_pending) {
    ev->kind = change_event::kind_t::deleted;
    return ev;
  }
  st.rec.for_each([&](const std::string& name, const live_record::property& p) {
    ev->properties.emplace(name, p.v);
  });
  ev->desired = st.rec.desired();
  return ev;
}

/// Adds a sample of each property whose history is kept and which changed (its value or
/// its time) since the last sample written. The first commit after an activation writes
/// every one: a sample is keyed by its time, so one written again overwrites itself.
void add_history(twin_state& st, store_batch& batch) {
  const auto* type = st.rec.type();
  if (type == nullptr || type->history_properties().empty())
    return;
  const auto& positions = type->history_properties();
  if (!st.history || st.history->type != type) {
    st.history = std::make_unique<history_marks>();
    st.history->type = type;
    st.history->written.assign(positions.size(), {INT64_MIN, value{}});
  }
  auto& written = st.history->written;
  for (size_t k = 0; k < positions.size(); ++k) {
    auto i = static_cast<size_t>(positions[k]);
    const auto* p = st.rec.at(i);
    if (p == nullptr || (p->updated_ms == written[k].first && p->v == written[k].second))
      continue;
    written[k] = {p->updated_ms, p->v};
    batch.history.push_back(
      history_entry{st.rec.id, type->properties()[i].name, p->updated_ms, encode_sample(p->v)});
  }
}

/// Records an accepted change and hands it to the writer at once. Once the change is
/// durable or failed, on the writer thread, `w` is called (with no error or the error)
/// and `answer` with the twin's new version (or the error); on success the change's
/// effects on other twins and devices follow, computed from the state as of this change.
/// Writes of one twin reach the store in commit order (the writer is FIFO). `received`:
/// when the request that made the change reached the host (none: not timed).
void commit(twin_actor* self, waiter w, version_fn answer = nullptr,
            std::chrono::steady_clock::time_point received = {}) {
  auto& st = self->state;
  auto& rec = st.rec;
  if (st.reloading) {
    // Memory still holds a change whose write failed (a signal, not a request, got here):
    // nothing built on it may be stored. The reload brings back the store's state.
    auto err = make_error(runtime_errc::store_failure,
                          "twin " + rec.id.str() + " is reloading after a failed write");
    if (w)
      w(err);
    if (answer)
      answer_version(answer, err, 0);
    return;
  }
  rec.version += 1;
  rec.updated_ms = now_ms();
  auto event = change_of(st);
  store_batch batch;
  if (st.cold_) {
    batch = std::move(st.cold_->pending);
    st.cold_->pending = store_batch{};
  }
  if (st.delete_pending) {
    batch.deletes.push_back(st.rec.id);
  } else {
    batch.puts.emplace_back(st.rec.id, rec.encode());
    add_history(st, batch);
  }
  st.delete_pending = false;
  auto counts = st.pending_counts;
  st.pending_counts = host_counts{};
  // Effects, as closures over snapshots.
  std::vector<std::pair<twin_id, twin_request>> notes;
  if (st.notify_parent && st.exists && !rec.parent.empty())
    notes.emplace_back(rec.parent, child_update{child_state_of(rec), rec.kind});
  if (st.cold_) {
    if (!st.cold_->detach_from.empty())
      notes.emplace_back(st.cold_->detach_from, detach_notice{st.rec.id});
    for (auto& c : st.cold_->orphans)
      notes.emplace_back(c, orphan_notice{st.rec.id});
    st.cold_->detach_from = twin_id{};
    st.cold_->orphans.clear();
  }
  std::optional<value_map> desired_delta;
  if (st.publish_desired && st.exists && st.host->gateway != nullptr)
    desired_delta = rec.delta();
  st.notify_parent = false;
  st.publish_desired = false;
  auto* host = st.host;
  // The callback holds no reference to the actor: the twin stays active until the
  // writer has handled every write of it (passivation waits for a barrier behind them).
  host->writer.submit(
    st.rec.id, std::move(batch), counts,
    [host, id = st.rec.id, version = rec.version, w = std::move(w), answer = std::move(answer),
     notes = std::move(notes), desired_delta = std::move(desired_delta), event = std::move(event),
     received](caf::error err) mutable {
      if (err) {  // the twin hears of it first: what the caller sends next finds it reloading
        notify_write_failed(host, id);
      } else if (w || answer) {
        host->stats.updates.fetch_add(1, std::memory_order_relaxed);
        auto durable = host->writer.durable_at();
        if (received != std::chrono::steady_clock::time_point{} && durable != decltype(durable){})
          host->stats.update_latency.observe(
            std::chrono::duration<double>(durable - received).count());
      }
      if (event && !err) {  // before the answer: whoever got it finds the event published
        event->ts_ms = now_ms();
        host->feed->publish(std::move(event));
      }
      if (w)
        w(err);
      if (answer)
        answer_version(answer, err, version);
      if (err)
        return;
      for (auto& [target, note] : notes)
        host->rt->route(target, std::move(note));
      if (desired_delta)
        host->gateway->publish_desired(id, *desired_delta);
    });
}

/// Starts passivation or the release of a twin that does not exist, once nothing is
/// pending in the actor; finishes after the writer made every earlier write durable.
void maybe_release(twin_actor* self) {
  auto& st = self->state;
  st.trim();
  if (st.draining || st.busy())
    return;
  if (st.passivating) {
    if (st.recompute_scheduled)
      return;  // the recompute message still comes and commits first
    st.draining = true;
    caf::actor me = self->as_actor();
    st.host->writer.submit(st.rec.id, store_batch{}, host_counts{}, [me](caf::error) {
      caf::anon_send(me, twin_signal(signal_kind::drained));
    });
    return;
  }
  if (!st.exists && !st.passivation_requested) {
    // Nothing to keep in memory for a twin that does not exist.
    st.passivation_requested = true;
    st.host->request_passivation(st.rec.id, self->address());
  }
}

// -- alerts, health, aggregates -------------------------------------------------

/// Re-evaluates alert rules and health; returns true if anything changed.
bool evaluate_alerts(twin_actor* self) {
  auto& st = self->state;
  auto& rec = st.rec;
  bool changed = false;
  auto lookup = [&](std::string_view n) { return rec.get(n); };
  for (const auto& rule : rec.type()->alerts()) {
    bool active = rule.condition.eval(lookup);
    const auto& alerts = rec.alerts();
    auto i = std::find_if(alerts.begin(), alerts.end(),
                          [&](const alert_state& a) { return a.name == rule.name; });
    if (active && i == alerts.end()) {
      rec.mutable_alerts().push_back(alert_state{rule.name, rule.level, now_ms()});
      count_alert(st.pending_counts, rule.level, 1);
      changed = true;
    } else if (!active && i != alerts.end()) {
      count_alert(st.pending_counts, i->level, -1);
      rec.mutable_alerts().erase(i);
      rec.trim();
      changed = true;
    }
  }
  severity worst = severity::ok;
  for (const auto& a : rec.alerts())
    worst = std::max(worst, a.level);
  for (const auto& c : rec.children())
    worst = std::max(worst, c.health);
  const char* health = to_string(worst);
  auto* cur = rec.get("health");
  if (cur == nullptr || !cur->is_string() || cur->as_string() != health) {
    rec.set("health", value{health}, now_ms(), computed_source());
    changed = true;
  }
  return changed;
}

value compute_aggregate(const aggregate_spec& a, const std::vector<child_state>& children) {
  size_t n = 0;
  double sum = 0;
  double lo = 0;
  double hi = 0;
  bool any = false;
  bool all = true;
  severity worst = severity::ok;
  for (const auto& c : children) {
    if (!a.child_type.empty() && c.type != a.child_type)
      continue;
    if (a.fn == aggregate_fn::count && a.source.empty()) {
      ++n;
      continue;
    }
    auto i = c.values.find(a.source);
    if (i == c.values.end())
      continue;
    const value& v = i->second;
    if (a.fn == aggregate_fn::worst) {
      severity s;
      if (v.is_string() && from_string(v.as_string(), s))
        worst = std::max(worst, s);
      ++n;
      continue;
    }
    if (a.fn == aggregate_fn::any || a.fn == aggregate_fn::all) {
      bool b = v.is_bool() ? v.as_bool() : v.is_number() && v.as_double() != 0;
      any = any || b;
      all = all && b;
      ++n;
      continue;
    }
    if (!v.is_number())
      continue;
    double x = v.as_double();
    lo = n == 0 ? x : std::min(lo, x);
    hi = n == 0 ? x : std::max(hi, x);
    sum += x;
    ++n;
  }
  switch (a.fn) {
    case aggregate_fn::count: return value{static_cast<int64_t>(n)};
    case aggregate_fn::any: return value{any};
    case aggregate_fn::all: return value{all && n > 0};
    case aggregate_fn::worst: return value{std::string{to_string(worst)}};
    default: break;
  }
  if (n == 0)
    return value{};  // nothing to aggregate: the property is absent
  switch (a.fn) {
    case aggregate_fn::sum: return value{sum};
    case aggregate_fn::avg: return value{sum / static_cast<double>(n)};
    case aggregate_fn::min: return value{lo};
    default: return value{hi};
  }
}

/// Recomputes aggregates, alerts and health after children changed and persists.
void recompute(twin_actor* self) {
  auto& st = self->state;
  st.recompute_scheduled = false;
  if (!st.exists)
    return;
  auto& rec = st.rec;
  for (const auto& a : rec.type()->aggregates()) {
    auto v = compute_aggregate(a, rec.children());
    auto* cur = rec.get(a.name);
    if (v.is_null())
      rec.erase(a.name);
    else if (cur == nullptr || *cur != v)
      rec.set(a.name, std::move(v), now_ms(), computed_source());
  }
  evaluate_alerts(self);
  if (!rec.parent.empty())
    st.notify_parent = true;
  commit(self, nullptr);
}

void schedule_recompute(twin_actor* self) {
  auto& st = self->state;
  if (st.recompute_scheduled)
    return;
  st.recompute_scheduled = true;
  auto delay = st.host->opts.aggregate_delay;
  self->send_self(twin_signal(signal_kind::recompute), delay);
}

/// After reported values changed: alerts, health, parent notification, and the desired
/// delta if `reported` (the values a request reported, if any) touched a desired key.
void after_reported_change(twin_actor* self, const value_map* reported = nullptr) {
  auto& st = self->state;
  evaluate_alerts(self);
  if (!st.rec.parent.empty())
    st.notify_parent = true;
  if (reported != nullptr && !st.rec.desired().empty())
    for (const auto& [k, v] : *reported)
      if (st.rec.desired().count(k) > 0) {
        st.publish_desired = true;
        break;
      }
}

/// Inserts or replaces the child's state; returns false if it was already the same.
bool upsert_child(live_record& rec, child_state cs) {
  auto& children = rec.mutable_children();
  for (auto& c : children)
    if (c.id == cs.id) {
      if (c.values == cs.values && c.health == cs.health && c.type == cs.type)
        return false;
      c = std::move(cs);
      return true;
    }
  children.push_back(std::move(cs));
  return true;
}

// -- request handlers -----------------------------------------------------------

/// Answers a request that changed nothing with the current version, once every earlier
/// write of this twin is durable (the writer is FIFO).
void answer_when_durable(twin_actor* self, version_fn done) {
  auto version = self->state.rec.version;
  self->state.host->writer.submit(
    self->state.rec.id, store_batch{}, host_counts{},
    [done = std::move(done), version](caf::error err) { answer_version(done, err, version); });
}

void handle(twin_actor* self, twin_request& req);

/// How values meet the stored ones.
enum class ordering {
  by_ts,       ///< device telemetry: a sample older than the stored one is skipped
  by_version,  ///< API writes: applied whatever the stored timestamps say
};

/// Applies reported values at `ts`; a newer sample of the same value is a change too
/// (its metadata says when the property was last reported). A stored timestamp beyond
/// `horizon_ms` (written before samples from the future were refused) orders nothing: the
/// next sample replaces it. Returns whether anything changed.
bool apply_values(twin_state& st, const value_map& values, int64_t ts, const std::string& source,
                  ordering order, int64_t horizon_ms) {
  const std::string* src = intern_source(source);
  bool changed = false;
  for (const auto& [k, v] : values) {
    auto* p = st.rec.declared(k);  // validation admitted declared properties only
    if (p->v.is_null()) {
      if (!v.is_null()) {
        *p = live_record::property{v, ts, src};
        changed = true;
      }
      continue;
    }
    if (order == ordering::by_ts && ts < p->updated_ms && p->updated_ms <= horizon_ms)
      continue;  // an older sample than the one we have
    if (v.is_null()) {
      *p = live_record::property{};
      changed = true;
    } else if (p->v != v || p->updated_ms != ts || p->source != src) {
      *p = live_record::property{v, ts, src};
      changed = true;
    }  // else: the same sample again
  }
  return changed;
}

void on_ingest(twin_actor* self, ingest_request& req) {
  auto& st = self->state;
  if (!st.exists) {
    req.done(not_found(st.rec.id));
    return;
  }
  auto now = now_ms();
  auto horizon = now + static_cast<int64_t>(st.host->opts.max_clock_skew.count());
  if (req.ts_ms > horizon) {
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    req.done(make_error(runtime_errc::future_timestamp,
                        "the sample's ts " + std::to_string(req.ts_ms) + " is "
                          + std::to_string(req.ts_ms - now)
                          + " ms ahead of the node's clock; at most "
                          + std::to_string(st.host->opts.max_clock_skew.count())
                          + " ms are allowed"));
    return;
  }
  if (auto err = st.rec.type()->check_reported(req.values)) {
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    req.done(std::move(err));
    return;
  }
  auto ts = req.ts_ms > 0 ? req.ts_ms : now;
  bool changed = apply_values(st, req.values, ts, req.source, ordering::by_ts, horizon);
  if (const auto& h = st.rec.type()->handlers().on_telemetry) {
    context_impl ctx{self, changed};
    h(ctx, req.values);
  }
  if (!changed)
    return answer_when_durable(self, std::move(req.done));
  after_reported_change(self, &req.values);
  commit(self, nullptr, std::move(req.done), req.received);
}

/// Applies a put once the parent (if any) accepted the child.
void finish_put(twin_actor* self, put_request& req, bool created) {
  auto& st = self->state;
  auto& rec = st.rec;
  auto now = now_ms();
  if (created) {
    live_record fresh;
    fresh.id = std::move(rec.id);
    fresh.created_ms = now;
    rec = std::move(fresh);
    st.cold().pending.index_adds.push_back({index_kind::by_type, req.type, st.rec.id});
    st.pending_counts.twins += 1;
    st.exists = true;
    st.delete_pending = false;
  }
  const auto& type = *st.host->types.find(req.type);
  rec.set_type(type);
  rec.kind = type.kind();
  if (rec.parent != req.parent) {
    if (!rec.parent.empty()) {
      st.cold().pending.index_removes.push_back({index_kind::by_parent, rec.parent.str(), st.rec.id});
      st.cold().detach_from = rec.parent;
    }
    if (!req.parent.empty())
      st.cold().pending.index_adds.push_back({index_kind::by_parent, req.parent.str(), st.rec.id});
    rec.parent = req.parent;
  }
  // Replace reported state, keeping what the runtime computes.
  rec.erase_uncomputed();
  const auto* source = intern_source(req.source);
  for (auto& [k, v] : req.properties)
    rec.set(k, std::move(v), now, source);
  auto& desired = rec.mutable_desired();
  desired.clear();
  for (auto& [k, v] : req.desired)
    if (!v.is_null())
      desired.emplace(k, std::move(v));
  rec.mutable_relationships() = std::move(req.relationships);
  rec.trim();
  after_reported_change(self);
  st.publish_desired = true;
  if (!rec.parent.empty())
    st.notify_parent = true;
  auto done = std::move(req.done);
  auto version = rec.version + 1;
  commit(
    self,
    [done, version, created](caf::error err) {
      if (err)
        done(std::move(err));
      else
        done(put_result{version, created});
    },
    nullptr, req.received);
}

void on_put(twin_actor* self, put_request& req) {
  auto& st = self->state;
  auto reject = [&](caf::error err) {
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    req.done(std::move(err));
  };
  auto type = st.host->types.find(req.type);
  if (!type)
    return reject(make_error(runtime_errc::unknown_type, "unknown twin type '" + req.type + "'"));
  if (auto err = check_version(st, req.if_version))
    return reject(std::move(err));
  if (st.exists && st.rec.type()->name() != req.type)
    return reject(make_error(runtime_errc::conflict,
                             "twin " + st.rec.id.str() + " has type '" + st.rec.type()->name()
                               + "'; delete it to create it with type '" + req.type + "'"));
  if (auto err = type->check_reported(req.properties))
    return reject(std::move(err));
  if (auto err = type->check_desired(req.desired))
    return reject(std::move(err));
  for (const auto& r : req.relationships)
    if (r.name.empty() || r.target.empty())
      return reject(make_error(runtime_errc::invalid_argument,
                               "a relationship needs a name and a target twin id"));
  if (req.parent == st.rec.id)
    return reject(make_error(runtime_errc::invalid_parent, "a twin cannot be its own parent"));
  bool created = !st.exists;
  if (req.parent.empty() || (st.exists && req.parent == st.rec.parent)) {
    finish_put(self, req, created);
    return;
  }
  // Ask the new parent first: it checks the kinds and records the child.
  child_state cs;
  cs.id = st.rec.id;
  cs.type = req.type;
  for (const auto& [k, v] : req.properties)
    if (v.is_number() || v.is_bool())
      cs.values.emplace(k, v);
  if (st.exists)
    cs.health = health_of(st.rec);
  caf::actor me = self->as_actor();
  attach_request ar;
  ar.state = std::move(cs);
  ar.kind = type->kind();
  ar.done = [me](caf::error err) {
    caf::anon_send(me, twin_signal(signal_kind::attached, 0, false, std::move(err)));
  };
  auto parent = req.parent;
  st.cold().waiting_put = pending_put{std::move(req), created};
  st.host->rt->route(parent, std::move(ar));
}

/// Handles the requests that waited, in order; if one of them makes the twin wait
/// again, the rest keep waiting behind it.
void run_deferred(twin_actor* self) {
  auto& st = self->state;
  if (!st.cold_)
    return;
  auto pending = std::move(st.cold_->deferred);
  st.cold_->deferred.clear();
  for (size_t i = 0; i < pending.size(); ++i) {
    if (st.waiting() || st.reloading) {
      auto& rest = st.cold().deferred;
      rest.insert(rest.begin(), std::make_move_iterator(pending.begin() + i),
                  std::make_move_iterator(pending.end()));
      break;
    }
    handle(self, pending[i]);
  }
}

void on_attached(twin_actor* self, caf::error err) {
  auto& st = self->state;
  if (!st.waiting())
    return;
  auto pp = std::move(*st.cold_->waiting_put);
  st.cold_->waiting_put.reset();
  if (err) {
    if (error_code(err) == runtime_errc::not_found)
      err = make_error(runtime_errc::invalid_parent,
                       "parent " + pp.req.parent.str() + " does not exist");
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    pp.req.done(std::move(err));
  } else if (auto conflict = check_version(st, pp.req.if_version)) {
    // The twin changed while the put waited: undo the parent's side, refuse the put.
    st.host->rt->route(pp.req.parent, detach_notice{st.rec.id});
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    pp.req.done(std::move(conflict));
  } else {
    finish_put(self, pp.req, pp.created && !st.exists);
  }
  run_deferred(self);
}

void on_patch(twin_actor* self, patch_request& req) {
  auto& st = self->state;
  auto reject = [&](caf::error err) {
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    req.done(std::move(err));
  };
  if (!st.exists)
    return req.done(not_found(st.rec.id));
  if (auto err = check_version(st, req.if_version))
    return reject(std::move(err));
  if (auto err = st.rec.type()->check_reported(req.properties))
    return reject(std::move(err));
  if (auto err = st.rec.type()->check_desired(req.desired))
    return reject(std::move(err));
  auto now = now_ms();
  bool changed = apply_values(st, req.properties, now, req.source, ordering::by_version, now);
  bool desired_changed = false;
  for (const auto& [k, v] : req.desired) {
    auto i = st.rec.desired().find(k);
    if (v.is_null()) {
      if (i != st.rec.desired().end()) {
        st.rec.mutable_desired().erase(k);
        desired_changed = true;
      }
    } else if (i == st.rec.desired().end() || i->second != v) {
      st.rec.mutable_desired()[k] = v;
      desired_changed = true;
    }
  }
  st.rec.trim();
  if (!changed && !desired_changed)
    return answer_when_durable(self, std::move(req.done));
  if (changed)
    after_reported_change(self, &req.properties);
  if (desired_changed)
    st.publish_desired = true;
  commit(self, nullptr, std::move(req.done), req.received);
}

void on_remove(twin_actor* self, remove_request& req) {
  auto& st = self->state;
  if (!st.exists)
    return req.done(not_found(st.rec.id));
  if (auto err = check_version(st, req.if_version))
    return req.done(std::move(err));
  auto& rec = st.rec;
  st.cold().pending.index_removes.push_back({index_kind::by_type, rec.type()->name(), st.rec.id});
  if (!rec.parent.empty()) {
    st.cold().pending.index_removes.push_back({index_kind::by_parent, rec.parent.str(), st.rec.id});
    st.cold().detach_from = rec.parent;
  }
  for (const auto& c : rec.children())
    st.cold().orphans.push_back(c.id);
  for (const auto& a : rec.alerts())
    count_alert(st.pending_counts, a.level, -1);
  st.pending_counts.twins -= 1;
  if (!rec.type()->history_properties().empty())
    st.cold().pending.history_deletes.push_back(st.rec.id);
  st.delete_pending = true;
  st.notify_parent = false;
  st.publish_desired = false;
  commit(self, nullptr, std::move(req.done), req.received);
  st.exists = false;
  live_record gone;
  gone.id = std::move(st.rec.id);
  st.rec = std::move(gone);
}

void on_command(twin_actor* self, command_request& req) {
  auto& st = self->state;
  if (!st.exists)
    return req.done(not_found(st.rec.id));
  const auto& type = *st.rec.type();
  if (!type.has_command(req.name))
    return req.done(make_error(runtime_errc::invalid_argument,
                               "type '" + type.name() + "' has no command '" + req.name + "'"));
  value answer;
  bool changed = false;
  if (const auto& h = type.handlers().on_command) {
    // A handler that fails leaves nothing behind.
    auto saved_rec = st.rec;
    auto saved_counts = st.pending_counts;
    auto saved_publish = st.publish_desired;
    context_impl ctx{self, changed};
    auto r = h(ctx, req.name, req.args);
    if (!r) {
      st.rec = std::move(saved_rec);
      st.pending_counts = saved_counts;
      st.publish_desired = saved_publish;
      return req.done(r.error());
    }
    answer = std::move(*r);
  }
  // Sent commands go to the change feed too, the record of what devices were told: from
  // the writer, behind the events of the twin's earlier changes.
  auto* gateway = st.host->gateway;
  auto* feed = st.host->feed;
  auto send = [gateway, feed, id = st.rec.id, type = type.name(), name = req.name,
               args = req.args] {
    if (gateway != nullptr)
      gateway->send_command(id, name, args);
    if (feed == nullptr || !feed->active() || !feed->wants(id, type))
      return;
    auto ev = std::make_shared<change_event>();
    ev->kind = change_event::kind_t::command;
    ev->id = id;
    ev->type = type;
    ev->ts_ms = now_ms();
    ev->command = name;
    ev->args = args;
    feed->publish(ev);
  };
  if (!changed) {
    st.host->writer.submit(st.rec.id, store_batch{}, host_counts{},
                           [send, answer, done = std::move(req.done)](caf::error) {
                             send();
                             done(answer);
                           });
    return;
  }
  // The command's effect on the twin is durable before the device hears of it.
  after_reported_change(self);
  commit(self, [send, answer, done = std::move(req.done)](caf::error err) {
    if (err)
      return done(std::move(err));
    send();
    done(answer);
  });
}

void finish_attach(twin_actor* self, attach_request& req) {
  auto& st = self->state;
  if (!st.exists)
    return req.done(not_found(st.rec.id));
  bool changed = false;
  if (const auto& h = st.rec.type()->handlers().on_child_change) {
    context_impl ctx{self, changed};
    h(ctx, req.state);
  }
  upsert_child(st.rec, std::move(req.state));
  auto done = std::move(req.done);
  commit(self, [done](caf::error err) { done(std::move(err)); });
  schedule_recompute(self);
}

/// The parent this twin has, or will have once its waiting put is applied.
const twin_id& effective_parent(const twin_state& st) {
  return st.waiting() ? st.cold_->waiting_put->req.parent : st.rec.parent;
}

void on_attach(twin_actor* self, attach_request& req) {
  auto& st = self->state;
  if (!st.exists)
    return req.done(not_found(st.rec.id));
  if (req.kind > st.rec.kind)
    return req.done(make_error(runtime_errc::invalid_parent,
                               "a " + std::string{to_string(req.kind)} + " cannot be a child of "
                                 + st.rec.id.str() + ", a " + to_string(st.rec.kind)
                                 + " (component < asset < system < process)"));
  const auto& children = st.rec.children();
  bool known = std::any_of(children.begin(), children.end(),
                           [&](const child_state& c) { return c.id == req.state.id; });
  const auto& up = effective_parent(st);
  if (req.kind < st.rec.kind || up.empty() || known)
    return finish_attach(self, req);
  if (up == req.state.id)
    return req.done(make_error(runtime_errc::conflict,
                               req.state.id.str() + " is (or is becoming) the parent of "
                                 + st.rec.id.str() + ": the link would make a cycle"));
  // Same kind: the child must not be one of this twin's ancestors.
  auto token = st.cold().next_token++;
  ancestor_query q;
  q.candidate = req.state.id;
  q.kind = req.kind;
  caf::actor me = self->as_actor();
  q.done = [me, token](bool cycle) {
    caf::anon_send(me, twin_signal(signal_kind::checked, token, cycle));
  };
  st.cold().checking.emplace(token, std::move(req));
  st.host->rt->route(up, std::move(q));
}

void on_checked(twin_actor* self, uint64_t token, bool cycle) {
  auto& st = self->state;
  if (!st.cold_)
    return;
  auto i = st.cold_->checking.find(token);
  if (i == st.cold_->checking.end())
    return;
  auto req = std::move(i->second);
  st.cold_->checking.erase(i);
  if (cycle)
    return req.done(make_error(runtime_errc::conflict,
                               req.state.id.str() + " is an ancestor of " + st.rec.id.str()
                                 + " (or the chain could not be checked): the link would make "
                                   "a cycle"));
  finish_attach(self, req);
}

void on_ancestor_query(twin_actor* self, ancestor_query& q) {
  auto& st = self->state;
  if (q.candidate == st.rec.id)
    return q.done(true);
  const auto& up = effective_parent(st);
  if (!st.exists || up.empty() || st.rec.kind > q.kind)
    return q.done(false);
  st.host->rt->route(up, std::move(q));
}

void on_child_update(twin_actor* self, child_update& upd) {
  auto& st = self->state;
  if (!st.exists) {
    // This parent is gone (its orphan notice may have been lost in a crash): let the
    // child drop the link.
    st.host->rt->route(upd.state.id, orphan_notice{st.rec.id});
    return;
  }
  if (upd.kind > st.rec.kind)
    return;  // not a child this twin would have accepted
  bool changed = false;
  if (const auto& h = st.rec.type()->handlers().on_child_change) {
    context_impl ctx{self, changed};
    h(ctx, upd.state);
  }
  // An unchanged child changes nothing here: no recompute, no write, no notification.
  if (upsert_child(st.rec, std::move(upd.state)))
    schedule_recompute(self);
}

void on_detach(twin_actor* self, const detach_notice& n) {
  auto& st = self->state;
  if (!st.exists)
    return;
  const auto& cs = st.rec.children();
  auto i = std::find_if(cs.begin(), cs.end(), [&](const child_state& c) { return c.id == n.child; });
  if (i == cs.end())
    return;
  st.rec.mutable_children().erase(i);
  st.rec.trim();
  schedule_recompute(self);
}

void on_orphan(twin_actor* self, const orphan_notice& n) {
  auto& st = self->state;
  if (!st.exists || st.rec.parent != n.parent)
    return;
  st.cold().pending.index_removes.push_back({index_kind::by_parent, st.rec.parent.str(), st.rec.id});
  st.rec.parent = twin_id{};
  commit(self, nullptr);
}

void handle(twin_actor* self, twin_request& req) {
  auto& st = self->state;
  if (st.load_error) {
    fail_request(req, st.load_error);
    return;
  }
  // While a put waits for the parent, later client requests wait behind it (their order
  // is kept); messages between twins go on, or an ancestor walk through here would stall.
  bool from_client = std::holds_alternative<ingest_request>(req)
                     || std::holds_alternative<put_request>(req)
                     || std::holds_alternative<patch_request>(req)
                     || std::holds_alternative<get_request>(req)
                     || std::holds_alternative<remove_request>(req)
                     || std::holds_alternative<command_request>(req);
  if (st.reloading || (st.waiting() && from_client)) {
    st.cold().deferred.push_back(std::move(req));
    return;
  }
  std::visit(
    [&](auto& r) {
      using T = std::decay_t<decltype(r)>;
      if constexpr (std::is_same_v<T, ingest_request>)
        on_ingest(self, r);
      else if constexpr (std::is_same_v<T, put_request>)
        on_put(self, r);
      else if constexpr (std::is_same_v<T, patch_request>)
        on_patch(self, r);
      else if constexpr (std::is_same_v<T, get_request>)
        st.exists ? r.done(st.rec.to_record()) : r.done(not_found(st.rec.id));
      else if constexpr (std::is_same_v<T, remove_request>)
        on_remove(self, r);
      else if constexpr (std::is_same_v<T, command_request>)
        on_command(self, r);
      else if constexpr (std::is_same_v<T, child_update>)
        on_child_update(self, r);
      else if constexpr (std::is_same_v<T, attach_request>)
        on_attach(self, r);
      else if constexpr (std::is_same_v<T, detach_notice>)
        on_detach(self, r);
      else if constexpr (std::is_same_v<T, orphan_notice>)
        on_orphan(self, r);
      else if constexpr (std::is_same_v<T, ancestor_query>)
        on_ancestor_query(self, r);
    },
    req);
}

/// Rebuilds the kept child states from the store. Children write their parent link and
/// the by_parent index atomically with their own state, while the parent hears of it
/// only afterwards; after a crash in between, this brings the parent up to date (and
/// drops children that never became durable). Schedules a recompute if anything differs.
void reconcile_children(twin_actor* self) {
  auto& st = self->state;
  auto& store = st.host->store;
  std::vector<child_state> found;
  twin_id after;
  for (;;) {
    auto ids = store.list(index_kind::by_parent, st.rec.id.str(), after, 1024);
    if (!ids)
      return;  // keep what the record says; the next child change corrects it
    for (const auto& cid : *ids) {
      auto bytes = store.get(cid);
      if (!bytes || !*bytes)
        continue;
      auto child = decode_record(**bytes);
      if (!child || child->parent != st.rec.id)
        continue;
      found.push_back(child_state_of(*child));
    }
    if (ids->size() < 1024)
      break;
    after = ids->back();
  }
  auto same = [](const child_state& a, const child_state& b) {
    return a.id == b.id && a.values == b.values && a.health == b.health && a.type == b.type;
  };
  auto& kept = st.rec.mutable_children();
  std::sort(kept.begin(), kept.end(),
            [](const child_state& a, const child_state& b) { return a.id < b.id; });
  bool unchanged =
    found.size() == kept.size() && std::equal(found.begin(), found.end(), kept.begin(), same);
  if (!unchanged)
    kept = std::move(found);
  st.rec.trim();
  if (unchanged)
    return;
  schedule_recompute(self);
}

/// Loads the record from the store (on activation, and after a failed write, so that
/// memory matches the store again).
void load(twin_actor* self) {
  auto& st = self->state;
  st.exists = false;
  live_record none;
  none.id = std::move(st.rec.id);
  st.rec = std::move(none);
  auto bytes = st.host->store.get(st.rec.id);
  if (!bytes) {
    st.load_error = bytes.error();
    return;
  }
  if (!*bytes)
    return;
  auto rec = decode_record(**bytes);
  if (!rec) {
    st.load_error = rec.error();
    return;
  }
  auto type = st.host->types.find(rec->type);
  if (!type) {
    st.load_error = make_error(runtime_errc::unknown_type,
                               "twin " + st.rec.id.str() + " has type '" + rec->type
                                 + "', which no loaded model defines");
    return;
  }
  st.rec = live_record{std::move(*rec), *type};
  st.exists = true;
  if (st.rec.kind != twin_kind::component || !st.rec.children().empty())
    reconcile_children(self);
}

// -- the actor --------------------------------------------------------------------

twin_actor::twin_actor(caf::actor_config& cfg, host_impl* host, twin_id id)
  : caf::monitorable_actor(cfg) {
  state.host = host;
  state.rec.id = std::move(id);
  // Idle until the first message, which schedules the actor; the record is loaded then.
  inbox_.try_block();
}

void twin_actor::enqueue(caf::mailbox_element_ptr what, caf::execution_unit* eu) {
  switch (inbox_.push_front(what.release())) {
    case caf::intrusive::inbox_result::unblocked_reader:
      intrusive_ptr_add_ref(ctrl());  // the scheduler's reference, dropped after resume
      if (eu != nullptr)
        eu->exec_later(this);
      else
        home_system().scheduler().enqueue(this);
      break;
    default:
      break;  // queued; or bounced if the actor ended
  }
}

void twin_actor::send_self(twin_signal s, std::chrono::milliseconds delay) {
  auto msg = caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, std::move(s));
  if (delay.count() <= 0) {
    enqueue(std::move(msg), nullptr);
    return;
  }
  auto& clock = home_system().clock();
  clock.schedule_message(clock.now() + delay, caf::strong_actor_ptr{ctrl()}, std::move(msg));
}

caf::resumable::resume_result twin_actor::resume(caf::execution_unit* eu, size_t max_throughput) {
  for (size_t handled = 0; handled < max_throughput; ++handled) {
    if (cache_ == nullptr) {
      auto* head = inbox_.take_head();
      if (head == nullptr) {
        if (inbox_.try_block())
          return awaiting_message;
        head = inbox_.take_head();  // a message came in between
      }
      // The inbox is a stack: reverse it into arrival order.
      caf::mailbox_element* fifo = nullptr;
      while (head != nullptr) {
        auto* next = static_cast<caf::mailbox_element*>(head->next);
        head->next = fifo;
        fifo = head;
        head = next;
      }
      cache_ = fifo;
    }
    caf::mailbox_element_ptr x{cache_};
    cache_ = static_cast<caf::mailbox_element*>(x->next);
    dispatch(x->content());
    if (quitting_) {
      bouncer bounce;
      for (auto* y = cache_; y != nullptr;) {
        auto* next = static_cast<caf::mailbox_element*>(y->next);
        bounce(y);
        y = next;
      }
      cache_ = nullptr;
      inbox_.close(bounce);
      cleanup(caf::exit_reason::normal, eu);
      return done;
    }
  }
  return resume_later;
}

void twin_actor::dispatch(caf::type_erased_tuple& content) {
  auto* self = this;
  auto& st = state;
  if (!st.loaded) {
    st.loaded = true;
    st.host->stats.activations.fetch_add(1, std::memory_order_relaxed);
    load(self);
  }
  if (content.match_elements<twin_request>()) {
    handle(self, content.get_mutable_as<twin_request>(0));
    maybe_release(self);
    return;
  }
  if (content.match_elements<caf::exit_msg>()) {
    quit();  // the host gave up waiting for it (stop after a deadline)
    return;
  }
  if (!content.match_elements<twin_signal>())
    return;
  auto& sig = content.get_mutable_as<twin_signal>(0);
  switch (sig.kind) {
    case signal_kind::failed:
      // A write failed: memory is ahead of the store. Once the writer holds nothing more
      // of this twin, read the store's state again; requests wait until then.
      if (st.reloading)
        return;
      st.reloading = true;
      st.host->writer.reset(st.rec.id, [me = as_actor()](caf::error) {
        caf::anon_send(me, twin_signal(signal_kind::reload));
      });
      return;
    case signal_kind::reload:
      st.load_error = caf::error{};
      st.pending_counts = host_counts{};
      st.delete_pending = false;
      st.notify_parent = false;
      st.publish_desired = false;
      if (st.cold_)
        st.cold_->pending = store_batch{};
      load(self);
      st.reloading = false;
      run_deferred(self);
      break;
    case signal_kind::drained:
      st.host->stats.passivations.fetch_add(1, std::memory_order_relaxed);
      st.host->on_passivated(st.rec.id);
      quit();
      return;
    case signal_kind::checked:
      on_checked(self, sig.token, sig.flag);
      break;
    case signal_kind::attached:
      on_attached(self, std::move(sig.err));
      break;
    case signal_kind::recompute:
      if (st.recompute_scheduled)
        recompute(self);
      break;
    case signal_kind::timer: {
      if (!st.exists || st.passivating || !st.rec.type()->handlers().on_timer)
        return;  // timers do not outlive an activation
      bool changed = false;
      context_impl ctx{self, changed};
      st.rec.type()->handlers().on_timer(ctx);
      if (changed) {
        after_reported_change(self);
        commit(self, nullptr);
      }
      return;
    }
    case signal_kind::passivate:
      if (st.busy() && st.host->accepting.load()) {
        // Waiting on other twins, which may need this one to answer: stay active.
        st.host->cancel_passivation(st.rec.id, address());
        return;
      }
      st.passivating = true;
      if (st.recompute_scheduled)
        recompute(self);
      break;
  }
  maybe_release(self);
}

} // namespace

caf::actor spawn_twin_actor(caf::actor_system& sys, host::impl* host, const twin_id& id) {
  caf::actor_config cfg;
  cfg.flags |= caf::abstract_actor::is_hidden_flag;  // the host tracks its twins itself
  return caf::make_actor<twin_actor, caf::actor>(sys.next_actor_id(), sys.node(), &sys, cfg,
                                                 host, id);
}

void send_passivate(const caf::actor& twin) {
  caf::anon_send(twin, twin_signal(signal_kind::passivate));
}

void fail_request(twin_request& req, const caf::error& err) {
  std::visit(
    [&](auto& r) {
      using T = std::decay_t<decltype(r)>;
      if constexpr (std::is_same_v<T, ancestor_query>)
        r.done(true);  // an ancestor that cannot be asked: refuse rather than risk a cycle
      else if constexpr (!std::is_same_v<T, child_update> && !std::is_same_v<T, detach_notice>
                         && !std::is_same_v<T, orphan_notice>)
        r.done(err);
    },
    req);
}

} // namespace twin::runtime
