#pragma once

// Thread names, as `top -H`, `ps -L` and /proc/<pid>/task/<tid>/comm show them (the actor
// system names its own: caf.worker, caf.clock, caf.multiplexer).

#include <pthread.h>

namespace twin::runtime {

/// Names the calling thread; at most 15 characters are kept.
inline void name_thread(const char* name) {
  pthread_setname_np(pthread_self(), name);
}

} // namespace twin::runtime
