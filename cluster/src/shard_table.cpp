#include "shard_table.hpp"

#include <set>

#include <nlohmann/json.hpp>

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

int64_t shard_table::shard_of_key(const std::string& key, const std::string& prefix,
                                  bool* handoff) {
  if (key.size() <= prefix.size() || key.compare(0, prefix.size(), prefix) != 0)
    return -1;
  int64_t n = 0;
  size_t i = prefix.size();
  for (; i < key.size() && key[i] != '/'; ++i) {
    if (key[i] < '0' || key[i] > '9' || n > 1'000'000)
      return -1;
    n = n * 10 + (key[i] - '0');
  }
  bool is_handoff = key.compare(i, std::string::npos, "/to") == 0;
  if (i < key.size() && !is_handoff)
    return -1;
  if (handoff != nullptr)
    *handoff = is_handoff;
  return n;
}

void shard_table::set_owner(runtime::shard_id shard, std::string owner, int64_t epoch) {
  {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    auto& e = table_.at(shard.value());
    if (epoch <= e.epoch)
      return;
    e = shard_owner{std::move(owner), epoch, {}, 0};
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
  bool handoff = false;
  auto n = shard_of_key(kv.key, membership_.keys().shards(), &handoff);
  if (n < 0 || static_cast<size_t>(n) >= table_.size())
    return;
  auto& e = table_[n];
  if (handoff) {
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
                         size_t max_handoffs)
  : membership_(m),
    table_(table),
    settle_(settle),
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
  thread_ = std::thread{[this] { loop(); }};
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

void coordinator::rebalance() {
  auto& etcd = membership_.etcd();
  const auto& keys = membership_.keys();
  auto drains = etcd.get_prefix(keys.drains());
  if (!drains)
    return;
  std::set<std::string> draining;
  for (const auto& kv : drains->kvs)
    draining.insert(kv.key.substr(keys.drains().size()));
  std::set<std::string> live;
  std::vector<std::string> up;
  for (const auto& m : membership_.members()) {
    live.insert(m.id.str());
    if (draining.count(m.id.str()) == 0)
      up.push_back(m.id.str());
  }
  if (up.empty())
    return;
  auto table = table_.all();
  // Balance what may move: shards of live members and those without an owner.
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
    } else if (next[k] != e.owner && moving < max_handoffs_) {
      ++moving;
      when.push_back(etcd::compare::mod_is(key, e.epoch));
      when.push_back(etcd::compare::mod_is(key + "/to", 0));
      then.push_back(etcd::op::put(key + "/to", json{{"from", e.owner}, {"to", next[k]}}.dump()));
    }
    if (then.size() >= 40)  // etcd takes at most 128 operations a transaction
      flush();
  }
  flush();
  // Handoffs from a member that is gone wait for it: only it has the shard's data.
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
    if (lead && steady_clock::now() - changed >= settle_)
      rebalance();
  }
}

} // namespace twin::cluster
