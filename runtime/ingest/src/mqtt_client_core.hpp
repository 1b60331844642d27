#pragma once

// The state of an MQTT client and what its I/O thread does with it: private to the client
// (mqtt_client.cpp starts and stops it, mqtt_connection.cpp connects and keeps the
// connection, mqtt_traffic.cpp reads, acknowledges and publishes).

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mqtt_ack_window.hpp"
#include "mqtt_codec.hpp"
#include "twin/ingest/mqtt_client.hpp"

namespace twin::ingest {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

constexpr size_t initial_buffer = 64u << 10;
constexpr auto tick_period = std::chrono::milliseconds{250};
/// Reconnection after a message asked to be retried waits this long, doubling while the
/// retried messages keep failing (e.g. a full disk), up to `max_retry_delay`.
constexpr auto retry_delay = std::chrono::milliseconds{1000};
constexpr auto max_retry_delay = std::chrono::milliseconds{30000};

/// Everything but `publish`, `connected` and `counts` runs on the client's I/O thread; what
/// the others share is marked.
struct mqtt_client::core : std::enable_shared_from_this<core> {
  enum class phase { idle, connecting, subscribing, up, stopping, stopped };

  /// A message of `publish`.
  struct outgoing {
    std::string topic;
    std::string payload;
    uint8_t qos = 0;
    bool retain = false;
    published_fn done;

    /// Tells its publisher how it ended (once; nothing thrown escapes).
    void end(bool delivered) {
      if (!done)
        return;
      try {
        done(delivered);
      } catch (...) {
      }
    }
  };

  core(mqtt_client_options o, message_fn m, state_fn s)
    : opts(std::move(o)), on_message(std::move(m)), on_state(std::move(s)) {
    backoff = opts.reconnect_min;
  }

  // -- configuration (start) ------------------------------------------------------

  caf::error configure();

  // -- connection -------------------------------------------------------------------

  void connect();

  ssl::context& plain_ctx();

  void on_resolved(const tcp::resolver::results_type& results);

  void handshake();

  void send_connect();

  /// Drops the connection and tries again after the backoff (at least `at_least`).
  void fail(const std::string& why, std::chrono::milliseconds at_least = {});

  std::chrono::milliseconds jittered(std::chrono::milliseconds d);

  void close_stream();

  void set_up(bool up);

  void tell(bool up, const std::string& text);

  // -- reading ------------------------------------------------------------------------

  void read();

  /// Handles the complete packets in the buffer, as long as the window takes messages.
  void parse();

  void handle(const mqtt::frame& f);

  void on_connack(const mqtt::frame& f);

  void on_suback(const mqtt::frame& f);

  void became_up();

  void on_publish(const mqtt::frame& f);

  // -- acknowledgements ------------------------------------------------------------------

  void flush_acks(uint64_t g);

  void drained_cv_notify();

  // -- writing ---------------------------------------------------------------------------

  void flush_out();

  // -- publishing --------------------------------------------------------------------------

  struct in_flight {
    outgoing msg;
    uint64_t order = 0;
  };

  uint16_t next_packet_id();

  /// Sends what `publish` queued, within the broker's receive maximum (I/O thread).
  void send_pending();

  void on_puback(const mqtt::frame& f);

  bool publish(std::string topic, std::string payload, uint8_t qos, bool retain,
               published_fn done);

  // -- time ------------------------------------------------------------------------------

  void tick();

  void on_tick();

  // -- stopping ----------------------------------------------------------------------------

  void finish_stop();

  mqtt_client_options opts;
  message_fn on_message;
  state_fn on_state;
  broker_address addr;
  asio::io_context ioc{1};
  std::optional<ssl::context> tls;
  std::optional<ssl::context> unused_tls;  ///< the plain stream's (never used) context
  tcp::resolver resolver{ioc};
  asio::steady_timer timer{ioc};
  asio::steady_timer retry_timer{ioc};
  std::list<asio::steady_timer> timers;  ///< of `timer()`, each until it fired
  std::thread thread;
  std::mt19937 rng{std::random_device{}()};

  // I/O thread only.
  phase current = phase::idle;
  uint64_t gen = 0;  ///< the connection's generation; handlers of older ones do nothing
  std::unique_ptr<ssl::stream<tcp::socket>> stream;
  std::vector<char> in;
  size_t in_used = 0;
  bool reading = false;
  bool paused = false;    ///< not reading: the window is full, or the client drains
  bool draining = false;  ///< stop() asked to read no more
  bool close_after_write = false;
  std::string out;      ///< packets to write next
  std::string writing;  ///< packets being written
  bool write_in_flight = false;
  std::shared_ptr<mqtt_ack_window> window;
  std::chrono::seconds keep_alive{0};
  clock_type::time_point last_sent{};
  clock_type::time_point last_heard{};
  clock_type::time_point connect_deadline{};
  std::chrono::milliseconds backoff{};
  std::chrono::milliseconds next_retry_delay{retry_delay};
  uint16_t broker_receive_max = 65535;
  bool session_present = false;
  uint16_t packet_id = 0;
  uint16_t subscribe_id = 0;
  std::unordered_map<uint16_t, in_flight> unacked;  ///< QoS 1 messages sent, by packet id
  uint64_t sent_order = 0;
  std::string last_text;

  // Shared with publish() (pub_mtx).
  std::mutex pub_mtx;
  std::deque<outgoing> pending;
  size_t queued = 0;  ///< pending, and QoS 1 messages sent and not acknowledged
  bool pub_scheduled = false;
  bool stopped_publishing = false;

  // Shared with start() and stop() (mtx).
  std::mutex mtx;
  std::condition_variable cv;
  std::atomic<bool> is_up{false};

  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> connections{0};
};

} // namespace twin::ingest
