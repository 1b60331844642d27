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

#include "twin/runtime/dynamics.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/router.hpp"

namespace twin::actors {

/// Simulated devices in-process: every `period` each device steps the declared dynamics of
/// its twin's type, with their noise (`runtime::step_dynamics`), and reports through the
/// router, the way a device would, the properties the dynamics drive and the declared
/// numbers they read (inputs such as a duty), those that have a value. What the twin predicts and what the device does thus come from
/// one model. Desired values reach the devices through the device_gateway interface, as
/// they would reach real devices over MQTT, and drive the dynamics that read them
/// (`desired.<name>`); a command acts through the desired values its type declares for it.
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

  /// Adds the device of twin `id`, of `type` (which outlives the simulator), starting
  /// from these values; call before `start`.
  void add_device(const runtime::twin_id& id, runtime::type_ptr type,
                  const runtime::value_map& reported, const runtime::value_map& desired = {});

  void start();
  void stop();

  void publish_desired(const runtime::twin_id& id, const runtime::value_map& delta) override;
  void send_command(const runtime::twin_id& id, const std::string& name,
                    const runtime::value& args) override;

  const stats& counters() const { return stats_; }
  size_t size() const { return ids_.size(); }

private:
  struct device {
    runtime::type_ptr type;
    runtime::dynamics_state state;
    std::vector<int> measured;  ///< the positions it reports
  };

  void run();
  /// Steps every device and makes its report (in the order of `ids_`); mtx_ held.
  void tick(double dt_s, std::vector<runtime::ingest_request>& reports);

  runtime::router& rt_;
  options opts_;
  stats stats_;
  std::mt19937_64 rng_;
  std::mutex mtx_;  ///< guards devices_ (ticks vs gateway calls)
  std::vector<runtime::twin_id> ids_;
  std::vector<device> devices_;
  std::unordered_map<runtime::twin_id, size_t> index_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace twin::actors
