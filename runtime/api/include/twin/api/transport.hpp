#pragma once

// The byte stream of one HTTP connection, plain TCP or TLS over it: the API server's, and
// twinctl's (header-only, so that twinctl needs no library of the node).

#include <optional>
#include <utility>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

namespace twin::api {

/// A connection's stream, TLS or not, as one asynchronous read and write stream (what
/// Beast's HTTP reads and writes take); `tcp()` is the TCP stream under it, for timeouts,
/// the socket and its address.
class transport {
public:
  using tcp_stream = boost::beast::tcp_stream;
  using tls_stream = boost::beast::ssl_stream<tcp_stream>;
  using executor_type = tcp_stream::executor_type;

  explicit transport(boost::asio::ip::tcp::socket s) : plain_(std::in_place, std::move(s)) {}
  transport(boost::asio::ip::tcp::socket s, boost::asio::ssl::context& tls)
    : tls_(std::in_place, std::move(s), tls) {}

  bool secure() const { return tls_.has_value(); }
  tls_stream& tls() { return *tls_; }
  tcp_stream& tcp() { return tls_ ? boost::beast::get_lowest_layer(*tls_) : *plain_; }
  executor_type get_executor() { return tcp().get_executor(); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_)
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    else
      plain_->async_read_some(buffers, std::forward<Handler>(handler));
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_)
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    else
      plain_->async_write_some(buffers, std::forward<Handler>(handler));
  }

private:
  std::optional<tcp_stream> plain_;
  std::optional<tls_stream> tls_;
};

} // namespace twin::api
