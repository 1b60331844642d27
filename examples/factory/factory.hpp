#pragma once

#include <string>

#include <caf/expected.hpp>

#include "twin/actors/device_simulator.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/router.hpp"

/// The factory example: plant (process) > line (system) > robot (asset) > motor
/// (component), each from its model file in models/. The motor shows the C++ SDK too: it
/// adds to its model file what a model cannot declare (a count of starts, kept by a
/// telemetry handler).
namespace twin::factory {

/// Registers the four types. `models_dir` empty: the model files built into the binary.
caf::error register_types(runtime::type_registry& reg, const std::string& models_dir = {});

struct layout {
  std::string ns = "factory";
  int lines = 12;
  int robots_per_line = 25;
  int motors_per_robot = 6;

  size_t twins() const {
    return 1 + lines + size_t(lines) * robots_per_line
           + size_t(lines) * robots_per_line * motors_per_robot;
  }
};

/// Creates the plant's twins that do not exist yet (level by level, each level in
/// parallel), each motor asking for the speed its device starts at, and adds a simulated
/// device for every motor to `sim` (if given). Returns the number of twins created.
caf::expected<size_t> build_plant(runtime::router& rt, const layout& l,
                                  const runtime::type_registry& types,
                                  actors::device_simulator* sim);

/// Adds a simulated device for every motor of the plant `l` to `sim`, following the
/// dynamics of the registry's `motor` type (the same devices each time: twinsim drives over
/// MQTT what `build_plant` drives in-process).
caf::error add_motors(const layout& l, const runtime::type_registry& types,
                      actors::device_simulator& sim);

} // namespace twin::factory
