#pragma once

#include <string>

namespace caf {
class actor_system_config;
}

namespace twin::runtime {

/// Sets up the scheduler of an actor system for twin workloads, in `cfg` before the
/// system is created: `threads` workers (0: one per core), at most 100 messages per actor
/// before a worker moves on, and the given policy. "sharing" (the default) installs the
/// runtime's own work-sharing scheduler as the system's scheduler module: one queue,
/// idle workers sleep, workers in the batch scheduling class (see runtime/README.md).
/// "stealing" is CAF's default, whose idle workers poll, which on few cores takes the CPU
/// that the twins and the store writer need (twinbench shows the difference).
/// Returns false if `policy` is neither.
bool configure_scheduler(caf::actor_system_config& cfg, int threads,
                         const std::string& policy = "sharing");

} // namespace twin::runtime
