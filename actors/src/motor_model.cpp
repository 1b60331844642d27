#include "twin/actors/motor_model.hpp"

#include <algorithm>
#include <cmath>

namespace twin::actors {

double motor_model::equilibrium_temperature() const {
  // Losses grow with load and speed; a worn motor runs hotter.
  double speed = std::clamp(rpm / 3000.0, 0.0, 2.0);
  return ambient + 75.0 * load * speed + 25.0 * wear;
}

void motor_model::step(double dt_s, std::mt19937_64& rng) {
  std::normal_distribution<double> noise{0.0, 0.04};
  load = std::clamp(load + noise(rng) * std::sqrt(dt_s) + (base_load - load) * 0.1 * dt_s, 0.0,
                    1.0);
  rpm += (target_rpm - rpm) * std::min(1.0, dt_s / rpm_lag_s);
  if (std::abs(rpm - target_rpm) < 0.5)
    rpm = target_rpm;
  temperature += (equilibrium_temperature() - temperature) * std::min(1.0, dt_s / thermal_lag_s);
  double heat = std::max(0.0, temperature - 60.0) / 20.0;
  wear = std::min(1.0, wear + dt_s * (rpm / 3000.0) * (1.0 + heat) * 2e-5);
}

} // namespace twin::actors
