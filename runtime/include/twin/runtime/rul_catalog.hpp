#pragma once

// The RUL models of a node's twin types: stored, versioned, and installed on the types.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
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

/// Where a node keeps its types' RUL models, as bytes by type: its own store when it is
/// alone, the cluster's when it is a member (every member then sees every model).
class rul_store {
public:
  virtual ~rul_store();
  /// The model of `type`, nullopt if none was ever stored.
  virtual caf::expected<std::optional<std::string>> get(const std::string& type) = 0;
  /// Stores `bytes` as the model of `type` if what is stored is still `expected` (nullopt:
  /// nothing); false, storing nothing, if it is not. Waits until it is durable.
  virtual caf::expected<bool> put(const std::string& type, const std::string& bytes,
                                  const std::optional<std::string>& expected) = 0;

  using change_fn = std::function<void(const std::string& type, const std::string& bytes)>;
  /// From now on calls `on_change(type, bytes)` for each model stored by another node
  /// that shares the store (on a thread of the store's), until the store goes. A store
  /// nobody else writes calls nothing.
  virtual caf::error follow(change_fn on_change);
};

/// A node's own store: the metadata of shard 0, key `rul/<type>`, written through the
/// node's commit point (which orders it with the twins' writes).
std::unique_ptr<rul_store> make_local_rul_store(state_store& store, commit_point& writer);

/// Keeps each type's RUL model (as Cap'n Proto) in a `rul_store` and installs it on the
/// type, whose twins apply it from their next sample. A type's versions rise with each fit,
/// across removals and restarts. Thread-safe; `install` and `remove` wait for the write.
class rul_catalog {
public:
  using warn_fn = std::function<void(const std::string& message)>;
  /// `types` must outlive the catalog. `warn` hears of models stored by other nodes that
  /// cannot be installed here.
  rul_catalog(std::unique_ptr<rul_store> store, const type_registry& types, warn_fn warn = {});
  ~rul_catalog();

  /// Follows the store's changes by other nodes, then reads the stored model of every
  /// type that learns a RUL and installs it (at start). A model whose inputs the type no
  /// longer has as numbers is not installed: its type and why are returned, for the log.
  caf::expected<std::vector<std::string>> load();

  /// Sets the positions of `m`'s inputs in `type`: each must be a declared number whose
  /// history the type keeps (a fit reads it). `invalid_argument` otherwise.
  static caf::error resolve(const twin_type& type, rul_model& m);

  /// Stores `m` (resolved, of a type that learns a RUL) as its type's next version, made
  /// now, and installs it. `conflict` if another node stored one meanwhile.
  caf::expected<std::shared_ptr<const rul_model>> install(rul_model m);

  /// Removes the model of `type`; false if it had none.
  caf::expected<bool> remove(const std::string& type);

private:
  /// Stores `m` as the next version after what the store holds; `conflict` if another
  /// node stored one meanwhile.
  caf::error store_next(rul_model& m);
  /// Installs what the store holds for `type` (`bytes`; empty: nothing).
  caf::error apply(const std::string& type, const std::string& bytes);

  std::unique_ptr<rul_store> store_;
  const type_registry& types_;
  warn_fn warn_;
  std::mutex mu_;  ///< one install, removal or change at a time
};

} // namespace twin::runtime
