#include "twin/ingest/mqtt_gateway.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include <mqtt/async_client.h>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace twin::ingest {

using namespace twin::runtime;

namespace {

constexpr const char* telemetry_filter = "twins/+/telemetry";
constexpr int max_logged_per_second = 10;
constexpr int max_buffered_while_disconnected = 10000;

} // namespace

constexpr std::string_view topic_root = "twins/";

std::string telemetry_topic(const twin_id& id) {
  return std::string{topic_root} + id.str() + "/telemetry";
}

std::string desired_topic(const twin_id& id) {
  return std::string{topic_root} + id.str() + "/desired";
}

std::string command_topic(const twin_id& id, const std::string& name) {
  return std::string{topic_root} + id.str() + "/commands/" + name;
}

caf::expected<twin_id> telemetry_topic_id(std::string_view topic) {
  constexpr std::string_view suffix = "/telemetry";
  if (topic.size() <= topic_root.size() + suffix.size()
      || topic.substr(0, topic_root.size()) != topic_root
      || topic.substr(topic.size() - suffix.size()) != suffix)
    return make_error(runtime_errc::invalid_argument,
                      "a telemetry topic is twins/{id}/telemetry");
  return twin_id::parse(
    topic.substr(topic_root.size(), topic.size() - topic_root.size() - suffix.size()));
}

bool parse_device_topic(std::string_view topic, twin_id& id, std::string& command) {
  constexpr std::string_view commands = "commands/";
  if (topic.substr(0, topic_root.size()) != topic_root)
    return false;
  auto slash = topic.find('/', topic_root.size());
  if (slash == std::string_view::npos)
    return false;
  auto parsed = twin_id::parse(topic.substr(topic_root.size(), slash - topic_root.size()));
  auto rest = topic.substr(slash + 1);
  if (!parsed)
    return false;
  if (rest == "desired") {
    command.clear();
  } else if (rest.substr(0, commands.size()) == commands && rest.size() > commands.size()) {
    command = std::string{rest.substr(commands.size())};
  } else {
    return false;
  }
  id = std::move(*parsed);
  return true;
}

/// What the client's callbacks and the twins' answers share. It does not own the client:
/// the last reference may go on any thread.
struct mqtt_gateway::shared : mqtt::iaction_listener, std::enable_shared_from_this<shared> {
  shared(router& r, mqtt_options o) : rt(r), opts(std::move(o)) {}

  /// Never throws: it runs on the client library's threads too.
  void log(bool warning, const std::string& text) noexcept {
    try {
      if (opts.log)
        opts.log(warning, text);
    } catch (...) {
    }
  }

  /// Tells of a dropped or refused message or a failed publish, at most
  /// `max_logged_per_second` a second, and then how many were not told. The text is made
  /// (by `make_text`) only if it is told: a flood of bad messages costs no formatting.
  template <class MakeText>
  void log_limited(MakeText&& make_text) noexcept {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> guard{log_mtx};
    if (now - log_window >= std::chrono::seconds{1}) {
      if (suppressed > 0)
        log(true, std::to_string(suppressed) + " more MQTT problems not logged");
      log_window = now;
      logged = 0;
      suppressed = 0;
    }
    if (logged < max_logged_per_second) {
      ++logged;
      try {
        log(true, make_text());
      } catch (...) {
      }
    } else {
      ++suppressed;
    }
  }

