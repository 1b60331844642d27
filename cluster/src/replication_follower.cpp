// A follower's side of replication: it copies a shard from its primary while it keeps the
// batches shipped meanwhile, applies them once the copy is whole, then applies each batch
// as it comes, in order and with its position, and acknowledges it once durable. Also the
// module's threads, figures and status.

#include "page_codec.hpp"
#include "replication_state.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::cluster {

using runtime::make_error;
using runtime::runtime_errc;
using runtime::shard_id;

replication::replication(tracking_store& store, runtime::commit_point& local, std::string me,
                         replication_options opts, send_fn send, ask_fn ask, insync_fn insync)
  : store_(store),
    local_(local),
    me_(std::move(me)),
    opts_(opts),
    send_(std::move(send)),
    ask_(std::move(ask)),
    insync_(std::move(insync)),
    shard_count_(store.shard_count()) {
  store_.set_observer([this](const runtime::store_batch* b, size_t n) { on_written(b, n); });
}

void replication::start() {
  std::lock_guard<std::mutex> guard{ctl_mtx_};
  if (control_.joinable())
    return;
  stopping_ = false;
  control_ = std::thread{[this] {
    runtime::name_thread("twin.repl.ctl");
    control_loop();
  }};
  applier_ = std::thread{[this] {
    runtime::name_thread("twin.repl.apply");
    apply_loop();
  }};
  copier_ = std::thread{[this] {
    runtime::name_thread("twin.repl.copy");
    copy_loop();
  }};
}

void replication::stop() {
  {
    std::lock_guard<std::mutex> guard{ctl_mtx_};
    stopping_ = true;
  }
  ctl_cv_.notify_all();
  {
    std::lock_guard<std::mutex> guard{fmtx_};
    fcv_.notify_all();
    copy_cv_.notify_all();
    room_cv_.notify_all();
  }
  for (auto* t : {&control_, &applier_, &copier_})
    if (t->joinable())
      t->join();
  std::vector<uint32_t> led;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [s, p] : led_)
      led.push_back(s);
  }
  for (auto s : led)
    resign(shard_id{s});
}

// -- following a shard ------------------------------------------------------------------

void replication::follow(shard_id shard, const std::string& primary, int64_t epoch) {
  std::lock_guard<std::mutex> guard{fmtx_};
  auto& f = followed_[shard.value()];
  if (f.primary == primary && f.epoch == epoch)
    return;
  f = follower_shard{};
  f.primary = primary;
  f.epoch = epoch;
  f.generation = ++generation_;
  to_copy_.push_back(shard.value());
  copy_cv_.notify_all();
}

void replication::unfollow(shard_id shard, bool drop) {
  {
    std::lock_guard<std::mutex> guard{fmtx_};  // not while a batch of it is applied
    if (followed_.erase(shard.value()) == 0)
      return;
  }
  if (drop)
    store_.drop_shard(shard);
}

bool replication::follows(shard_id shard) const {
  std::lock_guard<std::mutex> guard{fmtx_};
  return followed_.count(shard.value()) > 0;
}

void replication::on_batches(envelope&& env) {
  std::unique_lock<std::mutex> guard{fmtx_};
  // Held while the applier is this far behind: the primary's writes to this member then
  // wait, and it drops a follower that takes nothing for long (see `replica_link`).
  room_cv_.wait(guard, [&] { return incoming_bytes_ < max_incoming_bytes || stopped(); });
  incoming_bytes_ += env.bytes.size();
  incoming_.push_back(std::move(env));
  if (incoming_.size() == 1)  // else the applier was woken already, or is at work
    fcv_.notify_one();
}

void replication::restart_copy(uint32_t shard, follower_shard& f) {
  auto primary = f.primary;
  auto epoch = f.epoch;
  bool listed = f.listed;
  f = follower_shard{};
  f.primary = std::move(primary);
  f.epoch = epoch;
  f.listed = listed;
  f.generation = ++generation_;
  f.retry = clock_type::now() + std::chrono::milliseconds{200};
  to_copy_.push_back(shard);
  copy_cv_.notify_all();
}

