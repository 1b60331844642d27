#include "twin/ingest/mqtt_gateway.hpp"

#include <atomic>
#include <mutex>

#include "twin/ingest/mqtt_client.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace twin::ingest {

using namespace twin::runtime;

namespace {

constexpr const char* telemetry_filter = "twins/+/telemetry";
constexpr int max_logged_per_second = 10;

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
    ingest_request req;
    req.values = std::move(t->values);
    req.ts_ms = t->ts_ms;
    req.source = "mqtt";
    req.done = [self = shared_from_this(), ack, topic = std::string{msg.topic}](
                 caf::expected<uint64_t> v) mutable { self->answered(v, ack, topic); };
    rt.route(*id, std::move(req));
  }

  /// A twin answered: counts it and acknowledges the message, or asks for it again.
  void answered(const caf::expected<uint64_t>& v, mqtt_ack& ack, const std::string& topic) {
    if (v) {
      accepted.fetch_add(1, std::memory_order_relaxed);
      return ack.done();
    }
    switch (error_code(v.error())) {
      case runtime_errc::future_timestamp:
        future_ts.fetch_add(1, std::memory_order_relaxed);
        break;
      case runtime_errc::shutting_down:
      case runtime_errc::unavailable:
      case runtime_errc::not_owner:
      case runtime_errc::timeout:
      case runtime_errc::store_failure:
      case runtime_errc::insufficient_storage:
        deferred.fetch_add(1, std::memory_order_relaxed);
        log_limited([&] {
          return "MQTT telemetry on " + topic + " not applied for now: " + error_message(v.error());
        });
        return ack.retry();
      default:
        rejected.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    log_limited([&] {
      return "MQTT telemetry on " + topic + " refused: " + error_message(v.error());
    });
    ack.done();
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
    [weak](bool up, const std::string& text) {
      if (auto s = weak.lock())
        s->log(!up, text);
    });
  if (auto err = client_->start()) {
    client_.reset();
    return err;
  }
  return {};
}

void mqtt_gateway::stop(std::chrono::milliseconds drain) {
  if (client_)
    client_->stop(drain);
}

bool mqtt_gateway::connected() const {
  return client_ && client_->connected();
}

mqtt_counts mqtt_gateway::counts() const {
  const auto& s = *shared_;
  mqtt_counts c{s.accepted.load(), s.rejected.load(), s.malformed.load(), s.future_ts.load(),
                s.retained.load(), s.deferred.load(), 0, 0};
  if (client_) {
    auto k = client_->counts();
    c.published = k.published;
    c.refused = k.refused;
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
