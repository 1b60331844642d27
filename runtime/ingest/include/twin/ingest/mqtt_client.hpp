#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace twin::ingest {

/// Where a broker listens: `tcp://host:port` or `mqtt://` (plain, default port 1883),
/// `ssl://` or `mqtts://` (TLS, default port 8883). IPv6 hosts in brackets.
struct broker_address {
  std::string host;
  uint16_t port = 1883;
  bool tls = false;
};

/// Parses a broker URL; an error says what is wrong with it.
caf::expected<broker_address> parse_broker_url(std::string_view url);

struct mqtt_client_options {
  std::string url = "tcp://127.0.0.1:1883";  ///< the broker
  std::string client_id;                     ///< required
  /// 5 (MQTT 5.0, default) or 4 (MQTT 3.1.1).
  uint8_t version = 5;
  /// false (default): a persistent session; QoS 1 messages that arrive while the client
  /// is away wait in the broker, and unacknowledged ones are sent again on reconnection.
  bool clean_session = false;
  /// MQTT 5: how long the broker keeps the session after the connection ends. Default:
  /// 7 days. (MQTT 3.1.1 sessions are kept until the broker drops them.)
  std::chrono::seconds session_expiry = std::chrono::hours{24 * 7};
  /// A PINGREQ goes out after this long without sending; a connection that hears
  /// nothing for 1.5 times it is taken as dead. Default: 20 s.
  std::chrono::seconds keep_alive{20};
  std::string username;  ///< empty: none
  std::string password;  ///< empty: none
  // TLS (ssl:// and mqtts:// URLs).
  std::string tls_ca_file;    ///< certificates to trust; empty: the system's
  std::string tls_cert_file;  ///< a client certificate (PEM); empty: none
  std::string tls_key_file;   ///< its private key (PEM)
  bool tls_verify = true;     ///< verify the broker's certificate and host name
  /// Subscribed at every connection, each with its QoS: e.g. {"twins/+/telemetry", 1} or
  /// {"$share/nodes/twins/+/telemetry", 1} for an MQTT 5 shared subscription.
  std::vector<std::pair<std::string, uint8_t>> subscriptions;
  /// Messages received and not yet handled (their `mqtt_ack` not called), at most; at the
  /// bound the client stops reading from the broker until some are handled. MQTT 5 tells
  /// the broker as Receive Maximum (capped at 65,535). Default: 65,535.
  size_t max_unhandled = 65535;
  /// Larger packets from the broker end the connection (MQTT 5 tells the broker, which
  /// then drops them instead). Default: 1 MiB.
  size_t max_packet = 1u << 20;
  /// QoS 1 messages of `publish` waiting to go out or for their PUBACK, at most; more
  /// are refused. Default: 10,000.
  size_t max_queued = 10000;
  /// Reconnection waits `reconnect_min`, doubling up to `reconnect_max`, with jitter;
  /// back to the minimum once a connection was up. Defaults: 100 ms and 10 s.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{10000};
  /// Connecting (TCP, TLS, CONNECT, SUBSCRIBE) takes at most this long. Default: 10 s.
  std::chrono::milliseconds connect_timeout{10000};
};

/// A message as received; its views are valid during the call that hands it over only.
struct mqtt_message {
  std::string_view topic;
  std::string_view payload;
  uint8_t qos = 0;
  bool retained = false;  ///< sent because we subscribed (the broker had it retained)
  bool dup = false;       ///< possibly sent before
};

class mqtt_ack_window;

/// Says when a received message is handled. QoS 1 messages are acknowledged to the
/// broker (PUBACK) in the order they arrived, once each message up to them is handled:
/// a message handled late holds back the acknowledgements behind it, never reorders them.
/// Exactly one of `done` or `retry` is called, from any thread, once per message.
class mqtt_ack {
public:
  mqtt_ack() = default;
  mqtt_ack(std::shared_ptr<mqtt_ack_window> w, uint64_t seq) : w_(std::move(w)), seq_(seq) {}

  /// Handled: the broker may forget it.
  void done();
  /// Not handled, but it could be later (e.g. the store refused writes for now): the
  /// client reconnects after a delay without acknowledging it, and the broker sends it
  /// again (QoS 1). A QoS 0 message is lost.
  void retry();

private:
  std::shared_ptr<mqtt_ack_window> w_;
  uint64_t seq_ = 0;
};

/// What a client counted since it started.
struct mqtt_client_counts {
  uint64_t received = 0;       ///< PUBLISH packets received
  uint64_t acknowledged = 0;   ///< PUBACKs sent
  uint64_t published = 0;      ///< messages of `publish` sent (QoS 1: acknowledged)
  uint64_t refused = 0;        ///< messages of `publish` refused: the queue was full
  uint64_t connections = 0;    ///< connections that came up (the first included)
};

/// An MQTT 3.1.1 and 5.0 client over Boost.Asio, written for a node that must not lose
/// what it acknowledges: QoS 0 and 1, a persistent session, keep-alive, reconnection
/// with backoff, TLS, user name and password, and acknowledgements that wait for the
/// application (`mqtt_ack`). Messages are parsed straight from the socket's buffer and
/// handed to `on_message` on the client's own I/O thread, one by one; `on_message` must
/// not block.
///
/// Owned by its user; `start` once, `stop` before destroying it. `publish`, `connected`
/// and `counts` are thread-safe.
class mqtt_client {
public:
  using message_fn = std::function<void(const mqtt_message&, mqtt_ack)>;
  /// Connection changes, for logs: up or not, and what happened.
  using state_fn = std::function<void(bool up, const std::string& text)>;
  /// The end of a published message, on the I/O thread: true once the broker
  /// acknowledged it (QoS 1) or it was written (QoS 0); false if the client stopped first.
  using published_fn = std::function<void(bool delivered)>;
  /// Runs a function on the client's I/O thread after a delay (0: as soon as it can); a
  /// function whose time comes after the client stopped is dropped uncalled.
  using timer_fn = std::function<void(std::chrono::milliseconds, std::function<void()>)>;

  mqtt_client(mqtt_client_options opts, message_fn on_message, state_fn on_state = {});
  ~mqtt_client();  ///< stops

  /// Starts the I/O thread and connects, waiting at most `connect_timeout` for the
  /// connection and the subscriptions. An error (and nothing left running) if the URL or
  /// the TLS files are invalid or the broker cannot be reached in time.
  caf::error start();
  /// Stops reading, waits at most `drain` for the messages received to be handled (and
  /// their acknowledgements sent), disconnects and stops the I/O thread. Messages not
  /// handled by then are not acknowledged: the broker sends them again later (QoS 1).
  void stop(std::chrono::milliseconds drain = std::chrono::seconds{5});

  /// Connected and subscribed.
  bool connected() const;
  /// Publishes a message, now or once connected. QoS 1 messages are kept until the
  /// broker acknowledges them, and sent again after a reconnection. false (and `done` not
  /// called): refused because `max_queued` are waiting already, or the client stopped.
  bool publish(std::string topic, std::string payload, uint8_t qos, bool retain,
               published_fn done = {});
  mqtt_client_counts counts() const;
  /// The client's timer: thread-safe, and safe to call after the client is gone (the
  /// function is then dropped).
  timer_fn timer() const;

private:
  struct core;
  std::shared_ptr<core> core_;
};

} // namespace twin::ingest
