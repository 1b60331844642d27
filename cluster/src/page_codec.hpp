#pragma once

// What members send each other of their stores, as bytes (schemas/cluster.capnp): a page
// of a shard's entries (a handoff's copy, a new follower's), and a primary's batches for
// its followers with their acknowledgements. Private to the cluster module.

#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/state_store.hpp"

namespace twin::cluster {

std::string encode_page(runtime::shard_id shard, const runtime::shard_page& page);

/// Decodes a page of `shard`; `invalid_argument` if the bytes are malformed, name another
/// shard, or hold an entry of a twin of another shard.
caf::expected<runtime::shard_page> decode_page(std::string_view bytes, runtime::shard_id shard,
                                               uint32_t shard_count);

/// One shard's part of a primary's group commit: the batches (or the parts of them) that
/// wrote it, in order.
struct replica_part {
  uint32_t shard = 0;
  int64_t epoch = 0;
  uint64_t seq = 0;
  std::vector<const runtime::store_batch*> batches;
};

struct replica_batch {
  uint32_t shard = 0;
  int64_t epoch = 0;
  uint64_t seq = 0;
  std::vector<runtime::store_batch> changes;
};

struct replica_ack {
  uint32_t shard = 0;
  int64_t epoch = 0;
  uint64_t seq = 0;
  std::string refused;  ///< why the follower takes no more batches of this epoch; "": none
  bool caught_up = false;
  /// The follower's follow of the shard it belongs to (each copy from the start is a new
  /// one, announced in its `follow` request): the primary ignores a word of an earlier
  /// one, which may come after the request on the direct link. 0: none.
  uint64_t generation = 0;
};

std::string encode_replica_batches(const std::vector<replica_part>& parts);
/// `invalid_argument` if malformed, or if an entry is not of its batch's shard.
caf::expected<std::vector<replica_batch>> decode_replica_batches(std::string_view bytes,
                                                                 uint32_t shard_count);
std::string encode_replica_acks(const std::vector<replica_ack>& acks);
caf::expected<std::vector<replica_ack>> decode_replica_acks(std::string_view bytes);

} // namespace twin::cluster
