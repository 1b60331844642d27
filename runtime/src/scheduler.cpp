#include "twin/runtime/scheduler.hpp"

#include <algorithm>
#include <thread>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>

namespace twin::runtime {

bool configure_scheduler(caf::actor_system_config& cfg, int threads, const std::string& policy) {
  if (policy != "sharing" && policy != "stealing")
    return false;
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cfg.set("scheduler.max-threads", n);
  cfg.set("scheduler.policy", policy == "sharing" ? caf::atom("sharing") : caf::atom("stealing"));
  cfg.set("logger.console", caf::atom("none"));
  return true;
}

} // namespace twin::runtime
