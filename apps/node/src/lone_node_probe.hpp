#pragma once

// The cluster's metrics of a node that is alone.

#include <atomic>
#include <string>
#include <vector>

#include "twin/runtime/metrics.hpp"
#include "twin/runtime/shard.hpp"

namespace twin::node {

namespace metrics = runtime::metrics;
using runtime::default_shard_count;

/// A node alone, as the cluster's metrics show it: one member, up once started, owning
/// every shard; nothing is handed off or forwarded.
class lone_node_probe final : public metrics::collectable {
public:
  explicit lone_node_probe(const std::atomic<bool>& started) : started_(started) {}
  void collect(std::vector<metrics::family>& out) const override {
    bool up = started_.load();
    metrics::family members{"twin_cluster_members", "Members of the node's cluster, by state.",
                            metrics::metric_type::gauge, {}};
    members.samples.push_back({{{"state", "up"}}, up ? 1.0 : 0.0, {}});
    members.samples.push_back({{{"state", "starting"}}, up ? 0.0 : 1.0, {}});
    out.push_back(std::move(members));
    out.push_back(metrics::single("twin_shards_owned", "Shards this node owns.",
                                  metrics::metric_type::gauge, default_shard_count));
    out.push_back(metrics::single("twin_handoffs_total",
                                  "Shards handed to or taken from another node.",
                                  metrics::metric_type::counter, 0));
    out.push_back(metrics::single("twin_cluster_shards_unserved",
                                  "Shards without an owner, or whose owner is not a member now.",
                                  metrics::metric_type::gauge, 0));
    out.push_back(metrics::single("twin_cluster_handoffs_in_progress",
                                  "Shards being handed from one member to another.",
                                  metrics::metric_type::gauge, 0));
    out.push_back(metrics::single("twin_cluster_forwarded_total",
                                  "Requests sent to the member that owns their twin.",
                                  metrics::metric_type::counter, 0));
    // One copy of every shard, all led here.
    metrics::family replicas{"twin_shard_replicas", "Shard copies on this node, by state.",
                             metrics::metric_type::gauge, {}};
    for (const char* state : {"primary", "under_replicated", "follower", "copying"})
      replicas.samples.push_back(
        {{{"state", state}}, std::string{state} == "primary" ? default_shard_count : 0.0, {}});
    out.push_back(std::move(replicas));
    out.push_back(metrics::single("twin_cluster_shards_under_replicated",
                                  "Shards with fewer copies in sync than the replication factor.",
                                  metrics::metric_type::gauge, 0));
    for (const char* name : {"twin_replication_lag_batches", "twin_replication_lag_seconds"})
      out.push_back(metrics::single(name, "Replication lag (none: one copy).",
                                    metrics::metric_type::gauge, 0));
    for (const char* name : {"twin_replication_failovers_total", "twin_replication_copies_total",
                             "twin_replication_timeouts_total"})
      out.push_back(metrics::single(name, "Replication (none: one copy).",
                                    metrics::metric_type::counter, 0));
    metrics::family latency{"twin_cluster_forward_latency_seconds",
                            "Seconds from forwarding a request to its answer.",
                            metrics::metric_type::histogram, {}};
    metrics::sample none;
    none.histogram = forward_latency_.snapshot();
    latency.samples.push_back(std::move(none));
    out.push_back(std::move(latency));
  }

private:
  const std::atomic<bool>& started_;
  metrics::histogram forward_latency_{metrics::histogram::latency_bounds()};  ///< never fed
};

} // namespace twin::node
