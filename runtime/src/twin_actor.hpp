#pragma once

// The actor of one twin and its state, shared by the files that implement it:
// twin_actor.cpp (the actor, its mailbox and helpers), twin_requests.cpp (what it does with
// each request), twin_links.cpp (the messages between parents and children),
// twin_rollup.cpp (predictions, alerts, health and aggregates) and twin_commit.cpp
// (persistence through the group-commit writer). Private to the runtime.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <caf/all.hpp>
#include <caf/intrusive/lifo_inbox.hpp>

#include "durable_counts.hpp"
#include "host_impl.hpp"
#include "live_record.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/rul.hpp"
#include "twin/runtime/trend.hpp"

namespace twin::runtime {

using host_impl = host::impl;

namespace twin_detail {

using waiter = std::function<void(caf::error)>;

/// A put or a patch that waits for the new parent to accept the child.
struct pending_move {
  std::variant<put_request, patch_request> req;
  bool created = false;  ///< a put that creates the twin

  /// The parent it waits for.
  const twin_id& parent() const {
    return std::visit([](const auto& r) -> const twin_id& {
      if constexpr (std::is_same_v<std::decay_t<decltype(r)>, put_request>)
        return r.parent;
      else
        return *r.parent;
    }, req);
  }
};

/// The parts of a twin's state that are only in use now and then (a create, a parent
/// change, a delete, a put waiting for its parent); allocated while in use, so an idle
/// twin does not carry them.
struct twin_cold {
  store_batch pending;          ///< index changes for the next write
  twin_id detach_from;          ///< old parent to notify after the next write
  std::vector<twin_id> orphans; ///< children to notify of a deletion after the next write
  std::map<uint64_t, attach_request> checking;  ///< attaches waiting for the cycle check
  std::optional<pending_move> waiting_put;      ///< a put or patch waiting for its new parent
  std::vector<twin_request> deferred;           ///< client requests behind that put
  uint64_t next_token = 0;                      ///< of the next entry in `checking`

  bool empty() const {
    return pending.empty() && detach_from.empty() && orphans.empty() && checking.empty()
           && !waiting_put && deferred.empty();
  }
};

/// The last sample written of a property whose history the twin's type keeps.
struct history_mark {
  int64_t ts = INT64_MIN;
  value v;
};

/// The anomaly detectors of the properties a twin's type watches, with the time of the
/// last sample each scored. In memory only: detectors learn again after the twin is
/// activated again.
struct watched_properties {
  anomaly_bank detectors;
  std::unique_ptr<int64_t[]> scored_ms;
};

/// What a twin keeps to apply its type's RUL model: the model of the type's generation it
/// last saw (nullptr: removed), and its inputs smoothed over the samples since it was
/// activated (or since the model's inputs changed), with the time of the last one added.
struct rul_tracker {
  std::shared_ptr<const rul_model> model;
  double weight = 0;  ///< of a sample, for `model`
  uint64_t generation = 0;
  rul_features features;
  int64_t added_ms = INT64_MIN;
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
  uint64_t type_generation = 0; ///< of the registry when the twin last took its type
  live_record rec;
  host_counts pending_counts;
  std::unique_ptr<twin_cold> cold_;
  /// One per entry of the type's `history_properties()`, in one block; made at the first
  /// commit of a twin whose type keeps any, dropped with `anomalies`.
  std::unique_ptr<history_mark[]> history;
  /// One detector per entry of the type's `anomalies()` (a twin's detectors are seldom in
  /// the cache, and each line of them read is a miss); made at the twin's first scored
  /// sample, dropped when the twin is created, deleted or loaded (`forget_samples`).
  std::unique_ptr<watched_properties> anomalies;

  /// One per entry of the type's `limits()`, made and dropped like `anomalies`.
  std::unique_ptr<trend_estimator[]> trends;
  /// Made at the first sample after the type had a RUL model; dropped like `anomalies`.
  std::unique_ptr<rul_tracker> rul;

