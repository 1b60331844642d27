// What a twin does with each request: telemetry, put, patch, delete and commands (the
// messages between parents and children are in twin_links.cpp).

#include <algorithm>
#include <mutex>

#include "twin_actor.hpp"
#include "twin/runtime/suggest.hpp"

namespace twin::runtime::twin_detail {

// -- request handlers -----------------------------------------------------------

void answer_when_durable(twin_actor* self, version_fn done) {
  auto version = self->state.rec.version;
  self->state.host->commit->submit(
    self->state.rec.id, store_batch{}, host_counts{},
    [done = std::move(done), version](caf::error err) { answer_version(done, err, version); });
}

void handle(twin_actor* self, twin_request& req);


namespace {

/// Whether `a` and `b` hold the same relationships in the same order.
bool same_relationships(const std::vector<relationship>& a, const std::vector<relationship>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const relationship& x, const relationship& y) {
                      return x.name == y.name && x.target == y.target;
                    });
}

} // namespace

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
  __builtin_prefetch(st.anomalies.get());  // what `prefetch_predictions` reads
  __builtin_prefetch(st.rul.get());
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
  prefetch_predictions(st);
  bool changed = apply_values(st, req.values, ts, req.source, ordering::by_ts, horizon);
  if (changed && !st.rec.type()->anomalies().empty())
    score_anomalies(st, ts);
  if (changed && !st.rec.type()->limits().empty())
    project_limits(st, ts);
  if (changed && st.rec.type()->learns_rul())
    estimate_rul(st, ts);
  if (const auto& h = st.rec.type()->handlers().on_telemetry) {
    context_impl ctx{self, changed};
    h(ctx, req.values);
  }
  if (!changed)
    return answer_when_durable(self, std::move(req.done));
  after_reported_change(self, &req.values);
  commit(self, nullptr, std::move(req.done), req.received);
}

namespace {

/// Makes `parent` the twin's parent (which has accepted it) in its record and indexes,
/// and tells the one it leaves after the next write.
void set_parent(twin_state& st, const twin_id& parent) {
  auto& rec = st.rec;
  if (rec.parent == parent)
    return;
  if (!rec.parent.empty()) {
    st.cold().pending.index_removes.push_back({index_kind::by_parent, rec.parent.str(), rec.id});
    st.cold().detach_from = rec.parent;
  }
  if (!parent.empty())
    st.cold().pending.index_adds.push_back({index_kind::by_parent, parent.str(), rec.id});
  rec.parent = parent;
}

/// Asks `parent` to take the twin as a child of `type` with `values` (`health` if it
/// exists); the request waits in `pending` until it answers (`on_attached`).
void ask_parent(twin_actor* self, const twin_id& parent, const twin_type& type,
                const value_map& values, pending_move pending) {
  auto& st = self->state;
  child_state cs;
  cs.id = st.rec.id;
  cs.type = type.name();
  for (const auto& [k, v] : values)
    if (v.is_number() || v.is_bool())
      cs.values.emplace(k, v);
  if (st.exists)
    cs.health = health_of(st.rec);
  caf::actor me = self->as_actor();
  attach_request ar;
  ar.state = std::move(cs);
  ar.kind = type.kind();
  ar.done = [me](caf::error err) {
    caf::anon_send(me, twin_signal(signal_kind::attached, 0, false, std::move(err)));
  };
  st.cold().waiting_put = std::move(pending);
  st.host->rt->route(parent, std::move(ar));
}

} // namespace

