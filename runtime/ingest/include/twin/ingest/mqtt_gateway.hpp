#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <caf/error.hpp>

#include "twin/ingest/mqtt_client.hpp"
#include "twin/runtime/router.hpp"

namespace twin::ingest {

struct mqtt_options {
  /// The connection: the broker's URL, the version, credentials and TLS files, and the
  /// session's client id, which is required: unique per node and stable across its
  /// restarts (the session is persistent: QoS 1 telemetry published while the node was
  /// away is delivered when it connects again under the same id). `max_unhandled` bounds
  /// the telemetry received and not yet durable (or refused): at the bound the node reads
  /// no more from the broker until twins answer. The subscriptions are the gateway's.
  mqtt_client_options client;
  /// Non-empty: subscribe as a member of this MQTT 5 shared subscription group
  /// (`$share/{group}/twins/+/telemetry`), so that the nodes of a group split the devices'
  /// telemetry between them.
  std::string shared_group;
  size_t max_payload = 64u << 10;  ///< larger telemetry messages are malformed
  /// Where connection changes and dropped messages are told (at most 10 a second of the
  /// latter); none: not told.
  std::function<void(bool warning, const std::string& text)> log;
};

/// What the gateway counted since it started.
struct mqtt_counts {
  uint64_t accepted = 0;   ///< applied by their twin, durably (or older than it: skipped)
  uint64_t rejected = 0;   ///< refused by their twin (unknown twin or property, wrong type)
  uint64_t malformed = 0;  ///< bad topic or payload: dropped before any twin saw them
  uint64_t future_ts = 0;  ///< stamped further ahead of the node's clock than allowed
  uint64_t retained = 0;   ///< retained telemetry without "ts", replayed on subscribing: dropped
  /// Could not be applied now (the store takes no writes, the node stops, the twin's
  /// shard was between owners for longer than the node holds telemetry): QoS 1 ones are
  /// not acknowledged, so the broker sends them again; QoS 0 ones are lost.
  uint64_t deferred = 0;
  uint64_t published = 0;  ///< desired deltas and commands the broker acknowledged
  uint64_t refused = 0;    ///< desired deltas and commands dropped: too many waiting
  /// Times telemetry was held to be tried again: its twin's shard was between owners.
  uint64_t retries = 0;
  uint64_t connections = 0;  ///< connections to the broker that came up (the first included)
};

/// The node's MQTT device path over a broker: telemetry from `twins/{id}/telemetry`
/// (QoS 0 and 1) goes to the twins through the router; desired deltas go to
/// `twins/{id}/desired` (retained) and commands to `twins/{id}/commands/{name}`.
///
/// A QoS 1 message is acknowledged to the broker (PUBACK) only once its change is
/// durable (or its twin refused it), in the order the messages arrived: a node killed at
/// any moment loses nothing the broker considers delivered. Retained telemetry that the
/// broker replays when the node subscribes is applied only if it carries a "ts" (and is
/// then ordered by it, like any sample); without one it is dropped and counted.
/// Reconnects with backoff when the broker goes away. Thread-safe.
class mqtt_gateway : public runtime::device_gateway {
public:
  /// `rt` must outlive the gateway.
  mqtt_gateway(runtime::router& rt, mqtt_options opts);
  ~mqtt_gateway() override;  ///< stops

  /// Connects and subscribes, once, waiting at most `timeout`; an error if the URL or the
  /// TLS files are invalid or the broker cannot be reached in time.
  caf::error start(std::chrono::milliseconds timeout = std::chrono::seconds{10});
  /// Reads no more, waits at most `drain` for the twins to answer the telemetry routed to
  /// them (and acknowledges it), then disconnects. Before the router stops.
  void stop(std::chrono::milliseconds drain = std::chrono::seconds{5});
  /// Connected, and the broker confirmed the subscription.
  bool connected() const;
  mqtt_counts counts() const;

  void publish_desired(const runtime::twin_id& id, const runtime::value_map& delta) override;
  void send_command(const runtime::twin_id& id, const std::string& name,
                    const runtime::value& args) override;

private:
  struct shared;

  std::shared_ptr<shared> shared_;
  std::unique_ptr<mqtt_client> client_;
};

// The device topics (runtime/ingest/README.md), for the node and for devices (twinsim).

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
