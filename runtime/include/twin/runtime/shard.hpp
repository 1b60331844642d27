#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// Shards of a node or cluster: fixed when its store (or the cluster) is created. A node
/// alone owns them all.
constexpr uint32_t default_shard_count = 1024;
/// The most shards a store or cluster may have (a shard is a 2-byte key prefix).
constexpr uint32_t max_shard_count = 65535;

/// One shard: the unit of ownership, handoff and storage ranges.
class shard_id {
public:
  constexpr shard_id() = default;
  constexpr explicit shard_id(uint32_t n) : n_(n) {}
  constexpr uint32_t value() const noexcept { return n_; }

  friend constexpr bool operator==(shard_id a, shard_id b) { return a.n_ == b.n_; }
  friend constexpr bool operator!=(shard_id a, shard_id b) { return a.n_ != b.n_; }
  friend constexpr bool operator<(shard_id a, shard_id b) { return a.n_ < b.n_; }

private:
  uint32_t n_ = 0;
};

/// The stable hash of a twin id (xxh64, seed 0): the same on every node and version.
uint64_t id_hash(std::string_view id);

/// The shard of twin `id` among `shard_count`: `id_hash(id) mod shard_count`.
inline shard_id shard_of(const twin_id& id, uint32_t shard_count) {
  return shard_id{static_cast<uint32_t>(id_hash(id.str()) % shard_count)};
}

/// A node's name in a cluster: `[A-Za-z0-9._-]{1,64}`. A value type.
class node_id {
public:
  node_id() = default;

  /// Validates `text`; returns `runtime_errc::invalid_argument` with the reason if it is
  /// not a node id.
  static caf::expected<node_id> parse(std::string_view text);

  const std::string& str() const noexcept { return text_; }
  bool empty() const noexcept { return text_.empty(); }

  friend bool operator==(const node_id& a, const node_id& b) { return a.text_ == b.text_; }
  friend bool operator!=(const node_id& a, const node_id& b) { return a.text_ != b.text_; }
  friend bool operator<(const node_id& a, const node_id& b) { return a.text_ < b.text_; }

private:
  std::string text_;
};

} // namespace twin::runtime

template <>
struct std::hash<twin::runtime::shard_id> {
  size_t operator()(twin::runtime::shard_id x) const noexcept { return x.value(); }
};

template <>
struct std::hash<twin::runtime::node_id> {
  size_t operator()(const twin::runtime::node_id& x) const {
    return std::hash<std::string>{}(x.str());
  }
};
