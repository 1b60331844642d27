#include "twin/api/http_server.hpp"

#include <sched.h>

#include <algorithm>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <deque>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
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

constexpr size_t max_header_bytes = 16 * 1024;
// What is read and dropped of a refused body, at most, before the connection closes.
constexpr size_t max_drained_bytes = 64u << 20;
constexpr auto drain_time = std::chrono::seconds{5};
/// An event stream sends a comment this often while it has no events: proxies keep the
/// connection open, and a client that is gone is noticed.
constexpr auto heartbeat = std::chrono::seconds{15};
/// An event stream writes at most this much text at once, through a socket buffer of
/// this size, and ends when its client takes nothing for `event_write_timeout`.
constexpr size_t event_chunk = 16u << 10;
constexpr int event_socket_buffer = 32 << 10;
constexpr auto event_write_timeout = std::chrono::seconds{10};
/// How long running out of file descriptors shows in `saturation`.
constexpr auto fd_shortage_shown = std::chrono::seconds{5};

std::string_view target_of(const http::request<http::string_body>& msg) {
  return {msg.target().data(), msg.target().size()};
}

/// What the connections share with the server: whether it still takes answers (those
/// that the runtime gives after it stopped are dropped instead of being posted to its
/// stopped I/O context) and how many requests await their answer.
struct shared_state {
  explicit shared_state(const http_options& o)
    : max_body(o.max_body), max_inflight_body(o.max_inflight_body_bytes),
      idle_timeout(o.idle_timeout) {}

  const size_t max_body;
  const size_t max_inflight_body;
  const std::chrono::milliseconds idle_timeout;
  std::mutex mtx;
  bool open = true;
  std::atomic<int> unanswered{0};
  std::atomic<size_t> connections{0};  ///< sessions alive
  std::atomic<size_t> inflight_body{0};  ///< bytes of request bodies reserved
  std::atomic<uint64_t> refused_bodies{0};
  std::mutex metrics_mtx;
  /// Answers by route (a template from `route_of`, one pointer per route: compared as
  /// such) and status.
  std::map<std::pair<const char*, unsigned>, uint64_t> answered;
  std::map<const char*, runtime::metrics::histogram> latency;

  void record(const char* route, unsigned status, std::chrono::steady_clock::duration took) {
    static const auto bounds = runtime::metrics::histogram::latency_bounds();
    std::lock_guard<std::mutex> guard{metrics_mtx};
    ++answered[{route, status}];
    latency.try_emplace(route, bounds).first->second.observe(
      std::chrono::duration<double>(took).count());
  }
};

/// One HTTP/1.1 connection: reads a request, answers it, and reads the next while the
/// client keeps the connection alive. Answers come from runtime threads and are posted
/// to the connection's strand, where they are serialized and written.
class session : public std::enable_shared_from_this<session> {
public:
  session(std::shared_ptr<asio::io_context> ioc, tcp::socket socket, const route_context& ctx,
          std::shared_ptr<shared_state> state)
    : ioc_(std::move(ioc)),
      stream_(std::move(socket)),
      ctx_(ctx),
      heartbeat_(stream_.get_executor()),
      max_body_(state->max_body),
      state_(std::move(state)) {
    state_->connections.fetch_add(1);
  }

  ~session() {
    release_body();
    state_->connections.fetch_sub(1);
  }

  /// Waiting for a request that has not begun to arrive: it may be closed for a new
  /// connection when the server is full.
  bool idle() const { return idle_.load(std::memory_order_relaxed); }

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

  /// Answers 503 at once and closes: the server cannot take the connection.
  void refuse(std::string code, std::string message) {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this(), code = std::move(code),
                                            message = std::move(message)] {
      self->received_ = std::chrono::steady_clock::now();
      self->route_ = route_of("");
      self->write(error_response(503, code, message), false);
    });
  }

  /// Closes the connection on its strand: its reads and writes end.
  void close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->heartbeat_.cancel();
      self->stream_.close();
    });
  }

  /// Closes the connection if it still waits for a request once on its strand.
  void close_if_idle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle())
        self->stream_.close();
    });
  }

