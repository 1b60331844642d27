#pragma once

#include <memory>

#include "twin/node/node.hpp"

/// The factory's demo as a node's program service: `--demo` builds the plant (`layout`)
/// when the node starts, drives its motors with in-process simulated devices (unless they
/// come over MQTT, `--mqtt-url`) and logs a summary every few seconds.
namespace twin::factory {

class demo {
public:
  demo();
  ~demo();

  /// Adds the demo's options (`--demo`, `--demo-lines`, ...) and its start to `ext`. The
  /// demo must outlive `node::run`.
  void extend(node::extensions& ext);

private:
  struct state;
  std::unique_ptr<state> s_;
};

} // namespace twin::factory
