#include "session.hpp"

#include <array>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "twin/api/tokens.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/record.hpp"

namespace twin::api {

namespace {

constexpr size_t max_header_bytes = 16 * 1024;
// What is read and dropped of a refused body, at most, before the connection closes.
constexpr size_t max_drained_bytes = 64u << 20;
constexpr auto drain_time = std::chrono::seconds{5};
/// A TLS client has this long to finish its handshake.
constexpr auto handshake_time = std::chrono::seconds{10};
/// An event stream sends a comment this often while it has no events: proxies keep the
/// connection open, and a client that is gone is noticed.
constexpr auto heartbeat = std::chrono::seconds{15};
/// An event stream writes at most this much text at once, through a socket buffer of
/// this size, and ends when its client takes nothing for `event_write_timeout`.
constexpr size_t event_chunk = 16u << 10;
constexpr int event_socket_buffer = 32 << 10;
constexpr auto event_write_timeout = std::chrono::seconds{10};

std::string_view target_of(const http::request<http::string_body>& msg) {
  return {msg.target().data(), msg.target().size()};
}

} // namespace

session::session(std::shared_ptr<asio::io_context> ioc, transport stream,
                 const route_context& ctx, std::shared_ptr<shared_state> state)
  : ioc_(std::move(ioc)),
    stream_(std::move(stream)),
    ctx_(ctx),
    heartbeat_(stream_.get_executor()),
    max_body_(state->max_body),
    state_(std::move(state)) {
  state_->connections.fetch_add(1);
  beast::error_code ec;
  auto peer = stream_.tcp().socket().remote_endpoint(ec);
  if (!ec)
    peer_ = peer.address().to_string();
}

session::~session() {
  release_body();
  state_->connections.fetch_sub(1);
}

void session::start() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    self->handshake([self] { self->read(); });
  });
}

void session::handshake(std::function<void()> then) {
  if (!stream_.secure())
    return then();
  stream_.tcp().expires_after(handshake_time);
  stream_.tls().async_handshake(ssl::stream_base::server,
                                [self = shared_from_this(), then = std::move(then)](
                                  beast::error_code ec) {
                                  if (ec)  // not TLS, or a certificate refused: nothing to say
                                    return self->stream_.tcp().close();
                                  then();
                                });
}

void session::refuse(std::string code, std::string message) {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this(), code = std::move(code),
                                          message = std::move(message)]() mutable {
    self->handshake([self, code = std::move(code), message = std::move(message)] {
      self->received_ = std::chrono::steady_clock::now();
      self->route_ = route_of("");
      self->write(error_response(503, code, message), false);
    });
  });
}

void session::close() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->heartbeat_.cancel();
    self->stream_.tcp().close();
  });
}

void session::close_if_idle() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    if (self->idle())
      self->stream_.tcp().close();
  });
}

void session::read() {
  release_body();
  parser_.emplace();
  parser_->body_limit(max_body_);
  parser_->header_limit(max_header_bytes);
  stream_.tcp().expires_after(state_->idle_timeout);
  idle_ = buffer_.size() == 0;  // nothing of the next request has come yet
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            self->on_header(ec);
                          });
}

void session::release_body() {
  if (body_reserved_ > 0)
    state_->inflight_body.fetch_sub(std::exchange(body_reserved_, 0));
}

bool session::reserve_body() {
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

void session::on_header(beast::error_code ec) {
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
  // Who asks is known from the headers: a request refused for it is answered before its
  // body is read (and before a client that expects 100 is told to send it).
  auto& msg = parser_->get();
  head_ = request{};
  head_.method = std::string{msg.method_string()};
  head_.target = std::string{msg.target()};
  head_.route = route_of(target_of(msg));
  head_.content_type = std::string{msg[http::field::content_type]};
  head_.origin = std::string{msg[http::field::origin]};
  head_.host = std::string{msg[http::field::host]};
  head_.if_match = std::string{msg[http::field::if_match]};
  head_.if_none_match = std::string{msg[http::field::if_none_match]};
  head_.last_event_id = std::string{msg["Last-Event-ID"]};
  head_.authorization = std::string{msg[http::field::authorization]};
  head_.peer = peer_;
  if (auto refused = refuse_early(ctx_, head_)) {
    received_ = std::chrono::steady_clock::now();
    route_ = head_.route;
    unread_body_ = true;
    return write(std::move(*refused), false);
  }
  token_ = head_.token;  // an event stream keeps checking it
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

void session::read_body() {
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     self->on_read(ec);
                   });
}

