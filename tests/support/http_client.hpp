#pragma once

// A blocking HTTP/1.1 client over one keep-alive connection, for tests against a real
// twind on 127.0.0.1.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace twin::test {

struct http_reply {
  unsigned status = 0;  ///< 0: no answer (connection failed or timed out)
  std::map<std::string, std::string> headers;  ///< names in lower case
  std::string body;
};

/// The admin token of the nodes that the tests start: `admin_token_args` makes it theirs,
/// and `http_client` sends it.
inline const std::string test_admin_token =
  "twn_00000000000000a1_testtesttesttesttesttesttesttesttesttesttes";

/// The header line of `test_admin_token`, for requests written by hand.
inline const std::string bearer = "Authorization: Bearer " + test_admin_token + "\r\n";

/// Writes `test_admin_token` to `dir`/admin.token (mode 0600), and returns the arguments
/// that make it the admin token of a twind.
std::vector<std::string> admin_token_args(const std::string& dir);

class http_client {
public:
  /// Sends `token` with each request unless a call's headers give an Authorization (an
  /// empty one: none); empty: none.
  explicit http_client(int port, std::string token = test_admin_token);
  ~http_client();

  /// Sends one request on the connection (opened on first use, reopened after the server
  /// closed it) and waits at most 10 s for the answer. GET, PUT and DELETE are sent once
  /// more on a new connection if a kept-alive one turns out to be closed.
  http_reply call(const std::string& method, const std::string& target,
                  const std::string& body = {},
                  const std::map<std::string, std::string>& headers = {});

  /// Whether the last call reused the connection of the call before it.
  bool reused() const { return reused_; }

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  bool reused_ = false;
};

/// The value of sample `sample` (a name with its labels, e.g.
/// `twin_ingest_messages_total{source="mqtt",result="accepted"}`) in the /metrics of the
/// node at `port`; -1 if it is not there.
double metric_value(int port, const std::string& sample);

/// Calls GET `path` until it answers 200, for at most `timeout`.
bool wait_for_200(int port, const std::string& path, std::chrono::milliseconds timeout);
/// The same over `c`'s connection (opened again when the server closed it).
bool wait_for_200(http_client& c, const std::string& path, std::chrono::milliseconds timeout);

} // namespace twin::test
