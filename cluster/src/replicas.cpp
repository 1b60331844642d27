// A member's part in the copies of the shards (R > 1): which shards it leads and follows,
// as the table says; the record in etcd of the followers in sync; and the requests of new
// followers to their primary.

#include <nlohmann/json.hpp>

#include "node_impl.hpp"

namespace twin::cluster {

using json = nlohmann::json;
using runtime::make_error;
using runtime::runtime_errc;

namespace {

/// The metadata key that says a store holds a shard as its primary, since the epoch it
/// holds: what a member that restarts finds (or not, its data directory new) of a shard it
/// owned before.
constexpr const char* primary_key = "primary";

} // namespace

bool node::impl::reconcile_replica(shard_id shard, const shard_owner& e) {
  if (e.owner == me) {
    if (!replicas->leads(shard) && e.epoch < members->incarnation()) {
      // Owned by an earlier incarnation of this member: served only if this store is the
      // copy it led (not a new data directory); else an in-sync follower takes it.
      auto held = store.get_meta(shard, primary_key);
      if (!held || !*held || **held != std::to_string(e.epoch)) {
        hand_to_follower(shard, e);
        return false;
      }
    }
    // Promoted, or made owner: batches of the old primary are refused from now on, before
    // the host serves the shard.
    if (replicas->follows(shard)) {
      replicas->unfollow(shard, false);
      failovers.fetch_add(1, std::memory_order_relaxed);
    }
    if (!replicas->leads(shard)) {
      runtime::store_batch mark;
      mark.meta_puts.push_back({shard, primary_key, std::to_string(e.epoch)});
      if (store.write(mark))
        return false;  // tried again at the next change
    }
    replicas->lead(shard, e.epoch);
    replicas->set_replicas(shard, e.followers, e.insync_nodes(), e.replicas);
    return true;
  }
  if (replicas->leads(shard))
    replicas->resign(shard);
  if (!e.owner.empty() && e.follows(me) && e.moving_to != me)
    replicas->follow(shard, e.owner, e.epoch);
  else if (replicas->follows(shard))
    replicas->unfollow(shard, e.moving_to != me);  // a handoff's copy replaces it
  return true;
}

void node::impl::hand_to_follower(shard_id shard, const shard_owner& e) {
  std::map<std::string, int64_t> live;
  for (const auto& m : members->members())
    live[m.id.str()] = m.incarnation;
  auto key = members->keys().shards() + std::to_string(shard.value());
  for (const auto& f : e.insync) {
    auto i = live.find(f.node);
    if (i == live.end() || i->second != f.incarnation || f.node == me)
      continue;
    members->etcd().txn({etcd::compare::mod_is(key, e.epoch),
                         etcd::compare::mod_is(key + "/replicas", e.replicas)},
                        {etcd::op::put(key, json{{"owner", f.node}}.dump()),
                         etcd::op::put(key + "/replicas", encode_replicas({}, {}))});
    return;  // the table's change brings what follows
  }
}

int64_t node::impl::record_insync(shard_id shard, int64_t epoch, const std::string& node,
                                  int64_t incarnation, bool add) {
  auto key = members->keys().shards() + std::to_string(shard.value());
  auto rkey = key + "/replicas";
  for (int tries = 0; tries < 5 && !stopping.load(); ++tries) {
    auto now = members->etcd().get(rkey);
    if (!now)
      return 0;
    std::vector<std::string> followers;
    std::vector<insync_follower> insync;
    int64_t revision = 0;
    if (!now->kvs.empty()) {
      decode_replicas(now->kvs[0].value, followers, insync);
      revision = now->kvs[0].mod_revision;
    }
    auto listed = insync.size();
    insync.erase(std::remove_if(insync.begin(), insync.end(),
                                [&](const insync_follower& f) { return f.node == node; }),
                 insync.end());
    listed -= insync.size();
    if (add) {
      if (std::find(followers.begin(), followers.end(), node) == followers.end())
        return 0;  // not a follower any more
      insync.push_back({node, incarnation});
    }
    // Only while the shard's owner is the one of `epoch`. A removal of a member that is
    // not listed changes nothing, but still checks that.
    std::vector<etcd::op> then;
    if (add || listed > 0)
      then.push_back(etcd::op::put(rkey, encode_replicas(followers, insync)));
    auto r = members->etcd().txn(
      {etcd::compare::mod_is(key, epoch), etcd::compare::mod_is(rkey, revision)}, then);
    if (!r)
      return 0;
    if (r->succeeded)
      return r->revision;
    if (table->get(shard).epoch != epoch)
      return 0;
  }
  return 0;
}

void node::impl::on_follow(const envelope& env) {
  auto generation = std::strtoull(env.bytes.c_str(), nullptr, 10);
  auto base = replicas->add_follower(shard_id{env.shard}, env.epoch, env.from, env.incarnation,
                                     generation);
  answer(env, envelope::answer,
         base ? caf::expected<std::string>{std::to_string(*base)}
              : caf::expected<std::string>{base.error()});
}

void node::impl::on_snapshot(const envelope& env) {
  shard_id shard{env.shard};
  if (!replicas->leads(shard) || table->get(shard).epoch != env.epoch)
    return answer(env, envelope::page,
                  make_error(runtime_errc::conflict, "this member is not the primary of shard "
                                                       + std::to_string(env.shard)));
  auto page = store.read_shard(shard, env.bytes, 1u << 20);
  answer(env, envelope::page,
         page ? caf::expected<std::string>{encode_page(shard, *page)}
              : caf::expected<std::string>{page.error()});
}

} // namespace twin::cluster
