#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "twin/runtime/router.hpp"

namespace twin::api {

struct http_options {
  std::string bind = "127.0.0.1";  ///< address to listen on
  uint16_t port = 8080;            ///< 0: any free port (see `http_server::port`)
  size_t max_body = 1u << 20;      ///< larger bodies get 413
  int threads = 1;                 ///< I/O threads
};

/// The HTTP/JSON API of DESIGN.md on Boost.Beast: HTTP/1.1 with keep-alive. Requests go
/// to the router and are answered when the router answers (a change once it is
/// durable), so a slow store never blocks an I/O thread.
class http_server {
public:
  /// `ready` answers /readyz; it runs on the I/O threads. `rt` must outlive the server.
  http_server(runtime::router& rt, std::function<bool()> ready, http_options opts);
  ~http_server();  ///< stops

  /// Binds and starts serving, once; an error if the address cannot be bound.
  caf::error start();
  /// The bound port (the chosen one if the options asked for port 0).
  uint16_t port() const;
  /// Stops accepting, writes the answers that come within `drain`, then closes every
  /// connection; later answers are dropped. Not from an I/O thread or an answer.
  void stop(std::chrono::milliseconds drain = std::chrono::seconds{5});

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace twin::api