void replication::on_link_frames(std::vector<envelope>& frames) {
  std::vector<envelope> batches;
  for (auto& env : frames) {
    if (env.kind == envelope::replica_acks)
      on_acks(env);
    else if (env.kind == envelope::replicate)
      batches.push_back(std::move(env));
  }
  if (!batches.empty())
    apply(batches);
}

void replication::apply_loop() {
  for (;;) {
    std::vector<envelope> work;
    {
      std::unique_lock<std::mutex> guard{fmtx_};
      fcv_.wait(guard, [&] { return !incoming_.empty() || stopped(); });
      if (stopped())
        return;
      work.swap(incoming_);
      incoming_bytes_ = 0;
    }
    room_cv_.notify_all();
    apply(work);
  }
}

void replication::apply(std::vector<envelope>& work) {
  // One write for everything that came, each batch after the one before it.
  std::vector<runtime::store_batch> writes;
  std::map<uint32_t, uint64_t> moved;  // shard -> last batch this write applies
  std::map<std::string, std::vector<replica_ack>> acks;
  std::vector<std::pair<const std::string*, std::vector<replica_batch>>> came;
  for (const auto& env : work) {
    auto batches = decode_replica_batches(env.bytes, shard_count_);
    if (batches)  // else from a sender that speaks another version: they go unconfirmed
      came.emplace_back(&env.from, std::move(*batches));
  }
  std::unique_lock<std::mutex> guard{fmtx_};
  if (stopped())
    return;
  for (auto& [from, batches] : came) {
    for (auto& b : batches) {
      auto i = followed_.find(b.shard);
      if (i == followed_.end() || i->second.primary != *from || i->second.epoch != b.epoch) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        acks[*from].push_back({b.shard, b.epoch, b.seq,
                               "this member does not follow shard "
                                 + std::to_string(b.shard) + " at that epoch",
                               false});
        continue;
      }
      auto& f = i->second;
      if (!f.following) {  // kept until the copy is whole
        for (const auto& c : b.changes)
          f.buffered += approximate_size(c);
        f.buffer.push_back(std::move(b));
        if (f.buffered > opts_.max_buffered_bytes) {
          acks[*from].push_back(
            {b.shard, b.epoch, 0, "too much changed during the copy", false, f.generation});
          restart_copy(i->first, f);
        }
        continue;
      }
      auto at = moved.count(b.shard) > 0 ? moved[b.shard] : f.applied;
      if (b.seq <= at)
        continue;  // had it already
      if (b.seq != at + 1) {
        acks[*from].push_back({b.shard, b.epoch, at, "a batch is missing", false, f.generation});
        moved.erase(b.shard);
        restart_copy(i->first, f);
        continue;
      }
      for (auto& c : b.changes)
        writes.push_back(std::move(c));
      moved[b.shard] = b.seq;
    }
  }
  if (moved.empty()) {
    guard.unlock();
    send_acks(acks);
    return;
  }
  runtime::store_batch positions;
  for (const auto& [s, seq] : moved)
    positions.positions.push_back(
      {shard_id{s}, position_key, encode_position(followed_[s].epoch, seq)});
  writes.push_back(std::move(positions));
  auto err = store_.write_all(writes.data(), writes.size());
  for (const auto& [s, seq] : moved) {
    auto& f = followed_[s];
    if (err) {  // nothing of it is applied: copied anew
      acks[f.primary].push_back(
        {s, f.epoch, f.applied, "the follower cannot write", false, f.generation});
      restart_copy(s, f);
      continue;
    }
    f.applied = seq;
    applied_.fetch_add(1, std::memory_order_relaxed);
    acks[f.primary].push_back({s, f.epoch, seq, {}, false, f.generation});
  }
  guard.unlock();
  send_acks(acks);
}

