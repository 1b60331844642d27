#include "shard_table.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "twin/runtime/thread_name.hpp"

namespace twin::cluster {

using json = nlohmann::json;

namespace {

std::string owner_of(const std::string& value) {
  auto j = json::parse(value, nullptr, false);
  return j.is_object() ? j.value("owner", "") : std::string{};
}

} // namespace

// -- shard_table ---------------------------------------------------------------------

shard_table::shard_table(membership& m, uint32_t shard_count, changed_fn on_change)
  : membership_(m), on_change_(std::move(on_change)), table_(shard_count) {
}

shard_table::~shard_table() {
  watch_.reset();
}

std::string encode_replicas(const std::vector<std::string>& followers,
                            const std::vector<insync_follower>& insync) {
  auto in = json::array();
  for (const auto& f : insync)
    in.push_back({{"node", f.node}, {"incarnation", f.incarnation}});
  return json{{"followers", followers}, {"insync", std::move(in)}}.dump();
}

uint32_t copies_in_sync(const shard_owner& e, const std::map<std::string, int64_t>& live) {
  uint32_t n = live.count(e.owner) > 0 ? 1 : 0;
  for (const auto& f : e.insync)
    if (auto i = live.find(f.node); i != live.end() && i->second == f.incarnation)
      ++n;
  return n;
}

bool decode_replicas(const std::string& value, std::vector<std::string>& followers,
                     std::vector<insync_follower>& insync) {
  followers.clear();
  insync.clear();
  auto j = json::parse(value, nullptr, false);
  if (!j.is_object())
    return false;
  if (j.contains("followers") && j["followers"].is_array())
    for (const auto& m : j["followers"])
      if (m.is_string())
        followers.push_back(m.get<std::string>());
  if (j.contains("insync") && j["insync"].is_array())
    for (const auto& m : j["insync"])
      if (m.is_object() && m.value("node", "") != "")
        insync.push_back({m.value("node", ""), m.value("incarnation", int64_t{0})});
  return true;
}

int64_t shard_table::shard_of_key(const std::string& key, const std::string& prefix,
                                  key_kind* kind) {
  if (key.size() <= prefix.size() || key.compare(0, prefix.size(), prefix) != 0)
    return -1;
  int64_t n = 0;
  size_t i = prefix.size();
  for (; i < key.size() && key[i] != '/'; ++i) {
    if (key[i] < '0' || key[i] > '9' || n > 1'000'000)
      return -1;
    n = n * 10 + (key[i] - '0');
  }
  auto k = key_kind::owner;
  if (key.compare(i, std::string::npos, "/to") == 0)
    k = key_kind::handoff;
  else if (key.compare(i, std::string::npos, "/replicas") == 0)
    k = key_kind::replicas;
  else if (i < key.size())
    return -1;
  if (kind != nullptr)
    *kind = k;
  return n;
}

void shard_table::set_owner(runtime::shard_id shard, std::string owner, int64_t epoch) {
  {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    auto& e = table_.at(shard.value());
    if (epoch <= e.epoch)
      return;
    e.owner = std::move(owner);
    e.epoch = epoch;
    e.followers.clear();  // the transaction that made it owner cleared them
    e.insync.clear();
    e.replicas = epoch;
    e.moving_to.clear();
    e.handoff = 0;
  }
  if (on_change_)
    on_change_();
}

caf::error shard_table::start() {
  auto revision = load();
  if (!revision)
    return revision.error();
  watch_ = std::make_unique<etcd::watch>(
    membership_.options().etcd, membership_.keys().shards(), *revision + 1,
    [this](std::vector<etcd::event> events, int64_t) { apply(events); },
    [this] {
      load();  // the watch goes on from etcd's current revision
      if (on_change_)
        on_change_();
    });
  if (on_change_)
    on_change_();
  return {};
}

void shard_table::stop() {
  watch_.reset();
}

caf::error shard_table::refresh() {
  auto revision = load();
  if (!revision)
    return revision.error();
  if (on_change_)
    on_change_();
  return {};
}

caf::expected<int64_t> shard_table::load() {
  auto& keys = membership_.keys();
  auto all = membership_.etcd().get_prefix(keys.shards());
  if (!all)
    return all.error();
  std::unique_lock<std::shared_mutex> guard{mtx_};
  for (auto& e : table_)
    e = shard_owner{};
  for (const auto& kv : all->kvs)
    set_entry(kv, false);
  for (auto& e : table_)
    e.handoff_seen = all->revision;  // what the watch brings of older revisions is stale
  return all->revision;
}

void shard_table::apply(const std::vector<etcd::event>& events) {
  {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    for (const auto& e : events)
      set_entry(e.kv, e.deleted);
  }
  if (on_change_)
    on_change_();
}

void shard_table::set_entry(const etcd::key_value& kv, bool deleted) {
  auto kind = key_kind::owner;
  auto n = shard_of_key(kv.key, membership_.keys().shards(), &kind);
  if (n < 0 || static_cast<size_t>(n) >= table_.size())
    return;
  auto& e = table_[n];
  if (kind == key_kind::replicas) {
    if (kv.mod_revision < e.replicas)
      return;  // older than what this node's own transaction made it
    if (deleted || !decode_replicas(kv.value, e.followers, e.insync)) {
      e.followers.clear();
      e.insync.clear();
    }
    e.replicas = deleted ? 0 : kv.mod_revision;
  } else if (kind == key_kind::handoff) {
    if (kv.mod_revision <= e.handoff_seen)
      return;  // older than what this node has of the key (a fresh read brought more)
    e.handoff_seen = kv.mod_revision;
    auto j = json::parse(kv.value, nullptr, false);
    e.moving_to = deleted || !j.is_object() ? std::string{} : j.value("to", "");
    e.handoff = deleted ? 0 : kv.mod_revision;
  } else if (deleted) {
    e.owner.clear();
    e.epoch = 0;
  } else if (kv.mod_revision >= e.epoch) {  // never back to an older owner
    e.owner = owner_of(kv.value);
    e.epoch = kv.mod_revision;
  }
}

shard_owner shard_table::get(runtime::shard_id shard) const {
  std::shared_lock<std::shared_mutex> guard{mtx_};
  return shard.value() < table_.size() ? table_[shard.value()] : shard_owner{};
}

std::vector<shard_owner> shard_table::all() const {
  std::shared_lock<std::shared_mutex> guard{mtx_};
  return table_;
}

// -- coordinator ---------------------------------------------------------------------

coordinator::coordinator(membership& m, shard_table& table, std::chrono::milliseconds settle,
                         uint32_t replication, size_t max_handoffs)
  : membership_(m),
    table_(table),
    settle_(settle),
    replication_(replication),
    max_handoffs_(max_handoffs),
    changed_at_(std::chrono::steady_clock::now()) {
}

coordinator::~coordinator() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void coordinator::start() {
  thread_ = std::thread{[this] {
    runtime::name_thread("twin.coord");
    loop();
  }};
}

void coordinator::poke() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    changed_at_ = std::chrono::steady_clock::now();
  }
  cv_.notify_all();
}

