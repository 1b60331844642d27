// The primary's side of replication: the commit point that acknowledges a change once
// enough copies hold it, the shipping of each group commit's part of a shard to the
// shard's followers, their acknowledgements, and the record in etcd of which followers
// are in sync.

#include <algorithm>

#include "page_codec.hpp"
#include "replication_state.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::cluster {

using runtime::make_error;
using runtime::runtime_errc;
using runtime::shard_id;
using runtime::twin_id;

namespace {

/// When the changes whose callbacks run now had their copies (on the thread that runs
/// them); none: ask the local commit point.
thread_local clock_type::time_point replicated_at{};

} // namespace

replication::~replication() {
  stop();
}

uint32_t replication::needed() const {
  return opts_.min_insync == 0 ? opts_.factor : std::min(opts_.min_insync, opts_.factor);
}

void replication::run(std::vector<done_fn>& callbacks, caf::error err) {
  replicated_at = clock_type::now();
  for (auto& f : callbacks)
    f(err);
  replicated_at = {};
  callbacks.clear();
}

// -- leading a shard ------------------------------------------------------------------

void replication::lead(shard_id shard, int64_t epoch) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& p = led_[shard.value()];
  led_count_.store(led_.size(), std::memory_order_release);
  if (p.epoch == epoch)
    return;
  p = primary_shard{};
  p.epoch = epoch;
}

void replication::resign(shard_id shard) {
  std::vector<done_fn> unsure, unwritten;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = led_.find(shard.value());
    if (i == led_.end())
      return;
    for (auto& w : i->second.waiting)
      unsure.push_back(std::move(w.done));
    for (auto& c : i->second.parked)
      unwritten.push_back(std::move(c.done));
    parked_ -= i->second.parked.size();
    led_.erase(i);
    led_count_.store(led_.size(), std::memory_order_release);
  }
  auto s = std::to_string(shard.value());
  run(unsure, make_error(runtime_errc::timeout,
                         "shard " + s + " changed primary before the change had its copies: "
                           "it may or may not be kept"));
  run(unwritten, make_error(runtime_errc::unavailable,
                            "shard " + s + " changed primary; the change was not applied"));
}

bool replication::leads(shard_id shard) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return led_.count(shard.value()) > 0;
}

void replication::set_replicas(shard_id shard, const std::vector<std::string>& followers,
                               const std::vector<std::string>& insync, int64_t revision) {
  std::vector<done_fn> out;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = led_.find(shard.value());
    if (i == led_.end() || revision < i->second.replicas)
      return;
    auto& p = i->second;
    p.replicas = revision;
    p.followers = followers;
    auto listed = [](const std::vector<std::string>& v, const std::string& n) {
      return std::find(v.begin(), v.end(), n) != v.end();
    };
    for (const auto& node : insync) {
      auto [t, added] = p.targets.try_emplace(node);
      if (added) {  // in sync by etcd but gets nothing from here: it leaves etcd's list
        t->second.counted = true;
        t->second.dropped = true;
      }
      t->second.in_etcd = true;
    }
    for (auto t = p.targets.begin(); t != p.targets.end();) {
      if (!listed(insync, t->first))
        t->second.in_etcd = false;
      // No longer a follower (and so not in sync): nothing waits for it any more.
      if (!listed(followers, t->first) && !t->second.in_etcd)
        t = p.targets.erase(t);
      else
        ++t;
    }
    complete(p, out);
  }
  run(out, {});
  ctl_cv_.notify_all();
}

caf::expected<uint64_t> replication::add_follower(shard_id shard, int64_t epoch,
                                                  const std::string& node, int64_t incarnation,
                                                  uint64_t generation) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = led_.find(shard.value());
  if (i == led_.end() || i->second.epoch != epoch)
    return make_error(runtime_errc::conflict, "this member is not the primary of shard "
                                                + std::to_string(shard.value())
                                                + " at that epoch");
  auto& p = i->second;
  if (std::find(p.followers.begin(), p.followers.end(), node) == p.followers.end())
    return make_error(runtime_errc::conflict, node + " is not a follower of shard "
                                                + std::to_string(shard.value()) + " yet");
  auto t = p.targets.find(node);
  if (t != p.targets.end() && (t->second.in_etcd || t->second.recording)) {
    // Listed in sync (or being listed) while it copies anew: out of the list first.
    t->second.dropped = true;
    ctl_cv_.notify_all();
    return make_error(runtime_errc::conflict, "the follower's earlier copy is still listed");
  }
  auto& target = p.targets[node];
  target = primary_shard::target{};
  target.incarnation = incarnation;
  target.generation = generation;
  target.base = p.seq;
  target.heard = clock_type::now();
  return p.seq;
}

