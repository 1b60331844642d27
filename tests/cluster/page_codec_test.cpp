// The wire format of replication: a primary's batches of several shards in one envelope,
// refused whole when truncated or of the wrong shard, and the follower's answers.

#include <gtest/gtest.h>

#include "page_codec.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::cluster {
namespace {

constexpr uint32_t shards = 16;

/// A twin id of shard `shard`.
runtime::twin_id id_in(uint32_t shard, int start = 0) {
  for (int i = start;; ++i) {
    auto id = *runtime::twin_id::parse("t:" + std::to_string(i));
    if (runtime::shard_of(id, shards).value() == shard)
      return id;
  }
}

TEST(replica_codec, an_envelope_gives_every_batch_in_order) {
  runtime::store_batch a, b, c;
  a.puts.push_back({id_in(3), "record a"});
  b.puts.push_back({id_in(5), "record b"});
  c.deletes.push_back(id_in(3, 1000));
  replica_part first{3, 7, 1, {&a, &c}};
  replica_part second{5, 2, 9, {&b}};

  auto decoded = decode_replica_batches(encode_replica_batches({first, second}), shards);
  ASSERT_TRUE(decoded) << runtime::error_message(decoded.error());
  ASSERT_EQ(decoded->size(), 2u);
  EXPECT_EQ((*decoded)[0].shard, 3u);
  EXPECT_EQ((*decoded)[0].epoch, 7);
  EXPECT_EQ((*decoded)[0].seq, 1u);
  ASSERT_EQ((*decoded)[0].changes.size(), 2u);
  EXPECT_EQ((*decoded)[0].changes[0].puts.at(0).second, "record a");
  EXPECT_EQ((*decoded)[0].changes[1].deletes.at(0), id_in(3, 1000));
  EXPECT_EQ((*decoded)[1].shard, 5u);
  EXPECT_EQ((*decoded)[1].epoch, 2);
  EXPECT_EQ((*decoded)[1].seq, 9u);
}

TEST(replica_codec, a_truncated_or_foreign_envelope_is_refused_whole) {
  runtime::store_batch a;
  a.puts.push_back({id_in(3), std::string(200, 'x')});
  auto one = encode_replica_batches({replica_part{3, 1, 1, {&a}}});
  EXPECT_FALSE(decode_replica_batches(one.substr(0, one.size() - 5), shards));
  EXPECT_FALSE(decode_replica_batches(one, 2));  // shard 3 of a cluster of 2 shards
  // An entry of another shard than its batch's.
  auto wrong = encode_replica_batches({replica_part{4, 1, 1, {&a}}});
  EXPECT_FALSE(decode_replica_batches(wrong, shards));
}

TEST(replica_codec, answers_keep_their_positions_and_refusals) {
  std::vector<replica_ack> acks{{3, 7, 12, {}, true, 41},
                                {5, 2, 0, "a batch is missing", false, 0}};
  auto decoded = decode_replica_acks(encode_replica_acks(acks));
  ASSERT_TRUE(decoded);
  ASSERT_EQ(decoded->size(), 2u);
  EXPECT_EQ((*decoded)[0].seq, 12u);
  EXPECT_TRUE((*decoded)[0].caught_up);
  EXPECT_EQ((*decoded)[0].generation, 41u);  // the follow it belongs to
  EXPECT_EQ((*decoded)[1].refused, "a batch is missing");
  EXPECT_EQ((*decoded)[1].generation, 0u);
  EXPECT_FALSE(decode_replica_acks("not a message"));
}

} // namespace
} // namespace twin::cluster