bool coordinator::leading() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return leading_;
}

bool coordinator::try_lead() {
  auto& etcd = membership_.etcd();
  auto key = membership_.keys().leader();
  auto me = membership_.node().str();
  auto r = etcd.txn({etcd::compare::mod_is(key, 0)},
                    {etcd::op::put(key, me, membership_.lease())}, {etcd::op::get(key)});
  if (!r)
    return false;
  return r->succeeded || (!r->reads.empty() && !r->reads[0].kvs.empty()
                          && r->reads[0].kvs[0].value == me
                          && r->reads[0].kvs[0].lease == membership_.lease());
}

void coordinator::rebalance(bool settled) {
  auto& etcd = membership_.etcd();
  const auto& keys = membership_.keys();
  auto drains = etcd.get_prefix(keys.drains());
  if (!drains)
    return;
  std::set<std::string> draining;
  for (const auto& kv : drains->kvs)
    draining.insert(kv.key.substr(keys.drains().size()));
  std::set<std::string> live;
  std::map<std::string, int64_t> incarnations;
  std::vector<std::string> up;
  for (const auto& m : membership_.members()) {
    live.insert(m.id.str());
    incarnations[m.id.str()] = m.incarnation;
    if (draining.count(m.id.str()) == 0)
      up.push_back(m.id.str());
  }
  auto table = table_.all();
  if (replication_ > 1)
    replicate(table, incarnations, draining, settled);
  if (up.empty() || !settled)
    return;
  // Balance what may move: shards of live members and those without an owner. A handoff
  // takes its new owner out of the shard's followers: with R members or fewer up, the
  // shard then has fewer than R copies until the handoff ends, and its writes wait. So
  // with so few members, while a shard of a live owner has fewer copies in sync than R (a
  // member died, and new followers copy), only draining members' shards move.
  bool may_balance = up.size() > replication_;
  if (!may_balance) {  // (fewer members up than R: as many copies as there are members)
    may_balance = true;
    auto wanted = std::min<size_t>(replication_, up.size());
    for (const auto& e : table)
      if (live.count(e.owner) > 0 && copies_in_sync(e, incarnations) < wanted)
        may_balance = false;
  }
  assignment movable;
  std::vector<size_t> shard_of;
  size_t moving = 0;
  for (size_t s = 0; s < table.size(); ++s) {
    if (!table[s].moving_to.empty())
      ++moving;
    if (table[s].owner.empty() || live.count(table[s].owner) > 0) {
      movable.push_back(table[s].owner);
      shard_of.push_back(s);
    }
  }
  auto next = balance(movable, up);
  std::vector<etcd::compare> when;
  std::vector<etcd::op> then;
  auto flush = [&] {
    if (!then.empty())
      etcd.txn(when, then);  // a conflict: the watch shows it, the next round retries
    when.clear();
    then.clear();
  };
  for (size_t k = 0; k < movable.size(); ++k) {
    auto s = shard_of[k];
    const auto& e = table[s];
    auto key = keys.shards() + std::to_string(s);
    if (e.owner.empty()) {
      when.push_back(etcd::compare::mod_is(key, e.epoch));
      then.push_back(etcd::op::put(key, json{{"owner", next[k]}}.dump()));
    } else if (!e.moving_to.empty()) {
      if (live.count(e.moving_to) == 0) {  // its new owner is gone: call it off
        when.push_back(etcd::compare::mod_is(key + "/to", e.handoff));
        then.push_back(etcd::op::del(key + "/to"));
      }
    } else if (next[k] != e.owner && moving < max_handoffs_
               && (may_balance || draining.count(e.owner) > 0)) {
      ++moving;
      when.push_back(etcd::compare::mod_is(key, e.epoch));
      when.push_back(etcd::compare::mod_is(key + "/to", 0));
      then.push_back(etcd::op::put(key + "/to", json{{"from", e.owner}, {"to", next[k]}}.dump()));
      if (e.follows(next[k])) {  // its copy is replaced by the handoff's: a follower no more
        auto followers = e.followers;
        followers.erase(std::find(followers.begin(), followers.end(), next[k]));
        auto insync = e.insync;
        insync.erase(std::remove_if(insync.begin(), insync.end(),
                                    [&](const insync_follower& f) { return f.node == next[k]; }),
                     insync.end());
        when.push_back(etcd::compare::mod_is(key + "/replicas", e.replicas));
        then.push_back(etcd::op::put(key + "/replicas", encode_replicas(followers, insync)));
      }
    }
    if (then.size() >= 40)  // etcd takes at most 128 operations a transaction
      flush();
  }
  flush();
  // Handoffs from a member that is gone wait for it: only it has the shard's data (or,
  // with followers, until one of them is promoted).
}

