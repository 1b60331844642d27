#include "twin/api/http_server.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include "auth.hpp"
#include "routes.hpp"
#include "session.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

/// How long running out of file descriptors shows in `saturation`.
constexpr auto fd_shortage_shown = std::chrono::seconds{5};

} // namespace

struct http_server::impl {
  impl(backend be_, http_options opts_)
    : be(std::move(be_)),
      opts(std::move(opts_)),
      throttle(opts.auth_failure_limit),
      ctx{be, node, [this](std::function<void()> fn) { return run_blocking(std::move(fn)); },
          opts.event_buffer, opts.event_buffer_bytes, &telemetry, &opts.cors_origins,
          &opts.allowed_hosts, be.tokens, &throttle, opts.metrics_token},
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
      auto conn = std::make_shared<session>(
        ioc, tls ? transport{std::move(s), *tls} : transport{std::move(s)}, ctx, state);
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

  /// Loads the certificate, its key and the clients' CA of the options, if TLS is asked for.
  caf::error setup_tls() {
    if (opts.tls_cert_file.empty() && opts.tls_key_file.empty()) {
      if (!opts.tls_client_ca_file.empty())
        return runtime::make_error(runtime::runtime_errc::invalid_argument,
                                   "TLS: a clients' CA needs the server's certificate and key");
      return {};
    }
    auto fail = [](const std::string& what, const beast::error_code& ec) {
      return runtime::make_error(runtime::runtime_errc::invalid_argument,
                                 "TLS: cannot use " + what + ": " + ec.message());
    };
    if (opts.tls_cert_file.empty() || opts.tls_key_file.empty())
      return runtime::make_error(runtime::runtime_errc::invalid_argument,
                                 "TLS needs both a certificate and its key");
    tls.emplace(asio::ssl::context::tls_server);
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2
                     | asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1
                     | asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    beast::error_code ec;
    tls->use_certificate_chain_file(opts.tls_cert_file, ec);
    if (ec)
      return fail("the certificate " + opts.tls_cert_file, ec);
    tls->use_private_key_file(opts.tls_key_file, asio::ssl::context::pem, ec);
    if (ec)
      return fail("the key " + opts.tls_key_file, ec);
    if (!opts.tls_client_ca_file.empty()) {
      tls->load_verify_file(opts.tls_client_ca_file, ec);
      if (ec)
        return fail("the clients' CA " + opts.tls_client_ca_file, ec);
      tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    return {};
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
  failure_throttle throttle;
  route_context ctx;
  std::optional<asio::ssl::context> tls;  ///< set: connections speak TLS
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
  if (auto err = d.setup_tls())
    return err;
  beast::error_code ec;
  auto address = asio::ip::make_address(d.opts.bind, ec);
  if (ec)
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               "cannot listen on " + d.opts.bind + ": not an IP address");
  tcp::endpoint ep{address, d.opts.port};
  auto where = d.opts.bind + ":" + std::to_string(d.opts.port);
  auto fail = [&](const char* step) {
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               "cannot listen on " + where + " (" + step
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
  d.node = node_info{d.opts.node_id, std::string{d.tls ? "https://" : "http://"} + d.opts.bind
                                       + ":" + std::to_string(d.bound_port)};
  d.accept();
  for (int i = 0; i < std::max(1, d.opts.threads); ++i)
    d.threads.emplace_back([&d] {
      runtime::name_thread("twin.http");
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
