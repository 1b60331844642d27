#include "http_client.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <cctype>
#include <optional>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace twin::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct http_client::impl {
  impl(int port, std::string token) : port(port), token(std::move(token)) {}

  int port;
  std::string token;
  asio::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

std::vector<std::string> admin_token_args(const std::string& dir) {
  auto path = dir + "/admin.token";
  std::filesystem::create_directories(dir);
  std::ofstream{path} << test_admin_token << '\n';
  std::filesystem::permissions(path, std::filesystem::perms::owner_read
                                       | std::filesystem::perms::owner_write);
  return {"--admin-token-file", path};
}

http_client::http_client(int port, std::string token)
  : impl_(std::make_unique<impl>(port, std::move(token))) {
}

http_client::~http_client() = default;

http_reply http_client::call(const std::string& method, const std::string& target,
                             const std::string& body,
                             const std::map<std::string, std::string>& headers) {
  auto& d = *impl_;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!d.token.empty())
    req.set(http::field::authorization, "Bearer " + d.token);
  for (const auto& [k, v] : headers) {
    if (v.empty())
      req.erase(k);
    else
      req.set(k, v);
  }
  req.body() = body;
  req.keep_alive(true);
  req.prepare_payload();
  // A request that changes nothing may be sent again when a kept-alive connection turns
  // out to be closed; others are not (the first may have been applied).
  bool idempotent = method == "GET" || method == "PUT" || method == "DELETE";
  for (int attempt = 0; attempt < 2; ++attempt) {
    beast::error_code ec;
    reused_ = d.stream.has_value();
    if (!d.stream) {
      d.stream.emplace(d.ioc);
      d.stream->socket().connect(tcp::endpoint{asio::ip::make_address("127.0.0.1"),
                                               static_cast<unsigned short>(d.port)},
                                 ec);
      if (ec) {
        d.stream.reset();
        return {};
      }
      // Blocking calls ignore the stream's expiry: the socket bounds them instead.
      timeval limit{10, 0};
      auto fd = d.stream->socket().native_handle();
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
    }
    http::write(*d.stream, req, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    if (!ec)
      http::read(*d.stream, d.buffer, parser, ec);
    if (ec) {
      // The server may have closed a kept-alive connection: retry once on a new one.
      d.stream.reset();
      d.buffer.clear();
      if (reused_ && idempotent)
        continue;
      return {};
    }
    auto& res = parser.get();
    http_reply out;
    out.status = res.result_int();
    for (const auto& f : res) {
      std::string name{f.name_string()};
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      out.headers[name] = std::string{f.value()};
    }
    out.body = res.body();
    if (!res.keep_alive())
      d.stream.reset();
    return out;
  }
  return {};
}

double metric_value(int port, const std::string& sample) {
  http_client m{port};
  auto body = m.call("GET", "/metrics").body;
  auto at = body.find("\n" + sample + " ");
  return at == std::string::npos ? -1 : std::stod(body.substr(at + sample.size() + 2));
}

bool wait_for_200(http_client& c, const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (c.call("GET", path).status == 200)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return false;
}

bool wait_for_200(int port, const std::string& path, std::chrono::milliseconds timeout) {
  http_client c{port};
  return wait_for_200(c, path, timeout);
}

} // namespace twin::test
