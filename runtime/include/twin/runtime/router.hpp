#pragma once

#include <cstdint>
#include <string>

#include "twin/runtime/messages.hpp"
#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// Delivers requests to twins wherever they live: on one node the local host, on a
/// cluster the owner of the twin's shard. Front ends (HTTP, MQTT, RPC) and twins use
/// only this interface. Thread-safe: `route` may be called from any thread.
/// Per sender and twin, requests are delivered in the order they were routed.
class router {
public:
  virtual ~router();
  /// Delivers `req` to twin `id`, activating it if needed. Never blocks on the twin.
  /// If the twin cannot be reached, `req` is answered with the error.
  virtual void route(const twin_id& id, twin_request req) = 0;
};

/// Where the runtime sends what devices must hear: the desired delta and commands.
/// MQTT implements it for real devices; simulations implement it in-process.
/// Called from twin actors: implementations are thread-safe and must not block.
class device_gateway {
public:
  virtual ~device_gateway();
  /// The desired delta of twin `id` changed (empty: nothing to do).
  virtual void publish_desired(const twin_id& id, const value_map& delta) = 0;
  /// A command for the device behind twin `id`.
  virtual void send_command(const twin_id& id, const std::string& name, const value& args) = 0;
};

} // namespace twin::runtime