void finish_put(twin_actor* self, put_request& req, bool created) {
  auto& st = self->state;
  auto& rec = st.rec;
  auto now = now_ms();
  if (created) {
    live_record fresh;
    fresh.id = std::move(rec.id);
    fresh.created_ms = now;
    rec = std::move(fresh);
    st.forget_samples();
    st.cold().pending.index_adds.push_back({index_kind::by_type, req.type, st.rec.id});
    st.pending_counts.twins += 1;
    st.exists = true;
    st.delete_pending = false;
  }
  const auto& type = *st.host->types.find(req.type);
  rec.set_type(type);
  rec.kind = type.kind();
  set_parent(st, req.parent);
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
    return reject(make_error(runtime_errc::unknown_type,
                             "unknown twin type '" + req.type + "'"
                               + suggestion(req.type, st.host->types.names())));
  req.type = type->name();  // as indexes and records know it (not its DTMI)
  if (auto err = check_version(st, req.if_version))
    return reject(std::move(err));
  if (st.exists && st.rec.type()->name() != req.type)
    return reject(make_error(runtime_errc::conflict,
                             "twin " + st.rec.id.str() + " has type '" + st.rec.type()->name()
                               + "'; delete it to create it with type '" + req.type + "'"));
  if (auto err = type->check_reported(req.properties))
    return reject(std::move(err));
  if (auto err = type->check_relationships(req.relationships))
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
  auto parent = req.parent;
  auto values = req.properties;
  ask_parent(self, parent, *type, values, pending_move{std::move(req), created});
}

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
  auto pending = std::move(*st.cold_->waiting_put);
  st.cold_->waiting_put.reset();
  auto refuse = [&](caf::error e) {
    st.host->stats.rejected.fetch_add(1, std::memory_order_relaxed);
    std::visit([&](auto& r) { r.done(std::move(e)); }, pending.req);
  };
  if (err) {
    if (error_code(err) == runtime_errc::not_found)
      err = make_error(runtime_errc::invalid_parent,
                       "parent " + pending.parent().str() + " does not exist");
    refuse(std::move(err));
  } else if (auto conflict = std::visit([&](auto& r) { return check_version(st, r.if_version); },
                                        pending.req)) {
    // The twin changed while the request waited: undo the parent's side, refuse it.
    st.host->rt->route(pending.parent(), detach_notice{st.rec.id});
    refuse(std::move(conflict));
  } else if (auto* put = std::get_if<put_request>(&pending.req)) {
    finish_put(self, *put, pending.created && !st.exists);
  } else if (!st.exists) {  // deleted while the patch waited
    st.host->rt->route(pending.parent(), detach_notice{st.rec.id});
    std::get<patch_request>(pending.req).done(not_found(st.rec.id));
  } else {
    finish_patch(self, std::get<patch_request>(pending.req));
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
  const auto& type = *st.rec.type();
  if (auto err = type.check_reported(req.properties))
    return reject(std::move(err));
  if (auto err = type.check_desired(req.desired))
    return reject(std::move(err));
  if (req.relationships) {
    if (auto err = type.check_relationships(*req.relationships))
      return reject(std::move(err));
    for (const auto& r : *req.relationships)
      if (r.name.empty() || r.target.empty())
        return reject(make_error(runtime_errc::invalid_argument,
                                 "a relationship needs a name and a target twin id"));
  }
  if (req.parent && *req.parent == st.rec.id)
    return reject(make_error(runtime_errc::invalid_parent, "a twin cannot be its own parent"));
  if (!req.parent || req.parent->empty() || *req.parent == st.rec.parent)
    return finish_patch(self, req);
  // Ask the new parent first, with the values the twin will have.
  auto values = child_state_of(st.rec).values;
  for (const auto& [k, v] : req.properties)
    values.insert_or_assign(k, v);
  auto parent = *req.parent;
  ask_parent(self, parent, type, values, pending_move{std::move(req), false});
}

