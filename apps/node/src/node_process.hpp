#pragma once
// The services of a node, started in order and stopped in reverse.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "twin/node/node.hpp"
#include "twin/node/options.hpp"
#include "twin/runtime/model.hpp"

namespace twin::node {

/// What stops started services: each stop is pushed once its service runs, and `stop_all`
/// calls them last first.
class service_stack {
public:
  ~service_stack() { stop_all(); }

  void push(std::function<caf::error()> stop) { stops_.push_back(std::move(stop)); }

  /// Stops every service, last started first; returns the first error.
  caf::error stop_all();

private:
  std::vector<std::function<caf::error()>> stops_;
};

/// One node: its store, actor system, twins, cluster membership, HTTP API, metrics port,
/// MQTT gateway and the program's services.
class node_process {
public:
  node_process(const options& o, const extensions& ext, bool shards_given);
  ~node_process();

  /// Starts every service in order; on an error, stops what started.
  caf::error start();

  /// Stops every service, last started first.
  caf::error stop();

  /// The node's router (the cluster's when a member), once started.
  runtime::router& front();
  /// The node's twin types.
  const runtime::type_registry& types() const { return types_; }

  /// The node's own twins, once started.
  runtime::host& host();

  const std::string& id() const { return node_id_; }

private:
  struct state;

  caf::error load_types();
  caf::error open_store();
  caf::error start_twins();
  caf::error open_shared_state();
  caf::error start_metrics();
  caf::error start_api();
  caf::error start_mqtt();
  caf::error start_program();

  const options& o_;
  const extensions& ext_;
  bool shards_given_;
  std::string node_id_;
  runtime::type_registry types_;
  std::unique_ptr<state> s_;
  service_stack services_;
};

} // namespace twin::node
