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

#include "twin/runtime/kv_store.hpp"
#include "twin/runtime/rul.hpp"

namespace twin::runtime {

class twin_type;
class type_registry;

/// Keeps each type's RUL model (as Cap'n Proto) in a `kv_store`, by type, and installs it
/// on the type, whose twins apply it from their next sample. A type's versions rise with each fit,
/// across removals and restarts. Thread-safe; `install` and `remove` wait for the write.
class rul_catalog {
public:
  using warn_fn = std::function<void(const std::string& message)>;
  /// `types` must outlive the catalog. `warn` hears of models stored by other nodes that
  /// cannot be installed here.
  rul_catalog(std::unique_ptr<kv_store> store, const type_registry& types, warn_fn warn = {});
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

  /// Installs the stored model of `type` again: on a new version of the type (upgraded
  /// while the node runs). Nothing if the type learns no RUL or has no model.
  caf::error reinstall(const std::string& type);

  /// Removes the model of `type`; false if it had none.
  caf::expected<bool> remove(const std::string& type);

private:
  /// Stores `m` as the next version after what the store holds; `conflict` if another
  /// node stored one meanwhile.
  caf::error store_next(rul_model& m);
  /// Installs what the store holds for `type` (`bytes`; empty: nothing).
  caf::error apply(const std::string& type, const std::string& bytes);

  std::unique_ptr<kv_store> store_;
  const type_registry& types_;
  warn_fn warn_;
  std::mutex mu_;  ///< one install, removal or change at a time
};

} // namespace twin::runtime
