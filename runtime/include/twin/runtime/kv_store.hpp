#pragma once

// Small values a node keeps by key (its types' RUL models, its API tokens): in its own
// store when it is alone, in the cluster's when it is a member, so that every member sees
// every value.

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace twin::runtime {

class commit_point;
class state_store;

/// Values by key, written with a compare-and-set. Thread-safe.
class kv_store {
public:
  virtual ~kv_store();
  /// The value of `key`, nullopt if none was ever stored.
  virtual caf::expected<std::optional<std::string>> get(const std::string& key) = 0;
  /// Stores `bytes` as the value of `key` if what is stored is still `expected` (nullopt:
  /// nothing); false, storing nothing, if it is not. Waits until it is durable.
  virtual caf::expected<bool> put(const std::string& key, const std::string& bytes,
                                  const std::optional<std::string>& expected) = 0;
  /// Every key and value, by key; `invalid_argument` if there are more than `limit`.
  virtual caf::expected<std::vector<std::pair<std::string, std::string>>> list(size_t limit) = 0;

  using change_fn = std::function<void(const std::string& key, const std::string& bytes)>;
  /// From now on calls `on_change(key, bytes)` for each value stored in a store that other
  /// nodes share (this node's writes may come back too: applying one twice must change
  /// nothing), on a thread of the store's, until the store goes. A store nobody else
  /// writes calls nothing.
  virtual caf::error follow(change_fn on_change);
};

/// A node's own store: the metadata of shard 0 under keys `<prefix><key>`, written through
/// the node's commit point (which orders it with the twins' writes).
std::unique_ptr<kv_store> make_local_kv_store(state_store& store, commit_point& writer,
                                              std::string prefix);

} // namespace twin::runtime
