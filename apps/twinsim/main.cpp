// twinsim: simulated factory motors that speak MQTT, as real devices would. Each motor
// steps its physical model and publishes temperature, rpm, load and wear to
// `twins/{id}/telemetry`; desired rpm (`twins/{id}/desired`) and the `stop` command
// (`twins/{id}/commands/stop`) reach the simulated motors.
//
//   twind --demo --mqtt-url tcp://127.0.0.1:1883 &     # builds the plant, no devices
//   twinsim --mqtt-url tcp://127.0.0.1:1883            # its 1,800 motors, 2 reports/s each

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>

#include "twin/actors/device_simulator.hpp"
#include "factory.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace {

using namespace twin;
using namespace twin::runtime;

/// The answer to one published report: the device's request is done once the broker
/// has it (QoS 1) or once it is sent (QoS 0). Deletes itself.
struct delivery final : mqtt::iaction_listener {
  delivery(version_fn d, std::atomic<int64_t>& in_flight)
    : done(std::move(d)), in_flight(in_flight) {}
  void on_success(const mqtt::token&) override {
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    done(uint64_t{0});
    delete this;
  }
  void on_failure(const mqtt::token& t) override {
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    done(make_error(runtime_errc::unavailable,
                    "publish failed (code " + std::to_string(t.get_return_code()) + ")"));
    delete this;
  }
  version_fn done;
  std::atomic<int64_t>& in_flight;
};

/// The simulated devices' way out: their reports become MQTT messages. A report made while
/// `window` reports are still unanswered is dropped (and counted as failed), as a device
/// drops samples that its link cannot carry: the client's queue stays short instead of
/// growing for as long as the motors report faster than the link sends.
class mqtt_out final : public router {
public:
  mqtt_out(mqtt::async_client& client, int qos, int64_t window)
    : client_(client), qos_(qos), window_(window) {}

