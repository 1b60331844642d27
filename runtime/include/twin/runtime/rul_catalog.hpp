#pragma once

// The RUL models of a node's twin types: stored, versioned, and installed on the types.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "twin/runtime/rul.hpp"

namespace twin::runtime {

class commit_point;
class state_store;
class twin_type;
class type_registry;

/// Keeps each type's RUL model in the node's store (the metadata of shard 0, key
/// `rul/<type>`, as Cap'n Proto) and installs it on the type, whose twins apply it from
/// their next sample. A type's versions rise with each fit, across removals and restarts.
/// Thread-safe; `install` and `remove` wait for the write.
class rul_catalog {
public:
  /// Reads from `store` and writes through `writer` (its commit point); all must outlive
  /// the catalog.
  rul_catalog(state_store& store, commit_point& writer, const type_registry& types);

  /// Reads the stored model of every type that learns a RUL and installs it (at start).
  /// A model whose inputs the type no longer has as numbers is not installed: its type
  /// and why are returned, for the log.
  caf::expected<std::vector<std::string>> load();

  /// Sets the positions of `m`'s inputs in `type`: each must be a declared number whose
  /// history the type keeps (a fit reads it). `invalid_argument` otherwise.
  static caf::error resolve(const twin_type& type, rul_model& m);

  /// Stores `m` (resolved, of a type that learns a RUL) as its type's next version, made
  /// now, and installs it.
  caf::expected<std::shared_ptr<const rul_model>> install(rul_model m);

  /// Removes the model of `type`; false if it had none.
  caf::expected<bool> remove(const std::string& type);

private:
  /// The version the next model of `type` gets.
  caf::expected<uint64_t> next_version(const std::string& type);
  caf::error store(const rul_model& m);

  state_store& store_;
  commit_point& writer_;
  const type_registry& types_;
  std::mutex mu_;  ///< one install or removal at a time
};

} // namespace twin::runtime
