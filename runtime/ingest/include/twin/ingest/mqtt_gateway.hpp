#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <caf/error.hpp>

#include "twin/runtime/router.hpp"

namespace mqtt {
class async_client;
}

namespace twin::ingest {

struct mqtt_options {
  std::string url = "tcp://127.0.0.1:1883";  ///< the broker
  /// The session's client id. The session is persistent: QoS 1 telemetry published while
  /// the node was away is delivered when it connects again under the same id.
  std::string client_id = "twind";
  size_t max_payload = 64u << 10;  ///< larger telemetry messages are malformed
  /// Telemetry routed and not yet durable; beyond it messages are dropped (overloaded),
  /// so that a flood cannot grow the node's memory without bound.
  int64_t max_in_flight = 100000;
  /// Where connection changes and dropped messages are told (at most 10 a second of the
  /// latter); none: not told.
  std::function<void(bool warning, const std::string& text)> log;
};

/// What the gateway counted since it started.
struct mqtt_counts {
  uint64_t accepted = 0;    ///< applied by their twin, durably
  uint64_t rejected = 0;    ///< refused by their twin (unknown twin or property, wrong type)
  uint64_t malformed = 0;   ///< bad topic or payload: dropped before any twin saw them
  uint64_t overloaded = 0;  ///< dropped: too many on their way to twins already
  uint64_t published = 0;   ///< desired deltas and commands handed to the client
};

/// The MQTT device path of DESIGN.md over a broker: telemetry from `twins/{id}/telemetry`
/// (QoS 0 and 1) goes to the twins through the router; desired deltas go to
/// `twins/{id}/desired` (retained) and commands to `twins/{id}/commands/{name}`.
/// Reconnects with backoff when the broker goes away. QoS 1 is at least once to the
/// node's client, not to the store: the client acknowledges a message when it receives
/// it, so telemetry not yet durable is lost on a crash. Thread-safe.
class mqtt_gateway : public runtime::device_gateway {
public:
  /// `rt` must outlive the gateway.
  mqtt_gateway(runtime::router& rt, mqtt_options opts);
  ~mqtt_gateway() override;  ///< stops

  /// Connects and subscribes, once, waiting at most `timeout`; an error if the URL is
  /// invalid or the broker cannot be reached in time.
  caf::error start(std::chrono::milliseconds timeout = std::chrono::seconds{10});
  /// Disconnects (no more messages), then waits at most `drain` for the twins to answer
  /// the telemetry routed to them. Before the router stops.
  void stop(std::chrono::milliseconds drain = std::chrono::seconds{5});
  /// Connected, and the broker confirmed the subscription.
  bool connected() const;
  mqtt_counts counts() const;

  void publish_desired(const runtime::twin_id& id, const runtime::value_map& delta) override;
  void send_command(const runtime::twin_id& id, const std::string& name,
                    const runtime::value& args) override;

private:
  struct shared;

  void publish(const std::string& topic, const std::string& payload, bool retained);

  std::shared_ptr<shared> shared_;
  std::unique_ptr<mqtt::async_client> client_;  ///< destroyed here, never on its own thread
};

// The topics of DESIGN.md, for the node and for devices (twinsim).

/// Where a device publishes its telemetry: `twins/{id}/telemetry`.
std::string telemetry_topic(const runtime::twin_id& id);
/// Where a device hears its desired delta: `twins/{id}/desired`.
std::string desired_topic(const runtime::twin_id& id);
/// Where a device hears command `name`: `twins/{id}/commands/{name}`.
std::string command_topic(const runtime::twin_id& id, const std::string& name);

/// The twin id of a telemetry topic, or an error saying what is wrong with the topic.
caf::expected<runtime::twin_id> telemetry_topic_id(std::string_view topic);

/// What a device hears on `topic`: its twin, and the command's name (empty for the
/// desired delta); false for a topic of another shape or an invalid id.
bool parse_device_topic(std::string_view topic, runtime::twin_id& id, std::string& command);

} // namespace twin::ingest