void finish_patch(twin_actor* self, patch_request& req) {
  auto& st = self->state;
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
  bool links_changed = false;
  if (req.parent && *req.parent != st.rec.parent) {
    set_parent(st, *req.parent);
    st.notify_parent = !req.parent->empty();
    links_changed = true;
  }
  if (req.relationships && !same_relationships(st.rec.relationships(), *req.relationships)) {
    st.rec.mutable_relationships() = std::move(*req.relationships);
    links_changed = true;
  }
  st.rec.trim();
  if (!changed && !desired_changed && !links_changed)
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
  if (req.refuse_with_children && !rec.children().empty())
    return req.done(make_error(
      runtime_errc::conflict,
      "twin " + rec.id.str() + " has " + std::to_string(rec.children().size())
        + " children (" + rec.children().front().id.str()
        + (rec.children().size() > 1 ? ", ..." : "")
        + "): delete with ?detach=true to make them roots, or ?cascade=true to delete them"));
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
  if (!rec.type()->history_properties().empty() || !rec.type()->anomalies().empty()
      || rec.type()->stand_in())  // its type's history is not known
    st.cold().pending.history_deletes.push_back(st.rec.id);
  st.delete_pending = true;
  st.forget_samples();
  st.notify_parent = false;
  st.publish_desired = false;
  commit(self, nullptr, std::move(req.done), req.received);
  st.exists = false;
  live_record gone;
  gone.id = std::move(st.rec.id);
  st.rec = std::move(gone);
}

/// Sets each child's desired values (a command's effect); `done(answer)` once every child
/// answered, or the first refusal (the other children's changes stand).
void set_children_desired(router& rt, std::vector<std::pair<twin_id, value_map>> to_children,
                          value answer, std::function<void(caf::expected<value>)> done) {
  if (to_children.empty())
    return done(std::move(answer));
  struct fan_in {
    std::mutex mtx;
    size_t left;
    caf::error first_error;
    value answer;
    std::function<void(caf::expected<value>)> done;
  };
  auto f = std::make_shared<fan_in>();
  f->left = to_children.size();
  f->answer = std::move(answer);
  f->done = std::move(done);
  for (auto& [child, desired] : to_children) {
    patch_request p;
    p.desired = std::move(desired);
    p.source = "command";
    p.done = [f, child = child](caf::expected<uint64_t> r) {
      std::unique_lock<std::mutex> guard{f->mtx};
      if (!r && !f->first_error)
        f->first_error = make_error(error_code(r.error()), "child " + child.str() + ": "
                                                             + error_message(r.error()));
      if (--f->left > 0)
        return;
      guard.unlock();
      if (f->first_error)
        return f->done(f->first_error);
      f->done(std::move(f->answer));
    };
    rt.route(child, std::move(p));
  }
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
  // The type's declared effects: desired values on the twin (in this change), and on
  // children (once this change is durable and the device heard of it).
  std::vector<std::pair<twin_id, value_map>> to_children;
  for (const auto& e : type.command(req.name)->effects) {
    if (e.child_type.empty()) {
      for (const auto& [k, v] : e.desired) {
        auto& desired = st.rec.mutable_desired();
        auto i = desired.find(k);
        if (v.is_null() ? i == desired.end() : i != desired.end() && i->second == v)
          continue;
        if (v.is_null())
          desired.erase(i);
        else
          desired[k] = v;
        st.publish_desired = true;
        changed = true;
      }
      continue;
    }
    for (const auto& c : st.rec.children())
      if (e.child_type == "*" || c.type == e.child_type)
        to_children.emplace_back(c.id, e.desired);
  }
  st.rec.trim();
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
  auto finish = [send, answer, done = std::move(req.done), rt = st.host->rt,
                 to_children = std::move(to_children)](caf::error err) mutable {
    if (err)
      return done(std::move(err));
    send();
    set_children_desired(*rt, std::move(to_children), std::move(answer), std::move(done));
  };
  if (!changed) {
    st.host->commit->submit(st.rec.id, store_batch{}, host_counts{}, std::move(finish));
    return;
  }
  // The command's effect on the twin is durable before the device hears of it.
  after_reported_change(self);
  commit(self, std::move(finish));
}

void handle(twin_actor* self, twin_request& req) {
  auto& st = self->state;
  if (st.load_error) {
    fail_request(req, st.load_error);
    return;
  }
  refresh_type(st);
  if (refused_without_type(st, req))
    return;
  // While a put or patch waits for the parent, later client requests wait behind it (their order
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
      else if constexpr (std::is_same_v<T, child_query>)
        on_child_query(self, r);
    },
    req);
}

} // namespace twin::runtime::twin_detail
