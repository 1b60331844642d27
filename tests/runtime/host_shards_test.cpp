// A host serves shards: it releases them (holding their requests in order while their
// twins passivate, then handing them on) and adopts them, and serves nothing else.

#include <thread>

#include "host_fixture.hpp"

namespace twin::test {
namespace {

/// Keeps what is routed to it, in order: where a shard's requests go once released.
class parking_router : public router {
public:
  void route(const twin_id& id, twin_request req) override {
    std::lock_guard<std::mutex> guard{mtx};
    parked.push_back({id, std::move(req)});
  }
  std::vector<routed_request> take() {
    std::lock_guard<std::mutex> guard{mtx};
    return std::exchange(parked, {});
  }
  std::mutex mtx;
  std::vector<routed_request> parked;
};

/// The held requests `release` hands over, per shard.
struct handed {
  std::mutex mtx;
  std::map<uint32_t, std::vector<routed_request>> held;
  host::release_fn fn() {
    return [this](shard_id shard, std::vector<routed_request> h) {
      std::lock_guard<std::mutex> guard{mtx};
      held[shard.value()] = std::move(h);
    };
  }
  size_t shards() {
    std::lock_guard<std::mutex> guard{mtx};
    return held.size();
  }
};

/// A twin id of `shard` among `count`, the n-th such.
std::string id_in(uint32_t shard, uint32_t count, int n) {
  for (int i = 0, found = 0;; ++i) {
    auto x = "f:s" + std::to_string(shard) + "-" + std::to_string(i);
    if (shard_of(id(x), count).value() == shard && found++ == n)
      return x;
  }
}

class host_shards_test : public host_test {
protected:
  host_shards_test() { shard_count_ = 4; }
};

TEST_F(host_shards_test, a_released_shard_is_served_elsewhere_and_adopted_back_whole) {
  start();
  ASSERT_EQ(h().shard_count(), 4u);
  ASSERT_EQ(h().shards_served(), 4u);
  auto a = id_in(1, 4, 0);
  auto b = id_in(2, 4, 0);
  ASSERT_TRUE(put(h(), a, "motor", "", {{"temperature", value{20.0}}}));
  ASSERT_TRUE(put(h(), b, "motor", "", {{"temperature", value{30.0}}}));
  handed out;
  ASSERT_FALSE(h().release({shard_id{1}}, out.fn()));
  ASSERT_TRUE(eventually([&] { return out.shards() == 1; }));
  EXPECT_FALSE(h().serves(shard_id{1}));
  EXPECT_EQ(h().shards_served(), 3u);
  EXPECT_EQ(h().counts().twins, 1);  // those of the shards it serves
  EXPECT_TRUE(out.held[1].empty());
  // Its twin passivated with its state durable; without a fallback, it is not served.
  EXPECT_EQ(decode_record(**store_->get(id(a)))->reported.at("temperature"), value{20.0});
  auto refused = get(h(), a);
  ASSERT_FALSE(refused);
  EXPECT_EQ(error_code(refused.error()), runtime_errc::not_owner);
  EXPECT_TRUE(get(h(), b));  // the other shards go on
  // Releasing it again, or a shard out of range, is refused.
  EXPECT_EQ(error_code(h().release({shard_id{1}}, out.fn())), runtime_errc::conflict);
  EXPECT_EQ(error_code(h().release({shard_id{9}}, out.fn())), runtime_errc::conflict);
  ASSERT_FALSE(h().adopt(shard_id{1}));
  EXPECT_TRUE(h().serves(shard_id{1}));
  EXPECT_EQ(get(h(), a)->reported.at("temperature"), value{20.0});
  EXPECT_EQ(h().counts().twins, 2);
}

TEST_F(host_shards_test, a_member_serves_only_the_shards_it_adopted) {
  host_options opts;
  opts.serve_all_shards = false;
  start(opts);
  EXPECT_EQ(h().shards_served(), 0u);
  auto a = id_in(3, 4, 0);
  auto refused = put(h(), a, "motor");
  ASSERT_FALSE(refused);
  EXPECT_EQ(error_code(refused.error()), runtime_errc::not_owner);
  ASSERT_FALSE(h().adopt(shard_id{3}));
  EXPECT_TRUE(put(h(), a, "motor"));
  EXPECT_EQ(h().counts().twins, 1);
  EXPECT_EQ(error_code(put(h(), id_in(0, 4, 0), "motor").error()), runtime_errc::not_owner);
}

/// Writers keep patching twins of every shard, and adding children under them (which
/// crosses shards with attach requests and ancestor queries), while two shards are
/// released: the release completes, and once the shards are adopted back and the held
/// and parked requests delivered in order, every request is answered without error and
/// each twin holds the last value written to it.
TEST_F(host_shards_test, a_release_under_load_loses_and_reorders_nothing) {
  start();
  parking_router elsewhere;
  h().set_fallback(&elsewhere);
  constexpr int twins = 32;
  constexpr int rounds = 150;
  std::vector<std::string> ids;
  for (int i = 0; i < twins; ++i) {
    ids.push_back(id_in(i % 4, 4, i / 4));
    ASSERT_TRUE(put(h(), ids.back(), "motor"));
  }
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  auto count = [&](bool ok) {
    (ok ? answered : failed).fetch_add(1);
  };
  std::thread patcher{[&] {
    for (int k = 1; k <= rounds; ++k) {
      for (const auto& x : ids) {
        patch_request p;
        p.properties = {{"count", value{int64_t{k}}}};
        p.done = [&](caf::expected<uint64_t> v) { count(static_cast<bool>(v)); };
        h().route(id(x), std::move(p));
      }
      if (k % 10 == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
  }};
  std::thread linker{[&] {
    for (int c = 0; c < 40; ++c) {
      put_request p;
      p.type = "motor";
      p.parent = id(ids[(c * 7) % twins]);
      p.done = [&](caf::expected<put_result> v) { count(static_cast<bool>(v)); };
      h().route(id("f:child-" + std::to_string(c)), std::move(p));
      std::this_thread::sleep_for(std::chrono::microseconds{300});
    }
  }};
  std::this_thread::sleep_for(std::chrono::milliseconds{5});
  handed out;
  ASSERT_FALSE(h().release({shard_id{1}, shard_id{2}}, out.fn()));
  EXPECT_TRUE(eventually([&] { return out.shards() == 2; }, std::chrono::seconds{20}));
  patcher.join();
  linker.join();
  // What the cluster would do once ownership moved: deliver the held requests first.
  ASSERT_FALSE(h().adopt(shard_id{1}));
  ASSERT_FALSE(h().adopt(shard_id{2}));
  size_t held = 0;
  for (auto shard : {1u, 2u})
    for (auto& r : out.held[shard]) {
      h().route(r.id, std::move(r.req));
      ++held;
    }
  auto parked = elsewhere.take();
  EXPECT_GT(held + parked.size(), 0u);  // the release met requests in flight
  for (auto& r : parked)
    h().route(r.id, std::move(r.req));
  int expected = twins * rounds + 40;
  ASSERT_TRUE(eventually([&] { return answered + failed == expected; }, std::chrono::seconds{20}))
    << answered << " answered, " << failed << " failed of " << expected;
  EXPECT_EQ(failed.load(), 0);
  for (const auto& x : ids)
    EXPECT_EQ(prop(h(), x, "count"), value{int64_t{rounds}}) << x;
  for (int c = 0; c < 40; ++c)
    EXPECT_EQ(get(h(), "f:child-" + std::to_string(c))->parent, id(ids[(c * 7) % twins]));
}

} // namespace
} // namespace twin::test