void replication::on_refusals(const std::string& from, const std::vector<replica_ack>& refusals) {
  std::lock_guard<std::mutex> guard{fmtx_};
  for (const auto& a : refusals) {
    auto i = followed_.find(a.shard);
    if (i != followed_.end() && i->second.primary == from && i->second.epoch == a.epoch
        && (a.generation == 0 || a.generation == i->second.generation)
        && (i->second.following || i->second.copying))
      restart_copy(a.shard, i->second);
  }
}

void replication::confirm_positions() {
  // Each followed shard's position, every second: the primary's liveness check of its
  // followers, how a follower it ships nothing to (it dropped it) learns to copy anew, and,
  // as it says the follower caught up, how the primary counts one whose first word after
  // its copy was lost (its link was not up yet).
  std::map<std::string, std::vector<replica_ack>> acks;
  {
    std::lock_guard<std::mutex> guard{fmtx_};
    for (const auto& [s, f] : followed_)
      if (f.following)
        acks[f.primary].push_back({s, f.epoch, f.applied, {}, true, f.generation});
  }
  send_acks(acks);
}

void replication::send_acks(std::map<std::string, std::vector<replica_ack>>& acks) {
  for (auto& [node, list] : acks) {
    envelope env;
    env.kind = envelope::replica_acks;
    env.bytes = encode_replica_acks(list);
    send_(node, std::move(env));  // a lost link drops this follower there
  }
  acks.clear();
}

size_t replication::approximate_size(const runtime::store_batch& b) {
  size_t n = 64;
  for (const auto& [id, bytes] : b.puts)
    n += id.str().size() + bytes.size();
  for (const auto& h : b.history)
    n += h.property.size() + h.bytes.size() + 32;
  n += 48 * (b.deletes.size() + b.index_adds.size() + b.index_removes.size()
             + b.history_deletes.size() + b.meta_puts.size());
  return n;
}

// -- copying --------------------------------------------------------------------------