void session::on_read(beast::error_code ec) {
  // A connection that closed, timed out or broke (also mid-request) has no one to answer.
  if (ec == http::error::end_of_stream || ec == beast::error::timeout
      || ec == asio::error::operation_aborted || ec == http::error::partial_message
      || ec == ssl::error::stream_truncated
      || (ec && (ec.category() == asio::error::get_system_category()
                 || ec.category() == asio::error::get_ssl_category())))
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
  auto req = std::move(head_);  // its headers, read (and its caller identified) before
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

void session::write(response res, bool keep_alive, bool counted) {
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
  stream_.tcp().expires_after(state_->idle_timeout);
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

void session::drain(size_t left) {
  auto scrap = std::make_shared<std::array<char, 16384>>();
  stream_.tcp().expires_after(drain_time);
  stream_.async_read_some(asio::buffer(*scrap),
                          [self = shared_from_this(), scrap, left](beast::error_code ec,
                                                                  size_t n) {
                            if (!ec && n < left)
                              self->drain(left - n);
                          });
}

void session::shut() {
  beast::error_code ec;
  stream_.tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
}

void session::start_events(std::shared_ptr<runtime::change_feed::subscription> sub,
                           bool counted) {
  events_ = std::move(sub);
  // A small socket buffer: a client that reads nothing holds little, and is noticed.
  beast::error_code ignored;
  stream_.tcp().socket().set_option(asio::socket_base::send_buffer_size(event_socket_buffer), ignored);
  std::weak_ptr<session> weak = shared_from_this();
  events_->on_ready([weak] {
    if (auto self = weak.lock())
      asio::post(self->stream_.get_executor(), [self] { self->send_events(); });
  });
  pending_ =
    "HTTP/1.1 200 OK\r\nServer: twind\r\nContent-Type: text/event-stream\r\n"
    "Cache-Control: no-cache\r\nConnection: close\r\n\r\n: subscribed\n\n";
  if (events_->reset())  // asked to resume after an event this node does not have
    pending_ += "event: reset\ndata: {\"message\":\"this node does not have every event after "
                "Last-Event-ID: events may be missing; read the twins again\"}\n\n";
  header_counted_ = counted;
  arm_heartbeat();
  watch_client();
  send_events();
}

void session::watch_client() {
  auto scrap = std::make_shared<std::array<char, 512>>();
  stream_.async_read_some(
    asio::buffer(*scrap), [self = shared_from_this(), scrap](beast::error_code ec, size_t) {
      if (!self->events_)
        return;
      if (ec)
        return self->end_events();
      self->watch_client();
    });
}

void session::arm_heartbeat() {
  heartbeat_.expires_after(heartbeat);
  heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || !self->events_)
      return;
    self->pending_ += ": heartbeat\n\n";
    self->send_events();
    self->arm_heartbeat();
  });
}

void session::send_events() {
  if (writing_ || !events_)
    return;
  if (!ending_ && !token_still_valid()) {  // nothing more for a revoked or expired token
    backlog_.clear();
    pending_ += "event: unauthorized\ndata: {\"message\":\"the token of this stream was revoked "
                "or expired\"}\n\n";
    ending_ = true;
  }
  if (backlog_.empty() && !ending_) {
    lagged_ = events_->lagged();  // before taking: a lagged queue gets no more events
    for (auto& ev : events_->take_numbered())
      backlog_.push_back(std::move(ev));
  }
  while (!backlog_.empty() && pending_.size() < event_chunk) {
    pending_ += sse_event(*backlog_.front().ev, events_->event_id(backlog_.front().seq));
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
  stream_.tcp().expires_after(event_write_timeout);
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

bool session::token_still_valid() const {
  if (!token_ || ctx_.tokens == nullptr)
    return true;
  auto now = ctx_.tokens->find(token_->id);
  return now && now->revoked_ms == 0 && !now->expired(runtime::now_ms());
}

void session::end_events() {
  if (!events_)
    return;
  events_->on_ready(nullptr);
  events_.reset();
  backlog_.clear();
  heartbeat_.cancel();
  shut();
  beast::error_code ignored;
  stream_.tcp().socket().close(ignored);
}

} // namespace twin::api
