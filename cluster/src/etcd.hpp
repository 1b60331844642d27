#pragma once

// A client of etcd's v3 API through its JSON gateway (HTTP/1.1 with Boost.Beast): keys,
// ranges, transactions, leases and watches. Keys and values are bytes (base64 on the
// wire), revisions and lease ids 64-bit numbers (strings on the wire). Private to the
// cluster module.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace twin::cluster::etcd {

struct key_value {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct range_result {
  std::vector<key_value> kvs;
  int64_t revision = 0;  ///< of the store when it was read
};

/// A condition of a transaction on one key.
struct compare {
  enum class target : uint8_t { version, create, mod, value };
  enum class result : uint8_t { equal, not_equal, greater, less };
  std::string key;
  target what = target::mod;
  result is = result::equal;
  int64_t number = 0;  ///< for version, create and mod
  std::string value;   ///< for value

  /// The key was last changed at `revision` (0: the key does not exist).
  static compare mod_is(std::string key, int64_t revision);
  /// The key holds `value`.
  static compare value_is(std::string key, std::string value);
};

/// An operation of a transaction.
struct op {
  enum class kind : uint8_t { put, del, get };
  kind what = kind::get;
  std::string key;
  std::string value;      ///< put
  std::string range_end;  ///< del, get: up to this key (exclusive); empty: `key` only
  int64_t lease = 0;      ///< put: the key goes with the lease

  static op put(std::string key, std::string value, int64_t lease = 0);
  static op del(std::string key, std::string range_end = {});
  static op get(std::string key, std::string range_end = {});
};

struct txn_result {
  bool succeeded = false;
  int64_t revision = 0;             ///< of the store after the transaction
  std::vector<range_result> reads;  ///< the answers of its `get` operations, in order
};

struct lease_grant {
  int64_t id = 0;
  int64_t ttl = 0;  ///< seconds
};

/// Where etcd is, and how to speak TLS to it.
struct endpoints {
  endpoints() = default;
  /// `urls` alone: plain endpoints, or https ones trusted by the system's CAs.
  endpoints(std::string u) : urls(std::move(u)) {}  // implicit: a URL list is endpoints
  endpoints(const char* u) : urls(u) {}
  endpoints(std::string u, std::string ca, std::string cert, std::string key)
    : urls(std::move(u)), ca_file(std::move(ca)), cert_file(std::move(cert)),
      key_file(std::move(key)) {}

  std::string urls;       ///< `http://host:port` or `https://host:port`, separated by commas
  std::string ca_file;    ///< https: PEM certificates that sign etcd's; empty: the system's
  std::string cert_file;  ///< https: the client's PEM certificate (etcd's --client-cert-auth)
  std::string key_file;   ///< its key; empty: in `cert_file`
};

/// The end of the range of every key that starts with `prefix`.
std::string prefix_end(const std::string& prefix);

/// Blocking calls, each given at most the client's timeout; thread-safe (one call at a
/// time). Endpoints are tried in turn: a call goes to the one that answered last, and to
/// the next one if it fails to connect.
class client {
public:
  client(const endpoints& where, std::chrono::milliseconds timeout);
  ~client();

  /// Checks the endpoints' form, and the TLS files of https ones; returns
  /// `config_mismatch` with the reason if this client cannot speak to them.
  static caf::error check_endpoints(const endpoints& where);

  caf::expected<int64_t> put(const std::string& key, const std::string& value,
                             int64_t lease = 0);
  caf::expected<range_result> get(const std::string& key, const std::string& range_end = {});
  caf::expected<range_result> get_prefix(const std::string& prefix);
  caf::expected<int64_t> del(const std::string& key, const std::string& range_end = {});
  caf::expected<txn_result> txn(const std::vector<compare>& when, const std::vector<op>& then,
                                const std::vector<op>& otherwise = {});
  caf::expected<lease_grant> grant(int64_t ttl_seconds);
  /// Renews lease `id`; returns its TTL, 0 if it has expired.
  caf::expected<int64_t> keep_alive(int64_t id);
  caf::error revoke(int64_t id);

  /// Round trips made, and of them failed, since the client was made.
  uint64_t round_trips() const;
  uint64_t failures() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

/// A change under a watched prefix.
struct event {
  bool deleted = false;
  key_value kv;  ///< a deleted key has its key and mod revision only
};

/// Watches the keys under a prefix from a revision on, on a thread of its own: `on_events`
/// gets each batch of changes in revision order. A broken connection is made again (the
/// endpoints in turn, backing off from 100 ms to 2 s) and the watch resumes after the last
/// revision delivered; if etcd compacted that revision away, `on_reset` is called (the
/// caller reads the state again) and the watch resumes from the current revision.
class watch {
public:
  using events_fn = std::function<void(std::vector<event> events, int64_t revision)>;

  watch(const endpoints& where, std::string prefix, int64_t start_revision,
        events_fn on_events, std::function<void()> on_reset);
  /// Stops the watch; no callback runs after it returns.
  ~watch();

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace twin::cluster::etcd