void replication::on_peer_down(const std::string& node) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& [s, p] : led_)
      if (auto t = p.targets.find(node); t != p.targets.end())
        t->second.dropped = true;
  }
  ctl_cv_.notify_all();
}

// -- the commit point -----------------------------------------------------------------

void replication::submit(const twin_id& owner, runtime::store_batch batch,
                         runtime::host_counts delta, done_fn done) {
  auto shard = runtime::shard_of(owner, shard_count_).value();
  std::unique_lock<std::mutex> guard{mtx_};
  auto i = led_.find(shard);
  if (i == led_.end()) {
    guard.unlock();
    if (batch.empty())  // a barrier: nothing to copy
      return local_.submit(owner, std::move(batch), delta, std::move(done));
    return done(make_error(runtime_errc::unavailable,
                           "this member is not the primary of shard " + std::to_string(shard)
                             + " now; the change was not applied"));
  }
  auto& p = i->second;
  if (p.parked.empty() && p.copies() >= needed()) {
    // Under the lock: none parked later can overtake it.
    return local_.submit(owner, std::move(batch), delta, wait_for_copies(shard, p.epoch, std::move(done)));
  }
  if (parked_ >= opts_.max_parked) {
    guard.unlock();
    return done(make_error(runtime_errc::unavailable,
                           "too many changes wait for their shards to have enough copies"));
  }
  ++parked_;
  waits_.fetch_add(1, std::memory_order_relaxed);
  p.parked.push_back({owner, std::move(batch), delta, std::move(done), false, clock_type::now()});
}

void replication::reset(const twin_id& owner, done_fn done) {
  auto shard = runtime::shard_of(owner, shard_count_).value();
  std::unique_lock<std::mutex> guard{mtx_};
  auto i = led_.find(shard);
  if (i == led_.end())
    return guard.unlock(), local_.reset(owner, std::move(done));
  auto& p = i->second;
  if (p.parked.empty())
    return local_.reset(owner, wait_for_copies(shard, p.epoch, std::move(done)));
  ++parked_;
  p.parked.push_back({owner, {}, {}, std::move(done), true, clock_type::now()});
}

replication::done_fn replication::wait_for_copies(uint32_t shard, int64_t epoch, done_fn done) {
  // Runs on the writer's thread once the change is durable here: it then waits for the
  // batch that shipped it (the shard's last one, numbered in `on_written`).
  return [this, shard, epoch, done = std::move(done)](caf::error err) mutable {
    if (err)
      return done(std::move(err));
    std::vector<done_fn> out;
    bool primary = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = led_.find(shard);
      if (i != led_.end() && i->second.epoch == epoch) {
        primary = true;
        auto& p = i->second;
        p.waiting.push_back({p.seq, std::move(done), clock_type::now()});
        complete(p, out);
      } else {
        out.push_back(std::move(done));
      }
    }
    if (primary)
      return run(out, {});
    run(out, make_error(runtime_errc::timeout,
                        "shard " + std::to_string(shard)
                          + " changed primary before the change had its copies: it may or may "
                            "not be kept"));
  };
}

void replication::complete(primary_shard& p, std::vector<done_fn>& out) {
  if (p.waiting.empty() || p.copies() < needed())
    return;
  auto confirmed = p.seq;
  for (const auto& [node, t] : p.targets)
    if (t.counted)
      confirmed = std::min(confirmed, t.acked);
  auto now = clock_type::now();
  while (!p.waiting.empty() && p.waiting.front().seq <= confirmed) {
    ack_latency_.observe(std::chrono::duration<double>(now - p.waiting.front().since).count());
    out.push_back(std::move(p.waiting.front().done));
    p.waiting.pop_front();
  }
}

runtime::host_counts replication::counts(shard_id shard) const {
  return local_.counts(shard);
}

runtime::host_counts replication::counts() const {
  return local_.counts();
}

clock_type::time_point replication::durable_at() const {
  return replicated_at != clock_type::time_point{} ? replicated_at : local_.durable_at();
}

// -- shipping -------------------------------------------------------------------------

