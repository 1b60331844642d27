#include "twin/ingest/mqtt_gateway.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "twin/ingest/mqtt_client.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace twin::ingest {

using namespace twin::runtime;

namespace {

constexpr const char* telemetry_filter = "twins/+/telemetry";
constexpr int max_logged_per_second = 10;

// Telemetry whose twin's shard is between owners is tried again after `first_hold_delay`,
// then after as long as it has waited (at most `max_hold_delay`), for up to `hold_limit`;
// then it is left to the broker.
constexpr auto first_hold_delay = std::chrono::milliseconds{50};
constexpr auto max_hold_delay = std::chrono::milliseconds{1000};
constexpr auto hold_limit = std::chrono::seconds{20};

/// A received message, kept while its twin may still take it: topic and payload in one
/// string, and when it came.
struct telemetry_text {
  telemetry_text(std::string_view topic, std::string_view payload)
    : text(topic), topic_size(topic.size()), arrived_ms(now_ms()) {
    text += payload;
  }
  std::string_view topic() const { return std::string_view{text}.substr(0, topic_size); }
  std::string_view payload() const { return std::string_view{text}.substr(topic_size); }

  std::string text;
  size_t topic_size;
  int64_t arrived_ms;
};

/// What becomes of a message once its twin answered.
enum class outcome {
  done,    ///< applied, or refused for good: acknowledged
  broker,  ///< not now (the store takes no writes, the node stops): left to the broker
  hold,    ///< its shard is between owners: tried again in the node
};

/// The errors of a shard between owners (a member died, a shard moves, copies are
/// missing): they pass within seconds.
bool between_owners(runtime_errc e) {
  return e == runtime_errc::unavailable || e == runtime_errc::not_owner
         || e == runtime_errc::timeout;
}

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

/// What the client's callback and the twins' answers share: the counts and the log. The
/// last reference may go on any thread.
struct mqtt_gateway::shared : std::enable_shared_from_this<shared> {
  shared(router& r, mqtt_options o) : rt(r), opts(std::move(o)) {}

  /// Never throws: it runs on the client's thread and the store writer's.
  void log(bool warning, const std::string& text) noexcept {
    try {
      if (opts.log)
        opts.log(warning, text);
    } catch (...) {
    }
  }

  /// Tells of a dropped or refused message, at most `max_logged_per_second` a second, and
  /// then how many were not told. The text is made (by `make_text`) only if it is told: a
  /// flood of bad messages costs no formatting.
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

  /// On the client's thread: never blocks.
  void on_message(const mqtt_message& msg, mqtt_ack ack) {
    auto id = telemetry_topic_id(msg.topic);
    if (!id)
      return drop(malformed, msg.topic, ack, [&] { return error_message(id.error()); });
    if (msg.payload.size() > opts.max_payload)
      return drop(malformed, msg.topic, ack, [&] {
        return "the payload has " + std::to_string(msg.payload.size())
               + " bytes, more than the limit of " + std::to_string(opts.max_payload);
      });
    auto t = device_telemetry_from_json(msg.payload);
    if (!t)
      return drop(malformed, msg.topic, ack, [&] { return error_message(t.error()); });
    if (msg.retained && t->ts_ms == 0)
      return drop(retained, msg.topic, ack, [] {
        return std::string{"retained telemetry without \"ts\" is not applied again"};
      });
    telemetry_text text{msg.topic, msg.payload};
    if (!held.empty()) {
      auto h = held.find(id->str());
      if (h != held.end()) {  // behind telemetry of the same twin that waits, in order
        auto now = std::chrono::steady_clock::now();
        h->second.push_back({std::move(text), std::move(ack), now, false});
        return;
      }
    }
    ingest_request req;
    req.values = std::move(t->values);
    req.ts_ms = t->ts_ms;
    req.source = "mqtt";
    req.done = [self = shared_from_this(), ack, text = std::move(text)](
                 caf::expected<uint64_t> v) mutable { self->answered(v, ack, std::move(text)); };
    rt.route(*id, std::move(req));
  }

