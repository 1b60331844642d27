// twinsim: simulated factory motors that speak MQTT, as real devices would. Each motor
// steps its physical model and publishes temperature, rpm, load and wear to
// `twins/{id}/telemetry`; desired rpm (`twins/{id}/desired`) and the `stop` command
// (`twins/{id}/commands/stop`) reach the simulated motors.
//
//   twind-factory --demo --mqtt-url tcp://127.0.0.1:1883 &     # builds the plant, no devices
//   twinsim --mqtt-url tcp://127.0.0.1:1883            # its 1,800 motors, 2 reports/s each

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "twin/actors/device_simulator.hpp"
#include "factory.hpp"
#include "twin/ingest/mqtt_client.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

namespace {

using namespace twin;
using namespace twin::runtime;

/// The simulated devices' way out: their reports become MQTT messages, answered once the
/// broker has them (QoS 1) or once they are written (QoS 0). A report that the client
/// refuses because its queue is full (`--window` unanswered) is dropped and counted as
/// failed, as a device drops samples that its link cannot carry: the queue stays short
/// instead of growing for as long as the motors report faster than the link sends.
class mqtt_out final : public router {
public:
  explicit mqtt_out(int qos) : qos_(qos) {}

  void set_client(ingest::mqtt_client* c) { client_.store(c); }

  void route(const twin_id& id, twin_request req) override {
    auto* t = std::get_if<ingest_request>(&req);
    if (t == nullptr)
      return fail_request(req, make_error(runtime_errc::invalid_argument,
                                          "a device only reports telemetry"));
    auto* client = client_.load();
    if (client == nullptr)
      return t->done(make_error(runtime_errc::unavailable, "not connected"));
    auto payload = to_json(t->values);
    if (t->ts_ms > 0)
      payload["ts"] = t->ts_ms;
    auto& done = t->done;
    if (!client->publish(ingest::telemetry_topic(id), payload.dump(), static_cast<uint8_t>(qos_),
                         false, [done](bool delivered) {
                           if (delivered)
                             done(uint64_t{0});
                           else
                             done(make_error(runtime_errc::unavailable, "not delivered"));
                         }))
      done(make_error(runtime_errc::unavailable, "the link is saturated"));
  }

private:
  std::atomic<ingest::mqtt_client*> client_{nullptr};
  int qos_;
};

/// Hands what the node sends to devices (desired deltas, commands) to the simulated motors.
void to_devices(actors::device_simulator& sim, const ingest::mqtt_message& msg) {
  twin_id twin;
  std::string command;
  if (!ingest::parse_device_topic(msg.topic, twin, command))
    return;
  auto doc = nlohmann::json::parse(msg.payload.begin(), msg.payload.end(), nullptr, false);
  if (doc.is_discarded())
    return;
  if (command.empty()) {
    if (auto delta = map_from_json(doc))
      sim.publish_desired(twin, *delta);
  } else if (auto args = value_from_json(doc)) {
    sim.send_command(twin, command, *args);
  }
}

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

  mqtt_out out{qos};
  actors::device_simulator::options so;
  so.period = std::chrono::milliseconds{period_ms};
  so.time_scale = time_scale;
  actors::device_simulator sim{out, so};
  runtime::type_registry types;  // the devices follow the factory's models as built in
  if (auto err = factory::register_types(types)) {
    std::fprintf(stderr, "twinsim: %s\n", error_message(err).c_str());
    return 1;
  }
  if (auto err = factory::add_motors(l, types, sim)) {
    std::fprintf(stderr, "twinsim: %s\n", error_message(err).c_str());
    return 1;
  }
  ingest::mqtt_client_options co;
  co.url = url;
  co.client_id = client_id;
  co.clean_session = true;
  co.max_queued = static_cast<size_t>(window);
  co.subscriptions = {{"twins/+/desired", 1}, {"twins/+/commands/+", 1}};
  ingest::mqtt_client client{
    co,
    [&sim](const ingest::mqtt_message& msg, ingest::mqtt_ack ack) {
      try {
        to_devices(sim, msg);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "twinsim: message on %.*s: %s\n",
                     static_cast<int>(msg.topic.size()), msg.topic.data(), e.what());
      }
      ack.done();
    },
    [](bool up, const std::string& text) {
      if (!up)
        std::fprintf(stderr, "twinsim: %s\n", text.c_str());
    }};
  // The client stops before the simulator: the reports still under way are answered first.
  auto finish = [&](int code) {
    client.stop();
    out.set_client(nullptr);
    sim.stop();
    return code;
  };
  if (auto err = client.start()) {
    std::fprintf(stderr, "twinsim: %s\n", error_message(err).c_str());
    return 1;
  }
  out.set_client(&client);
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
