// A primary's shipping of a shard's batches, in one process with a memory store and the
// envelopes it sends captured: each write of the shard goes to its follower, numbered in
// order; a follower that refuses a batch gets no more until it follows anew; a refusal of
// a batch shipped before the follower's current follow (late, of an earlier one) does not
// stop the current one.

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "page_codec.hpp"
#include "replication.hpp"
#include "twin/cluster/tracking_store.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::test {
namespace {

using namespace twin::cluster;
using runtime::shard_id;
using runtime::twin_id;

/// The host's own commit point: not used by the shipping this test drives.
struct unused_commit final : runtime::commit_point {
  void submit(const twin_id&, runtime::store_batch, runtime::host_counts, done_fn) override {}
  void reset(const twin_id&, done_fn) override {}
  runtime::host_counts counts(shard_id) const override { return {}; }
  runtime::host_counts counts() const override { return {}; }
  std::chrono::steady_clock::time_point durable_at() const override { return {}; }
};

class primary_shipping : public ::testing::Test {
protected:
  static constexpr int64_t epoch = 7;
  static constexpr int64_t incarnation = 3;

  primary_shipping()
    : inner_(runtime::make_memory_store(16)),
      store_(*inner_),
      repl_(store_, local_, "p", options(), send(), ask(), insync()) {}

  static replication_options options() {
    replication_options o;
    o.factor = 2;
    return o;
  }
  replication::send_fn send() {
    return [this](const std::string& node, envelope env) {
      std::lock_guard<std::mutex> guard{mtx_};
      if (env.kind == envelope::replicate)
        shipped_[node].push_back(std::move(env));
      return true;
    };
  }
  static replication::ask_fn ask() {
    return [](const std::string&, envelope, std::chrono::milliseconds) {
      return caf::expected<std::string>{std::string{}};
    };
  }
  static replication::insync_fn insync() {
    return [](shard_id, int64_t, const std::string&, int64_t, bool) { return int64_t{1}; };
  }

  /// A twin of `shard`.
  twin_id in(uint32_t shard) {
    for (int i = 0;; ++i) {
      auto id = twin_id::trusted("t:" + std::to_string(i));
      if (runtime::shard_of(id, store_.shard_count()).value() == shard)
        return id;
    }
  }
  void write(uint32_t shard) {
    runtime::store_batch b;
    b.puts.emplace_back(in(shard), "record");
    ASSERT_FALSE(store_.write(b));
  }
  /// The numbers of the batches shipped to `node` so far.
  std::vector<uint64_t> seqs(const std::string& node) {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<uint64_t> out;
    for (const auto& env : shipped_[node]) {
      auto batches = decode_replica_batches(env.bytes, store_.shard_count());
      EXPECT_TRUE(batches);
      if (batches)
        for (const auto& b : *batches)
          out.push_back(b.seq);
    }
    return out;
  }
  void refuse(uint32_t shard, uint64_t seq, uint64_t generation) {
    envelope env;
    env.kind = envelope::replica_acks;
    env.from = "f";
    env.incarnation = incarnation;
    env.bytes = encode_replica_acks(
      {{shard, epoch, seq, "this member does not follow the shard", false, generation}});
    repl_.on_acks(env);
  }

  std::unique_ptr<runtime::state_store> inner_;
  tracking_store store_;
  unused_commit local_;
  replication repl_;
  std::mutex mtx_;
  std::map<std::string, std::vector<envelope>> shipped_;
};

TEST_F(primary_shipping, a_refusal_stops_the_follow_but_a_late_one_of_an_earlier_follow_does_not) {
  const uint32_t s = 5;
  repl_.lead(shard_id{s}, epoch);
  repl_.set_replicas(shard_id{s}, {"f"}, {}, 1);
  ASSERT_TRUE(repl_.add_follower(shard_id{s}, epoch, "f", incarnation, 1));
  write(s);
  write(s);
  EXPECT_EQ(seqs("f"), (std::vector<uint64_t>{1, 2}));

  // The follower refuses batch 2 (it followed no more): nothing more goes to it.
  refuse(s, 2, 0);
  write(s);
  EXPECT_EQ(seqs("f"), (std::vector<uint64_t>{1, 2}));

  // It follows anew (after batch 3), then a refusal of batch 1 comes, late: of the
  // earlier follow. The new follow still gets what comes.
  auto base = repl_.add_follower(shard_id{s}, epoch, "f", incarnation, 2);
  ASSERT_TRUE(base);
  EXPECT_EQ(*base, 3u);
  refuse(s, 1, 0);
  write(s);
  EXPECT_EQ(seqs("f"), (std::vector<uint64_t>{1, 2, 4}));

  // A refusal of a batch of this follow stops it.
  refuse(s, 4, 0);
  write(s);
  EXPECT_EQ(seqs("f"), (std::vector<uint64_t>{1, 2, 4}));
}

} // namespace
} // namespace twin::test
