// placement_bench: the shard table's balance at a size this machine cannot run as
// processes, simulated without a network. Twins are spread over the shards by their
// ids' hash (as every node does), and the shards over members by the cluster's balance;
// prints the load of the busiest member beside the mean, in twins and in shards, and the
// shards one join and one leave move beside the minimum.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "twin/cluster/placement.hpp"
#include "twin/runtime/shard.hpp"

namespace {

using namespace twin;

struct load {
  double max_over_mean_twins;
  double max_over_mean_shards;
};

load measure(const cluster::assignment& a, const std::vector<uint64_t>& twins_per_shard,
             size_t members) {
  std::vector<std::string> ids;
  std::vector<uint64_t> twins;
  std::vector<uint64_t> shards;
  auto index = [&](const std::string& m) {
    auto i = std::lower_bound(ids.begin(), ids.end(), m);
    return static_cast<size_t>(i - ids.begin());
  };
  ids = a;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  twins.assign(ids.size(), 0);
  shards.assign(ids.size(), 0);
  uint64_t all = 0;
  for (size_t s = 0; s < a.size(); ++s) {
    auto i = index(a[s]);
    twins[i] += twins_per_shard[s];
    shards[i] += 1;
    all += twins_per_shard[s];
  }
  double mean_twins = static_cast<double>(all) / members;
  double mean_shards = static_cast<double>(a.size()) / members;
  return {*std::max_element(twins.begin(), twins.end()) / mean_twins,
          *std::max_element(shards.begin(), shards.end()) / mean_shards};
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"placement_bench: shard balance of a simulated cluster"};
  uint64_t twin_count = 10'000'000;
  uint32_t members = 1000;
  uint32_t shard_count = 0;
  app.add_option("--twins", twin_count, "Twins")->capture_default_str();
  app.add_option("--members", members, "Members")->capture_default_str()->check(CLI::Range(2u, 100000u));
  app.add_option("--shards", shard_count, "Shards (default: the count recommended for --members)");
  CLI11_PARSE(app, argc, argv);
  if (shard_count == 0)
    shard_count = cluster::recommended_shard_count(members);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<uint64_t> per_shard(shard_count);
  std::string id;
  for (uint64_t i = 0; i < twin_count; ++i) {
    id = "plant-" + std::to_string(i % 97) + ":motor-" + std::to_string(i);
    ++per_shard[runtime::id_hash(id) % shard_count];
  }
  std::vector<std::string> names;
  for (uint32_t m = 0; m < members; ++m)
    names.push_back("node-" + std::to_string(m));
  auto a = cluster::balance(cluster::assignment(shard_count), names);
  auto l = measure(a, per_shard, members);

  auto joined = names;
  joined.push_back("node-" + std::to_string(members));
  auto b = cluster::balance(a, joined);
  auto join_moved = cluster::moved(a, b);
  double join_min = static_cast<double>(shard_count) / (members + 1);

  auto left = names;
  left.erase(left.begin() + members / 2);
  auto c = cluster::balance(a, left);
  auto leave_moved = cluster::moved(a, c);
  double leave_min = static_cast<double>(shard_count) / members;
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("placement_bench: %llu twins, %u members, %u shards (%.1f per member); %.1f s\n",
              static_cast<unsigned long long>(twin_count), members, shard_count,
              static_cast<double>(shard_count) / members, secs);
  std::printf("  busiest member / mean, twins:   %.3f   [target <= 1.10]\n",
              l.max_over_mean_twins);
  std::printf("  busiest member / mean, shards:  %.3f   [target <= 1.05]\n",
              l.max_over_mean_shards);
  std::printf("  shards moved by a join:  %zu, minimum S/(N+1) = %.1f: %.3f x   [target <= 1.10 x]\n",
              join_moved, join_min, join_moved / join_min);
  std::printf("  shards moved by a leave: %zu, minimum S/N = %.1f: %.3f x   [target <= 1.10 x]\n",
              leave_moved, leave_min, leave_moved / leave_min);
  bool met = l.max_over_mean_twins <= 1.10 && l.max_over_mean_shards <= 1.05
             && join_moved <= 1.10 * join_min && leave_moved <= 1.10 * leave_min;
  std::printf("  %s\n", met ? "all targets met" : "a target is missed");
  return met ? 0 : 1;
}
