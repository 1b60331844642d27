#include "peer_tls_context.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <climits>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "twin/runtime/errc.hpp"

namespace twin::cluster {

using runtime::make_error;
using runtime::runtime_errc;

namespace {

std::string ssl_error() {
  std::string msg;
  while (auto err = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    msg += msg.empty() ? buf : std::string{"; "} + buf;
  }
  return msg.empty() ? "unknown error" : msg;
}

/// A context that shows `files`' certificate and requires the peer's, signed by its CA.
caf::expected<SSL_CTX*> make_context(const peer_tls& files, bool server) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  auto fail = [&](const std::string& what) {
    auto err = make_error(runtime_errc::invalid_argument,
                          "peer TLS: cannot load " + what + " (" + ssl_error() + ")");
    SSL_CTX_free(ctx);
    return err;
  };
  if (ctx == nullptr)
    return fail("a context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert_file.c_str()) != 1)
    return fail("the certificate " + files.cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key_file.c_str(), SSL_FILETYPE_PEM) != 1
      || SSL_CTX_check_private_key(ctx) != 1)
    return fail("the key " + files.key_file);
  if (SSL_CTX_load_verify_locations(ctx, files.ca_file.c_str(), nullptr) != 1)
    return fail("the CA " + files.ca_file);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  // The sender of a replication connection never reads after the handshake, and takes
  // anything arriving as the connection's end: the server sends no session tickets.
  if (server)
    SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

void set_timeouts(int fd, std::chrono::milliseconds limit) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(limit.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((limit.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int clamp(size_t size) {
  return static_cast<int>(std::min<size_t>(size, INT_MAX));
}

} // namespace

void ssl_deleter::operator()(SSL* ssl) const {
  SSL_free(ssl);
}

caf::expected<std::shared_ptr<peer_tls_context>> peer_tls_context::load(const peer_tls& files) {
  if (files.cert_file.empty() || files.key_file.empty() || files.ca_file.empty())
    return make_error(runtime_errc::invalid_argument,
                      "peer TLS needs a certificate, its key and the CA that signs the members'");
  // OpenSSL writes with write(2): a connection the peer closed would raise SIGPIPE, which
  // ends the process unless handled. It fails the write instead.
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
    ::signal(SIGPIPE, SIG_IGN);
  std::shared_ptr<peer_tls_context> tls{new peer_tls_context};
  auto client = make_context(files, false);
  if (!client)
    return client.error();
  tls->client_ = *client;
  auto server = make_context(files, true);
  if (!server)
    return server.error();
  tls->server_ = *server;
  return tls;
}

peer_tls_context::~peer_tls_context() {
  SSL_CTX_free(client_);
  SSL_CTX_free(server_);
}

ssl_ptr peer_tls_context::connect(int fd, std::chrono::milliseconds limit) const {
  ssl_ptr ssl{SSL_new(client_)};
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1)
    return nullptr;
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto k = SSL_connect(ssl.get());
    if (k == 1)
      return ssl;
    auto err = SSL_get_error(ssl.get(), k);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || left.count() <= 0) {
      ERR_clear_error();
      return nullptr;
    }
    pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
      return nullptr;
  }
}

ssl_ptr peer_tls_context::accept(int fd, std::chrono::milliseconds limit) const {
  ssl_ptr ssl{SSL_new(server_)};
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1)
    return nullptr;
  set_timeouts(fd, limit);
  bool ok = SSL_accept(ssl.get()) == 1;
  set_timeouts(fd, std::chrono::milliseconds{0});
  if (!ok) {
    ERR_clear_error();
    return nullptr;
  }
  return ssl;
}

long tls_write_some(SSL* ssl, const char* data, size_t size) {
  if (size == 0)
    return 0;  // (OpenSSL takes no empty write)
  auto k = SSL_write(ssl, data, clamp(size));
  if (k > 0)
    return k;
  auto err = SSL_get_error(ssl, k);
  if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
    return 0;
  ERR_clear_error();
  return -1;
}

size_t tls_read_some(SSL* ssl, char* data, size_t size) {
  for (;;) {
    auto k = SSL_read(ssl, data, clamp(size));
    if (k > 0)
      return static_cast<size_t>(k);
    if (SSL_get_error(ssl, k) == SSL_ERROR_SYSCALL && errno == EINTR)
      continue;
    ERR_clear_error();
    return 0;
  }
}

} // namespace twin::cluster
