// What the MQTT device path promises about what it acknowledges and applies, with a real
// twind and a real Mosquitto: QoS 1 telemetry is acknowledged to the broker only once it
// is durable (kill -9 at random moments loses nothing), retained telemetry is not applied
// again when the node subscribes again, samples from the future are refused, and the
// node's MQTT session is its own.

#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"

namespace twin::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

class mqtt_durability_test : public mqtt_node_test {
protected:
  /// The sample times of `id`'s level history from `from` on, every page.
  std::set<int64_t> history_times(const std::string& id, int64_t from) {
    std::set<int64_t> out;
    for (int page = 0; page < 1000; ++page) {
      auto r = client_->call("GET", "/v1/twins/" + id + "/history?property=level&limit=10000&from="
                                      + std::to_string(from));
      if (r.status != 200)
        return out;
      auto doc = json::parse(r.body);
      for (const auto& p : doc["points"])
        out.insert(p["ts"].get<int64_t>());
      if (doc["next_from"].is_null())
        return out;
      from = doc["next_from"].get<int64_t>();
    }
    return out;
  }
};

TEST_F(mqtt_durability_test, retained_telemetry_is_not_applied_again_when_the_node_subscribes) {
  device d{broker_port_};
  // Retained without a time: applied as it comes (the node is subscribed), then replaced.
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry", R"({"level": 11.1})", 1, true));
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 11.1; }));
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry", R"({"level": 55.5})"));
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 55.5; }));
  auto version = twin("t:g1")["version"];
  // On subscribing again the broker replays the retained 11.1: dropped and counted.
  stop_node();
  ASSERT_NO_FATAL_FAILURE(start_node());
  ASSERT_TRUE(eventually([&] { return mqtt_result("retained") == 1; }));
  EXPECT_EQ(twin("t:g1")["properties"]["level"], 55.5);
  EXPECT_EQ(twin("t:g1")["version"], version);

  // Retained with a time: ordered by it like any sample, so an old one changes nothing.
  auto old_ts = now_ms() - 3'600'000;
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry",
                        json{{"level", 22.2}, {"ts", old_ts}}.dump(), 1, true));
  ASSERT_TRUE(eventually([&] { return mqtt_result("accepted") == 1; }));
  stop_node();
  ASSERT_NO_FATAL_FAILURE(start_node());
  ASSERT_TRUE(eventually([&] { return mqtt_result("accepted") == 1; }));
  EXPECT_EQ(twin("t:g1")["properties"]["level"], 55.5);
  EXPECT_EQ(twin("t:g1")["version"], version);
}

TEST_F(mqtt_durability_test, samples_from_the_future_are_refused_and_counted) {
  device d{broker_port_};
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry",
                        json{{"level", 49.0}, {"ts", INT64_MAX}}.dump()));
  ASSERT_TRUE(eventually([&] { return mqtt_result("future_ts") == 1; }));
  EXPECT_EQ(twin("t:g1")["properties"]["level"], 1.0);
  EXPECT_NE(node_->stderr_text().find("ahead of the node's clock"), std::string::npos);
  // A device clock 30 s fast is within the skew; an operator's patch still applies.
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry",
                        json{{"level", 50.0}, {"ts", now_ms() + 30'000}}.dump()));
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 50.0; }));
  auto patched = client_->call("PATCH", "/v1/twins/t:g1", R"({"properties": {"level": 30}})",
                               json_type);
  ASSERT_EQ(patched.status, 200u) << patched.body;
  EXPECT_EQ(twin("t:g1")["properties"]["level"], 30.0);
}

class mqtt_session_test : public mqtt_durability_test {
protected:
  std::vector<std::string> node_args() override { return {}; }  // the default client id
};

TEST_F(mqtt_session_test, the_node_session_is_its_own_and_outlives_restarts) {
  auto read_id = [&] {
    std::ifstream in{dir_.sub("data/mqtt-client-id")};
    std::string id;
    std::getline(in, id);
    return id;
  };
  auto id = read_id();
  EXPECT_EQ(id.rfind("twind-", 0), 0u) << id;
  EXPECT_GT(id.size(), std::string{"twind-"}.size() + 8);
  // A client under the name that was once the default takes nothing from the node.
  device intruder{broker_port_, {"twins/+/telemetry"}, "twind"};
  device d{broker_port_};
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry", R"({"level": 42})"));
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 42.0; }));
  EXPECT_EQ(metric("twin_mqtt_connected"), 1);
  EXPECT_EQ(node_->stderr_text().find("lost"), std::string::npos) << node_->stderr_text();
  // The same session after a restart: what was sent meanwhile arrives.
  stop_node();
  ASSERT_TRUE(d.publish("twins/t:g1/telemetry", R"({"level": 43})"));
  ASSERT_NO_FATAL_FAILURE(start_node());
  EXPECT_EQ(read_id(), id);
  ASSERT_TRUE(eventually([&] { return twin("t:g1")["properties"]["level"] == 43.0; }));
}