  /// A twin answered (on any thread): acknowledges the message, leaves it to the broker,
  /// or holds it to try it again.
  void answered(const caf::expected<uint64_t>& v, mqtt_ack& ack, telemetry_text text) {
    switch (judge(v, text.topic())) {
      case outcome::done:
        return ack.done();
      case outcome::broker:
        return ack.retry();
      case outcome::hold:
        if (stopping.load())
          return give_up(ack, text.topic(), v.error());
        log_limited([&] {
          return "MQTT telemetry on " + std::string{text.topic()}
                 + " waits for its shard: " + error_message(v.error());
        });
        timer(std::chrono::milliseconds{0},
              [self = shared_from_this(), ack, text = std::move(text)]() mutable {
                self->hold(std::move(text), std::move(ack));
              });
    }
  }

  /// Counts a twin's answer and says what becomes of the message.
  outcome judge(const caf::expected<uint64_t>& v, std::string_view topic) {
    if (v) {
      accepted.fetch_add(1, std::memory_order_relaxed);
      return outcome::done;
    }
    auto code = error_code(v.error());
    if (between_owners(code))
      return outcome::hold;
    switch (code) {
      case runtime_errc::future_timestamp:
        future_ts.fetch_add(1, std::memory_order_relaxed);
        break;
      case runtime_errc::shutting_down:
      case runtime_errc::store_failure:
      case runtime_errc::insufficient_storage:
        deferred.fetch_add(1, std::memory_order_relaxed);
        log_limited([&] {
          return "MQTT telemetry on " + std::string{topic}
                 + " not applied for now: " + error_message(v.error());
        });
        return outcome::broker;
      default:
        rejected.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    log_limited([&] {
      return "MQTT telemetry on " + std::string{topic} + " refused: " + error_message(v.error());
    });
    return outcome::done;
  }

  // -- telemetry held for its twin's shard (the client's thread) -----------------------
  //
  // Telemetry whose twin's shard is between owners waits in the node, per twin and in
  // order (what comes for the twin meanwhile waits behind it), and is tried again until
  // its twin takes it: the session with the broker goes on, and with it the telemetry of
  // every other twin. Its acknowledgement waits, holding back the ones after it; the
  // client's window of unhandled messages bounds how many. Past `hold_limit` (or when the
  // node stops) it is left to the broker, which sends it again after a reconnection; when
  // the connection it came on goes, it is dropped, as the broker sends it again anyway.

  struct held_message {
    telemetry_text text;
    mqtt_ack ack;
    std::chrono::steady_clock::time_point since;
    bool routed;  ///< sent to its twin before: goes before what came while it waited
  };

  void hold(telemetry_text text, mqtt_ack ack) {
    retries.fetch_add(1, std::memory_order_relaxed);
    auto key = telemetry_topic_id(text.topic())->str();
    auto& q = held[key];
    auto at = std::find_if(q.begin(), q.end(), [](const auto& m) { return !m.routed; });
    q.insert(at, {std::move(text), std::move(ack), std::chrono::steady_clock::now(), true});
    if (q.size() == 1)
      try_later(key, first_hold_delay);
  }

  void try_later(const std::string& key, std::chrono::milliseconds delay) {
    timer(delay, [self = shared_from_this(), key] { self->attempt(key); });
  }

  /// Sends the first message the twin `key` holds to it again.
  void attempt(const std::string& key) {
    auto h = held.find(key);
    if (h == held.end())
      return;
    auto& m = h->second.front();
    if (stopping.load())
      return give_up(h, make_error(runtime_errc::shutting_down, "the node stops"));
    auto t = device_telemetry_from_json(m.text.payload());  // parsed when it came
    m.routed = true;
    ingest_request req;
    req.values = std::move(t->values);
    // A reading without a time is stamped with when it came: the twin then skips it if
    // newer telemetry (or this same reading, taken after all) got there first.
    req.ts_ms = t->ts_ms != 0 ? t->ts_ms : m.text.arrived_ms;
    req.source = "mqtt";
    req.done = [self = shared_from_this(), key](caf::expected<uint64_t> v) {
      self->timer(std::chrono::milliseconds{0},
                  [self, key, v = std::move(v)] { self->settle(key, v); });
    };
    rt.route(*twin_id::parse(key), std::move(req));
  }

  /// The twin `key` answered its first held message.
  void settle(const std::string& key, const caf::expected<uint64_t>& v) {
    auto h = held.find(key);
    if (h == held.end())
      return;
    auto& q = h->second;
    switch (judge(v, q.front().text.topic())) {
      case outcome::done:
        q.front().ack.done();
        break;
      case outcome::broker: {  // so is what waits behind it, to stay in order
        q.front().ack.retry();
        q.pop_front();
        return give_up(h, v.error());
      }
      case outcome::hold: {
        auto waited = std::chrono::steady_clock::now() - q.front().since;
        if (stopping.load() || waited >= hold_limit)
          return give_up(h, v.error());
        retries.fetch_add(1, std::memory_order_relaxed);
        auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(waited);
        return try_later(key, std::clamp(delay, first_hold_delay, max_hold_delay));
      }
    }
    q.pop_front();
    if (q.empty())
      held.erase(h);
    else
      attempt(key);
  }

  using held_map = std::unordered_map<std::string, std::deque<held_message>>;

  /// Leaves everything the twin holds to the broker.
  void give_up(held_map::iterator h, const caf::error& why) {
    for (auto& m : h->second)
      give_up(m.ack, m.text.topic(), why);
    held.erase(h);
  }

  void give_up(mqtt_ack& ack, std::string_view topic, const caf::error& why) {
    deferred.fetch_add(1, std::memory_order_relaxed);
    log_limited([&] {
      return "MQTT telemetry on " + std::string{topic}
             + " not applied for now: " + error_message(why);
    });
    ack.retry();
  }

  template <class Why>
  void drop(std::atomic<uint64_t>& counter, std::string_view topic, mqtt_ack& ack, Why&& why) {
    counter.fetch_add(1, std::memory_order_relaxed);
    ack.done();
    log_limited([&] { return "MQTT message on " + std::string{topic} + " dropped: " + why(); });
  }

  router& rt;
  mqtt_options opts;
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> malformed{0};
  std::atomic<uint64_t> future_ts{0};
  std::atomic<uint64_t> retained{0};
  std::atomic<uint64_t> deferred{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<bool> stopping{false};
  mqtt_client::timer_fn timer;  ///< the client's (set before it starts)
  held_map held;                ///< by twin id (the client's thread)
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
  if (client_)
    return make_error(runtime_errc::invalid_argument, "the MQTT gateway was started already");
  const auto& o = shared_->opts;
  auto co = o.client;
  co.connect_timeout = timeout;
  std::string filter = telemetry_filter;
  if (!o.shared_group.empty())
    filter = "$share/" + o.shared_group + "/" + filter;
  co.subscriptions = {{filter, 1}};
  std::weak_ptr<shared> weak = shared_;
  client_ = std::make_unique<mqtt_client>(
    std::move(co),
    [weak](const mqtt_message& m, mqtt_ack ack) {
      if (auto s = weak.lock())
        s->on_message(m, std::move(ack));
      else
        ack.retry();
    },
    [weak](bool up, const std::string& text) {  // on the client's thread
      auto s = weak.lock();
      if (!s)
        return;
      s->log(!up, text);
      // What waits was received on the connection that went: the broker sends it again
      // on the next (QoS 1), and its acknowledgements could not be sent anyway.
      if (!up)
        s->held.clear();
    });
  shared_->timer = client_->timer();
  if (auto err = client_->start()) {
    client_.reset();
    return err;
  }
  return {};
}

void mqtt_gateway::stop(std::chrono::milliseconds drain) {
  shared_->stopping = true;  // held telemetry is left to the broker
  if (client_)
    client_->stop(drain);
}

bool mqtt_gateway::connected() const {
  return client_ && client_->connected();
}

mqtt_counts mqtt_gateway::counts() const {
  const auto& s = *shared_;
  mqtt_counts c{s.accepted.load(), s.rejected.load(), s.malformed.load(), s.future_ts.load(),
                s.retained.load(), s.deferred.load()};
  c.retries = s.retries.load();
  if (client_) {
    auto k = client_->counts();
    c.published = k.published;
    c.refused = k.refused;
    c.connections = k.connections;
  }
  return c;
}

void mqtt_gateway::publish_desired(const twin_id& id, const value_map& delta) {
  if (client_)
    client_->publish(desired_topic(id), to_json(delta).dump(), 1, true);
}

void mqtt_gateway::send_command(const twin_id& id, const std::string& name, const value& args) {
  if (client_)
    client_->publish(command_topic(id, name), to_json(args).dump(), 1, false);
}

} // namespace twin::ingest
