#pragma once
// The node as a library: `twind` is `run(argc, argv)`, and a program that ships twin types
// written in C++ is `run(argc, argv, its_extensions)`, e.g.
//
//   int main(int argc, char** argv) {
//     twin::node::extensions ext;
//     ext.name = "pumpd";
//     ext.types = [](twin::runtime::type_registry& types) { return add_pump(types); };
//     return twin::node::run(argc, argv, ext);
//   }
//
// Such a program takes every option of twind (and its config file), serves the same API,
// joins the same clusters, and loads `--models` files next to its own types.

#include <functional>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace CLI {
class App;
}

namespace twin::runtime {
class host;
class router;
class type_registry;
} // namespace twin::runtime

namespace twin::node {

struct options;

/// What a started node lends to a program's own services.
struct services {
  const options& opts;                  ///< the node's options
  const std::string& node_id;           ///< its id (`--node-id`, or the host's name)
  runtime::router& front;               ///< where requests go (the cluster, or the host)
  runtime::host& host;                  ///< this node's twins
  const runtime::type_registry& types;  ///< every twin type
  /// True when devices come over MQTT (`--mqtt-url`): the program must not set the host's
  /// gateway.
  bool mqtt = false;
};

/// Stops what `extensions::start` started.
using stopper = std::function<void()>;

/// What a program adds to the node. Every member is optional.
struct extensions {
  std::string name = "twind";  ///< the program's name, in --help and --version
  /// Declares the program's own options (they are keys of the config file too).
  std::function<void(CLI::App&)> add_options;
  /// Registers the program's C++ twin types; called before the `--models` files are read
  /// (a model file may not define a type the program has).
  std::function<caf::error(runtime::type_registry&)> types;
  /// Starts the program's services once the node serves, before it says it is ready;
  /// what it returns is called first when the node stops. An error stops the node.
  std::function<caf::expected<stopper>(const services&)> start;
};

/// Runs a node until SIGINT or SIGTERM (or the end of standard input with `--stdin`), and
/// returns the process's exit code: 0 when it stopped cleanly, 1 when it could not start
/// or stop, 3 when standard input ended (`--stdin`) and one of its lines failed.
int run(int argc, char** argv, const extensions& ext = {});

} // namespace twin::node
