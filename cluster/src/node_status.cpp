// What a member shows of itself: readiness, GET /v1/cluster and its metrics.

#include "node_impl.hpp"

namespace twin::cluster {

using json = nlohmann::json;

std::map<std::string, int64_t> node::impl::incarnations() const {
  std::map<std::string, int64_t> out;
  for (const auto& m : members->members())
    out[m.id.str()] = m.incarnation;
  return out;
}

void node::impl::collect(std::vector<runtime::metrics::family>& out) const {
  using runtime::metrics::family;
  using runtime::metrics::metric_type;
  using runtime::metrics::single;
  family ms{"twin_cluster_members", "Members of the node's cluster, by state.",
            metric_type::gauge, {}};
  std::map<std::string, double> by_state{{"up", 0}, {"draining", 0}};
  for (const auto& m : members->members())
    by_state[m.state] += 1;
  for (const auto& [state, n] : by_state)
    ms.samples.push_back({{{"state", state}}, n, {}});
  out.push_back(std::move(ms));
  out.push_back(single("twin_shards_owned", "Shards this node serves.", metric_type::gauge,
                       host.shards_served()));
  // What the table shows, the same on every member.
  auto live = incarnations();
  double unserved = 0;
  double moving = 0;
  double under = 0;
  auto factor = std::max<uint32_t>(1, opts.replication_factor);
  for (const auto& e : table->all()) {
    unserved += e.owner.empty() || live.count(e.owner) == 0 ? 1 : 0;
    moving += e.moving_to.empty() ? 0 : 1;
    under += !e.owner.empty() && copies_in_sync(e, live) < factor ? 1 : 0;
  }
  out.push_back(single("twin_cluster_shards_under_replicated",
                       "Shards with fewer copies in sync than the replication factor.",
                       metric_type::gauge, under));
  out.push_back(single("twin_replication_failovers_total",
                       "Shards this node took over as a follower because their owner was gone.",
                       metric_type::counter, failovers.load()));
  if (replicas)
    replicas->collect(out);
  if (replica_links) {
    out.push_back(single("twin_replication_link_frames_total",
                         "Frames written on the replication links (batches to followers, "
                         "confirmations to primaries).",
                         metric_type::counter, static_cast<double>(replica_links->sent())));
    out.push_back(single("twin_replication_link_failures_total",
                         "Writes on a replication link that failed (the connection closed, and "
                         "its member's copies start again).",
                         metric_type::counter, static_cast<double>(replica_links->failures())));
    out.push_back(single("twin_replication_link_unsent_bytes",
                         "Bytes the replication links took and have not written yet (what a "
                         "member's connection could not take at once; batches wait beyond "
                         "16 MiB a connection).",
                         metric_type::gauge, static_cast<double>(replica_links->unsent())));
  }
  out.push_back(single("twin_cluster_shards_unserved",
                       "Shards without an owner, or whose owner is not a member now.",
                       metric_type::gauge, unserved));
  out.push_back(single("twin_cluster_handoffs_in_progress",
                       "Shards being handed from one member to another.", metric_type::gauge,
                       moving));
  family handoffs{"twin_handoffs_total", "Shards handed to or taken from another node.",
                  metric_type::counter, {}};
  handoffs.samples.push_back({{{"result", "done"}}, double(handoffs_done.load()), {}});
  handoffs.samples.push_back({{{"result", "failed"}}, double(handoffs_failed.load()), {}});
  out.push_back(std::move(handoffs));
  auto histogram = [&](const char* name, const char* help,
                       const runtime::metrics::histogram& h) {
    family f{name, help, metric_type::histogram, {}};
    runtime::metrics::sample s;
    s.histogram = h.snapshot();
    f.samples.push_back(std::move(s));
    out.push_back(std::move(f));
  };
  histogram("twin_handoff_duration_seconds",
            "Seconds a shard took to come to this node: copied and taken over.",
            handoff_duration);
  histogram("twin_handoff_pause_seconds",
            "Seconds the requests of a shard handed from this node waited: from its release "
            "to the new owner's taking it.",
            handoff_pause);
  out.push_back(single("twin_cluster_forwarded_total",
                       "Requests sent to the member that owns their twin.", metric_type::counter,
                       forwarded.load()));
  out.push_back(single("twin_cluster_forward_failures_total",
                       "Requests that could not be sent to their twin's owner.",
                       metric_type::counter, forward_failures.load()));
  out.push_back(single("twin_cluster_received_total",
                       "Messages from other members (requests, replies, pages, queries).",
                       metric_type::counter, received.load()));
  out.push_back(single("twin_cluster_redirected_total",
                       "Requests from other members passed on to the owner this node knows.",
                       metric_type::counter, redirected.load()));
  out.push_back(single("twin_cluster_pending_requests",
                       "Forwarded requests awaiting their answer.", metric_type::gauge,
                       pending.size()));
  histogram("twin_cluster_forward_latency_seconds",
            "Seconds from forwarding a request to its answer.", forward_latency);
  out.push_back(single("twin_etcd_round_trips_total", "Requests to etcd.", metric_type::counter,
                       members->etcd().round_trips()));
  out.push_back(single("twin_etcd_failures_total", "Requests to etcd that failed.",
                       metric_type::counter, members->etcd().failures()));
  family renewals{"twin_cluster_lease_renewals_total",
                  "Renewals of the node's membership lease.", metric_type::counter, {}};
  renewals.samples.push_back({{{"result", "ok"}}, double(members->renewals()), {}});
  renewals.samples.push_back({{{"result", "failed"}}, double(members->renewal_failures()), {}});
  out.push_back(std::move(renewals));
  out.push_back(single("twin_cluster_leases_lost_total",
                       "Times the node lost its membership and stopped serving.",
                       metric_type::counter, leases_lost.load()));
  out.push_back(single("twin_cluster_out_of_order_total",
                       "Messages from other members that came out of order on their link.",
                       metric_type::counter, links->out_of_order()));
  out.push_back(single("twin_cluster_event_watchers",
                       "Members this node relays its twins' change events to.",
                       metric_type::gauge, streams->watchers()));
}

std::pair<bool, std::string> node::ready() const {
  auto& d = *impl_;
  if (!d.started.load() || !d.members || d.lost.load() || !d.members->alive())
    return {false, "not a member of cluster '" + d.opts.cluster + "' now"};
  uint32_t mine = 0;
  uint32_t served = 0;
  for (uint32_t s = 0; s < d.shard_count; ++s)
    if (d.table->get(shard_id{s}).owner == d.me) {
      ++mine;
      served += d.host.serves(shard_id{s}) ? 1 : 0;
    }
  auto detail = "member of cluster '" + d.opts.cluster + "' (incarnation "
                + std::to_string(d.members->incarnation()) + "), serving " + std::to_string(served)
                + " of the " + std::to_string(mine) + " shards it owns";
  if (d.replicas) {
    uint32_t under = 0;
    auto live = d.incarnations();
    for (const auto& e : d.table->all())
      under += !e.owner.empty() && copies_in_sync(e, live) < d.opts.replication_factor ? 1 : 0;
    detail += "; " + std::to_string(under) + " shards of the cluster have fewer than "
              + std::to_string(d.opts.replication_factor) + " copies in sync";
  }
  return {served == mine, detail};
}

json node::status() const {
  auto& d = *impl_;
  json out{{"node", d.me}, {"cluster", d.opts.cluster}, {"shards", d.shard_count}};
  auto owners = d.table ? d.table->all() : std::vector<shard_owner>{};
  std::map<std::string, uint32_t> owned, follows;
  json table = json::array();
  for (uint32_t s = 0; s < owners.size(); ++s) {
    ++owned[owners[s].owner];
    for (const auto& f : owners[s].followers)
      ++follows[f];
    json entry{{"shard", s}, {"owner", owners[s].owner}, {"epoch", owners[s].epoch}};
    if (d.replicas) {
      entry["followers"] = owners[s].followers;
      entry["insync"] = owners[s].insync_nodes();
    }
    table.push_back(std::move(entry));
  }
  std::set<std::string> draining;
  if (d.members)
    if (auto drains = d.members->etcd().get_prefix(d.members->keys().drains()))
      for (const auto& kv : drains->kvs)
        draining.insert(kv.key.substr(d.members->keys().drains().size()));
  json ms = json::array();
  if (d.members)
    for (const auto& m : d.members->members()) {
      json entry{{"node", m.id.str()},
                 {"state", draining.count(m.id.str()) ? "draining" : m.state},
                 {"incarnation", m.incarnation},
                 {"cluster", m.cluster_address},
                 {"http", m.http_url},
                 {"shards", owned[m.id.str()]}};
      if (d.replicas)
        entry["follows"] = follows[m.id.str()];
      ms.push_back(std::move(entry));
    }
  out["members"] = std::move(ms);
  out["leader"] = d.coord && d.coord->leading();
  out["shard_table"] = std::move(table);
  out["unowned"] = owned[""];
  json handoffs = json::array();
  for (uint32_t s = 0; s < owners.size(); ++s)
    if (!owners[s].moving_to.empty())
      handoffs.push_back({{"shard", s}, {"from", owners[s].owner}, {"to", owners[s].moving_to}});
  out["handoffs"] = std::move(handoffs);
  auto factor = std::max<uint32_t>(1, d.opts.replication_factor);
  json under = json::array();
  auto live = d.members ? d.incarnations() : std::map<std::string, int64_t>{};
  for (uint32_t s = 0; s < owners.size(); ++s)
    if (!owners[s].owner.empty() && copies_in_sync(owners[s], live) < factor)
      under.push_back(s);
  json local = json::array();
  if (d.replicas)
    for (const auto& r : d.replicas->status()) {
      json x{{"shard", r.shard}, {"role", r.role}, {"seq", r.seq}};
      if (r.role == "primary") {
        x["copies"] = r.copies;
        x["lag_batches"] = r.lag;
        x["lag_seconds"] = r.lag_seconds;
      } else {
        x["state"] = r.state;
      }
      local.push_back(std::move(x));
    }
  out["replication"] = {{"factor", factor},
                        {"min_insync", d.replicas ? d.replicas->needed() : 1},
                        {"under_replicated", std::move(under)},
                        {"local", std::move(local)}};
  return out;
}

} // namespace twin::cluster