void replication::on_written(const runtime::store_batch* batches, size_t n) {
  if (led_count_.load(std::memory_order_acquire) == 0)
    return;
  // Each batch's shard; a batch of several shards (the durable counts) is split. Only the
  // store writer writes to the shards this member leads; other writers find none here.
  std::deque<runtime::store_batch> split;  // pointers into it stay valid
  std::map<uint32_t, replica_part> parts;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto part = [&](uint32_t s) -> replica_part* {
      if (led_.count(s) == 0)
        return nullptr;
      auto& r = parts[s];
      r.shard = s;
      return &r;
    };
    for (size_t k = 0; k < n; ++k) {
      const auto& b = batches[k];
      auto shards = shards_of(b);
      if (shards.size() == 1) {
        if (auto* r = part(shards.front()))
          r->batches.push_back(&b);
        continue;
      }
      if (std::none_of(shards.begin(), shards.end(), [&](uint32_t s) { return led_.count(s); }))
        continue;  // a follower's write, with its positions in several shards
      for (auto& [s, piece] : split_by_shard(b))
        if (auto* r = part(s)) {
          split.push_back(std::move(piece));
          r->batches.push_back(&split.back());
        }
    }
  }
  if (parts.empty())
    return;
  // Numbered and shipped in one turn, outside the primary's lock: acknowledgements, which
  // take it, go on while a follower's connection is slow to take the batches.
  std::lock_guard<std::mutex> shipping{ship_mtx_};
  std::map<std::string, std::vector<replica_part>> to;
  std::map<std::pair<uint32_t, std::string>, uint64_t> follows;  // (shard, node) -> generation
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& [s, r] : parts) {
      auto p = led_.find(s);
      if (p == led_.end())
        continue;  // resigned meanwhile
      r.epoch = p->second.epoch;
      r.seq = ++p->second.seq;
      for (const auto& [node, t] : p->second.targets)
        if (!t.dropped) {
          to[node].push_back(r);
          follows[{s, node}] = t.generation;
        }
    }
  }
  for (auto& [node, list] : to) {
    envelope env;
    env.kind = envelope::replicate;
    env.bytes = encode_replica_batches(list);
    if (send_(node, std::move(env))) {
      shipped_.fetch_add(list.size(), std::memory_order_relaxed);
      continue;
    }
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& r : list) {  // it misses these: it copies anew (unless it did already)
      auto p = led_.find(r.shard);
      if (p != led_.end() && p->second.epoch == r.epoch) {
        auto t = p->second.targets.find(node);
        if (t != p->second.targets.end() && t->second.generation == follows[{r.shard, node}])
          t->second.dropped = true;
      }
    }
    ctl_cv_.notify_all();
  }
}

std::vector<uint32_t> replication::shards_of(const runtime::store_batch& b) const {
  std::vector<uint32_t> out;
  const twin_id* last = nullptr;
  auto add = [&](const twin_id& id) {
    if (last != nullptr && *last == id)
      return;
    last = &id;
    auto s = runtime::shard_of(id, shard_count_).value();
    if (std::find(out.begin(), out.end(), s) == out.end())
      out.push_back(s);
  };
  for (const auto& [id, bytes] : b.puts)
    add(id);
  for (const auto& id : b.deletes)
    add(id);
  for (const auto& e : b.index_adds)
    add(e.id);
  for (const auto& e : b.index_removes)
    add(e.id);
  for (const auto& h : b.history)
    add(h.id);
  for (const auto& id : b.history_deletes)
    add(id);
  for (const auto& m : b.meta_puts)
    if (std::find(out.begin(), out.end(), m.shard.value()) == out.end())
      out.push_back(m.shard.value());
  return out;
}

std::map<uint32_t, runtime::store_batch>
replication::split_by_shard(const runtime::store_batch& b) const {
  std::map<uint32_t, runtime::store_batch> out;
  auto of = [&](const twin_id& id) -> runtime::store_batch& {
    return out[runtime::shard_of(id, shard_count_).value()];
  };
  for (const auto& put : b.puts)
    of(put.first).puts.push_back(put);
  for (const auto& id : b.deletes)
    of(id).deletes.push_back(id);
  for (const auto& e : b.index_adds)
    of(e.id).index_adds.push_back(e);
  for (const auto& e : b.index_removes)
    of(e.id).index_removes.push_back(e);
  for (const auto& h : b.history)
    of(h.id).history.push_back(h);
  for (const auto& id : b.history_deletes)
    of(id).history_deletes.push_back(id);
  for (const auto& m : b.meta_puts)
    out[m.shard.value()].meta_puts.push_back(m);
  return out;
}

