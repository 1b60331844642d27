#pragma once

// The twin types added and upgraded while the node runs (PUT /v1/types/{name}): their models
// stored, installed in the registry on every node, and the types that twins have but no
// model defines.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "twin/runtime/kv_store.hpp"
#include "twin/runtime/metrics.hpp"

namespace twin::runtime {

class state_store;
class twin_type;
class type_registry;

/// Keeps the interfaces uploaded at run time in a `kv_store`, each by its DTMI without the
/// version (its latest version; in the node's store, or the cluster's: every member
/// installs them), and installs their types in the registry: at start, after the model
/// files, and as each is stored. An upload holds one Interface or an array of them; they
/// may extend the interfaces the node has (model files, earlier uploads). Each becomes a
/// type, added or upgraded.
///
/// An upgrade is a model of the same DTMI with a higher version, of the same kind, and
/// no type outside the upload extends it. Twins take it at their next message (active
/// ones) or activation. A property the new version no longer declares keeps its value on
/// the twins that have one, shown and not checked, until a put replaces the twin; the new
/// version's checks apply to what is written from then on.
///
/// It also knows the types that twins in the store have and no model defines (their
/// twins can be read and deleted only), for readiness and metrics. Thread-safe.
class model_catalog final : public metrics::collectable {
public:
  using warn_fn = std::function<void(const std::string& message)>;
  /// Hears of each type added or upgraded (to install what hangs on it, e.g. a RUL model).
  using installed_fn = std::function<void(const twin_type& type)>;

  /// `types` and `twins` (the store whose twins' types are checked) must outlive it.
  model_catalog(std::unique_ptr<kv_store> store, type_registry& types, state_store& twins,
                warn_fn warn = {}, installed_fn installed = {});
  ~model_catalog() override;

  /// Follows the store's changes by other nodes, then installs every stored model. A model
  /// that does not install (a model file of the node has a higher version now, ...) is
  /// skipped: returned with why, for the log.
  caf::expected<std::vector<std::string>> load();

  /// What an upload did: the types added, upgraded, and unchanged (the same DTMI and
  /// version as the node has).
  struct outcome {
    std::vector<std::string> added;
    std::vector<std::string> upgraded;
    std::vector<std::string> unchanged;
  };

  /// Checks `text` (one Interface or an array) as the model of type `name` (its name or
  /// its DTMI must be one of the types it defines), stores it and installs its types.
  /// `invalid_model` saying why (nothing is stored then), `conflict` if another node
  /// stored a model of `name` meanwhile.
  caf::expected<outcome> put(const std::string& name, const std::string& text);

  /// The types that twins in the store have and no model defines, by name: as found at
  /// the last look, which is at most 10 s old (a look reads the store's index of types).
  std::vector<std::string> missing() const;
  /// Looks for them again (at start, and after each change of the types).
  caf::error refresh_missing() const;

  void collect(std::vector<metrics::family>& out) const override;

private:
  struct plan;
  /// What installing the model documents `texts` (`{origin, text}`) would do, checked.
  caf::expected<plan> check(const std::vector<std::pair<std::string, std::string>>& texts) const;
  /// Installs what `p` plans (with `mu_` held).
  caf::error apply(const plan& p);
  /// Installs every stored interface, as one set, or (when the set does not install) each
  /// that does; returns why the others do not.
  caf::expected<std::vector<std::string>> reconcile();

  std::unique_ptr<kv_store> store_;
  type_registry& types_;
  state_store& twins_;
  warn_fn warn_;
  installed_fn installed_;
  mutable std::mutex mu_;  ///< one upload or change at a time
  mutable std::mutex missing_mu_;  ///< guards the two below
  mutable std::vector<std::string> missing_;
  mutable std::chrono::steady_clock::time_point looked_{};
};

} // namespace twin::runtime
