#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace twin::cluster {

/// The owner of each shard (a member's id; empty: none), indexed by shard.
using assignment = std::vector<std::string>;

/// A balanced assignment of the shards of `current` to `members` that moves as few
/// shards as balance allows. Each member gets S/N shards rounded down or up (the members
/// that hold more now keep the larger share); a member keeps the shards it holds up to
/// its share, so a shard moves only if its owner left or holds more than its share, and
/// the shards that move (or had no owner) go to the members short of their share. With
/// no member, no shard has an owner.
assignment balance(const assignment& current, std::vector<std::string> members);

/// The number of shards whose owner differs between `a` and `b` (of equal size), not
/// counting shards that had no owner in `a`.
size_t moved(const assignment& a, const assignment& b);

/// The shard count recommended for a cluster of up to `members` members: a power of two
/// with at least 32 shards per member (so that balance within one shard is within about
/// 3 %), at least 1,024 and at most 32,768.
uint32_t recommended_shard_count(uint32_t members);

} // namespace twin::cluster
