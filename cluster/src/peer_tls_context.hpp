#pragma once

// TLS on the replication link's connections: contexts made once from the member's files,
// and handshakes bounded in time. Both ends show a certificate, and each accepts only a
// peer whose certificate the cluster's CA signs. Private to the cluster module.

#include <chrono>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "twin/cluster/peer_tls.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace twin::cluster {

struct ssl_deleter {
  void operator()(SSL* ssl) const;
};
using ssl_ptr = std::unique_ptr<SSL, ssl_deleter>;

class peer_tls_context {
public:
  /// Loads the certificate, its key and the CA; an error names the file that failed. From
  /// then on the process ignores SIGPIPE (unless it handles it): a write on a connection
  /// the peer closed fails instead of ending it.
  static caf::expected<std::shared_ptr<peer_tls_context>> load(const peer_tls& files);
  ~peer_tls_context();

  /// The client's end on a connected non-blocking socket, its handshake done within
  /// `limit`; null if it failed (a peer without a certificate of the CA, or silent).
  ssl_ptr connect(int fd, std::chrono::milliseconds limit) const;
  /// The server's end on an accepted blocking socket, its whole handshake done within
  /// `limit` likewise (the socket is non-blocking meanwhile, blocking again after).
  ssl_ptr accept(int fd, std::chrono::milliseconds limit) const;

private:
  peer_tls_context() = default;

  SSL_CTX* client_ = nullptr;
  SSL_CTX* server_ = nullptr;
};

/// Writes what the connection takes of `data` now, without waiting: the bytes written
/// (0: none now), or -1 if the connection failed. After 0, the next call must start with
/// the same bytes (it may pass more).
long tls_write_some(SSL* ssl, const char* data, size_t size);
/// Reads what arrived, waiting for some on a blocking socket: the bytes read, or 0 at the
/// end of the connection or on an error.
size_t tls_read_some(SSL* ssl, char* data, size_t size);

} // namespace twin::cluster