private:
  void read() {
    release_body();
    parser_.emplace();
    parser_->body_limit(max_body_);
    parser_->header_limit(max_header_bytes);
    stream_.expires_after(state_->idle_timeout);
    idle_ = buffer_.size() == 0;  // nothing of the next request has come yet
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->on_header(ec);
                            });
  }

  void release_body() {
    if (body_reserved_ > 0)
      state_->inflight_body.fetch_sub(std::exchange(body_reserved_, 0));
  }

  /// Reserves the memory of the request's body (its length, or the most a body may have
  /// when it comes in chunks); false if the bodies in memory would pass the bound.
  bool reserve_body() {
    auto length = parser_->content_length();
    size_t want = parser_->chunked() ? max_body_
                                     : static_cast<size_t>(std::min<uint64_t>(
                                         length ? *length : 0, max_body_));
    if (want == 0)
      return true;
    if (state_->inflight_body.fetch_add(want) + want > state_->max_inflight_body) {
      state_->inflight_body.fetch_sub(want);
      return false;
    }
    body_reserved_ = want;
    return true;
  }

  /// A client that asks whether to send its body (`Expect: 100-continue`, as curl does
  /// for bodies over 1 KiB) is told to go on; a body over the limit was refused already.
  void on_header(beast::error_code ec) {
    idle_ = false;
    if (ec)
      return on_read(ec);
    if (!reserve_body()) {
      state_->refused_bodies.fetch_add(1, std::memory_order_relaxed);
      received_ = std::chrono::steady_clock::now();
      route_ = route_of(target_of(parser_->get()));
      unread_body_ = true;
      return write(error_response(503, "too_many_requests_in_flight",
                                  "the node holds as many request bodies as it takes; retry "
                                  "later"),
                   false);
    }
    if (!beast::iequals(parser_->get()[http::field::expect], "100-continue"))
      return read_body();
    auto go_on = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                    parser_->get().version());
    http::async_write(stream_, *go_on,
                      [self = shared_from_this(), go_on](beast::error_code e, size_t) {
                        if (e)
                          return self->shut();
                        self->read_body();
                      });
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    // A connection that closed, timed out or broke (also mid-request) has no one to answer.
    if (ec == http::error::end_of_stream || ec == beast::error::timeout
        || ec == asio::error::operation_aborted || ec == http::error::partial_message
        || (ec && ec.category() == asio::error::get_system_category()))
      return shut();
    received_ = std::chrono::steady_clock::now();
    route_ = route_of(target_of(parser_->get()));  // empty before the request line: "other"
    if (ec == http::error::body_limit) {
      unread_body_ = true;
      return write(error_response(413, "payload_too_large",
                                  "the body is larger than " + std::to_string(max_body_)
                                    + " bytes"),
                   false);
    }
    if (ec)  // malformed HTTP
      return write(error_response(400, "bad_request", "malformed HTTP request: " + ec.message()),
                   false);
    auto& msg = parser_->get();
    request req;
    req.method = std::string{msg.method_string()};
    req.target = std::string{msg.target()};
    req.route = route_;
    req.content_type = std::string{msg[http::field::content_type]};
    req.if_match = std::string{msg[http::field::if_match]};
    req.if_none_match = std::string{msg[http::field::if_none_match]};
    req.body = std::move(msg.body());
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    state_->unanswered.fetch_add(1);
    auto answer = [self = shared_from_this()](response res) {
      std::lock_guard<std::mutex> guard{self->state_->mtx};
      if (!self->state_->open) {
        self->state_->unanswered.fetch_sub(1);
        return;
      }
      asio::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable {
        self->write(std::move(res), self->keep_alive_, true);
      });
    };
    try {
      handle(ctx_, std::move(req), answer);
    } catch (const std::exception& e) {  // a defect: answered, and the server goes on
      answer(error_response(500, "internal", e.what()));
    }
  }

  /// Writes `res`; `counted`: it answers a request counted in `unanswered`, which is
  /// released once the answer is out.
  void write(response res, bool keep_alive, bool counted = false) {
    state_->record(route_, res.status, std::chrono::steady_clock::now() - received_);
    if (res.stream)
      return start_events(std::move(res.stream), counted);
    auto msg = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(res.status), version_);
    msg->set(http::field::server, "twind");
    if (!res.text.empty() || !res.body.is_null())
      msg->set(http::field::content_type, "application/json");  // unless a header says
    for (auto& [name, value] : res.headers)
      msg->set(name, value);
    if (res.status == 503)
      msg->set(http::field::retry_after, "1");  // unless a header below says otherwise
    if (!res.text.empty()) {
      msg->body() = std::move(res.text);
    } else if (!res.body.is_null()) {
      // Invalid UTF-8 that a request smuggled into a message is replaced, not thrown on.
      msg->body() = res.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    msg->keep_alive(keep_alive);
    if (res.status != 204)  // a 204 carries no Content-Length
      msg->prepare_payload();
    stream_.expires_after(state_->idle_timeout);
    http::async_write(stream_, *msg,
                      [self = shared_from_this(), msg, keep_alive,
                       counted](beast::error_code ec, size_t) {
                        if (counted)
                          self->state_->unanswered.fetch_sub(1);
                        if (ec || !keep_alive) {
                          self->shut();
                          if (!ec && self->unread_body_)
                            self->drain(max_drained_bytes);
                          return;
                        }
                        self->read();
                      });
  }

  /// Reads and drops what the client still sends of a body that was refused, for a
  /// while, so that it reads the answer instead of a reset of the connection.
  void drain(size_t left) {
    auto scrap = std::make_shared<std::array<char, 16384>>();
    stream_.expires_after(drain_time);
    stream_.async_read_some(asio::buffer(*scrap),
                            [self = shared_from_this(), scrap, left](beast::error_code ec,
                                                                    size_t n) {
                              if (!ec && n < left)
                                self->drain(left - n);
                            });
  }

  void shut() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  // -- server-sent events: the answer is the header, then events until either side ends.
  // The connection is not kept alive after it; nothing more is read from the client.

  void start_events(std::shared_ptr<runtime::change_feed::subscription> sub, bool counted) {
    events_ = std::move(sub);
    // A small socket buffer: a client that reads nothing holds little, and is noticed.
    beast::error_code ignored;
    stream_.socket().set_option(asio::socket_base::send_buffer_size(event_socket_buffer), ignored);
    std::weak_ptr<session> weak = shared_from_this();
    events_->on_ready([weak] {
      if (auto self = weak.lock())
        asio::post(self->stream_.get_executor(), [self] { self->send_events(); });
    });
    pending_ =
      "HTTP/1.1 200 OK\r\nServer: twind\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nConnection: close\r\n\r\n: subscribed\n\n";
    header_counted_ = counted;
    arm_heartbeat();
    watch_client();
    send_events();
  }

  /// Notices at once a client that closes its end: the stream ends and its connection
  /// goes, instead of waiting for the next write to fail. What a client sends is ignored.
  void watch_client() {
    auto scrap = std::make_shared<std::array<char, 512>>();
    stream_.socket().async_read_some(
      asio::buffer(*scrap), [self = shared_from_this(), scrap](beast::error_code ec, size_t) {
        if (!self->events_)
          return;
        if (ec)
          return self->end_events();
        self->watch_client();
      });
  }

  void arm_heartbeat() {
    heartbeat_.expires_after(heartbeat);
    heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->events_)
        return;
      self->pending_ += ": heartbeat\n\n";
      self->send_events();
      self->arm_heartbeat();
    });
  }

  /// Writes what is pending and the events queued since the last write, at most
  /// `event_chunk` of text at a time; one write at a time. A lagged subscription gets a
  /// "lagged" event once its last events are out, and the stream ends.
  void send_events() {
    if (writing_ || !events_)
      return;
    if (backlog_.empty()) {
      lagged_ = events_->lagged();  // before taking: a lagged queue gets no more events
      for (auto& ev : events_->take())
        backlog_.push_back(std::move(ev));
    }
    while (!backlog_.empty() && pending_.size() < event_chunk) {
      pending_ += sse_event(*backlog_.front());
      backlog_.pop_front();
    }
    if (backlog_.empty() && lagged_ && !ending_) {
      pending_ += "event: lagged\ndata: {\"message\":\"this stream fell too far behind and "
                  "ends; read the twins again and subscribe anew\"}\n\n";
      ending_ = true;
    }
    if (pending_.empty())
      return;
    writing_ = true;
    auto out = std::make_shared<std::string>(std::move(pending_));
    pending_.clear();
    // A client that takes nothing for this long is gone: the write fails and the stream
    // ends (its subscription lags meanwhile, so publishers never wait for it).
    stream_.expires_after(event_write_timeout);
    asio::async_write(stream_, asio::buffer(*out),
                      [self = shared_from_this(), out](beast::error_code ec, size_t) {
                        self->writing_ = false;
                        if (std::exchange(self->header_counted_, false))
                          self->state_->unanswered.fetch_sub(1);
                        if (ec || self->ending_)
                          return self->end_events();
                        self->send_events();
                      });
  }

  /// Ends the stream and the connection (the client is not read from: it would keep it).
  void end_events() {
    if (!events_)
      return;
    events_->on_ready(nullptr);
    events_.reset();
    backlog_.clear();
    heartbeat_.cancel();
    shut();
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  std::shared_ptr<asio::io_context> ioc_;  ///< outlives the stream, which uses it
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const route_context& ctx_;  ///< the server's, which outlives its sessions' work
  asio::steady_timer heartbeat_;
  std::shared_ptr<runtime::change_feed::subscription> events_;  ///< set: streaming events
  std::string pending_;  ///< what the event stream writes next
  std::deque<runtime::change_feed::event_ptr> backlog_;  ///< taken, not yet in `pending_`
  bool lagged_ = false;  ///< the subscription lagged before `backlog_` was taken
  bool writing_ = false;
  bool ending_ = false;
  bool header_counted_ = false;
  size_t max_body_;
  std::shared_ptr<shared_state> state_;
  bool keep_alive_ = false;
  bool unread_body_ = false;  ///< a refused body may still be on its way
  size_t body_reserved_ = 0;  ///< of `shared_state::inflight_body`, for this request
  std::atomic<bool> idle_{false};
  unsigned version_ = 11;
  const char* route_ = nullptr;  ///< the template of the request being answered
  std::chrono::steady_clock::time_point received_;
};

} // namespace