void replication::on_acks(const envelope& env) {
  auto acks = decode_replica_acks(env.bytes);
  if (!acks)
    return;
  std::vector<done_fn> out;
  std::vector<replica_ack> unknown, refusals;
  bool record = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto now = clock_type::now();
    for (const auto& a : *acks) {
      auto i = led_.find(a.shard);
      if (i == led_.end() || i->second.epoch != a.epoch) {
        if (!a.refused.empty())
          refusals.push_back(a);  // perhaps this member's word as a follower
        continue;
      }
      auto& p = i->second;
      auto t = p.targets.find(env.from);
      if (t == p.targets.end() || t->second.incarnation != env.incarnation || t->second.dropped) {
        // It believes it follows, but gets nothing from here: it copies anew.
        if (a.refused.empty())
          unknown.push_back(
            {a.shard, a.epoch, a.seq, "the primary ships nothing to it", false, a.generation});
        continue;
      }
      auto& target = t->second;
      if (a.generation != 0 && a.generation != target.generation)
        continue;  // of an earlier follow, come late: its copy is being replaced
      if (a.generation == 0 && !a.refused.empty() && a.seq <= target.base)
        continue;  // a refusal (by a member that followed no more) of a batch shipped
                   // before this follow began: of an earlier one
      target.heard = now;
      if (!a.refused.empty()) {
        target.dropped = true;
        record = true;
        continue;
      }
      target.acked = std::max(target.acked, a.seq);
      if (a.caught_up && !target.counted) {
        // From now on changes wait for it; in sync (in etcd) once it has every batch
        // shipped before, some of which may have been acknowledged without it.
        target.counted = true;
        target.barrier = p.seq;
      }
      if (target.counted && !target.in_etcd && target.acked >= target.barrier)
        record = true;
      complete(p, out);
    }
  }
  run(out, {});
  if (record)
    ctl_cv_.notify_all();
  if (!unknown.empty()) {
    std::map<std::string, std::vector<replica_ack>> to{{env.from, std::move(unknown)}};
    send_acks(to);
  }
  if (!refusals.empty())
    on_refusals(env.from, refusals);
}

// -- expiry and etcd's list -------------------------------------------------------------

void replication::control_loop() {
  struct job {
    uint32_t shard;
    int64_t epoch;
    std::string node;
    int64_t incarnation;
    bool add;
  };
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{ctl_mtx_};
      ctl_cv_.wait_for(guard, std::chrono::milliseconds{50}, [&] { return stopped(); });
      if (stopping_)
        return;
    }
    std::vector<done_fn> expired, refused, done;
    std::vector<job> jobs;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto now = clock_type::now();
      for (auto& [s, p] : led_) {
        while (!p.waiting.empty() && now - p.waiting.front().since > opts_.timeout) {
          timeouts_.fetch_add(1, std::memory_order_relaxed);
          expired.push_back(std::move(p.waiting.front().done));
          p.waiting.pop_front();
        }
        while (!p.parked.empty() && now - p.parked.front().since > opts_.timeout) {
          refused.push_back(std::move(p.parked.front().done));
          p.parked.pop_front();
          --parked_;
        }
        for (auto t = p.targets.begin(); t != p.targets.end();) {
          auto& target = t->second;
          // A counted follower that confirms nothing for so long holds every change up.
          if (target.counted && !target.dropped && target.acked < p.seq
              && now - target.heard > opts_.timeout)
            target.dropped = true;
          if (target.dropped && !target.in_etcd) {
            t = p.targets.erase(t);  // nothing waits for it any more
            continue;
          }
          if (!target.recording
              && ((target.dropped && target.in_etcd)
                  || (target.counted && !target.dropped && !target.in_etcd
                      && target.acked >= target.barrier))) {
            target.recording = true;
            jobs.push_back({s, p.epoch, t->first, target.incarnation, !target.dropped});
          }
          ++t;
        }
        complete(p, done);
        if (!p.parked.empty() && p.copies() >= needed()) {
          parked_ -= p.parked.size();
          for (auto& c : p.parked) {
            auto cb = wait_for_copies(s, p.epoch, std::move(c.done));
            if (c.reset)
              local_.reset(c.owner, std::move(cb));
            else
              local_.submit(c.owner, std::move(c.batch), c.delta, std::move(cb));
          }
          p.parked.clear();
        }
      }
    }
    run(done, {});
    run(expired, make_error(runtime_errc::timeout,
                            "the change did not get enough copies in time: it may or may not "
                            "be kept"));
    run(refused, make_error(runtime_errc::unavailable,
                            "the shard has fewer copies than writes need; the change was not "
                            "applied"));
    for (const auto& j : jobs) {
      auto revision = insync_(shard_id{j.shard}, j.epoch, j.node, j.incarnation, j.add);
      std::vector<done_fn> out;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        auto i = led_.find(j.shard);
        if (i == led_.end() || i->second.epoch != j.epoch)
          continue;
        auto& p = i->second;
        auto t = p.targets.find(j.node);
        if (t == p.targets.end())
          continue;
        t->second.recording = false;
        if (revision == 0)
          continue;  // tried again next round
        p.replicas = std::max(p.replicas, revision);
        t->second.in_etcd = j.add;
        if (!j.add)
          p.targets.erase(t);  // out of etcd's list: nothing waits for it any more
        complete(p, out);
      }
      run(out, {});
    }
  }
}

} // namespace twin::cluster
