#include "twin/actors/device_simulator.hpp"

#include <cmath>

namespace twin::actors {

using namespace twin::runtime;

device_simulator::device_simulator(router& rt, options opts)
  : rt_(rt), opts_(opts), rng_(opts.seed) {
}

device_simulator::~device_simulator() {
  stop();
}

void device_simulator::add_motor(const twin_id& id, motor_model m) {
  std::lock_guard<std::mutex> guard{mtx_};
  index_.emplace(id, ids_.size());
  ids_.push_back(id);
  models_.push_back(m);
}

void device_simulator::start() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (thread_.joinable())
    return;
  stopping_ = false;
  thread_ = std::thread{[this] { run(); }};
}

void device_simulator::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void device_simulator::run() {
  auto next = std::chrono::steady_clock::now();
  double dt_s = std::chrono::duration<double>(opts_.period).count() * opts_.time_scale;
  std::vector<ingest_request> reports;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{mtx_};
      next += opts_.period;
      if (cv_.wait_until(guard, next, [this] { return stopping_; }))
        break;
      tick(dt_s, reports);
    }
    // Sent without the lock: a router may wait on what calls the gateway methods (an
    // MQTT client's lock, held while it hands a desired delta to us).
    for (size_t i = 0; i < reports.size(); ++i) {
      stats_.sent.fetch_add(1, std::memory_order_relaxed);
      rt_.route(ids_[i], std::move(reports[i]));
    }
  }
}

// Called with mtx_ held.
void device_simulator::tick(double dt_s, std::vector<ingest_request>& reports) {
  auto ts = now_ms();
  reports.clear();
  for (auto& m : models_) {
    m.step(dt_s, rng_);
    auto round2 = [](double x) { return std::round(x * 100.0) / 100.0; };
    ingest_request req;
    req.values = {{"temperature", value{round2(m.temperature)}},
                  {"rpm", value{std::round(m.rpm)}},
                  {"load", value{round2(m.load)}},
                  {"wear", value{std::round(m.wear * 1e4) / 1e4}}};
    req.ts_ms = ts;
    req.source = "simulator";
    req.done = [this](caf::expected<uint64_t> v) {
      (v ? stats_.acked : stats_.failed).fetch_add(1, std::memory_order_relaxed);
    };
    reports.push_back(std::move(req));
  }
}

void device_simulator::publish_desired(const twin_id& id, const value_map& delta) {
  auto rpm = delta.find("rpm");
  if (rpm == delta.end() || !rpm->second.is_number())
    return;
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto i = index_.find(id); i != index_.end())
    models_[i->second].target_rpm = rpm->second.as_double();
}

void device_simulator::send_command(const twin_id& id, const std::string& name, const value&) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = index_.find(id);
  if (i == index_.end())
    return;
  if (name == "stop")
    models_[i->second].target_rpm = 0;
}

} // namespace twin::actors