void coordinator::replicate(const std::vector<shard_owner>& table,
                            const std::map<std::string, int64_t>& live,
                            const std::set<std::string>& draining, bool settled) {
  auto& etcd = membership_.etcd();
  const auto& keys = membership_.keys();
  const size_t wanted = replication_ - 1;
  std::map<std::string, size_t> roles;  // follower roles of the members that may take more
  for (const auto& [m, incarnation] : live)
    if (draining.count(m) == 0)
      roles[m] = 0;
  size_t moving = 0;  // shards with an extra follower that takes another's role
  for (const auto& e : table) {
    for (const auto& f : e.followers)
      if (auto i = roles.find(f); i != roles.end())
        ++i->second;
    moving += e.followers.size() > wanted ? 1 : 0;
  }
  struct change {
    std::vector<etcd::compare> when;
    std::vector<etcd::op> then;
  };
  std::vector<change> changes;
  auto current = [&](const insync_follower& f) {
    auto i = live.find(f.node);
    return i != live.end() && i->second == f.incarnation;
  };
  for (size_t s = 0; s < table.size(); ++s) {
    const auto& e = table[s];
    if (e.owner.empty())
      continue;
    auto key = keys.shards() + std::to_string(s);
    std::vector<etcd::compare> when{etcd::compare::mod_is(key, e.epoch),
                                    etcd::compare::mod_is(key + "/replicas", e.replicas)};
    if (live.count(e.owner) == 0) {
      // Failover: a follower that holds every acknowledged change, in the incarnation that
      // copied it, takes the shard; the new epoch fences the old owner.
      for (const auto& f : e.insync)
        if (current(f) && f.node != e.owner) {
          changes.push_back({when,
                             {etcd::op::put(key, json{{"owner", f.node}}.dump()),
                              etcd::op::put(key + "/replicas", encode_replicas({}, {})),
                              etcd::op::del(key + "/to")}});
          break;
        }
      continue;
    }
    std::vector<std::string> followers;
    for (const auto& f : e.followers)
      if (live.count(f) > 0 && f != e.owner && f != e.moving_to)
        followers.push_back(f);
    auto is_follower = [&](const std::string& n) {
      return std::find(followers.begin(), followers.end(), n) != followers.end();
    };
    std::vector<insync_follower> insync;
    for (const auto& f : e.insync)
      if (current(f) && is_follower(f.node))
        insync.push_back(f);
    size_t healthy = 0, healthy_in_sync = 0;
    for (const auto& f : followers)
      healthy += draining.count(f) == 0 ? 1 : 0;
    for (const auto& f : insync)
      healthy_in_sync += draining.count(f.node) == 0 ? 1 : 0;
    // During a handoff too (never its new owner): the old owner's writes, which its
    // release makes durable, wait for their copies. The new owner takes the shard without
    // followers and recruits its own.
    while (healthy < wanted) {
      const std::string* pick = nullptr;
      for (const auto& [m, n] : roles)
        if (m != e.owner && m != e.moving_to && !is_follower(m)
            && (pick == nullptr || n < roles[*pick]))
          pick = &m;
      if (pick == nullptr)
        break;
      followers.push_back(*pick);
      ++roles[*pick];
      ++healthy;
    }
    if (healthy_in_sync >= wanted) {  // draining followers leave once others hold copies
      auto out = [&](const std::string& n) { return draining.count(n) > 0; };
      followers.erase(std::remove_if(followers.begin(), followers.end(), out), followers.end());
      insync.erase(std::remove_if(insync.begin(), insync.end(),
                                  [&](const insync_follower& f) { return out(f.node); }),
                   insync.end());
    }
    if (settled && e.moving_to.empty() && healthy_in_sync >= wanted)
      spread_roles(e, wanted, roles, followers, insync, moving);
    if (followers != e.followers || !(insync == e.insync))
      changes.push_back({when, {etcd::op::put(key + "/replicas", encode_replicas(followers, insync))}});
  }
  // Forty shards a transaction (etcd takes at most 128 operations); a conflict (an owner
  // recorded a follower in sync meanwhile) sends that group's shards one by one.
  for (size_t i = 0; i < changes.size(); i += 40) {
    change group;
    auto end = std::min(changes.size(), i + 40);
    for (size_t k = i; k < end; ++k) {
      group.when.insert(group.when.end(), changes[k].when.begin(), changes[k].when.end());
      group.then.insert(group.then.end(), changes[k].then.begin(), changes[k].then.end());
    }
    auto r = etcd.txn(group.when, group.then);
    if (!r || r->succeeded || end - i == 1)
      continue;
    for (size_t k = i; k < end; ++k)
      etcd.txn(changes[k].when, changes[k].then);
  }
}