struct http_server::impl {
  impl(backend be_, http_options opts_)
    : be(std::move(be_)),
      opts(std::move(opts_)),
      ctx{be, node, [this](std::function<void()> fn) { return run_blocking(std::move(fn)); },
          opts.event_buffer, opts.event_buffer_bytes, &telemetry},
      ioc(std::make_shared<asio::io_context>()),
      work(ioc->get_executor()),
      acceptor(*ioc),
      retry(*ioc),
      state(std::make_shared<shared_state>(opts)) {
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  ~impl() {
    if (spare_fd >= 0)
      ::close(spare_fd);
  }

  /// Queues work on the blocking pool, at most `max_blocking` jobs at once.
  bool run_blocking(std::function<void()> fn) {
    if (blocking_queued.fetch_add(1) >= max_blocking) {
      blocking_queued.fetch_sub(1);
      return false;
    }
    asio::post(blocking, [this, fn = std::move(fn)] {
      fn();
      blocking_queued.fetch_sub(1);
    });
    return true;
  }

  void accept() {
    acceptor.async_accept(asio::make_strand(*ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open())
        return;  // stopped
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
        // Out of file descriptors: the spare one goes to the waiting client, which is
        // told so instead of hanging in the backlog.
        out_of_fds_at.store(std::chrono::steady_clock::now().time_since_epoch().count());
        if (spare_fd >= 0) {
          ::close(spare_fd);
          spare_fd = -1;
          refuse_next = true;
          return accept();
        }
      }
      if (ec) {
        refuse_next = false;
        retry.expires_after(std::chrono::milliseconds{100});
        retry.async_wait([this](beast::error_code e) {
          if (!e)
            accept();
        });
        return;
      }
      if (spare_fd < 0 && !refuse_next)  // given up before: take one back when there is one
        spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      auto conn = std::make_shared<session>(ioc, std::move(s), ctx, state);
      if (std::exchange(refuse_next, false)) {
        refused_no_fds.fetch_add(1, std::memory_order_relaxed);
        conn->refuse("out_of_file_descriptors",
                     "the node has no file descriptor left for this connection; retry later");
        conn.reset();  // closes once the answer is out, and then the spare comes back
        retry.expires_after(std::chrono::milliseconds{50});
        retry.async_wait([this](beast::error_code e) {
          if (e)
            return;
          if (spare_fd < 0)
            spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          accept();
        });
        return;
      }
      if (state->connections.load() > opts.max_connections && !close_idle_session()) {
        conn->refuse("too_many_connections",
                     "the node serves as many connections as it takes; retry later");
        accept();
        return;
      }
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

  /// At the connection bound: closes the connection that has been idle longest (the
  /// oldest one waiting for a request); false if none is idle.
  bool close_idle_session() {
    std::lock_guard<std::mutex> guard{sessions_mtx};
    for (auto& w : sessions)
      if (auto s = w.lock(); s && s->idle()) {
        s->close_if_idle();
        w.reset();
        return true;
      }
    return false;
  }

  backend be;
  http_options opts;
  node_info node;
  telemetry_counts telemetry;
  route_context ctx;
  /// Where queries and history reads run: they block on the store.
  asio::thread_pool blocking{2};
  static constexpr int max_blocking = 64;
  std::atomic<int> blocking_queued{0};
  std::shared_ptr<asio::io_context> ioc;  ///< shared with the connections
  asio::executor_work_guard<asio::io_context::executor_type> work;
  tcp::acceptor acceptor;
  asio::steady_timer retry;
  std::vector<std::thread> threads;
  std::shared_ptr<shared_state> state;
  int spare_fd = -1;         ///< given up when file descriptors run out (I/O thread)
  bool refuse_next = false;  ///< the next connection took the spare descriptor
  std::atomic<int64_t> out_of_fds_at{0};  ///< steady clock ticks; 0: never
  std::atomic<uint64_t> refused_no_fds{0};
  std::mutex sessions_mtx;
  std::vector<std::weak_ptr<session>> sessions;
  uint16_t bound_port = 0;
};

http_server::http_server(backend be, http_options opts)
  : impl_(std::make_unique<impl>(std::move(be), std::move(opts))) {
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
  d.node = node_info{d.opts.node_id, "http://" + d.opts.bind + ":" + std::to_string(d.bound_port)};
  d.accept();
  for (int i = 0; i < std::max(1, d.opts.threads); ++i)
    d.threads.emplace_back([&d] {
      // In the batch scheduling class, like the actor workers: the thread that answers a
      // read and the one that asked do not preempt each other at every wakeup, and each
      // handles what queued meanwhile at once (about a quarter more reads on two cores).
#ifdef SCHED_BATCH
      sched_param none{};
      sched_setscheduler(0, SCHED_BATCH, &none);
#endif
      d.ioc->run();
    });
  return {};
}

uint16_t http_server::port() const {
  return impl_->bound_port;
}

http_metrics http_server::metrics() const {
  auto& st = *impl_->state;
  http_metrics out;
  std::lock_guard<std::mutex> guard{st.metrics_mtx};
  for (const auto& [key, n] : st.answered)
    out.requests.push_back({key.first, key.second, n});
  for (const auto& [route, h] : st.latency)
    out.latency.emplace_back(route, h.snapshot());
  out.telemetry_accepted = impl_->telemetry.accepted.load(std::memory_order_relaxed);
  out.telemetry_rejected = impl_->telemetry.rejected.load(std::memory_order_relaxed);
  out.connections = st.connections.load(std::memory_order_relaxed);
  out.refused_bodies = st.refused_bodies.load(std::memory_order_relaxed);
  out.refused_no_fds = impl_->refused_no_fds.load(std::memory_order_relaxed);
  return out;
}

std::string http_server::saturation() const {
  auto at = impl_->out_of_fds_at.load();
  if (at == 0)
    return {};
  auto since = std::chrono::steady_clock::now()
               - std::chrono::steady_clock::time_point{std::chrono::steady_clock::duration{at}};
  if (since > fd_shortage_shown)
    return {};
  return "out of file descriptors (ulimit -n) for new connections on port "
         + std::to_string(impl_->bound_port);
}

void http_server::stop(std::chrono::milliseconds drain) {
  auto& d = *impl_;
  if (d.threads.empty())
    return;
  asio::post(*d.ioc, [&d] {
    beast::error_code ec;
    d.acceptor.close(ec);
    d.retry.cancel();
  });
  // Answers under way are written if they come within `drain`.
  auto deadline = std::chrono::steady_clock::now() + drain;
  while (d.state->unanswered.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  {
    std::lock_guard<std::mutex> guard{d.state->mtx};
    d.state->open = false;
  }
  d.blocking.join();
  {
    std::lock_guard<std::mutex> guard{d.sessions_mtx};
    for (auto& w : d.sessions)
      if (auto s = w.lock())
        s->close();
    d.sessions.clear();
  }
  d.work.reset();
  d.ioc->stop();
  for (auto& t : d.threads)
    t.join();
  d.threads.clear();
  // Run what the stop left queued (closed connections finishing), so that no handler
  // keeps a connection, and through it the I/O context, alive.
  d.ioc->restart();
  d.ioc->poll();
}

} // namespace twin::api