  /// On the client's thread, which holds the client library's lock: never blocks.
  void on_message(const mqtt::const_message_ptr& msg) {
    if (!accepting.load())
      return;
    const auto& topic = msg->get_topic();
    auto id = telemetry_topic_id(topic);
    if (!id)
      return drop(malformed, topic, [&] { return error_message(id.error()); });
    const auto& payload = msg->get_payload_ref();
    if (payload.size() > opts.max_payload)
      return drop(malformed, topic, [&] {
        return "the payload has " + std::to_string(payload.size())
               + " bytes, more than the limit of " + std::to_string(opts.max_payload);
      });
    auto t = device_telemetry_from_json(std::string_view{payload.data(), payload.size()});
    if (!t)
      return drop(malformed, topic, [&] { return error_message(t.error()); });
    if (in_flight.load() >= opts.max_in_flight)
      return drop(overloaded, topic, [&] {
        return std::to_string(opts.max_in_flight) + " messages are on their way already";
      });
    ingest_request req;
    req.values = std::move(t->values);
    req.ts_ms = t->ts_ms;
    req.source = "mqtt";
    // The message is kept (no copy) for its topic, should the twin refuse it.
    req.done = [self = shared_from_this(), msg](caf::expected<uint64_t> v) {
      if (v) {
        self->accepted.fetch_add(1, std::memory_order_relaxed);
      } else {
        self->rejected.fetch_add(1, std::memory_order_relaxed);
        self->log_limited([&] {
          return "MQTT telemetry on " + msg->get_topic() + " refused: " + error_message(v.error());
        });
      }
      self->answered();
    };
    in_flight.fetch_add(1);  // only this thread adds: the bound above holds
    try {
      rt.route(*id, std::move(req));
    } catch (...) {
      answered();
      throw;
    }
  }

  /// A routed message was answered (or never went out).
  void answered() {
    if (in_flight.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> guard{drain_mtx};
      drained.notify_all();
    }
  }

  template <class Why>
  void drop(std::atomic<uint64_t>& counter, const std::string& topic, Why&& why) {
    counter.fetch_add(1, std::memory_order_relaxed);
    log_limited([&] { return "MQTT message on " + topic + " dropped: " + why(); });
  }

  // The subscription's answer (iaction_listener), on the client's thread.
  void on_success(const mqtt::token&) override {
    if (closed.load())
      return;
    subscribed.store(true);
    try {
      log(false, "MQTT connected to " + opts.url + ", subscribed to " + telemetry_filter);
    } catch (...) {
    }
    std::lock_guard<std::mutex> guard{drain_mtx};
    drained.notify_all();  // start() waits for this too
  }
  void on_failure(const mqtt::token& tok) override {
    try {
      log(true, "MQTT subscription to " + std::string{telemetry_filter}
                  + " refused (code " + std::to_string(tok.get_return_code()) + ")");
    } catch (...) {
    }
  }

  router& rt;
  mqtt_options opts;
  std::atomic<bool> subscribed{false};  ///< connected, and the subscription confirmed
  std::atomic<bool> closed{false};      ///< stop() ran (or runs)
  std::atomic<bool> accepting{true};    ///< routes what arrives: until disconnected
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> malformed{0};
  std::atomic<uint64_t> overloaded{0};
  std::atomic<uint64_t> published{0};
  std::mutex drain_mtx;
  std::condition_variable drained;  ///< in_flight reached 0, or the subscription came
  std::mutex log_mtx;
  std::chrono::steady_clock::time_point log_window{};
  int logged = 0;
  int suppressed = 0;
};

mqtt_gateway::mqtt_gateway(router& rt, mqtt_options opts)
  : shared_(std::make_shared<shared>(rt, std::move(opts))) {}

mqtt_gateway::~mqtt_gateway() {
  stop();
}