void replication::copy_loop() {
  auto confirmed = clock_type::now();
  for (;;) {
    uint32_t s = 0;
    std::string primary;
    int64_t epoch = 0;
    uint64_t generation = 0;
    if (clock_type::now() - confirmed > std::chrono::seconds{1}) {
      confirm_positions();
      confirmed = clock_type::now();
    }
    {
      std::unique_lock<std::mutex> guard{fmtx_};
      copy_cv_.wait_for(guard, std::chrono::milliseconds{100},
                        [&] { return !to_copy_.empty() || stopped(); });
      if (stopped())
        return;
      if (to_copy_.empty())
        continue;
      s = to_copy_.front();
      to_copy_.pop_front();
      auto i = followed_.find(s);
      if (i == followed_.end() || i->second.following || i->second.copying)
        continue;  // no longer followed, or copied by an earlier turn
      if (clock_type::now() < i->second.retry) {
        to_copy_.push_back(s);  // not yet: after the others
        copy_cv_.wait_for(guard, std::chrono::milliseconds{20});
        continue;
      }
      i->second.copying = true;
      primary = i->second.primary;
      epoch = i->second.epoch;
      generation = i->second.generation;
    }
    auto err = copy_shard(s, primary, epoch, generation);
    std::lock_guard<std::mutex> guard{fmtx_};
    auto i = followed_.find(s);
    if (!err) {
      copies_done_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    copies_failed_.fetch_add(1, std::memory_order_relaxed);
    if (i != followed_.end() && i->second.generation == generation)
      restart_copy(s, i->second);
  }
}

caf::error replication::copy_shard(uint32_t s, const std::string& primary, int64_t epoch,
                                   uint64_t generation) {
  shard_id shard{s};
  // The store's copy of the shard is changed only while this member still follows it in
  // this turn, under the follower's lock: a handoff may make it the shard's owner at any
  // moment (unfollow, under the same lock), and its copy is then the handoff's.
  auto guarded = [&](auto&& change) -> caf::error {
    std::lock_guard<std::mutex> guard{fmtx_};
    auto i = followed_.find(s);
    if (i == followed_.end() || i->second.generation != generation)
      return make_error(runtime_errc::conflict, "the shard is followed otherwise now");
    return change();
  };
  // From now on the primary ships this member the shard's batches: kept until the copy
  // (read after this) is whole, then applied over it. A primary that cannot be reached
  // leaves the data here as it is.
  envelope ask_follow;
  ask_follow.kind = envelope::follow;
  ask_follow.shard = s;
  ask_follow.epoch = epoch;
  ask_follow.bytes = std::to_string(generation);  // its words are tagged with it
  auto base = ask_(primary, std::move(ask_follow), std::chrono::seconds{5});
  if (!base)
    return base.error();
  bool listed = false;
  if (auto err = guarded([&] {
        followed_[s].base = std::stoull(*base);
        listed = followed_[s].listed;
        return caf::error{};
      }))
    return err;
  // A copy etcd may list as in sync (one that may become primary) is out of that list
  // before its data goes: else a failover could promote a member that holds nothing.
  if (listed && insync_(shard, epoch, me_, 0, false) == 0)
    return make_error(runtime_errc::unavailable, "shard " + std::to_string(s)
                                                   + ": this member is still listed in sync");
  if (auto err = guarded([&] {
        followed_[s].listed = false;
        return store_.drop_shard(shard);
      }))
    return err;
  std::string cursor;
  do {
    if (stopped())
      return make_error(runtime_errc::shutting_down, "stopping");
    envelope ask_page;
    ask_page.kind = envelope::snapshot;
    ask_page.shard = s;
    ask_page.epoch = epoch;
    ask_page.bytes = cursor;
    auto bytes = ask_(primary, std::move(ask_page), std::chrono::seconds{5});
    if (!bytes)
      return bytes.error();
    auto page = decode_page(*bytes, shard, shard_count_);
    if (!page)
      return page.error();
    if (auto err = guarded([&] { return store_.write(page->entries); }))
      return err;
    copied_entries_.fetch_add(page->entries.puts.size(), std::memory_order_relaxed);
    cursor = std::move(page->next);
  } while (!cursor.empty());
  // The batches shipped since the copy began, over it: the shard as the primary has it.
  uint64_t applied = 0;
  {
    std::lock_guard<std::mutex> guard{fmtx_};
    auto i = followed_.find(s);
    if (i == followed_.end() || i->second.generation != generation)
      return make_error(runtime_errc::conflict, "the shard is followed otherwise now");
    auto& f = i->second;
    std::vector<runtime::store_batch> writes;
    applied = f.base;
    for (auto& b : f.buffer) {
      if (b.seq <= applied)
        continue;
      if (b.seq != applied + 1)
        return make_error(runtime_errc::conflict, "a batch is missing");
      for (auto& c : b.changes)
        writes.push_back(std::move(c));
      applied = b.seq;
    }
    runtime::store_batch position;
    position.positions.push_back({shard, position_key, encode_position(epoch, applied)});
    writes.push_back(std::move(position));
    if (auto err = store_.write_all(writes.data(), writes.size()))
      return err;
    f.buffer.clear();
    f.buffered = 0;
    f.copying = false;
    f.following = true;
    f.listed = true;
    f.applied = applied;
  }
  std::map<std::string, std::vector<replica_ack>> acks;
  acks[primary].push_back({s, epoch, applied, {}, true, generation});
  send_acks(acks);
  return {};
}

// -- figures --------------------------------------------------------------------------

std::vector<replica_status> replication::status() const {
  std::vector<replica_status> out;
  auto now = clock_type::now();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [s, p] : led_) {
      replica_status r;
      r.shard = s;
      r.role = "primary";
      r.seq = p.seq;
      r.copies = p.copies();
      for (const auto& [node, t] : p.targets)
        if (t.counted)
          r.lag = std::max(r.lag, p.seq - std::min(p.seq, t.acked));
      if (!p.waiting.empty())
        r.lag_seconds = std::chrono::duration<double>(now - p.waiting.front().since).count();
      out.push_back(std::move(r));
    }
  }
  std::lock_guard<std::mutex> guard{fmtx_};
  for (const auto& [s, f] : followed_) {
    replica_status r;
    r.shard = s;
    r.role = "follower";
    r.seq = f.applied;
    r.state = f.following ? "following" : "copying";
    out.push_back(std::move(r));
  }
  return out;
}

