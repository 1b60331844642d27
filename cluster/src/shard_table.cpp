#include "shard_table.hpp"

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

int64_t shard_table::shard_of_key(const std::string& key, const std::string& prefix) {
  if (key.size() <= prefix.size() || key.compare(0, prefix.size(), prefix) != 0)
    return -1;
  int64_t n = 0;
  for (size_t i = prefix.size(); i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9' || n > 1'000'000)
      return -1;
    n = n * 10 + (key[i] - '0');
  }
  return n;
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

caf::expected<int64_t> shard_table::load() {
  auto& keys = membership_.keys();
  auto all = membership_.etcd().get_prefix(keys.shards());
  if (!all)
    return all.error();
  std::unique_lock<std::shared_mutex> guard{mtx_};
  for (auto& e : table_)
    e = shard_owner{};
  for (const auto& kv : all->kvs) {
    auto n = shard_of_key(kv.key, keys.shards());
    if (n >= 0 && static_cast<size_t>(n) < table_.size())
      table_[n] = {owner_of(kv.value), kv.mod_revision};
  }
  return all->revision;
}

void shard_table::apply(const std::vector<etcd::event>& events) {
  auto prefix = membership_.keys().shards();
  {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    for (const auto& e : events) {
      auto n = shard_of_key(e.kv.key, prefix);
      if (n < 0 || static_cast<size_t>(n) >= table_.size())
        continue;
      table_[n] = e.deleted ? shard_owner{} : shard_owner{owner_of(e.kv.value), e.kv.mod_revision};
    }
  }
  if (on_change_)
    on_change_();
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

coordinator::coordinator(membership& m, shard_table& table, std::chrono::milliseconds settle)
  : membership_(m), table_(table), settle_(settle), changed_at_(std::chrono::steady_clock::now()) {
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

void coordinator::assign_unowned() {
  std::vector<std::string> up;
  for (const auto& m : membership_.members())
    if (m.state == "up")
      up.push_back(m.id.str());
  if (up.empty())
    return;
  auto current = table_.all();
  assignment owners;
  for (const auto& e : current)
    owners.push_back(e.owner);
  auto next = balance(owners, up);
  // Only shards without an owner are given here: an owned shard moves by handoff.
  std::vector<etcd::compare> when;
  std::vector<etcd::op> then;
  auto flush = [&] {
    if (!then.empty())
      membership_.etcd().txn(when, then);  // a conflict: the watch shows it, the next round retries
    when.clear();
    then.clear();
  };
  auto prefix = membership_.keys().shards();
  for (size_t s = 0; s < owners.size(); ++s) {
    if (!owners[s].empty() || next[s].empty())
      continue;
    auto key = prefix + std::to_string(s);
    when.push_back(etcd::compare::mod_is(key, current[s].epoch));
    then.push_back(etcd::op::put(key, json{{"owner", next[s]}}.dump()));
    if (then.size() == 64)  // etcd takes at most 128 operations a transaction
      flush();
  }
  flush();
}

void coordinator::loop() {
  using namespace std::chrono;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (cv_.wait_for(guard, milliseconds{500}, [&] { return stopping_; }))
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
      assign_unowned();
  }
}

} // namespace twin::cluster
