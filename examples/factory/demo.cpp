#include "demo.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "factory.hpp"
#include "twin/node/options.hpp"
#include "twin/runtime/await.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/host.hpp"

namespace twin::factory {

using namespace twin::runtime;

struct demo::state {
  bool on = false;           // --demo
  layout plant;              // --demo-lines, --demo-robots, --demo-motors
  int period_ms = 500;       // --demo-period-ms
  int summary_s = 5;         // --summary-interval
  std::unique_ptr<actors::device_simulator> sim;
  std::thread summaries;
  std::mutex mtx;
  std::condition_variable wake;
  bool stopping = false;     // under mtx

  caf::expected<node::stopper> start(const node::services& node);
  void summarize(const node::services& node);
};

namespace {

/// Reads a twin's property, for the summary (waits at most 1 s).
value read_property(router& rt, const std::string& id, const std::string& name) {
  auto tid = twin_id::parse(id);
  if (!tid)
    return value{};
  auto r = await_answer<twin_record>(
    [&](auto done) { rt.route(*tid, get_request{std::move(done)}); }, std::chrono::seconds{1});
  if (!r)
    return value{};
  auto i = r->reported.find(name);
  return i == r->reported.end() ? value{} : i->second;
}

} // namespace

demo::demo() : s_(std::make_unique<state>()) {
}

demo::~demo() = default;

void demo::extend(node::extensions& ext) {
  auto& s = *s_;
  ext.add_options = [&s](CLI::App& app) {
    app.add_flag("--demo", s.on, "Build the factory's plant and simulate its motors");
    app.add_option("--demo-lines", s.plant.lines, "Demo: production lines")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
    app.add_option("--demo-robots", s.plant.robots_per_line, "Demo: robots per line")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
    app.add_option("--demo-motors", s.plant.motors_per_robot, "Demo: motors per robot")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
    app.add_option("--demo-period-ms", s.period_ms, "Demo: ms between device reports")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
    app.add_option("--summary-interval", s.summary_s, "Demo: seconds between summaries")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  };
  ext.start = [&s](const node::services& node) -> caf::expected<node::stopper> {
    if (!s.on)
      return node::stopper{};
    return s.start(node);
  };
}

caf::expected<node::stopper> demo::state::start(const node::services& node) {
  // The devices run in-process, unless they come over MQTT (twinsim).
  if (!node.mqtt) {
    actors::device_simulator::options so;
    so.period = std::chrono::milliseconds{period_ms};
    sim = std::make_unique<actors::device_simulator>(node.front, so);
    node.host.set_gateway(sim.get());
  }
  auto t0 = std::chrono::steady_clock::now();
  auto created = build_plant(node.front, plant, node.types, sim.get());
  if (!created)
    return caf::error{created.error().code(), created.error().category(),
                      caf::make_message("cannot build the demo plant: "
                                        + error_message(created.error()))};
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - t0)
              .count();
  if (sim) {
    spdlog::info("demo plant: {} twins ({} created in {} ms), {} simulated motors; "
                 "watch factory:plant, e.g. max_temperature and health",
                 plant.twins(), *created, ms, sim->size());
    sim->start();
  } else {
    spdlog::info("demo plant: {} twins ({} created in {} ms); its devices come over MQTT: "
                 "twinsim --mqtt-url {} --lines {} --robots {} --motors {}",
                 plant.twins(), *created, ms, node.opts.mqtt_url, plant.lines,
                 plant.robots_per_line, plant.motors_per_robot);
  }
  summaries = std::thread{[this, node] { summarize(node); }};
  // The devices stop; the simulator stays the host's gateway until the twins stop.
  return node::stopper{[this] {
    {
      std::lock_guard<std::mutex> guard{mtx};
      stopping = true;
    }
    wake.notify_all();
    summaries.join();
    if (sim)
      sim->stop();
  }};
}

/// Logs a summary every `summary_s` until the demo stops.
void demo::state::summarize(const node::services& node) {
  auto last = std::chrono::steady_clock::now();
  uint64_t last_updates = node.host.stats().updates.load();
  std::unique_lock<std::mutex> lock{mtx};
  while (!wake.wait_for(lock, std::chrono::seconds{summary_s}, [this] { return stopping; })) {
    auto now = std::chrono::steady_clock::now();
    auto updates = node.host.stats().updates.load();
    double secs = std::chrono::duration<double>(now - last).count();
    auto c = node.host.counts();
    auto temperature = read_property(node.front, plant.ns + ":plant", "max_temperature");
    auto health = read_property(node.front, plant.ns + ":plant", "health");
    spdlog::info("twins stored {} active {} | updates/s {:.0f} | alerts warning {} critical {} "
                 "| plant max_temperature {} health {}",
                 c.twins, node.host.active_count(), (updates - last_updates) / secs,
                 c.alerts_warning, c.alerts_critical, to_string(temperature),
                 health.is_string() ? health.as_string() : to_string(health));
    last = now;
    last_updates = updates;
  }
}

} // namespace twin::factory