/// Publishes QoS 1 telemetry as fast as the broker takes it, to `twins` twins, each message
/// with its own sample time (`base` + its number), and remembers which ones the broker
/// acknowledged.
class publisher {
public:
  publisher(int broker_port, int twins, int64_t base) : twins_(twins), base_(base) {
    ingest::mqtt_client_options o;
    o.url = "tcp://127.0.0.1:" + std::to_string(broker_port);
    o.client_id = "test-publisher";
    o.clean_session = true;
    o.max_queued = 2 * window;
    client_ = std::make_unique<ingest::mqtt_client>(
      o, [](const ingest::mqtt_message&, ingest::mqtt_ack ack) { ack.done(); });
    auto err = client_->start();
    EXPECT_FALSE(err) << runtime::error_message(err);
  }

  /// Publishes until `stop` or `max` messages, keeping at most `window` unacknowledged.
  void run(const std::atomic<bool>& stop, int max) {
    for (int i = 0; i < max && !stop.load(); ++i) {
      {
        std::unique_lock<std::mutex> guard{mtx_};
        if (!cv_.wait_for(guard, 30s, [&] { return in_flight_ < window; }))
          return;
        ++in_flight_;
      }
      json payload{{"level", i % 100}, {"ts", base_ + i}};
      bool queued = client_->publish("twins/t:k" + std::to_string(i % twins_) + "/telemetry",
                                     payload.dump(), 1, false, [this, i](bool ok) {
                                       std::lock_guard<std::mutex> guard{mtx_};
                                       if (ok)
                                         acked_.push_back(i);
                                       --in_flight_;
                                       cv_.notify_all();
                                     });
      if (!queued) {
        std::lock_guard<std::mutex> guard{mtx_};
        --in_flight_;
      }
    }
  }

  /// Waits until the broker answered every message sent.
  bool drained() {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, 60s, [&] { return in_flight_ == 0; });
  }

  /// The sample times of the messages of twin `k` that the broker acknowledged.
  std::set<int64_t> acked_times(int k) {
    std::lock_guard<std::mutex> guard{mtx_};
    std::set<int64_t> out;
    for (int i : acked_)
      if (i % twins_ == k)
        out.insert(base_ + i);
    return out;
  }

  size_t acked() {
    std::lock_guard<std::mutex> guard{mtx_};
    return acked_.size();
  }

private:
  static constexpr int window = 2000;
  int twins_;
  int64_t base_;
  std::mutex mtx_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  std::vector<int> acked_;
  std::unique_ptr<ingest::mqtt_client> client_;
};

/// kill -9 at random moments while a publisher sends QoS 1 telemetry at full speed; every
/// message the broker acknowledged to the publisher ends up in the twins' history once
/// the node is back, each sample exactly where its time puts it. With and without --sync.
class mqtt_kill_test : public mqtt_durability_test,
                       public ::testing::WithParamInterface<bool> {
protected:
  std::vector<std::string> node_args() override {
    std::vector<std::string> a{"--mqtt-client-id", "twind-test"};
    if (GetParam())
      a.push_back("--sync");
    return a;
  }
};

TEST_P(mqtt_kill_test, kill_9_at_random_moments_loses_no_acknowledged_message) {
  constexpr int twins = 8;
  constexpr int kills = 3;
  for (int k = 0; k < twins; ++k)
    ASSERT_EQ(client_->call("PUT", "/v1/twins/t:k" + std::to_string(k),
                            json{{"type", "gauge"}}.dump(), json_type)
                .status,
              201u);
  auto base = now_ms() - 3'600'000;
  publisher pub{broker_port_, twins, base};
  std::atomic<bool> stop{false};
  std::thread sender{[&] { pub.run(stop, 400'000); }};
  std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pause_ms{200, 900};
  for (int i = 0; i < kills; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{pause_ms(rng)});  // a random moment
    node_->signal(SIGKILL);
    node_->wait(10s);
    node_.reset();
    ASSERT_NO_FATAL_FAILURE(start_node());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds{pause_ms(rng)});
  stop = true;
  sender.join();
  ASSERT_TRUE(pub.drained());
  ASSERT_GT(pub.acked(), 1000u);
  // Everything the broker took reaches the twins (within one minute in all).
  std::map<int, std::set<int64_t>> have;
  auto all_there = [&] {
    for (int k = 0; k < twins; ++k)
      if (have[k].size() < pub.acked_times(k).size())
        have[k] = history_times("t:k" + std::to_string(k), base);
    for (int k = 0; k < twins; ++k)
      if (have[k].size() < pub.acked_times(k).size())
        return false;
    return true;
  };
  eventually(all_there, 60s);
  size_t lost = 0;
  for (int k = 0; k < twins; ++k) {
    auto want = pub.acked_times(k);
    for (auto ts : want)
      lost += have[k].count(ts) == 0 ? 1 : 0;
    EXPECT_EQ(have[k].size(), want.size()) << "t:k" << k;
  }
  EXPECT_EQ(lost, 0u) << "of " << pub.acked() << " messages acknowledged by the broker";
  std::cout << "kill -9 x" << kills << (GetParam() ? " with --sync" : "") << ": "
            << pub.acked() << " messages, " << lost << " lost\n";
}

INSTANTIATE_TEST_SUITE_P(sync, mqtt_kill_test, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "sync" : "no_sync"; });

} // namespace
} // namespace twin::test