  void route(const twin_id& id, twin_request req) override {
    auto* t = std::get_if<ingest_request>(&req);
    if (t == nullptr)
      return fail_request(req, make_error(runtime_errc::invalid_argument,
                                          "a device only reports telemetry"));
    if (in_flight_.load(std::memory_order_relaxed) >= window_)
      return t->done(make_error(runtime_errc::unavailable, "the link is saturated"));
    auto payload = to_json(t->values);
    if (t->ts_ms > 0)
      payload["ts"] = t->ts_ms;
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    auto d = std::make_unique<delivery>(std::move(t->done), in_flight_);
    try {
      auto text = payload.dump();
      client_.publish(ingest::telemetry_topic(id), text.data(), text.size(), qos_, false,
                      nullptr, *d);
      d.release();  // the client answers it, once
    } catch (const std::exception& e) {
      in_flight_.fetch_sub(1, std::memory_order_relaxed);
      d->done(make_error(runtime_errc::unavailable, e.what()));
    }
  }

private:
  mqtt::async_client& client_;
  int qos_;
  int64_t window_;
  std::atomic<int64_t> in_flight_{0};
};

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"twinsim: simulated factory motors over MQTT"};
  std::string url = "tcp://127.0.0.1:1883";
  std::string client_id = "twinsim";
  factory::layout l;
  int period_ms = 500;
  double time_scale = 10;
  int qos = 1;
  int duration_s = 0;
  int summary_s = 5;
  int64_t window = 10000;
  app.add_option("--mqtt-url", url, "The broker")->capture_default_str();
  app.add_option("--client-id", client_id, "MQTT client id")->capture_default_str();
  app.add_option("--ns", l.ns, "Namespace of the plant's twins")->capture_default_str();
  app.add_option("--lines", l.lines, "Production lines")->capture_default_str();
  app.add_option("--robots", l.robots_per_line, "Robots per line")->capture_default_str();
  app.add_option("--motors", l.motors_per_robot, "Motors per robot")->capture_default_str();
  app.add_option("--period-ms", period_ms, "ms between a motor's reports")
    ->capture_default_str()
    ->check(CLI::Range(1, 3600000));
  app.add_option("--time-scale", time_scale, "Simulated seconds per second")
    ->capture_default_str();
  app.add_option("--qos", qos, "QoS of the reports")->capture_default_str()->check(
    CLI::IsMember({0, 1}));
  app.add_option("--duration", duration_s, "Stop after this many seconds (0: on SIGINT)")
    ->capture_default_str();
  app.add_option("--window", window,
                 "Reports unanswered at most; more are dropped and counted as failed")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.add_option("--summary-interval", summary_s, "Seconds between summaries")
    ->capture_default_str()
    ->check(CLI::Range(1, 3600));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Signals are taken by the main thread only (sigwait below): blocked before any other
  // thread starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<mqtt::async_client> client;
  try {
    mqtt::create_options co{MQTTVERSION_3_1_1, 100000};
    co.set_send_while_disconnected(true);
    client = std::make_unique<mqtt::async_client>(url, client_id, co);
  } catch (const mqtt::exception& e) {
    std::fprintf(stderr, "twinsim: invalid broker URL %s: %s\n", url.c_str(), e.what());
    return 1;
  }
  mqtt_out out{*client, qos, window};
  actors::device_simulator::options so;
  so.period = std::chrono::milliseconds{period_ms};
  so.time_scale = time_scale;
  actors::device_simulator sim{out, so};
  if (auto err = factory::add_motors(l, sim)) {
    std::fprintf(stderr, "twinsim: %s\n", error_message(err).c_str());
    return 1;
  }
  client->set_message_callback([&sim](mqtt::const_message_ptr msg) {
    try {  // nothing may escape into the client library
      twin_id twin;
      std::string command;
      if (!ingest::parse_device_topic(msg->get_topic(), twin, command))
        return;
      const auto& payload = msg->get_payload_ref();
      auto doc = nlohmann::json::parse(payload.data(), payload.data() + payload.size(), nullptr,
                                       false);
      if (doc.is_discarded())
        return;
      if (command.empty()) {
        if (auto delta = map_from_json(doc))
          sim.publish_desired(twin, *delta);
      } else if (auto args = value_from_json(doc)) {
        sim.send_command(twin, command, *args);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "twinsim: message on %s: %s\n", msg->get_topic().c_str(), e.what());
    }
  });
  // The client goes before the simulator: destroying it fails the reports still under way,
  // whose answers reach the simulator.
  auto finish = [&](int code) {
    sim.stop();
    try {
      if (client->is_connected())
        client->disconnect()->wait_for(std::chrono::seconds{5});
    } catch (const mqtt::exception&) {
    }
    client.reset();
    return code;
  };
  client->set_connected_handler([&client](const std::string&) {
    try {
      client->subscribe("twins/+/desired", 1);
      client->subscribe("twins/+/commands/+", 1);
    } catch (const mqtt::exception& e) {
      std::fprintf(stderr, "twinsim: subscribe failed: %s\n", e.what());
    }
  });
  auto connect = mqtt::connect_options_builder{}
                   .clean_session(true)
                   .automatic_reconnect(std::chrono::seconds{1}, std::chrono::seconds{30})
                   .finalize();
  try {
    if (!client->connect(connect)->wait_for(std::chrono::seconds{10})) {
      std::fprintf(stderr, "twinsim: cannot reach the broker at %s\n", url.c_str());
      return finish(1);
    }
  } catch (const mqtt::exception& e) {
    std::fprintf(stderr, "twinsim: cannot connect to %s: %s\n", url.c_str(), e.what());
    return finish(1);
  }
  std::printf("twinsim: %zu motors of %s reporting every %d ms to %s\n", sim.size(),
              l.ns.c_str(), period_ms, url.c_str());
  std::fflush(stdout);

  sim.start();
  auto t0 = std::chrono::steady_clock::now();
  uint64_t last_acked = 0;
  for (;;) {
    timespec timeout{summary_s, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM)
      break;
    const auto& c = sim.counters();
    auto acked = c.acked.load();
    std::printf("twinsim: sent %llu, delivered %llu (%.0f/s), failed %llu\n",
                static_cast<unsigned long long>(c.sent.load()),
                static_cast<unsigned long long>(acked),
                static_cast<double>(acked - last_acked) / summary_s,
                static_cast<unsigned long long>(c.failed.load()));
    std::fflush(stdout);
    last_acked = acked;
    if (duration_s > 0 && std::chrono::steady_clock::now() - t0 >= std::chrono::seconds{duration_s})
      break;
  }
  return finish(0);
}
