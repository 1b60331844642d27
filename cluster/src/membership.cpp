#include "membership.hpp"

#include <limits>

#include <nlohmann/json.hpp>

#include "twin/cluster/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::cluster {

using json = nlohmann::json;

std::string encode_member(const member& m) {
  return json{{"node", m.id.str()},
              {"incarnation", m.incarnation},
              {"cluster", m.cluster_address},
              {"replication", m.replication_address},
              {"http", m.http_url},
              {"state", m.state},
              {"tls", m.tls}}
    .dump();
}

std::optional<member> decode_member(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("node") || !j["node"].is_string())
    return std::nullopt;
  auto id = runtime::node_id::parse(j["node"].get<std::string>());
  if (!id)
    return std::nullopt;
  member m;
  m.id = *id;
  m.incarnation = j.value("incarnation", int64_t{0});
  m.cluster_address = j.value("cluster", "");
  m.replication_address = j.value("replication", "");
  m.http_url = j.value("http", "");
  m.state = j.value("state", "up");
  m.tls = j.value("tls", false);
  return m;
}

membership::membership(membership_options opts, members_fn on_members,
                       std::function<void()> on_lost)
  : opts_(std::move(opts)),
    keys_(opts_.cluster),
    on_members_(std::move(on_members)),
    on_lost_(std::move(on_lost)),
    etcd_(opts_.etcd, std::chrono::seconds{2}),
    renew_(opts_.etcd, std::max<std::chrono::milliseconds>(
                         std::chrono::milliseconds{100},
                         std::chrono::duration_cast<std::chrono::milliseconds>(opts_.ttl) / 3)) {
}

membership::~membership() {
  leave();
}

caf::error membership::join() {
  using namespace std::chrono;
  // The cluster's configuration: written by the first member, the same for all.
  auto config = json{{"shards", opts_.shard_count}, {"replication", opts_.replication}}.dump();
  auto agreed = etcd_.txn({etcd::compare::mod_is(keys_.config(), 0)},
                          {etcd::op::put(keys_.config(), config)}, {etcd::op::get(keys_.config())});
  if (!agreed)
    return agreed.error();
  if (!agreed->succeeded) {
    auto j = json::parse(agreed->reads.at(0).kvs.at(0).value, nullptr, false);
    auto shards = j.is_object() ? j.value("shards", 0u) : 0u;
    if (shards != opts_.shard_count)
      return make_error(cluster_errc::config_mismatch,
                        "cluster '" + opts_.cluster + "' has " + std::to_string(shards)
                          + " shards; this node is configured for "
                          + std::to_string(opts_.shard_count));
    auto copies = j.value("replication", 1u);  // written before replication: one copy
    if (copies != opts_.replication)
      return make_error(cluster_errc::config_mismatch,
                        "cluster '" + opts_.cluster + "' keeps " + std::to_string(copies)
                          + " copies of each shard; this node is configured for "
                          + std::to_string(opts_.replication)
                          + " (--replication-factor)");
  }
  if (auto err = check_tls(std::numeric_limits<int64_t>::max()))
    return err;
  // The member key, with a lease. After a crash, the key of the node's last incarnation
  // lives until its lease runs out: wait for that, no longer.
  member me{opts_.node, 0, opts_.cluster_address, opts_.replication_address, opts_.http_url,
            "up", opts_.tls};
  auto deadline = steady_clock::now() + opts_.ttl + seconds{3};
  for (;;) {
    auto t0 = steady_clock::now();
    auto lease = etcd_.grant(opts_.ttl.count());
    if (!lease)
      return lease.error();
    auto key = keys_.member(opts_.node);
    auto put = etcd_.txn({etcd::compare::mod_is(key, 0)},
                         {etcd::op::put(key, encode_member(me), lease->id)});
    if (!put) {
      etcd_.revoke(lease->id);
      return put.error();
    }
    if (put->succeeded) {
      // The incarnation is the revision that created the key; the key says so too.
      me.incarnation = put->revision;
      auto set = etcd_.txn({etcd::compare::mod_is(key, put->revision)},
                           {etcd::op::put(key, encode_member(me), lease->id)});
      if (!set || !set->succeeded) {
        etcd_.revoke(lease->id);
        return set ? make_error(cluster_errc::etcd_failure, "the member key changed under its join")
                   : set.error();
      }
      std::lock_guard<std::mutex> guard{mtx_};
      lease_ = lease->id;
      incarnation_ = me.incarnation;
      expires_ = t0 + seconds{lease->ttl};
      alive_ = true;
      stopping_ = false;
      break;
    }
    etcd_.revoke(lease->id);
    if (steady_clock::now() > deadline)
      return make_error(cluster_errc::config_mismatch,
                        "a live member of cluster '" + opts_.cluster + "' already has node id '"
                          + opts_.node.str() + "'");
    std::this_thread::sleep_for(milliseconds{250});
  }
  // Again with its key written: of two members that joined at once speaking otherwise, the
  // later one goes.
  if (auto err = check_tls(me.incarnation)) {
    etcd_.revoke(lease_);
    std::lock_guard<std::mutex> guard{mtx_};
    alive_ = false;
    return err;
  }
  keeper_ = std::thread{[this] {
    runtime::name_thread("twin.lease");
    keep_alive_loop();
  }};
  read_members();
  return {};
}