void replication::collect(std::vector<runtime::metrics::family>& out) const {
  using runtime::metrics::family;
  using runtime::metrics::metric_type;
  using runtime::metrics::single;
  auto all = status();
  double led = 0, under = 0, following = 0, copying = 0, lag = 0, lag_s = 0;
  for (const auto& r : all) {
    if (r.role == "primary") {
      ++led;
      under += r.copies < opts_.factor ? 1 : 0;
      lag = std::max(lag, static_cast<double>(r.lag));
      lag_s = std::max(lag_s, r.lag_seconds);
    } else {
      (r.state == "following" ? following : copying) += 1;
    }
  }
  family replicas{"twin_shard_replicas",
                  "Shard copies on this member: led with every copy (primary), led with fewer "
                  "copies than the replication factor (under_replicated), followed and whole "
                  "(follower), followed and still copying (copying).",
                  metric_type::gauge, {}};
  replicas.samples.push_back({{{"state", "primary"}}, led - under, {}});
  replicas.samples.push_back({{{"state", "under_replicated"}}, under, {}});
  replicas.samples.push_back({{{"state", "follower"}}, following, {}});
  replicas.samples.push_back({{{"state", "copying"}}, copying, {}});
  out.push_back(std::move(replicas));
  out.push_back(single("twin_replication_factor", "Copies of each shard the cluster keeps (R).",
                       metric_type::gauge, opts_.factor));
  out.push_back(single("twin_replication_lag_batches",
                       "Batches the slowest counted follower of a shard this member leads has "
                       "not confirmed (the largest over its shards).",
                       metric_type::gauge, lag));
  out.push_back(single("twin_replication_lag_seconds",
                       "How long the oldest change of a shard this member leads has waited for "
                       "its copies (the largest over its shards).",
                       metric_type::gauge, lag_s));
  auto counter = [&](const char* name, const char* help, const std::atomic<uint64_t>& v) {
    out.push_back(single(name, help, metric_type::counter,
                         static_cast<double>(v.load(std::memory_order_relaxed))));
  };
  counter("twin_replication_batches_shipped_total", "Batches shipped to followers.", shipped_);
  counter("twin_replication_batches_applied_total", "Batches applied as a follower.", applied_);
  counter("twin_replication_batches_refused_total",
          "Batches refused as a follower (of another epoch or primary).", refused_);
  counter("twin_replication_timeouts_total",
          "Changes that did not get enough copies in time (answered 503).", timeouts_);
  counter("twin_replication_waits_total",
          "Changes held because their shard had fewer copies than writes need.", waits_);
  counter("twin_replication_copies_total", "Shards this member copied as a new follower.",
          copies_done_);
  counter("twin_replication_copy_failures_total",
          "Copies of a shard as a new follower that failed (and started again).", copies_failed_);
  counter("twin_replication_copied_twins_total", "Twins copied as a new follower.",
          copied_entries_);
  family latency{"twin_replication_ack_seconds",
                  "Seconds from a change being durable on its primary to its copies confirming "
                  "it.",
                  metric_type::histogram, {}};
  runtime::metrics::sample sample;
  sample.histogram = ack_latency_.snapshot();
  latency.samples.push_back(std::move(sample));
  out.push_back(std::move(latency));
}

} // namespace twin::cluster
