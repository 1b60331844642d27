// What a twin does with the messages between parents and children: attaching (with the
// check for a cycle), detaching, its children's updates, and the queries that find them.

#include <algorithm>

#include "twin_actor.hpp"

namespace twin::runtime::twin_detail {

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

const twin_id& effective_parent(const twin_state& st) {
  return st.waiting() ? st.cold_->waiting_put->parent() : st.rec.parent;
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

void query_children(twin_actor* self) {
  auto& st = self->state;
  for (const auto& c : st.rec.children())
    st.host->rt->route(c.id, child_query{st.rec.id});
}

void on_child_query(twin_actor* self, const child_query& q) {
  auto& st = self->state;
  if (effective_parent(st) != q.parent)
    return st.host->rt->route(q.parent, detach_notice{st.rec.id});
  // A twin being put under the parent tells it its state once the put is durable.
  if (st.exists)
    st.host->rt->route(q.parent, child_update{child_state_of(st.rec), st.rec.kind});
}

} // namespace twin::runtime::twin_detail
