#pragma once

// One HTTP/1.1 connection of the API server, and what the connections share with the
// server. Private to runtime/api.

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "routes.hpp"
#include "twin/api/transport.hpp"
#include "twin/api/http_server.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/metrics.hpp"

namespace twin::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

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
  session(std::shared_ptr<asio::io_context> ioc, transport stream, const route_context& ctx,
          std::shared_ptr<shared_state> state);

  ~session();

  /// Waiting for a request that has not begun to arrive: it may be closed for a new
  /// connection when the server is full.
  bool idle() const { return idle_.load(std::memory_order_relaxed); }

  void start();

  /// Answers 503 at once and closes: the server cannot take the connection.
  void refuse(std::string code, std::string message);

  /// Closes the connection on its strand: its reads and writes end.
  void close();

  /// Closes the connection if it still waits for a request once on its strand.
  void close_if_idle();

private:
  /// Runs `then` once a TLS connection's handshake is done (at once without TLS); a failed
  /// handshake closes the connection.
  void handshake(std::function<void()> then);

  void read();

  void release_body();

  /// Reserves the memory of the request's body (its length, or the most a body may have
  /// when it comes in chunks); false if the bodies in memory would pass the bound.
  bool reserve_body();

  /// A client that asks whether to send its body (`Expect: 100-continue`, as curl does
  /// for bodies over 1 KiB) is told to go on; a body over the limit was refused already.
  void on_header(beast::error_code ec);

  void read_body();

  void on_read(beast::error_code ec);

  /// Writes `res`; `counted`: it answers a request counted in `unanswered`, which is
  /// released once the answer is out.
  void write(response res, bool keep_alive, bool counted = false);

  /// Reads and drops what the client still sends of a body that was refused, for a
  /// while, so that it reads the answer instead of a reset of the connection.
  void drain(size_t left);

  void shut();

  // -- server-sent events: the answer is the header, then events until either side ends.
  // The connection is not kept alive after it; nothing more is read from the client.

  void start_events(std::shared_ptr<runtime::change_feed::subscription> sub, bool counted);

  /// Notices at once a client that closes its end: the stream ends and its connection
  /// goes, instead of waiting for the next write to fail. What a client sends is ignored.
  void watch_client();

  void arm_heartbeat();

  /// Writes what is pending and the events queued since the last write, at most
  /// `event_chunk` of text at a time; one write at a time. A lagged subscription gets a
  /// "lagged" event once its last events are out, and the stream ends.
  void send_events();

  /// Ends the stream and the connection (the client is not read from: it would keep it).
  void end_events();

  /// Whether the request's token (if any) is still neither revoked nor expired: an event
  /// stream checks at each write and heartbeat (every 15 s), and ends when it is not.
  bool token_still_valid() const;

  std::shared_ptr<asio::io_context> ioc_;  ///< outlives the stream, which uses it
  transport stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const route_context& ctx_;  ///< the server's, which outlives its sessions' work
  std::string peer_;          ///< the client's address
  /// The request being read, from its headers: its body is added once it is read.
  request head_;
  /// The token of the request being read (or streamed to), identified from its headers.
  std::shared_ptr<const runtime::access_token> token_;
  asio::steady_timer heartbeat_;
  std::shared_ptr<runtime::change_feed::subscription> events_;  ///< set: streaming events
  std::string pending_;  ///< what the event stream writes next
  std::deque<runtime::change_feed::numbered> backlog_;  ///< taken, not yet in `pending_`
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

} // namespace twin::api
