#pragma once

#include <cstdint>
#include <random>

namespace twin::actors {

/// A simple physical model of an electric motor, stepped in simulated seconds.
/// Temperature follows a target set by load, speed and wear with a first-order lag;
/// speed follows the commanded rpm; wear grows with speed and heat.
/// A plain value type; not thread-safe.
struct motor_model {
  double ambient = 22.0;       ///< °C
  double temperature = 22.0;   ///< °C
  double rpm = 0.0;
  double target_rpm = 1500.0;
  double load = 0.5;           ///< 0..1
  double base_load = 0.5;      ///< the load the random walk returns to
  double wear = 0.0;           ///< 0 (new) .. 1 (worn out)
  double thermal_lag_s = 20.0; ///< time constant of the temperature
  double rpm_lag_s = 2.0;      ///< time constant of the speed

  /// The temperature the motor settles at for the current load, speed and wear.
  double equilibrium_temperature() const;

  /// Advances the model by `dt_s` seconds; `rng` drives the load's random walk.
  void step(double dt_s, std::mt19937_64& rng);
};

} // namespace twin::actors
