#pragma once

#include <chrono>
#include <string>

#include "client.hpp"

namespace twinctl {

/// Follows GET `target`, a stream of server-sent events, and prints each event as it
/// comes (`as_json`: one JSON object a line), until `count` events (0: no end), the node
/// ends the stream, or nothing (not even a heartbeat) came for 45 s. `timeout` bounds the
/// wait for the answer's header. Returns the exit code: 6 if the stream fell behind and
/// the node ended it, 2 if the node went away.
int follow_events(const server_address& addr, const std::string& token, const std::string& target,
                  std::chrono::seconds timeout, bool as_json, size_t count);

} // namespace twinctl
