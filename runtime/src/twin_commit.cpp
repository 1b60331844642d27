// A twin's changes made durable: the record, its indexes and history in the group-commit
// writer's batch, the change's event, and its effects once durable.

#include "twin_actor.hpp"

namespace twin::runtime::twin_detail {

// -- persistence --------------------------------------------------------------

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

void add_history(twin_state& st, store_batch& batch) {
  const auto* type = st.rec.type();
  if (type == nullptr || type->history_properties().empty())
    return;
  const auto& positions = type->history_properties();
  if (!st.history)
    st.history = std::make_unique<history_mark[]>(positions.size());
  auto* written = st.history.get();
  for (size_t k = 0; k < positions.size(); ++k) {
    auto i = static_cast<size_t>(positions[k]);
    const auto* p = st.rec.at(i);
    if (p == nullptr || (p->updated_ms == written[k].ts && p->v == written[k].v))
      continue;
    written[k] = {p->updated_ms, p->v};
    batch.history.push_back(
      history_entry{st.rec.id, type->properties()[i].name, p->updated_ms, encode_sample(p->v)});
  }
}

void commit(twin_actor* self, waiter w, version_fn answer,
            std::chrono::steady_clock::time_point received) {
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
  host->commit->submit(
    st.rec.id, std::move(batch), counts,
    [host, id = st.rec.id, version = rec.version, w = std::move(w), answer = std::move(answer),
     notes = std::move(notes), desired_delta = std::move(desired_delta), event = std::move(event),
     received](caf::error err) mutable {
      if (err) {  // the twin hears of it first: what the caller sends next finds it reloading
        notify_write_failed(host, id);
      } else if (w || answer) {
        host->stats.updates.fetch_add(1, std::memory_order_relaxed);
        auto durable = host->commit->durable_at();
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
    st.host->commit->submit(st.rec.id, store_batch{}, host_counts{}, [me](caf::error) {
      caf::anon_send(me, twin_signal(signal_kind::drained));
    });
    return;
  }
  if (!st.exists && !st.passivation_requested) {
    // Nothing to keep in memory for a twin that does not exist.
    st.passivation_requested = true;
    st.host->request_passivation(st.rec.id, self->address());
  } else if (st.host->leaving(st.rec.id)) {
    // Its shard is being released, and it was busy when told to passivate.
    st.host->request_passivation(st.rec.id, self->address());
  }
}

} // namespace twin::runtime::twin_detail
