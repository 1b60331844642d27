#pragma once

// Who may call the API: tokens, their roles and the twins they see. What a token is and
// how its text reads; the tokens a node knows are kept by `api::token_registry`.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// What a token may do. Each role of the first four may do what the one before may.
enum class role : uint8_t {
  reader,    ///< reads: twins, queries, history, events, anomalies, scenarios
  operator_, ///< + desired state and commands
  writer,    ///< + creating, replacing, patching and deleting twins; telemetry
  admin,     ///< + tokens, types and models, cluster operations, the audit log
  device,    ///< telemetry of its own twins, nothing else
};

/// "reader", "operator", "writer", "admin" or "device".
const char* to_string(role r);
bool from_string(std::string_view text, role& out);

/// What a request needs.
enum class permission : uint8_t { read, control, write, telemetry, admin };

const char* to_string(permission p);

/// Whether role `r` may do what needs `p`.
bool grants(role r, permission p);

/// A token as the node keeps it: what it may do, and the SHA-256 of its secret.
struct access_token {
  static constexpr size_t id_chars = 16;       ///< hex digits of an id
  static constexpr size_t secret_chars = 43;   ///< base64url of 32 random bytes
  static constexpr size_t max_namespaces = 64;
  static constexpr size_t max_twins = 1000;    ///< of a device
  static constexpr size_t max_name = 200;

  std::string id;
  std::string name;
  runtime::role role = runtime::role::reader;
  std::vector<std::string> namespaces;  ///< sorted; empty: every namespace
  std::vector<std::string> twins;       ///< a device's own twins, sorted
  std::string secret_hash;              ///< 32 bytes
  int64_t created_ms = 0;
  int64_t expires_ms = 0;  ///< 0: never
  int64_t revoked_ms = 0;  ///< 0: not revoked
  std::string created_by;  ///< the id of the token that created it; empty: the node

  /// Whether twin `id` exists for this token: in its namespaces, or a device's own.
  bool sees(const twin_id& id) const;
  bool expired(int64_t now_ms) const { return expires_ms != 0 && now_ms >= expires_ms; }

  std::string encode() const;
  /// `store_corrupt` if `bytes` are not a token.
  static caf::expected<access_token> decode(std::string_view bytes);
};

/// What a token's text starts with: `twn_<id>_<secret>`.
constexpr std::string_view token_prefix = "twn_";

/// The parts of a token's text, `twn_<id>_<secret>`.
struct token_text {
  std::string_view id;
  std::string_view secret;
};

/// Whether `id` is a token's id: 16 lowercase hex digits.
bool valid_token_id(std::string_view id);

/// The parts of `text` if it has the form of a token (prefix, 16 lowercase hex digits,
/// 43 base64url characters); nullopt otherwise.
std::optional<token_text> parse_token(std::string_view text);

/// The token of an `Authorization` header: `Bearer <token>` (the scheme in any case, one
/// or more spaces); nullopt if the header is not of that form.
std::optional<std::string_view> bearer_token(std::string_view header);

/// Checks what a new token asks for: a name, namespaces (valid, at most 64) and a device's
/// twins (valid ids, 1 to 1,000, and a device only); sorts and dedups both. The reason if
/// it is not valid, "" if it is.
std::string check_token(access_token& t);

} // namespace twin::runtime
