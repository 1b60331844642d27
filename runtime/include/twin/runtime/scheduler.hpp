#pragma once

#include <string>

namespace caf {
class actor_system_config;
}

namespace twin::runtime {

/// Sets up CAF's scheduler for twin workloads: `threads` workers (0: one per core) and
/// the given policy. "sharing" (the default) is the runtime's own scheduler: one queue,
/// idle workers sleep, batch scheduling class (see scheduler.cpp). "stealing" is CAF's
/// default, whose idle workers poll, which on few cores takes the CPU that the twins and
/// the store writer need (twinbench shows the difference).
/// Returns false if `policy` is neither.
bool configure_scheduler(caf::actor_system_config& cfg, int threads,
                         const std::string& policy = "sharing");

} // namespace twin::runtime