  /// Drops what the twin keeps of its samples in memory: its history marks (the next
  /// commit writes every sample kept), its anomaly detectors, trends and RUL inputs.
  void forget_samples() {
    history.reset();
    anomalies.reset();
    trends.reset();
    rul.reset();
  }
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

} // namespace twin_detail
} // namespace twin::runtime

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(twin::runtime::twin_detail::twin_signal)

namespace twin::runtime::twin_detail {

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

// -- helpers (twin_actor.cpp) ----------------------------------------------------

caf::error not_found(const twin_id& id);

/// Refuses a conditional request when the twin has another version.
caf::error check_version(const twin_state& st, const std::optional<uint64_t>& expected);

/// The sources of properties that a type's handlers and the runtime set.
const std::string* handler_source();
const std::string* computed_source();

/// Adds what a parent keeps of a child's reported property: numbers, booleans, health.
void keep_for_parent(child_state& cs, const std::string& name, const value& v);

/// What a parent keeps of the twin `rec`.
child_state child_state_of(const live_record& rec);

child_state child_state_of(const twin_record& rec);

severity health_of(const live_record& rec);

/// Answers `done` with the error of a write, or with the twin's `version` after it.
void answer_version(const version_fn& done, caf::error err, uint64_t version);

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

// -- persistence (twin_commit.cpp) -----------------------------------------------

/// The event of the change being committed, if anyone listens.
std::shared_ptr<change_event> change_of(const twin_state& st);

/// Tells the active twin `id` that one of its writes failed.
void notify_write_failed(host_impl* host, const twin_id& id);

/// Adds a sample of each property whose history is kept and which changed (its value or
/// its time) since the last sample written. The first commit after an activation writes
/// every one: a sample is keyed by its time, so one written again overwrites itself.
void add_history(twin_state& st, store_batch& batch);

/// Records an accepted change and hands it to the writer at once. Once the change is
/// durable or failed, on the writer thread, `w` is called (with no error or the error)
/// and `answer` with the twin's new version (or the error); on success the change's
/// effects on other twins and devices follow, computed from the state as of this change.
/// Writes of one twin reach the store in commit order (the writer is FIFO). `received`:
/// when the request that made the change reached the host (none: not timed).
void commit(twin_actor* self, waiter w, version_fn answer = nullptr,
            std::chrono::steady_clock::time_point received = {});

/// Starts passivation or the release of a twin that does not exist, once nothing is
/// pending in the actor; finishes after the writer made every earlier write durable.
void maybe_release(twin_actor* self);

// -- derived properties, alerts, health, aggregates (twin_rollup.cpp) -------------

/// Starts loading into the cache what `score_anomalies` and `estimate_rul` read and write
/// for a sample about to be applied (a twin's detectors and RUL state are seldom in the
/// cache: loaded while the sample is checked and applied, they cost no wait).
void prefetch_predictions(twin_state& st);

/// Scores the samples at `ts` (those of a telemetry message just applied) of the properties
/// that the type watches for anomalies. A score that changes is set as `<property>_anomaly`
/// (at the sample's time) and written to its history with the next write, and so is a
/// record of each anomaly that starts. A sample no newer than the last one scored is not
/// scored.
void score_anomalies(twin_state& st, int64_t ts);

/// Adds the samples at `ts` of the properties whose time to a limit the type projects to
/// their trends, and sets the projections.
void project_limits(twin_state& st, int64_t ts);

/// Adds the inputs at `ts` (a telemetry message just applied that set one of them) to the
/// twin's RUL tracker and sets `rul_s`, `rul_low_s` and `rul_high_s` from the type's model;
/// clears them while the type has none. A twin lacking an input is not estimated.
void estimate_rul(twin_state& st, int64_t ts);

/// Recomputes the derived properties (in the type's order); returns whether one changed.
bool compute_derived(live_record& rec);
/// Re-evaluates alert rules and health; returns true if anything changed.
bool evaluate_alerts(twin_actor* self);

value compute_aggregate(const aggregate_spec& a, const std::vector<child_state>& children);

/// Recomputes aggregates, alerts and health after children changed and persists.
void recompute(twin_actor* self);

void schedule_recompute(twin_actor* self);

/// After reported values changed: alerts, health, parent notification, and the desired
/// delta if `reported` (the values a request reported, if any) touched a desired key.
void after_reported_change(twin_actor* self, const value_map* reported = nullptr);

/// Inserts or replaces the child's state; returns false if it was already the same.
bool upsert_child(live_record& rec, child_state cs);

// -- request handlers (twin_requests.cpp) -----------------------------------------

/// How values meet the stored ones.
enum class ordering {
  by_ts,       ///< device telemetry: a sample older than the stored one is skipped
  by_version,  ///< API writes: applied whatever the stored timestamps say
};

/// Answers a request that changed nothing with the current version, once every earlier
/// write of this twin is durable (the writer is FIFO).
void answer_when_durable(twin_actor* self, version_fn done);

/// Applies reported values at `ts`; a newer sample of the same value is a change too
/// (its metadata says when the property was last reported). A stored timestamp beyond
/// `horizon_ms` (written before samples from the future were refused) orders nothing: the
/// next sample replaces it. Returns whether anything changed.
bool apply_values(twin_state& st, const value_map& values, int64_t ts, const std::string& source,
                  ordering order, int64_t horizon_ms);

void on_ingest(twin_actor* self, ingest_request& req);

/// Applies a put once the parent (if any) accepted the child.
void finish_put(twin_actor* self, put_request& req, bool created);
/// Applies a patch whose new parent (if any) has accepted the twin.
void finish_patch(twin_actor* self, patch_request& req);

void on_put(twin_actor* self, put_request& req);

/// Handles the requests that waited, in order; if one of them makes the twin wait
/// again, the rest keep waiting behind it.
void run_deferred(twin_actor* self);

void on_attached(twin_actor* self, caf::error err);

void on_patch(twin_actor* self, patch_request& req);

void on_remove(twin_actor* self, remove_request& req);

void on_command(twin_actor* self, command_request& req);

void handle(twin_actor* self, twin_request& req);

// -- the twin's type (twin_types.cpp) ----------------------------------------------

/// Loads the record from the store (on activation, and after a failed write, so that
/// memory matches the store again), with its type, or the stand-in of a type no model
/// defines.
void load(twin_actor* self);

/// Takes the twin's type again if the registry changed since it last did: an upgraded
/// type, or the type of a model loaded since (for a twin that had only its stand-in).
void refresh_type(twin_state& st);

/// Whether `req` would change a twin whose type no model defines (it may only be read and
/// deleted); if so, it is refused.
bool refused_without_type(twin_state& st, twin_request& req);

// -- between parents and children (twin_links.cpp) --------------------------------

void finish_attach(twin_actor* self, attach_request& req);

/// The parent this twin has, or will have once its waiting put is applied.
const twin_id& effective_parent(const twin_state& st);

void on_attach(twin_actor* self, attach_request& req);

void on_checked(twin_actor* self, uint64_t token, bool cycle);

void on_ancestor_query(twin_actor* self, ancestor_query& q);

void on_child_update(twin_actor* self, child_update& upd);

void on_detach(twin_actor* self, const detach_notice& n);

void on_orphan(twin_actor* self, const orphan_notice& n);

void on_child_query(twin_actor* self, const child_query& q);

/// Asks each child of the record for its state. A parent records a child (when it accepts
/// its attach) before the child's link is durable, and hears of the child's changes only
/// after they are: after a crash in between, the answers bring the parent up to date and
/// drop children that never became durable. The children may live on any node.
void query_children(twin_actor* self);

} // namespace twin::runtime::twin_detail
