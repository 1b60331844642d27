#include "twin/cluster/placement.hpp"

#include <algorithm>
#include <map>

namespace twin::cluster {

assignment balance(const assignment& current, std::vector<std::string> members) {
  assignment next(current.size());
  if (members.empty())
    return next;
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  auto n = members.size();
  std::map<std::string, size_t> held;
  for (const auto& m : members)
    held[m] = 0;
  for (const auto& owner : current)
    if (auto i = held.find(owner); i != held.end())
      ++i->second;
  // Shares: the S mod N members that hold most now get one shard more.
  auto order = members;
  std::stable_sort(order.begin(), order.end(),
                   [&](const std::string& a, const std::string& b) { return held[a] > held[b]; });
  std::map<std::string, size_t> share;
  for (size_t i = 0; i < n; ++i)
    share[order[i]] = current.size() / n + (i < current.size() % n ? 1 : 0);
  // Keep what fits each share; pool the rest.
  std::map<std::string, size_t> kept;
  std::vector<size_t> pool;
  for (size_t s = 0; s < current.size(); ++s) {
    auto i = share.find(current[s]);
    if (i != share.end() && kept[current[s]] < i->second) {
      ++kept[current[s]];
      next[s] = current[s];
    } else {
      pool.push_back(s);
    }
  }
  // The pool fills the shares, member by member in id order.
  auto p = pool.begin();
  for (const auto& m : members)
    for (auto k = kept[m]; k < share[m] && p != pool.end(); ++k)
      next[*p++] = m;
  return next;
}

size_t moved(const assignment& a, const assignment& b) {
  size_t n = 0;
  for (size_t s = 0; s < a.size() && s < b.size(); ++s)
    if (!a[s].empty() && a[s] != b[s])
      ++n;
  return n;
}

uint32_t recommended_shard_count(uint32_t members) {
  uint32_t s = 1024;
  while (s < 32768 && s < 32ull * members)
    s *= 2;
  return s;
}

} // namespace twin::cluster
