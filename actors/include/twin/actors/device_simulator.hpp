#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "twin/actors/motor_model.hpp"
#include "twin/runtime/router.hpp"

namespace twin::actors {

/// Simulated motor devices in-process: every `period` each motor steps its physical
/// model and reports temperature, rpm, load and wear through the router, the way a
/// device would. Desired `rpm` and the `stop` command reach the simulated motors through
/// the device_gateway interface, as they would reach real devices over MQTT.
///
/// Owned by the node's main; `start` after the router, `stop` before it.
/// The gateway methods are thread-safe; reports are routed without the simulator's lock
/// held, so a router may wait on a thread that calls them.
class device_simulator final : public runtime::device_gateway {
public:
  struct options {
    std::chrono::milliseconds period{500};  ///< wall time between reports; default 500 ms
    double time_scale = 10.0;  ///< simulated seconds per wall second; default 10
    uint64_t seed = 42;
  };

  struct stats {
    std::atomic<uint64_t> sent{0};
    std::atomic<uint64_t> acked{0};
    std::atomic<uint64_t> failed{0};
  };

  device_simulator(runtime::router& rt, options opts);
  ~device_simulator() override;

  /// Adds a motor device for twin `id`; call before `start`.
  void add_motor(const runtime::twin_id& id, motor_model m);

  void start();
  void stop();

  void publish_desired(const runtime::twin_id& id, const runtime::value_map& delta) override;
  void send_command(const runtime::twin_id& id, const std::string& name,
                    const runtime::value& args) override;

  const stats& counters() const { return stats_; }
  size_t size() const { return ids_.size(); }

private:
  void run();
  /// Steps every model and makes its report (in the order of `ids_`); mtx_ held.
  void tick(double dt_s, std::vector<runtime::ingest_request>& reports);

  runtime::router& rt_;
  options opts_;
  stats stats_;
  std::mt19937_64 rng_;
  std::mutex mtx_;  ///< guards models_ (ticks vs gateway calls)
  std::vector<runtime::twin_id> ids_;
  std::vector<motor_model> models_;
  std::unordered_map<runtime::twin_id, size_t> index_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace twin::actors
