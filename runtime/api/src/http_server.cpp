#include "twin/api/http_server.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "routes.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

/// A connection idle for this long (or a request that takes this long to arrive) is
/// closed.
constexpr auto idle_timeout = std::chrono::seconds{60};
constexpr size_t max_header_bytes = 16 * 1024;

/// Whether the server still runs: answers that the runtime gives after it stopped are
/// dropped instead of being posted to its stopped (or destroyed) I/O context.
struct gate {
  std::mutex mtx;
  bool open = true;
};

/// One HTTP/1.1 connection: reads a request, answers it, and reads the next while the
/// client keeps the connection alive. Answers come from runtime threads and are posted
/// to the connection's strand.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, runtime::router& rt, std::function<bool()> ready,
          size_t max_body, std::shared_ptr<gate> g)
    : stream_(std::move(socket)),
      rt_(rt),
      ready_(std::move(ready)),
      max_body_(max_body),
      gate_(std::move(g)) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

  /// Closes the socket; only once the I/O threads have stopped.
  void close_now() { stream_.close(); }

private:
  void read() {
    parser_.emplace();
    parser_->body_limit(max_body_);
    parser_->header_limit(max_header_bytes);
    stream_.expires_after(idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout
        || ec == asio::error::operation_aborted)
      return shut();
    if (ec == http::error::body_limit)
      return write(error_response(413, "payload_too_large",
                                  "the body is larger than "
                                    + std::to_string(max_body_) + " bytes"),
                   false);
    if (ec)  // malformed HTTP, or the connection broke
      return write(error_response(400, "bad_request", "malformed HTTP request: " + ec.message()),
                   false);
    auto& msg = parser_->get();
    request req;
    req.method = std::string{msg.method_string()};
    req.target = std::string{msg.target()};
    req.content_type = std::string{msg[http::field::content_type]};
    req.if_match = std::string{msg[http::field::if_match]};
    req.if_none_match = std::string{msg[http::field::if_none_match]};
    req.body = std::move(msg.body());
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    // The answer may come from any thread; it is written on this connection's strand.
    handle(rt_, ready_, std::move(req), [self = shared_from_this()](response res) {
      std::lock_guard<std::mutex> guard{self->gate_->mtx};
      if (!self->gate_->open)
        return;
      asio::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable {
        self->write(std::move(res), self->keep_alive_);
      });
    });
  }

  void write(response res, bool keep_alive) {
    auto msg = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(res.status), version_);
    msg->set(http::field::server, "twind");
    for (auto& [name, value] : res.headers)
      msg->set(name, value);
    if (!res.body.empty())
      msg->set(http::field::content_type, "application/json");
    msg->body() = std::move(res.body);
    msg->keep_alive(keep_alive);
    msg->prepare_payload();
    stream_.expires_after(idle_timeout);
    http::async_write(stream_, *msg,
                      [self = shared_from_this(), msg, keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive)
                          return self->shut();
                        self->read();
                      });
  }

  void shut() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  runtime::router& rt_;
  std::function<bool()> ready_;
  size_t max_body_;
  std::shared_ptr<gate> gate_;
  bool keep_alive_ = false;
  unsigned version_ = 11;
};

} // namespace

struct http_server::impl {
  impl(runtime::router& rt, std::function<bool()> ready, http_options opts)
    : rt(rt), ready(std::move(ready)), opts(std::move(opts)), acceptor(ioc) {}

  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec)
        return;  // closed by stop()
      auto conn = std::make_shared<session>(std::move(s), rt, ready, opts.max_body, open);
      {
        std::lock_guard<std::mutex> guard{sessions_mtx};
        sessions.push_back(conn);
        // Forget closed connections now and then.
        if (sessions.size() % 256 == 0)
          sessions.erase(std::remove_if(sessions.begin(), sessions.end(),
                                        [](const auto& w) { return w.expired(); }),
                         sessions.end());
      }
      conn->start();
      accept();
    });
  }

  runtime::router& rt;
  std::function<bool()> ready;
  http_options opts;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::shared_ptr<gate> open = std::make_shared<gate>();
  std::mutex sessions_mtx;
  std::vector<std::weak_ptr<session>> sessions;
  uint16_t bound_port = 0;
};

http_server::http_server(runtime::router& rt, std::function<bool()> ready, http_options opts)
  : impl_(std::make_unique<impl>(rt, std::move(ready), std::move(opts))) {
}

http_server::~http_server() {
  stop();
}

caf::error http_server::start() {
  auto& d = *impl_;
  beast::error_code ec;
  auto address = asio::ip::make_address(d.opts.bind, ec);
  if (ec)
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               "cannot listen on " + d.opts.bind + ": not an IP address");
  tcp::endpoint ep{address, d.opts.port};
  auto where = d.opts.bind + ":" + std::to_string(d.opts.port);
  auto fail = [&](const char* step) {
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               "cannot listen on " + where + " for HTTP (" + step
                                 + "): " + ec.message());
  };
  d.acceptor.open(ep.protocol(), ec);
  if (ec)
    return fail("open");
  d.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  d.acceptor.bind(ep, ec);
  if (ec)
    return fail("bind; is the port in use?");
  d.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fail("listen");
  d.bound_port = d.acceptor.local_endpoint().port();
  d.accept();
  for (int i = 0; i < std::max(1, d.opts.threads); ++i)
    d.threads.emplace_back([&d] { d.ioc.run(); });
  return {};
}

uint16_t http_server::port() const {
  return impl_->bound_port;
}

void http_server::stop() {
  auto& d = *impl_;
  if (d.threads.empty())
    return;
  {
    std::lock_guard<std::mutex> guard{d.open->mtx};
    d.open->open = false;
  }
  d.ioc.stop();
  for (auto& t : d.threads)
    t.join();
  d.threads.clear();
  beast::error_code ec;
  d.acceptor.close(ec);
  std::lock_guard<std::mutex> guard{d.sessions_mtx};
  for (auto& w : d.sessions)
    if (auto s = w.lock())
      s->close_now();
  d.sessions.clear();
}

} // namespace twin::api
