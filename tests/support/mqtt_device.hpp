#pragma once

// A device for the MQTT tests: an MQTT client (the node's own client library, as twinsim
// uses it) that publishes, waits for the broker's acknowledgement, and keeps what it
// receives.

#include <chrono>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "twin/ingest/mqtt_client.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::test {

class device {
public:
  struct message {
    std::string topic;
    std::string payload;
    bool retained;
  };

  /// Connects to 127.0.0.1:`broker_port` with a clean session, subscribed to `filters`
  /// (QoS 1).
  explicit device(int broker_port, std::vector<std::string> filters = {},
                  std::string client_id = {}) {
    ingest::mqtt_client_options o;
    o.url = "tcp://127.0.0.1:" + std::to_string(broker_port);
    o.client_id = client_id.empty() ? "test-device-" + std::to_string(next_id_++) : client_id;
    o.clean_session = true;
    o.connect_timeout = std::chrono::seconds{5};
    for (auto& f : filters)
      o.subscriptions.emplace_back(std::move(f), 1);
    client_ = std::make_unique<ingest::mqtt_client>(
      o, [this](const ingest::mqtt_message& m, ingest::mqtt_ack ack) {
        {
          std::lock_guard<std::mutex> guard{mtx_};
          received_.push_back({std::string{m.topic}, std::string{m.payload}, m.retained});
        }
        ack.done();
      });
    auto err = client_->start();
    EXPECT_FALSE(err) << "the test device cannot connect: " << runtime::error_message(err);
  }

  /// Publishes and waits (at most 5 s) until the broker has it (QoS 1) or it is written.
  bool publish(const std::string& topic, const std::string& payload, int qos = 1,
               bool retain = false) {
    auto done = std::make_shared<std::promise<bool>>();
    auto f = done->get_future();
    if (!client_->publish(topic, payload, static_cast<uint8_t>(qos), retain,
                          [done](bool ok) { done->set_value(ok); }))
      return false;
    bool ok = f.wait_for(std::chrono::seconds{5}) == std::future_status::ready && f.get();
    EXPECT_TRUE(ok) << "not published: " << topic;
    return ok;
  }

  ingest::mqtt_client& client() { return *client_; }

  /// The messages received on `topic` so far.
  std::vector<message> on(const std::string& topic) {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<message> out;
    for (const auto& m : received_)
      if (m.topic == topic)
        out.push_back(m);
    return out;
  }

private:
  static inline int next_id_ = 0;  ///< client ids are unique: a broker drops a duplicate
  std::mutex mtx_;
  std::deque<message> received_;
  std::unique_ptr<ingest::mqtt_client> client_;  ///< stops before what it writes into goes
};

} // namespace twin::test
