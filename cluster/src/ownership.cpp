// Which shards a member serves: those the table gives it. Handoffs between members (the
// new owner copies the shard while the old one serves it and records its changes; the old
// owner releases it, the new one applies the changes and takes it in one transaction, and
// the requests held meanwhile follow), and a lost lease.

#include <nlohmann/json.hpp>

#include "node_impl.hpp"
#include "page_codec.hpp"
#include "twin/cluster/errc.hpp"

namespace twin::cluster {

using json = nlohmann::json;
using runtime::make_error;
using runtime::runtime_errc;

bool node::impl::wait_behind_handoff(shard_id shard, const twin_id& id, twin_request& req) {
  if (outgoing_count.load(std::memory_order_acquire) == 0)
    return false;
  std::lock_guard<std::mutex> h{handoff_mtx};
  auto out = outgoing.find(shard.value());
  if (out == outgoing.end() || !out->second.releasing)
    return false;  // copied while this node serves it
  return wait(shard.value(), id, req);
}

void node::impl::forward_now(const twin_id& id, twin_request req) {
  auto shard = runtime::shard_of(id, shard_count);
  auto owner = table->get(shard);
  if (owner.owner.empty() || owner.owner == me)
    return runtime::fail_request(req, make_error(runtime_errc::unavailable,
                                                 "shard " + std::to_string(shard.value())
                                                   + " has no other owner now"));
  forward(owner.owner, shard, owner.epoch, id, std::move(req), 1);
}

void node::impl::flush_waiting(uint32_t s, bool local) {
  // The entry stays while its requests are passed on, so that those routed meanwhile
  // queue behind them (see `route`) rather than overtake them; one thread passes them on.
  bool first = true;
  for (;;) {
    std::vector<runtime::routed_request> ready;
    {
      std::lock_guard<std::mutex> w{waiting_mtx};
      auto i = waiting.find(s);
      if (i == waiting.end() || (first && i->second.flushing))
        return;
      first = false;
      if (i->second.requests.empty()) {
        waiting.erase(i);
        waiting_shards.fetch_sub(1, std::memory_order_release);
        return;
      }
      i->second.flushing = true;
      ready = std::exchange(i->second.requests, {});
      waiting_count -= ready.size();
    }
    for (auto& r : ready)
      local ? host.route(r.id, std::move(r.req)) : forward_now(r.id, std::move(r.req));
  }
}

void node::impl::finish_outgoing(uint32_t s, bool local) {
  // Requests routed meanwhile wait behind those passed on (see `route`) until none is left.
  for (;;) {
    flush_waiting(s, local);
    std::lock_guard<std::mutex> h{handoff_mtx};
    std::lock_guard<std::mutex> w{waiting_mtx};
    if (waiting.count(s) == 0) {
      outgoing.erase(s);
      outgoing_count.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
  }
}

bool node::impl::wait_behind_waiting(shard_id shard, const twin_id& id, twin_request& req) {
  if (waiting_shards.load(std::memory_order_acquire) == 0)
    return false;
  std::lock_guard<std::mutex> w{waiting_mtx};
  auto i = waiting.find(shard.value());
  if (i == waiting.end() || waiting_count >= max_waiting)
    return false;
  i->second.requests.push_back({id, std::move(req)});
  ++waiting_count;
  return true;
}

bool node::impl::wait(uint32_t s, const twin_id& id, twin_request& req) {
  std::lock_guard<std::mutex> w{waiting_mtx};
  if (waiting_count >= max_waiting)
    return false;
  auto [i, added] = waiting.try_emplace(s);
  if (added)
    waiting_shards.fetch_add(1, std::memory_order_release);
  i->second.requests.push_back({id, std::move(req)});
  ++waiting_count;
  return true;
}

void node::impl::reconcile_outgoing(shard_id shard, const shard_owner& e,
                                    std::unique_lock<std::mutex>& h,
                                    std::vector<shard_id>& leaving) {
  auto s = shard.value();
  bool mine = e.owner == me;
  auto out = outgoing.find(s);
  if (mine && !e.moving_to.empty() && out->second.to != e.moving_to) {
    out->second.to = e.moving_to;  // the coordinator sent it elsewhere: copied anew
    out->second.copied = false;
    out->second.attempt = {0, 0};
  }
  if (!mine && !out->second.releasing) {
    // Given away without this node's release (its lease ran out meanwhile): no
    // handoff from here; the shard leaves as any other.
    outgoing.erase(out);
    outgoing_count.fetch_sub(1, std::memory_order_relaxed);
    store.untrack(shard);
    h.unlock();
    if (host.serves(shard))
      leaving.push_back(shard);
    return;
  }
  if (!mine && !out->second.released)
    return;  // the release ends first, and asks for another look
  if (!mine) {  // done: the held requests and those that waited follow the shard
    store.untrack(shard);
    handoff_pause.observe(
      std::chrono::duration<double>(clock_type::now() - out->second.releasing_since).count());
    auto held = std::move(out->second.held);
    h.unlock();
    for (auto& r : held)
      forward_now(r.id, std::move(r.req));
    finish_outgoing(s, false);
    if (!replicas || !replicas->follows(shard))  // a follower's copy is its own
      store.drop_shard(shard);
    handoffs_done.fetch_add(1, std::memory_order_relaxed);
  } else if (e.moving_to.empty() && !out->second.releasing) {
    // Called off while the shard was copied: this node never stopped serving it.
    outgoing.erase(out);
    outgoing_count.fetch_sub(1, std::memory_order_relaxed);
    store.untrack(shard);
  } else if (e.moving_to.empty() && out->second.released && still_owner(s, e.epoch)) {
    // Called off (and etcd agrees, not only this node's view): serve it again, what
    // was held first.
    h.unlock();
    if (host.adopt(shard)) {  // its release has not quite ended: look again
      want_reconcile();
      return;
    }
    h.lock();
    auto again = outgoing.find(s);
    if (again == outgoing.end())
      return;
    auto held = std::move(again->second.held);
    h.unlock();
    store.untrack(shard);
    for (auto& r : held)
      host.route(r.id, std::move(r.req));
    finish_outgoing(s, true);
    handoffs_failed.fetch_add(1, std::memory_order_relaxed);
  }
}

void node::impl::reconcile() {
  std::lock_guard<std::recursive_mutex> guard{reconcile_mtx};
  if (!started.load() || lost.load())
    return;
  auto owners = table->all();
  std::vector<shard_id> leaving;
  for (uint32_t s = 0; s < owners.size(); ++s) {
    shard_id shard{s};
    const auto& e = owners[s];
    bool mine = e.owner == me;
    if (replicas && mine && !reconcile_replica(shard, e))  // leads it before the host serves it
      continue;
    reconcile_shard(shard, e, leaving);
    if (replicas && !mine)
      reconcile_replica(shard, e);  // follows it once a handoff from here dropped it
  }
  if (!leaving.empty())
    host.release(leaving, [this](shard_id, std::vector<runtime::routed_request> held) {
      for (auto& r : held)
        route(r.id, std::move(r.req), 1);
      want_reconcile();
    });
}

void node::impl::reconcile_shard(shard_id shard, const shard_owner& e,
                                 std::vector<shard_id>& leaving) {
  auto s = shard.value();
  bool mine = e.owner == me;
  std::unique_lock<std::mutex> h{handoff_mtx};
  if (outgoing.count(s) > 0)
    return reconcile_outgoing(shard, e, h, leaving);
  if (e.moving_to == me && !mine && incoming.insert(s).second) {
    to_copy.push_back(s);
    copy_cv.notify_all();
  }
  h.unlock();
  if (mine && !host.serves(shard)) {
    if (host.adopt(shard))
      return;  // still being released; the next change adopts it
    flush_waiting(s, true);
  } else if (!mine && host.serves(shard)) {
    leaving.push_back(shard);
  } else if (!mine) {
    flush_waiting(s, false);
  }
  if (mine && !e.moving_to.empty() && e.moving_to != me && host.serves(shard)) {
    // The new owner copies the shard while this node serves it and records its changes.
    store.track(shard);
    std::lock_guard<std::mutex> again{handoff_mtx};
    auto& out = outgoing[s] = outgoing_handoff{};
    out.to = e.moving_to;
    outgoing_count.fetch_add(1, std::memory_order_relaxed);
  }
}

bool node::impl::still_owner(uint32_t s, int64_t epoch) {
  auto key = members->keys().shards() + std::to_string(s);
  auto r = members->etcd().txn({etcd::compare::mod_is(key, epoch),
                                etcd::compare::mod_is(key + "/to", 0)},
                               {});
  return r && r->succeeded;
}

void node::impl::want_reconcile() {
  reconcile_wanted = true;
  sup_cv.notify_all();
}

// -- the old owner's side --------------------------------------------------------------

void node::impl::on_copy_request(envelope&& env) {
  shard_id shard{env.shard};
  enum { refuse, recopy, copy, release, wait, changes } step = refuse;
  {
    std::lock_guard<std::mutex> h{handoff_mtx};
    auto out = outgoing.find(env.shard);
    if (out != outgoing.end() && out->second.to == env.from) {
      // Each pass of the new owner's copy has an attempt, (incarnation, count), larger than
      // the last: a request of an earlier pass (one that came late) gets no answer but
      // "copy again", so that it cannot restart the record under a later pass.
      auto& o = out->second;
      std::pair<int64_t, int64_t> attempt{env.incarnation, env.epoch};
      if (env.kind == envelope::copy && env.bytes.empty() && attempt > o.attempt) {
        store.track(shard);  // a copy from the start: the changes recorded from now on
        o.attempt = attempt;
        o.copied = true;
      }
      if (!o.copied || attempt != o.attempt) {
        step = recopy;
      } else if (env.kind == envelope::copy) {
        step = copy;
      } else if (o.released) {
        step = changes;
      } else {  // answered once released (see `release_outgoing`)
        step = o.releasing ? wait : release;
        if (!o.releasing)
          o.releasing_since = clock_type::now();
        o.releasing = true;
        o.parked = env;
      }
    }
  }
  switch (step) {
    case refuse:
      return answer(env, envelope::page,
                    make_error(runtime_errc::unavailable, "no handoff of the shard to this node"));
    case recopy:
      return answer(env, envelope::page,
                    make_error(runtime_errc::conflict,
                               "the changes since the copy began are not all recorded"));
    case release: return release_outgoing(shard);
    case wait: return;
    case copy: {  // the shard as it is, while this node serves it
      auto page = store.read_shard(shard, env.bytes, 1u << 20);
      answer(env, envelope::page,
             page ? caf::expected<std::string>{encode_page(shard, *page)}
                  : caf::expected<std::string>{page.error()});
      if (!page || !page->next.empty())
        return;
      {  // the last page: the changes come next, once the shard is released
        std::lock_guard<std::mutex> h{handoff_mtx};
        auto out = outgoing.find(env.shard);
        if (out == outgoing.end() || out->second.releasing)
          return;
        out->second.releasing = true;
        out->second.releasing_since = clock_type::now();
      }
      return release_outgoing(shard);
    }
    case changes: {
      // Every event of its twins reaches the members that watch them before the new
      // owner can publish one.
      if (env.bytes.empty())
        streams->sync(std::chrono::seconds{2});
      auto page = store.changes(shard, env.bytes, 1u << 20);
      return answer(env, envelope::page,
                    page ? caf::expected<std::string>{encode_page(shard, *page)}
                         : caf::expected<std::string>{page.error()});
    }
  }
}

void node::impl::release_outgoing(shard_id shard) {
  auto refused = host.release({shard}, [this](shard_id s, std::vector<runtime::routed_request> held) {
    {
      std::lock_guard<std::mutex> h{handoff_mtx};
      auto out = outgoing.find(s.value());
      if (out == outgoing.end())
        return;  // cannot happen: the entry goes only once released
      out->second.released = true;
      out->second.held = std::move(held);
      if (out->second.parked) {  // the new owner asked for the changes: they are ready
        queries.push_back(std::move(*out->second.parked));
        out->second.parked.reset();
        query_cv.notify_all();
      }
    }
    want_reconcile();  // the table may have moved on meanwhile
  });
  if (!refused)
    return;
  // Not served any more (released under a lost lease meanwhile): no handoff from here.
  {
    std::lock_guard<std::mutex> h{handoff_mtx};
    if (outgoing.erase(shard.value()) > 0)
      outgoing_count.fetch_sub(1, std::memory_order_relaxed);
    store.untrack(shard);
  }
  want_reconcile();
}

// -- the new owner's side --------------------------------------------------------------

caf::expected<std::string> node::impl::ask(const std::string& node, envelope env,
                                           std::chrono::milliseconds timeout) {
  env.from = me;
  env.incarnation = members->incarnation();
  {
    std::lock_guard<std::mutex> guard{page_mtx};
    env.token = ++next_page;
    pages[env.token];
  }
  auto token = env.token;
  if (!links->send(node, std::move(env))) {
    std::lock_guard<std::mutex> guard{page_mtx};
    pages.erase(token);
    return make_error(runtime_errc::unavailable, "node " + node + " cannot be reached");
  }
  std::unique_lock<std::mutex> guard{page_mtx};
  bool answered = page_cv.wait_for(guard, timeout,
                                   [&] { return pages[token].has_value() || stopping.load(); });
  auto answer = answered && pages[token]
                  ? std::move(*pages[token])
                  : caf::expected<std::string>{make_error(
                      runtime_errc::timeout, "node " + node + " did not answer in time")};
  pages.erase(token);
  return answer;
}

caf::error node::impl::fetch_shard(shard_id shard, const std::string& from) {
  // The shard as the old owner serves it (phase 0), then, once it released the shard, the
  // changes made meanwhile (phase 1); with too many of them, the shard is copied again.
  auto deadline = clock_type::now() + std::chrono::seconds{60};
  int phase = 0;
  std::string cursor;
  int64_t attempt = 0;
  while (phase < 2) {
    if (stopping || clock_type::now() > deadline || table->get(shard).moving_to != me)
      return make_error(runtime_errc::timeout, "the copy did not finish");
    if (phase == 0 && cursor.empty() && attempt == 0)
      attempt = ++copy_attempts;
    envelope ask_page;
    ask_page.kind = phase == 0 ? envelope::copy : envelope::catch_up;
    ask_page.shard = shard.value();
    ask_page.epoch = attempt;  // the pass of the copy this page belongs to
    ask_page.bytes = cursor;
    auto bytes = ask(from, std::move(ask_page), std::chrono::seconds{5});
    if (!bytes && runtime::error_code(bytes.error()) == runtime_errc::conflict) {
      if (auto err = store.drop_shard(shard))
        return err;
      phase = 0;
      cursor.clear();
      attempt = 0;
      continue;
    }
    if (!bytes) {  // not released yet, or the old owner is away for now
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
      continue;
    }
    auto page = decode_page(*bytes, shard, shard_count);
    if (!page)
      return page.error();
    if (auto err = store.write(page->entries))
      return err;
    cursor = std::move(page->next);
    if (cursor.empty())
      ++phase;
  }
  return {};
}

caf::error node::impl::copy_in(uint32_t s) {
  auto t0 = clock_type::now();
  shard_id shard{s};
  auto e = table->get(shard);
  if (e.moving_to != me)
    return make_error(runtime_errc::conflict, "the handoff was called off");
  // A follower's copy of it stops first (no batch or page of it is written from then on),
  // and whatever an earlier ownership left here goes.
  if (replicas)
    replicas->unfollow(shard, false);
  if (auto err = store.drop_shard(shard))
    return err;
  if (auto err = fetch_shard(shard, e.owner))
    return err;
  // Take it: only if it is still the old owner's at the epoch read, with this handoff.
  auto key = members->keys().shards() + std::to_string(s);
  auto taken = members->etcd().txn(
    {etcd::compare::mod_is(key, e.epoch), etcd::compare::mod_is(key + "/to", e.handoff)},
    {etcd::op::put(key, json{{"owner", me}}.dump()), etcd::op::del(key + "/to"),
     etcd::op::put(key + "/replicas", encode_replicas({}, {}))});  // followers copy anew
  int64_t epoch = taken && taken->succeeded ? taken->revision : 0;
  if (!taken || !taken->succeeded) {
    // The answer may have been lost after etcd applied it: ask etcd who owns it now.
    for (int tries = 0; tries < 50 && epoch == 0 && !stopping.load(); ++tries) {
      auto now = members->etcd().get(key);
      if (now) {
        if (!now->kvs.empty() && json::parse(now->kvs[0].value, nullptr, false).value("owner", "") == me)
          epoch = now->kvs[0].mod_revision;
        else
          return make_error(runtime_errc::conflict, "the shard changed during its handoff");
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds{200});
      }
    }
    if (epoch == 0)
      return make_error(cluster_errc::etcd_unavailable, "taking the shard: etcd did not answer");
  }
  handoff_duration.observe(std::chrono::duration<double>(clock_type::now() - t0).count());
  handoffs_done.fetch_add(1, std::memory_order_relaxed);
  table->set_owner(shard, me, epoch);
  return {};
}

void node::impl::copy_loop() {
  for (;;) {
    uint32_t s = 0;
    {
      std::unique_lock<std::mutex> h{handoff_mtx};
      copy_cv.wait(h, [&] { return stopping.load() || !to_copy.empty(); });
      if (stopping)
        return;
      s = to_copy.front();
      to_copy.pop_front();
    }
    auto err = copy_in(s);
    // Its copy goes only if the shard is someone else's for sure: with etcd away, the
    // outcome of the transaction that takes it is not known, and the copy may be all
    // there is.
    if (err && cluster::error_code(err) != cluster_errc::etcd_unavailable) {
      store.drop_shard(shard_id{s});
      handoffs_failed.fetch_add(1, std::memory_order_relaxed);
    }
    {
      std::lock_guard<std::mutex> h{handoff_mtx};
      incoming.erase(s);
    }
    if (err && !stopping)
      reconcile();  // a handoff still under way starts again
  }
}

// -- a lost lease -------------------------------------------------------------------------

void node::impl::on_lease_lost() {
  lost = true;
  leases_lost.fetch_add(1, std::memory_order_relaxed);
  sup_cv.notify_all();
}

void node::impl::supervise() {
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{sup_mtx};
      sup_cv.wait_for(guard, std::chrono::milliseconds{100},
                      [&] { return stopping.load() || lost.load() || reconcile_wanted.load(); });
      if (stopping.load())
        return;
    }
    if (reconcile_wanted.exchange(false) && !lost.load())
      reconcile();
    streams->refresh(peers());
    for (auto& e : pending.take_if(nullptr))
      runtime::fail_request(e.req, make_error(runtime_errc::timeout,
                                              "node " + e.node + " did not answer in time "
                                                "(the request may or may not have been applied)"));
    if (!lost.load())
      continue;
    // The lease is gone: nothing is served from here until the node joined again, and
    // then only what the table still gives it.
    std::vector<shard_id> served;
    for (uint32_t s = 0; s < shard_count; ++s)
      if (host.serves(shard_id{s}))
        served.push_back(shard_id{s});
    if (!served.empty())
      host.release(served, [](shard_id, std::vector<runtime::routed_request> held) {
        for (auto& r : held)
          runtime::fail_request(r.req, make_error(runtime_errc::unavailable,
                                                  "this node lost its cluster membership"));
      });
    {
      // Handoffs still copying start again once it joined (a copy made meanwhile misses
      // the changes recorded before).
      std::lock_guard<std::mutex> h{handoff_mtx};
      for (auto i = outgoing.begin(); i != outgoing.end();) {
        if (i->second.releasing) {
          ++i;
          continue;
        }
        store.untrack(shard_id{i->first});
        i = outgoing.erase(i);
        outgoing_count.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    if (replicas) {  // a new incarnation copies what it follows anew
      for (uint32_t s = 0; s < shard_count; ++s) {
        replicas->resign(shard_id{s});
        replicas->unfollow(shard_id{s}, false);
      }
    }
    members->leave();
    // Joined again, it acts on the table as etcd has it now, not on what the watch has
    // brought so far: a shard it owned before may have a new owner it has not heard of.
    if (!members->join() && !table->refresh()) {
      lost = false;
      reconcile();
    }
  }
}

} // namespace twin::cluster
