#pragma once

// The API tokens a node knows: made, listed, revoked and checked. Kept in a `kv_store`
// (the node's own, or the cluster's, so that a token is valid on every member and a
// revocation reaches every member as the store's watch delivers it).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "twin/runtime/access.hpp"
#include "twin/runtime/kv_store.hpp"

namespace twin::api {

/// Why a token's text is refused, or `ok`.
enum class token_verdict { ok, malformed, unknown, expired, revoked };

/// The tokens of a node, in memory and in their store. Thread-safe; `verify` takes a
/// shared lock and hashes the secret, or finds the text among those its thread verified
/// since the last change of any token (64 a thread, each with a copy of its token, so that
/// threads share no counter); the rest may wait for the store.
class token_registry {
public:
  static constexpr size_t max_tokens = 100000;
  using warn_fn = std::function<void(const std::string& message)>;

  /// `warn` hears of tokens stored by other nodes that cannot be read.
  explicit token_registry(std::unique_ptr<runtime::kv_store> store, warn_fn warn = {});
  ~token_registry();

  /// Follows the store's changes by other nodes, then reads every token (at start).
  caf::error load();

  /// A token made now, and its text: the only time its secret is known.
  struct issued {
    runtime::access_token token;
    std::string text;
  };

  /// Makes and stores a token of `spec`'s name, role, namespaces, twins and expiry (checked
  /// by `runtime::check_token`), made by the token `by` (empty: the node).
  caf::expected<issued> create(runtime::access_token spec, const std::string& by);

  /// At start: makes sure the admin token in file `path` is known. If the file does not
  /// exist and no admin token is active, makes one and writes its text there first (mode
  /// 0600). Returns what it did, for the log.
  caf::expected<std::string> bootstrap(const std::string& path);

  /// Every token, revoked and expired ones too, by creation time.
  std::vector<runtime::access_token> list() const;

  /// The token `id`; nullptr if there is none.
  std::shared_ptr<const runtime::access_token> find(const std::string& id) const;

  /// Revokes token `id` from now on; false if there is none. Revoking a revoked token
  /// changes nothing.
  caf::expected<bool> revoke(const std::string& id);

  struct verified {
    token_verdict verdict = token_verdict::malformed;
    std::shared_ptr<const runtime::access_token> token;  ///< set unless malformed or unknown
  };
  /// Which token `text` is, and whether it may be used at `now_ms`.
  verified verify(std::string_view text, int64_t now_ms) const;

private:
  /// Stores `t` if the store still holds `expected` there, then keeps it in memory.
  caf::error put(const runtime::access_token& t, const std::optional<std::string>& expected);
  void keep(runtime::access_token t);
  /// The token of `text` (whose id is `key`) from the store in memory, its secret checked;
  /// nullptr if unknown or the secret is wrong.
  std::shared_ptr<const runtime::access_token> lookup(uint64_t key,
                                                      std::string_view secret) const;
  /// Whether `t` may be used at `now`.
  static verified verdict_of(std::shared_ptr<const runtime::access_token> t, int64_t now);

  std::unique_ptr<runtime::kv_store> store_;
  warn_fn warn_;
  std::mutex write_mu_;  ///< one change at a time
  mutable std::shared_mutex mu_;
  /// By id, as a number (16 hex digits).
  std::unordered_map<uint64_t, std::shared_ptr<const runtime::access_token>> tokens_;
  /// Changes of `tokens_` (under `mu_`): a text verified before one is verified again.
  std::atomic<uint64_t> generation_{0};
  const uint64_t instance_;  ///< tells this registry's verified texts from another's
};

} // namespace twin::api
