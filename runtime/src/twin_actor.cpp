// The actor of one twin: applies requests to its record, keeps aggregates, alerts and
// health, persists through the host's group-commit writer and acknowledges only once a
// change is durable.

#include <algorithm>

#include "twin_actor.hpp"

namespace twin::runtime::twin_detail {

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

void keep_for_parent(child_state& cs, const std::string& name, const value& v) {
  if (name == "health") {
    if (v.is_string())
      from_string(v.as_string(), cs.health);
  } else if (!v.is_number() && !v.is_bool()) {
    return;
  }
  cs.values.emplace(name, v);
}

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

void answer_version(const version_fn& done, caf::error err, uint64_t version) {
  if (err)
    done(std::move(err));
  else
    done(version);
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
      st.host->commit->reset(st.rec.id, [me = as_actor()](caf::error) {
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

} // namespace twin::runtime::twin_detail

namespace twin::runtime {

using namespace twin_detail;

caf::actor spawn_twin_actor(caf::actor_system& sys, host::impl* host, const twin_id& id) {
  caf::actor_config cfg;
  cfg.flags |= caf::abstract_actor::is_hidden_flag;  // the host tracks its twins itself
  return caf::make_actor<twin_actor, caf::actor>(sys.next_actor_id(), sys.node(), &sys, cfg,
                                                 host, id);
}

void send_passivate(const caf::actor& twin) {
  caf::anon_send(twin, twin_signal(signal_kind::passivate));
}

} // namespace twin::runtime