void coordinator::spread_roles(const shard_owner& e, size_t wanted,
                               std::map<std::string, size_t>& roles,
                               std::vector<std::string>& followers,
                               std::vector<insync_follower>& insync, size_t& moving) {
  auto busiest = [&](auto first, auto last, auto node_of) {
    auto best = last;
    for (auto i = first; i != last; ++i)
      if (roles.count(node_of(*i)) > 0
          && (best == last || roles[node_of(*i)] > roles[node_of(*best)]))
        best = i;
    return best;
  };
  if (insync.size() > wanted) {
    // The extra copy is whole: the busiest follower in sync leaves.
    auto out = busiest(insync.begin(), insync.end(), [](const insync_follower& f) { return f.node; });
    if (out == insync.end())
      return;
    auto node = out->node;
    --roles[node];
    insync.erase(out);
    followers.erase(std::find(followers.begin(), followers.end(), node));
    return;
  }
  if (followers.size() != wanted || moving >= max_role_moves)
    return;
  auto from = busiest(followers.begin(), followers.end(), [](const std::string& n) { return n; });
  if (from == followers.end())
    return;
  const std::string* to = nullptr;
  for (const auto& [m, n] : roles)
    if (m != e.owner && std::find(followers.begin(), followers.end(), m) == followers.end()
        && (to == nullptr || n < roles[*to]))
      to = &m;
  if (to == nullptr || roles[*to] + 2 > roles[*from])
    return;
  // The least busy member copies the shard too; its role counts as moved already.
  --roles[*from];
  ++roles[*to];
  followers.push_back(*to);
  ++moving;
}

void coordinator::loop() {
  using namespace std::chrono;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (cv_.wait_for(guard, milliseconds{200}, [&] { return stopping_; }))
        return;
    }
    if (!membership_.alive())
      continue;
    bool lead = try_lead();
    steady_clock::time_point changed;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      leading_ = lead;
      changed = changed_at_;
    }
    if (lead)
      rebalance(steady_clock::now() - changed >= settle_);
  }
}

} // namespace twin::cluster
