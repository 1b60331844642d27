// The shard table's balance: every member within one shard of S/N, and no more shards
// moved than balance needs, over joins and leaves.

#include <map>
#include <random>

#include <gtest/gtest.h>

#include "twin/cluster/placement.hpp"

namespace twin::cluster {
namespace {

std::vector<std::string> names(int n, int from = 0) {
  std::vector<std::string> out;
  for (int i = from; i < from + n; ++i)
    out.push_back("node-" + std::to_string(i));
  return out;
}

std::map<std::string, size_t> loads(const assignment& a) {
  std::map<std::string, size_t> out;
  for (const auto& owner : a)
    ++out[owner];
  return out;
}

/// Every shard has a member for owner, and each member holds S/N rounded down or up.
void expect_balanced(const assignment& a, const std::vector<std::string>& members) {
  auto l = loads(a);
  EXPECT_EQ(l.count(""), 0u);
  EXPECT_EQ(l.size(), members.size());
  for (const auto& m : members) {
    EXPECT_GE(l[m], a.size() / members.size()) << m;
    EXPECT_LE(l[m], (a.size() + members.size() - 1) / members.size()) << m;
  }
}

TEST(placement, a_first_assignment_is_balanced) {
  auto a = balance(assignment(1024), names(3));
  expect_balanced(a, names(3));
  EXPECT_EQ(moved(assignment(1024), a), 0u);  // nothing had an owner
  EXPECT_EQ(balance(a, {}), assignment(1024));
}

TEST(placement, a_join_moves_only_the_new_members_share) {
  auto a = balance(assignment(1024), names(3));
  auto b = balance(a, names(4));
  expect_balanced(b, names(4));
  EXPECT_EQ(moved(a, b), 256u);  // S/(N+1): what the new member needs
  EXPECT_EQ(loads(b)["node-3"], 256u);
  for (size_t s = 0; s < a.size(); ++s)  // shards move only to the new member
    if (a[s] != b[s])
      EXPECT_EQ(b[s], "node-3");
}

TEST(placement, a_leave_moves_only_the_leavers_shards) {
  auto a = balance(assignment(1024), names(4));
  auto rest = names(3);
  auto b = balance(a, rest);
  expect_balanced(b, rest);
  EXPECT_EQ(moved(a, b), 256u);
  for (size_t s = 0; s < a.size(); ++s)
    if (a[s] != "node-3")
      EXPECT_EQ(a[s], b[s]);
}

TEST(placement, random_joins_and_leaves_stay_balanced_and_move_the_minimum) {
  std::mt19937 rng{7};
  std::vector<std::string> members = names(5);
  int next = 5;
  auto a = balance(assignment(4096), members);
  for (int step = 0; step < 200; ++step) {
    auto before = members;
    if (members.size() > 1 && rng() % 2 == 0)
      members.erase(members.begin() + static_cast<long>(rng() % members.size()));
    else
      members.push_back("node-" + std::to_string(next++));
    auto b = balance(a, members);
    expect_balanced(b, members);
    // The minimum: shards of members that left, plus what members above their new share
    // must give up.
    auto old = loads(a);
    size_t must = 0;
    auto l = loads(b);
    for (const auto& [m, n] : old)
      must += l.count(m) ? (n > l[m] ? n - l[m] : 0) : n;
    EXPECT_EQ(moved(a, b), must) << "step " << step;
    EXPECT_EQ(balance(b, members), b);  // stable: nothing moves without a change
    a = std::move(b);
  }
}

TEST(placement, the_recommended_shard_count_gives_each_member_at_least_32) {
  EXPECT_EQ(recommended_shard_count(1), 1024u);
  EXPECT_EQ(recommended_shard_count(32), 1024u);
  EXPECT_EQ(recommended_shard_count(100), 4096u);
  EXPECT_EQ(recommended_shard_count(1000), 32768u);
  EXPECT_EQ(recommended_shard_count(100000), 32768u);
}

} // namespace
} // namespace twin::cluster
