#pragma once

// A TLS client that tells whether a port on loopback takes it: the handshake, then a
// short wait for what the server says or does next (a server that refuses the client's
// certificate says so by an alert once the handshake is over, in TLS 1.3).

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#include <string>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace twin::test {

/// True if a TLS client that trusts `ca_file` and shows `cert_file`/`key_file` (none if
/// empty) is taken by 127.0.0.1:`port`: the handshake succeeds and the server neither
/// closes nor alerts within 0.5 s.
inline bool tls_port_takes(int port, const std::string& ca_file, const std::string& cert_file,
                           const std::string& key_file) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval limit{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = nullptr;
  bool taken = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0
      && SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) == 1
      && (cert_file.empty()
          || (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) == 1
              && SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) == 1))) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
      timeval wait{0, 500'000};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
      char byte;
      auto k = SSL_read(ssl, &byte, 1);
      // Data (a server that speaks first), or nothing within the wait: taken.
      auto err = k > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, k);
      taken = k > 0 || err == SSL_ERROR_WANT_READ
              || (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return taken;
}

} // namespace twin::test
