#pragma once

// A page of a shard's entries as bytes (schemas/cluster.capnp), to copy a shard between
// members. Private to the cluster module.

#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "twin/runtime/state_store.hpp"

namespace twin::cluster {

std::string encode_page(runtime::shard_id shard, const runtime::shard_page& page);

/// Decodes a page of `shard`; `invalid_argument` if the bytes are malformed, name another
/// shard, or hold an entry of a twin of another shard.
caf::expected<runtime::shard_page> decode_page(std::string_view bytes, runtime::shard_id shard,
                                               uint32_t shard_count);

} // namespace twin::cluster
