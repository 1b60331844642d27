// The gateway between a real Mosquitto and the twins (a router the test controls):
// telemetry whose twin's shard is between owners waits in the node, in order, while the
// session with the broker and the telemetry of every other twin go on.

#include <algorithm>
#include <map>
#include <mutex>

#include <gtest/gtest.h>

#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"
#include "test_support.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/router.hpp"

namespace twin::test {
namespace {

using namespace std::chrono_literals;

/// Twins that take telemetry (recording its "n"), except those closed: they answer
/// `unavailable`, as a twin does whose shard is between owners.
class closable_router : public runtime::router {
public:
  void close(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_[id] = true;
  }
  void open(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_[id] = false;
  }
  std::vector<double> applied(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx_};
    return applied_[id];
  }
  /// The times the readings applied to `id` carried (0: none).
  std::vector<int64_t> stamps(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx_};
    return stamps_[id];
  }
  int refused(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx_};
    return refused_[id];
  }

  void route(const runtime::twin_id& id, runtime::twin_request req) override {
    auto* in = std::get_if<runtime::ingest_request>(&req);
    ASSERT_NE(in, nullptr);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (closed_[id.str()]) {
        ++refused_[id.str()];
      } else {
        applied_[id.str()].push_back(in->values.at("n").as_double());
        stamps_[id.str()].push_back(in->ts_ms);
        in = nullptr;
      }
    }
    if (in != nullptr)
      return runtime::fail_request(
        req, runtime::make_error(runtime::runtime_errc::unavailable, "its shard has no owner"));
    std::get<runtime::ingest_request>(req).done(uint64_t{1});
  }

private:
  std::mutex mtx_;
  std::map<std::string, bool> closed_;
  std::map<std::string, std::vector<double>> applied_;
  std::map<std::string, std::vector<int64_t>> stamps_;
  std::map<std::string, int> refused_;
};

/// A broker, twins the test opens and closes, and the gateway's options for both.
class mqtt_gateway_test : public ::testing::Test {
protected:
  void SetUp() override {
    if (mosquitto_path().empty())
      GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the MQTT tests did not run";
    port_ = free_port();
    broker_ = start_mosquitto(dir_, port_);
    opts_.client.url = "tcp://127.0.0.1:" + std::to_string(port_);
    opts_.client.client_id = "gateway-test";
  }

  static std::string reading(int n) { return "{\"n\": " + std::to_string(n) + "}"; }

  temp_dir dir_;
  int port_ = 0;
  std::unique_ptr<process> broker_;
  closable_router twins_;
  ingest::mqtt_options opts_;
};

TEST_F(mqtt_gateway_test, telemetry_for_a_shard_between_owners_waits_in_order_the_rest_goes_on) {
  ingest::mqtt_gateway gateway{twins_, opts_};
  ASSERT_FALSE(gateway.start(5s));

  twins_.close("t:a");
  device d{port_};
  for (int n = 1; n <= 3; ++n)
    ASSERT_TRUE(d.publish("twins/t:a/telemetry", reading(n)));
  ASSERT_TRUE(eventually([&] { return twins_.refused("t:a") >= 2; }, 5s));
  // The others' telemetry is applied while t:a's waits.
  for (int n = 1; n <= 3; ++n)
    ASSERT_TRUE(d.publish("twins/t:b/telemetry", reading(n)));
  EXPECT_TRUE(eventually([&] { return twins_.applied("t:b").size() == 3; }, 2s));
  EXPECT_TRUE(twins_.applied("t:a").empty());

  // Its shard has an owner again: t:a's readings are applied, in the order they came.
  twins_.open("t:a");
  ASSERT_TRUE(eventually([&] { return twins_.applied("t:a").size() == 3; }, 5s));
  EXPECT_EQ(twins_.applied("t:a"), (std::vector<double>{1, 2, 3}));
  // Held, they carry the time they came (so a twin skips one that newer telemetry passed);
  // the others go as they came, without a time.
  auto stamps = twins_.stamps("t:a");
  EXPECT_TRUE(std::is_sorted(stamps.begin(), stamps.end()));
  EXPECT_GT(stamps.front(), 0);
  EXPECT_LE(stamps.back(), runtime::now_ms());
  EXPECT_EQ(twins_.stamps("t:b"), (std::vector<int64_t>{0, 0, 0}));
  // The last reading is counted when its twin's answer comes back, just after it applied.
  EXPECT_TRUE(eventually([&] { return gateway.counts().accepted == 6; }, 2s));
  auto counts = gateway.counts();
  EXPECT_EQ(counts.deferred, 0u);
  EXPECT_GE(counts.retries, 2u);
  EXPECT_EQ(counts.connections, 1u) << "the session with the broker was interrupted";
  gateway.stop(1s);
}

TEST_F(mqtt_gateway_test, telemetry_held_when_the_node_stops_is_left_to_the_broker) {
  twins_.close("t:a");
  {
    ingest::mqtt_gateway gateway{twins_, opts_};
    ASSERT_FALSE(gateway.start(5s));
    device d{port_};
    ASSERT_TRUE(d.publish("twins/t:a/telemetry", reading(7)));
    ASSERT_TRUE(eventually([&] { return twins_.refused("t:a") >= 1; }, 5s));
    auto started = std::chrono::steady_clock::now();
    gateway.stop(5s);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s)
      << "the stop waited on held telemetry";
    EXPECT_EQ(gateway.counts().deferred, 1u);
  }
  // Unacknowledged, the broker sends it again to the same session, which a node that
  // starts again takes.
  twins_.open("t:a");
  ingest::mqtt_gateway again{twins_, opts_};
  ASSERT_FALSE(again.start(5s));
  EXPECT_TRUE(eventually([&] { return twins_.applied("t:a") == std::vector<double>{7}; }, 5s));
  again.stop(1s);
}

} // namespace
} // namespace twin::test
