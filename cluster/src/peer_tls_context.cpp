#include "peer_tls_context.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

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

/// Shakes hands on `ssl` over non-blocking socket `fd` by `deadline`.
bool handshake(SSL* ssl, int fd, bool server, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    ERR_clear_error();
    auto k = server ? SSL_accept(ssl) : SSL_connect(ssl);
    if (k == 1)
      return true;
    auto err = SSL_get_error(ssl, k);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || left.count() <= 0) {
      ERR_clear_error();
      return false;
    }
    pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
      return false;
  }
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
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1
      || !handshake(ssl.get(), fd, false, std::chrono::steady_clock::now() + limit))
    return nullptr;
  return ssl;
}

ssl_ptr peer_tls_context::accept(int fd, std::chrono::milliseconds limit) const {
  // Non-blocking for the handshake, so that its limit holds for all of it, not for each
  // read: a peer that trickles bytes is cut off too.
  auto flags = ::fcntl(fd, F_GETFL);
  ssl_ptr ssl{SSL_new(server_)};
  if (flags < 0 || !ssl || SSL_set_fd(ssl.get(), fd) != 1
      || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    return nullptr;
  bool ok = handshake(ssl.get(), fd, true, std::chrono::steady_clock::now() + limit);
  if (!ok || ::fcntl(fd, F_SETFL, flags) != 0)
    return nullptr;
  return ssl;
}

long tls_write_some(SSL* ssl, const char* data, size_t size) {
  if (size == 0)
    return 0;  // (OpenSSL takes no empty write)
  ERR_clear_error();  // SSL_get_error reads the thread's queue
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
    ERR_clear_error();
    auto k = SSL_read(ssl, data, clamp(size));
    if (k > 0)
      return static_cast<size_t>(k);
    auto err = SSL_get_error(ssl, k);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
      continue;  // interrupted, on a blocking socket
    ERR_clear_error();
    return 0;
  }
}

} // namespace twin::cluster
