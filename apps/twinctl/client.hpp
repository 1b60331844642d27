#pragma once

// The HTTP client of twinctl: the node's address, one request and its answer, and the
// exit code an answer gives.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <functional>
#include <optional>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "twin/api/transport.hpp"

namespace twinctl {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using nlohmann::json;
using twin::api::transport;

enum exit_code : int {
  ok = 0,
  usage = 1,
  unreachable = 2,
  not_found = 3,
  conflict = 4,
  refused = 5,
  server_error = 6,
  denied = 7,  ///< no valid token (401), or a role too weak (403)
};

struct server_address {
  std::string host;
  std::string port;
  bool tls = false;     ///< https://
  std::string ca_file;  ///< with TLS: PEM certificates that sign the node's; empty: the system's
  std::string cert_file;  ///< with TLS: the client's PEM certificate (mutual TLS); empty: none
  std::string key_file;   ///< its key; empty: in `cert_file`
};

/// "http://host:port", "https://host:port" (or "host:port"); the port defaults to 8080.
bool parse_server(const std::string& url, server_address& out);

/// A stream to `addr`, connected (and its TLS handshake done, the node's certificate checked
/// against the CA and the host name), within the stream's expiry; calls `done` with the
/// error, if any. The stream must outlive the call.
void connect(transport& stream, tcp::resolver& resolver, const server_address& addr,
             std::function<void(beast::error_code)> done);

/// A new stream for `addr` on `ioc`: TLS over TCP for https (its context is `tls`, made
/// here), plain TCP otherwise. Throws beast::system_error if the CA file, the certificate or
/// its key cannot be read.
transport make_stream(asio::io_context& ioc, const server_address& addr,
                      std::optional<asio::ssl::context>& tls);

struct reply {
  unsigned status = 0;
  json body;  ///< null if none or not JSON
  std::string text;
};

reply reply_of(unsigned status, std::string text);

/// Sets the headers that name the node and the caller on `req`.
template <class Request>
void address(Request& req, const server_address& addr, const std::string& token) {
  req.set(http::field::host, addr.host + ":" + addr.port);
  req.set(http::field::user_agent, "twinctl");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
}

class client {
public:
  client(server_address addr, std::string token, std::chrono::seconds timeout)
    : addr_(std::move(addr)), token_(std::move(token)), timeout_(timeout) {}

  /// One request, given at most the timeout; throws beast::system_error if the node
  /// cannot be reached or does not answer in time.
  reply call(http::verb method, const std::string& target, const std::string& body = {},
             const std::string& content_type = "application/json",
             const std::vector<std::pair<http::field, std::string>>& headers = {});

private:
  server_address addr_;
  std::string token_;
  std::chrono::seconds timeout_;
};

/// `c.call(...)`, or nullopt with `code` set when the node did not answer or answered an
/// error (said on stderr).
std::optional<reply> call_checked(client& c, http::verb method, const std::string& target,
                                  int& code, const std::string& body = {});

/// The exit code of an answer's status: 0 done, 3 not found, 4 conflict, 5 refused, 6
/// failed, 7 denied.
int exit_code_of(unsigned status);

/// The error of an answer, in the API's error shape or as the raw text.
std::string error_text(const reply& r);

/// `text` with every byte outside [A-Za-z0-9._~:-] percent-encoded.
std::string percent_encode(const std::string& text);

/// "?k=v&..." of the parameters whose value is not empty, values percent-encoded.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& params);

} // namespace twinctl