caf::error membership::check_tls(int64_t before) {
  auto all = etcd_.get_prefix(keys_.members());
  if (!all)
    return all.error();
  for (const auto& kv : all->kvs) {
    auto m = decode_member(kv.value);
    if (!m || m->id == opts_.node || m->tls == opts_.tls || m->incarnation >= before)
      continue;
    return make_error(cluster_errc::config_mismatch,
                      "member " + m->id.str() + " of cluster '" + opts_.cluster + "' speaks "
                        + (m->tls ? "TLS" : "plain text") + " to the others and this node "
                        + (opts_.tls ? "TLS" : "plain text")
                        + ": start every member with --peer-cert, --peer-key and --peer-ca, "
                          "or none");
  }
  return {};
}

void membership::read_members() {
  auto all = etcd_.get_prefix(keys_.members());
  if (!all)
    return;  // the watch's next reset reads again
  {
    std::lock_guard<std::mutex> guard{mtx_};
    members_.clear();
    for (const auto& kv : all->kvs)
      if (auto m = decode_member(kv.value))
        members_[kv.key] = *m;
  }
  publish();
  if (!watch_)
    watch_ = std::make_unique<etcd::watch>(
      opts_.etcd, keys_.members(), all->revision + 1,
      [this](std::vector<etcd::event> events, int64_t) { apply(events); },
      [this] { read_members(); });
}

void membership::apply(const std::vector<etcd::event>& events) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& e : events) {
      if (e.deleted) {
        members_.erase(e.kv.key);
      } else if (auto m = decode_member(e.kv.value)) {
        members_[e.kv.key] = *m;
      }
    }
  }
  publish();
}

void membership::publish() {
  if (on_members_)
    on_members_(members());
}

void membership::keep_alive_loop() {
  using namespace std::chrono;
  auto period = std::max<milliseconds>(milliseconds{100}, duration_cast<milliseconds>(opts_.ttl) / 3);
  int64_t lease;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    lease = lease_;
  }
  for (;;) {
    auto t0 = steady_clock::now();
    auto ttl = renew_.keep_alive(lease);
    bool lost = false;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (stopping_)
        return;
      if (ttl && *ttl > 0) {
        expires_ = t0 + seconds{*ttl};
        ++renewals_;
      } else {
        ++renewal_failures_;
      }
      // Lost by etcd's word (the lease is gone) or by this node's clock.
      lost = (ttl && *ttl == 0) || steady_clock::now() >= expires_;
      if (lost) {
        alive_ = false;
      } else {
        auto wait = ttl && *ttl > 0 ? period : std::min(period, milliseconds{200});
        // Wake no later than the lease's end, to notice it at once.
        auto until = std::min(steady_clock::now() + wait, expires_);
        if (cv_.wait_until(guard, until, [&] { return stopping_; }))
          return;
        if (steady_clock::now() < expires_)
          continue;
        alive_ = false;
        lost = true;
      }
    }
    if (lost) {
      if (on_lost_)
        on_lost_();
      return;
    }
  }
}

void membership::leave() {
  int64_t lease = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    lease = alive_ ? lease_ : 0;
    alive_ = false;
  }
  cv_.notify_all();
  if (keeper_.joinable())
    keeper_.join();
  watch_.reset();
  if (lease != 0)
    etcd_.revoke(lease);
}

bool membership::alive() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return alive_ && std::chrono::steady_clock::now() < expires_;
}

int64_t membership::incarnation() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return incarnation_;
}

int64_t membership::lease() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return lease_;
}

std::vector<member> membership::members() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<member> out;
  for (const auto& [k, m] : members_)
    out.push_back(m);
  return out;
}

uint64_t membership::renewals() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return renewals_;
}

uint64_t membership::renewal_failures() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return renewal_failures_;
}

} // namespace twin::cluster
