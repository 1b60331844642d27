#include "twin/actors/device_simulator.hpp"

#include <algorithm>
#include <cmath>

namespace twin::actors {

using namespace twin::runtime;

device_simulator::device_simulator(router& rt, options opts)
  : rt_(rt), opts_(opts), rng_(opts.seed) {
}

device_simulator::~device_simulator() {
  stop();
}

void device_simulator::add_device(const twin_id& id, type_ptr type, const value_map& reported,
                                  const value_map& desired) {
  device d;
  d.state = dynamics_state_of(*type, reported, desired);
  // What its dynamics drive, and the properties they read (inputs such as a duty).
  const auto& props = type->properties();
  auto measure = [&](int i) {
    const auto& p = props[static_cast<size_t>(i)];
    bool number = p.type == property_type::real || p.type == property_type::integer;
    auto& m = d.measured;
    if (!p.computed && number && std::find(m.begin(), m.end(), i) == m.end())
      m.push_back(i);
  };
  for (const auto& dyn : type->dynamics()) {
    measure(dyn.position);
    for (int i : dyn.inputs)
      if (i < static_cast<int>(props.size()))
        measure(i);
  }
  d.type = std::move(type);
  std::lock_guard<std::mutex> guard{mtx_};
  index_.emplace(id, ids_.size());
  ids_.push_back(id);
  devices_.push_back(std::move(d));
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
  for (auto& d : devices_) {
    step_dynamics(*d.type, d.state, dt_s, &rng_);
    ingest_request req;
    for (int i : d.measured) {
      double x = d.state[static_cast<size_t>(i)];
      if (std::isnan(x))
        continue;
      const auto& spec = d.type->properties()[static_cast<size_t>(i)];
      req.values.emplace(spec.name, spec.type == property_type::integer
                                      ? value{static_cast<int64_t>(std::llround(x))}
                                      : value{std::round(x * 1e4) / 1e4});
    }
    req.ts_ms = ts;
    req.source = "simulator";
    req.done = [this](caf::expected<uint64_t> v) {
      (v ? stats_.acked : stats_.failed).fetch_add(1, std::memory_order_relaxed);
    };
    reports.push_back(std::move(req));
  }
}

void device_simulator::publish_desired(const twin_id& id, const value_map& delta) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = index_.find(id);
  if (i == index_.end())
    return;
  auto& d = devices_[i->second];
  const auto& props = d.type->properties();
  for (const auto& [name, v] : delta) {
    int at = d.type->index_of(name);
    if (at >= 0)
      d.state[props.size() + static_cast<size_t>(at)] =
        v.is_number() ? v.as_double() : std::nan("");
  }
}

void device_simulator::send_command(const twin_id&, const std::string&, const value&) {
  // A command acts on a simulated device through the desired values its type declares for
  // it, which the twin publishes (`publish_desired`).
}

} // namespace twin::actors