caf::error mqtt_gateway::start(std::chrono::milliseconds timeout) {
  const auto& url = shared_->opts.url;
  try {
    // Desired deltas and commands published while the broker is away wait for it.
    mqtt::create_options co{MQTTVERSION_3_1_1, max_buffered_while_disconnected};
    co.set_send_while_disconnected(true);
    client_ = std::make_unique<mqtt::async_client>(url, shared_->opts.client_id, co);
  } catch (const mqtt::exception& e) {
    return make_error(runtime_errc::invalid_argument,
                      "invalid MQTT broker URL " + url + ": " + e.what());
  }
  std::weak_ptr<shared> weak = shared_;
  client_->set_message_callback([weak](mqtt::const_message_ptr msg) {
    if (auto s = weak.lock()) {
      try {
        s->on_message(msg);
      } catch (const std::exception& e) {
        s->log_limited([&] { return std::string{"MQTT message dropped: "} + e.what(); });
      } catch (...) {
      }
    }
  });
  // Subscribed at every (re)connection: a broker that restarted may have lost the session.
  auto* client = client_.get();
  client_->set_connected_handler([weak, client](const std::string&) {
    auto s = weak.lock();
    if (!s || s->closed.load())
      return;
    try {
      client->subscribe(telemetry_filter, 1, nullptr, *s);
    } catch (const std::exception& e) {
      s->log(true, std::string{"MQTT subscribe failed: "} + e.what());
    } catch (...) {
    }
  });
  client_->set_connection_lost_handler([weak](const std::string& cause) {
    if (auto s = weak.lock()) {
      s->subscribed.store(false);
      try {
        s->log(true, "MQTT connection to " + s->opts.url + " lost"
                       + (cause.empty() ? std::string{} : ": " + cause) + "; reconnecting");
      } catch (...) {
      }
    }
  });
  auto co = mqtt::connect_options_builder{}
              .clean_session(false)
              .keep_alive_interval(std::chrono::seconds{20})
              .connect_timeout(timeout)
              .automatic_reconnect(std::chrono::seconds{1}, std::chrono::seconds{30})
              .finalize();
  // A failed start leaves no client behind (it would go on reconnecting).
  auto give_up = [&](std::string why) {
    stop(std::chrono::milliseconds{0});
    client_.reset();
    return make_error(runtime_errc::unavailable, std::move(why));
  };
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto unreachable = "cannot reach the MQTT broker at " + url + " (connected and subscribed) "
                     + "within " + std::to_string(timeout.count()) + " ms";
  try {
    if (!client_->connect(co)->wait_until(deadline))
      return give_up(unreachable);
  } catch (const mqtt::exception& e) {
    return give_up("cannot connect to the MQTT broker at " + url + ": " + e.what());
  }
  std::unique_lock<std::mutex> guard{shared_->drain_mtx};
  if (!shared_->drained.wait_until(guard, deadline, [&] { return shared_->subscribed.load(); })) {
    guard.unlock();
    return give_up(unreachable);
  }
  return {};
}

void mqtt_gateway::stop(std::chrono::milliseconds drain) {
  if (!client_ || shared_->closed.exchange(true))
    return;
  // No more messages or reconnections (what arrives meanwhile is still routed: the client
  // acknowledged it); then the twins answer what was routed.
  try {
    client_->disconnect()->wait_for(std::chrono::seconds{2});
  } catch (const mqtt::exception&) {
    // not connected (or reconnecting): the disconnect still ends the reconnection
  }
  shared_->accepting.store(false);
  try {
    client_->disable_callbacks();
  } catch (const mqtt::exception&) {
  }
  shared_->subscribed.store(false);
  std::unique_lock<std::mutex> guard{shared_->drain_mtx};
  shared_->drained.wait_for(guard, drain, [&] { return shared_->in_flight.load() == 0; });
}

bool mqtt_gateway::connected() const {
  return shared_->subscribed.load();
}

mqtt_counts mqtt_gateway::counts() const {
  const auto& s = *shared_;
  return {s.accepted.load(), s.rejected.load(), s.malformed.load(), s.overloaded.load(),
          s.published.load()};
}

void mqtt_gateway::publish(const std::string& topic, const std::string& payload, bool retained) {
  if (!client_ || shared_->closed.load())
    return;
  try {
    client_->publish(topic, payload.data(), payload.size(), 1, retained);
    shared_->published.fetch_add(1, std::memory_order_relaxed);
  } catch (const mqtt::exception& e) {
    shared_->log_limited([&] { return "MQTT publish to " + topic + " failed: " + e.what(); });
  }
}

void mqtt_gateway::publish_desired(const twin_id& id, const value_map& delta) {
  publish(desired_topic(id), to_json(delta).dump(), true);
}

void mqtt_gateway::send_command(const twin_id& id, const std::string& name, const value& args) {
  publish(command_topic(id, name), to_json(args).dump(), false);
}

} // namespace twin::ingest
