#include "twin/ingest/mqtt_client.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "mqtt_ack_window.hpp"
#include "mqtt_codec.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::ingest {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using runtime::make_error;
using runtime::runtime_errc;

caf::expected<broker_address> parse_broker_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return make_error(runtime_errc::invalid_argument,
                      "invalid MQTT broker URL '" + std::string{url} + "': " + why);
  };
  broker_address a;
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return bad("expected tcp://, mqtt://, ssl:// or mqtts:// and host:port");
  auto scheme = url.substr(0, scheme_end);
  if (scheme == "ssl" || scheme == "mqtts" || scheme == "tls") {
    a.tls = true;
    a.port = 8883;
  } else if (scheme != "tcp" && scheme != "mqtt") {
    return bad("unknown scheme '" + std::string{scheme} + "'");
  }
  auto rest = url.substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/')
    rest.remove_suffix(1);
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos)
      return bad("an IPv6 host needs a closing ']'");
    a.host = std::string{rest.substr(1, close - 1)};
    auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return bad("expected ':' and a port after the host");
      port = after.substr(1);
    }
  } else {
    auto colon = rest.rfind(':');
    a.host = std::string{rest.substr(0, colon)};
    if (colon != std::string_view::npos)
      port = rest.substr(colon + 1);
  }
  if (a.host.empty() || a.host.find_first_of("/@ ") != std::string::npos)
    return bad("no valid host");
  if (!port.empty() || rest.find(':') != std::string_view::npos) {
    unsigned p = 0;
    if (port.empty() || port.size() > 5)
      return bad("the port must be 1 to 65535");
    for (char c : port) {
      if (c < '0' || c > '9')
        return bad("the port must be 1 to 65535");
      p = p * 10 + static_cast<unsigned>(c - '0');
    }
    if (p == 0 || p > 65535)
      return bad("the port must be 1 to 65535");
    a.port = static_cast<uint16_t>(p);
  }
  return a;
}

void mqtt_ack::done() {
  if (w_)
    w_->complete(seq_, mqtt_ack_window::handled);
  w_.reset();
}

void mqtt_ack::retry() {
  if (w_)
    w_->complete(seq_, mqtt_ack_window::retry);
  w_.reset();
}

namespace {

/// A message of `publish`.
struct outgoing {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  mqtt_client::published_fn done;
};

void finish(outgoing& m, bool delivered) {
  if (!m.done)
    return;
  try {
    m.done(delivered);
  } catch (...) {
  }
}

constexpr size_t initial_buffer = 64u << 10;
constexpr auto tick_period = std::chrono::milliseconds{250};
/// Reconnection after a message asked to be retried waits this long, doubling while the
/// retried messages keep failing (e.g. a full disk), up to `max_retry_delay`.
constexpr auto retry_delay = std::chrono::milliseconds{1000};
constexpr auto max_retry_delay = std::chrono::milliseconds{30000};

} // namespace

struct mqtt_client::core : std::enable_shared_from_this<core> {
  enum class phase { idle, connecting, subscribing, up, stopping, stopped };

  core(mqtt_client_options o, message_fn m, state_fn s)
    : opts(std::move(o)), on_message(std::move(m)), on_state(std::move(s)) {
    backoff = opts.reconnect_min;
  }

  // -- configuration (start) ------------------------------------------------------

  caf::error configure() {
    if (opts.client_id.empty())
      return make_error(runtime_errc::invalid_argument, "an MQTT client needs a client id");
    if (opts.version != mqtt::v311 && opts.version != mqtt::v5)
      return make_error(runtime_errc::invalid_argument, "the MQTT version is 4 (3.1.1) or 5");
    auto a = parse_broker_url(opts.url);
    if (!a)
      return a.error();
    addr = std::move(*a);
    if (!addr.tls)
      return {};
    try {
      tls.emplace(ssl::context::tls_client);
      tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                       | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                       | ssl::context::no_tlsv1_1);
      if (opts.tls_ca_file.empty())
        tls->set_default_verify_paths();
      else
        tls->load_verify_file(opts.tls_ca_file);
      if (!opts.tls_cert_file.empty()) {
        tls->use_certificate_chain_file(opts.tls_cert_file);
        tls->use_private_key_file(
          opts.tls_key_file.empty() ? opts.tls_cert_file : opts.tls_key_file, ssl::context::pem);
      }
      tls->set_verify_mode(opts.tls_verify ? ssl::verify_peer : ssl::verify_none);
    } catch (const boost::system::system_error& e) {
      return make_error(runtime_errc::invalid_argument,
                        "MQTT TLS settings: " + std::string{e.what()});
    }
    return {};
  }

  // -- connection -------------------------------------------------------------------

  void connect() {
    if (current != phase::idle)
      return;
    current = phase::connecting;
    ++gen;
    connect_deadline = clock_type::now() + opts.connect_timeout;
    if (tls)
      stream = std::make_unique<ssl::stream<tcp::socket>>(ioc, *tls);
    else
      stream = std::make_unique<ssl::stream<tcp::socket>>(ioc, plain_ctx());
    in_used = 0;
    reading = false;
    paused = false;
    out.clear();
    resolver.async_resolve(addr.host, std::to_string(addr.port),
                           [self = shared_from_this(), g = gen](auto ec, auto results) {
                             if (g != self->gen)
                               return;
                             if (ec)
                               return self->fail("cannot resolve " + self->addr.host + ": "
                                                 + ec.message());
                             self->on_resolved(results);
                           });
  }

  ssl::context& plain_ctx() {
    if (!unused_tls)
      unused_tls.emplace(ssl::context::tls_client);
    return *unused_tls;
  }

  void on_resolved(const tcp::resolver::results_type& results) {
    asio::async_connect(stream->next_layer(), results,
                        [self = shared_from_this(), g = gen](auto ec, const auto&) {
                          if (g != self->gen)
                            return;
                          if (ec)
                            return self->fail("cannot connect: " + ec.message());
                          boost::system::error_code ignored;
                          self->stream->next_layer().set_option(tcp::no_delay{true}, ignored);
                          if (!self->tls)
                            return self->send_connect();
                          self->handshake();
                        });
  }

  void handshake() {
    if (!SSL_set_tlsext_host_name(stream->native_handle(), addr.host.c_str()))
      return fail("cannot set the TLS server name");
    if (opts.tls_verify)
      stream->set_verify_callback(ssl::host_name_verification(addr.host));
    stream->async_handshake(ssl::stream_base::client,
                            [self = shared_from_this(), g = gen](auto ec) {
                              if (g != self->gen)
                                return;
                              if (ec)
                                return self->fail("TLS handshake failed: " + ec.message());
                              self->send_connect();
                            });
  }

  void send_connect() {
    mqtt::connect_fields c;
    c.version = opts.version;
    c.client_id = opts.client_id;
    c.clean_start = opts.clean_session;
    c.keep_alive_s = static_cast<uint16_t>(std::min<int64_t>(opts.keep_alive.count(), 65535));
    c.username = opts.username;
    c.password = opts.password;
    c.session_expiry_s = opts.clean_session
                           ? 0
                           : static_cast<uint32_t>(std::min<int64_t>(
                               opts.session_expiry.count(), 0xffffffffLL));
    c.receive_maximum = static_cast<uint16_t>(std::min<size_t>(opts.max_unhandled, 65535));
    c.maximum_packet_size = static_cast<uint32_t>(opts.max_packet);
    mqtt::write_connect(out, c);
    keep_alive = opts.keep_alive;
    last_heard = clock_type::now();
    flush_out();
    read();
  }

  /// Drops the connection and tries again after the backoff (at least `at_least`).
  void fail(const std::string& why, std::chrono::milliseconds at_least = {}) {
    if (current == phase::stopping || current == phase::stopped || current == phase::idle)
      return;
    bool was_up = current == phase::up;
    close_stream();
    current = phase::idle;
    set_up(false);
    tell(false, "MQTT connection to " + opts.url + (was_up ? " lost: " : " failed: ") + why
                  + "; retrying");
    if (was_up)
      backoff = opts.reconnect_min;
    auto wait = std::max(jittered(backoff), at_least);
    backoff = std::min(backoff * 2, opts.reconnect_max);
    retry_timer.expires_after(wait);
    retry_timer.async_wait([self = shared_from_this()](auto ec) {
      if (!ec)
        self->connect();
    });
  }

  std::chrono::milliseconds jittered(std::chrono::milliseconds d) {
    std::uniform_real_distribution<double> f{0.8, 1.2};
    return std::chrono::milliseconds{static_cast<int64_t>(d.count() * f(rng))};
  }

  void close_stream() {
    ++gen;  // what the old connection's handlers and acknowledgements do is ignored
    window.reset();
    boost::system::error_code ignored;
    if (stream) {
      stream->next_layer().cancel(ignored);
      stream->next_layer().close(ignored);
    }
    writing.clear();
    write_in_flight = false;
    reading = false;
    subscribe_id = 0;
  }

  void set_up(bool up) {
    std::lock_guard<std::mutex> guard{mtx};
    is_up.store(up);
    cv.notify_all();
  }

  void tell(bool up, const std::string& text) {
    last_text = text;
    if (!on_state)
      return;
    try {
      on_state(up, text);
    } catch (...) {
    }
  }

  // -- reading ------------------------------------------------------------------------

  void read() {
    if (reading || paused || !stream || current == phase::idle)
      return;
    if (in.size() - in_used < 4096) {
      size_t want = std::max(in.size() * 2, initial_buffer);
      in.resize(std::min(want, opts.max_packet + 8));
      if (in.size() == in_used)
        return fail("a packet larger than " + std::to_string(opts.max_packet) + " bytes");
    }
    reading = true;
    auto on_read = [self = shared_from_this(), g = gen](boost::system::error_code ec, size_t n) {
      if (g != self->gen)
        return;
      self->reading = false;
      if (ec)
        return self->fail(ec == asio::error::eof ? "the broker closed the connection"
                                                 : ec.message());
      self->in_used += n;
      self->last_heard = clock_type::now();
      self->parse();
      self->read();
    };
    auto buf = asio::buffer(in.data() + in_used, in.size() - in_used);
    if (tls)
      stream->async_read_some(buf, std::move(on_read));
    else
      stream->next_layer().async_read_some(buf, std::move(on_read));
  }

  /// Handles the complete packets in the buffer, as long as the window takes messages.
  void parse() {
    auto g = gen;
    size_t offset = 0;
    while (g == gen) {
      if (window && window->full()) {
        paused = true;  // flush_acks resumes
        break;
      }
      mqtt::frame f;
      auto status = mqtt::next_frame({in.data() + offset, in_used - offset}, opts.max_packet, f);
      if (status == mqtt::frame_status::incomplete)
        break;
      if (status == mqtt::frame_status::malformed)
        return fail("a malformed packet (its length has more than four bytes)");
      if (status == mqtt::frame_status::too_large)
        return fail("a packet larger than " + std::to_string(opts.max_packet) + " bytes");
      offset += f.size;
      handle(f);
    }
    if (g != gen)
      return;
    if (offset > 0) {
      std::memmove(in.data(), in.data() + offset, in_used - offset);
      in_used -= offset;
    }
  }

  void handle(const mqtt::frame& f) {
    switch (f.type()) {
      case mqtt::packet_type::publish: return on_publish(f);
      case mqtt::packet_type::puback: return on_puback(f);
      case mqtt::packet_type::connack: return on_connack(f);
      case mqtt::packet_type::suback: return on_suback(f);
      case mqtt::packet_type::pingresp: return;
      case mqtt::packet_type::disconnect: {
        std::string why = "the broker disconnected";
        if (!f.body.empty())
          why += " (reason " + std::to_string(static_cast<uint8_t>(f.body[0])) + ")";
        return fail(why);
      }
      default:
        return fail("an unexpected packet of type " + std::to_string(f.header >> 4));
    }
  }

  void on_connack(const mqtt::frame& f) {
    mqtt::connack_fields c;
    if (current != phase::connecting || !mqtt::read_connack(opts.version, f.body, c))
      return fail("a malformed or unexpected CONNACK");
    if (c.code != 0)
      return fail("the broker refused the connection: " + mqtt::connack_text(opts.version, c.code)
                  + (c.reason.empty() ? "" : " (" + c.reason + ")"));
    if (c.server_keep_alive_s > 0)
      keep_alive = std::chrono::seconds{c.server_keep_alive_s};
    broker_receive_max = c.receive_maximum;
    session_present = c.session_present;
    std::weak_ptr<core> weak = shared_from_this();
    auto g = gen;
    window = std::make_shared<mqtt_ack_window>(
      std::max<size_t>(opts.max_unhandled, 1), [weak, g] {
        if (auto self = weak.lock())
          asio::post(self->ioc, [weak, g] {
            if (auto s = weak.lock())
              s->flush_acks(g);
          });
      });
    current = phase::subscribing;
    if (opts.subscriptions.empty())
      return became_up();
    subscribe_id = next_packet_id();
    mqtt::write_subscribe(out, opts.version, subscribe_id, opts.subscriptions);
    flush_out();
  }

  void on_suback(const mqtt::frame& f) {
    uint16_t id = 0;
    std::vector<uint8_t> codes;
    if (!mqtt::read_suback(opts.version, f.body, id, codes) || id != subscribe_id
        || current != phase::subscribing)
      return fail("a malformed or unexpected SUBACK");
    for (size_t i = 0; i < codes.size() && i < opts.subscriptions.size(); ++i)
      if (codes[i] >= 0x80)
        return fail("the broker refused the subscription to " + opts.subscriptions[i].first
                      + " (code " + std::to_string(codes[i]) + ")",
                    next_retry_delay);
    subscribe_id = 0;
    became_up();
  }

  void became_up() {
    current = phase::up;
    backoff = opts.reconnect_min;
    connections.fetch_add(1, std::memory_order_relaxed);
    // QoS 1 messages the broker did not acknowledge go again, in their order.
    for (auto& [id, m] : unacked)
      resend.push_back(id);
    std::sort(resend.begin(), resend.end(), [&](uint16_t a, uint16_t b) {
      return unacked.at(a).order < unacked.at(b).order;
    });
    for (auto id : resend) {
      auto& m = unacked.at(id);
      mqtt::write_publish(out, opts.version, m.msg.topic, m.msg.payload, 1, m.msg.retain, true,
                          id);
    }
    resend.clear();
    send_pending();
    flush_out();
    set_up(true);
    tell(true, "MQTT connected to " + opts.url + (session_present ? " (session resumed)" : "")
                 + (opts.subscriptions.empty()
                      ? std::string{}
                      : ", subscribed to " + opts.subscriptions.front().first));
  }

  void on_publish(const mqtt::frame& f) {
    mqtt::publish_view p;
    if (!mqtt::read_publish(opts.version, f.header, f.body, p) || p.qos > 1)
      return fail("a malformed PUBLISH (or QoS 2, which the client never asks for)");
    if (current != phase::up && current != phase::subscribing)
      return fail("a PUBLISH before the connection was accepted");
    received.fetch_add(1, std::memory_order_relaxed);
    auto seq = window->add(p.qos == 1 ? p.packet_id : 0);
    mqtt_message m{p.topic, p.payload, p.qos, p.retain, p.dup};
    try {
      on_message(m, mqtt_ack{window, seq});
    } catch (...) {
      window->complete(seq, mqtt_ack_window::handled);  // a defect: dropped, not retried
    }
  }

  // -- acknowledgements ------------------------------------------------------------------

  void flush_acks(uint64_t g) {
    if (g != gen || !window)
      return;
    bool retry = false;
    size_t acked = 0;
    window->pop_handled([&](uint16_t id, mqtt_ack_window::state s) {
      if (s == mqtt_ack_window::retry) {
        retry = true;
        return;
      }
      next_retry_delay = retry_delay;  // handled: the trouble is over
      if (id != 0) {
        mqtt::write_puback(out, id);
        ++acked;
      }
    });
    acknowledged.fetch_add(acked, std::memory_order_relaxed);
    flush_out();
    if (retry) {
      auto wait = next_retry_delay;
      next_retry_delay = std::min(next_retry_delay * 2, max_retry_delay);
      return fail("a message could not be handled for now; the broker will send it again",
                  wait);
    }
    if (window->empty())
      drained_cv_notify();
    if (paused && !draining && !window->full()) {
      paused = false;
      last_heard = clock_type::now();  // nothing was read while paused
      parse();
      read();
    }
  }

  void drained_cv_notify() {
    std::lock_guard<std::mutex> guard{mtx};
    cv.notify_all();
  }

  // -- writing ---------------------------------------------------------------------------

  void flush_out() {
    if (write_in_flight || out.empty() || !stream || current == phase::idle)
      return;
    write_in_flight = true;
    writing.swap(out);
    last_sent = clock_type::now();
    auto on_written = [self = shared_from_this(), g = gen](boost::system::error_code ec, size_t) {
      if (g != self->gen)
        return;
      self->write_in_flight = false;
      self->writing.clear();
      if (ec)
        return self->fail("cannot write: " + ec.message());
      if (self->close_after_write && self->out.empty())
        return self->finish_stop();
      self->flush_out();
    };
    if (tls)
      asio::async_write(*stream, asio::buffer(writing), std::move(on_written));
    else
      asio::async_write(stream->next_layer(), asio::buffer(writing), std::move(on_written));
  }

  // -- publishing --------------------------------------------------------------------------

  struct in_flight {
    outgoing msg;
    uint64_t order = 0;
  };

  uint16_t next_packet_id() {
    for (;;) {
      packet_id = static_cast<uint16_t>(packet_id == 65535 ? 1 : packet_id + 1);
      if (unacked.count(packet_id) == 0 && packet_id != subscribe_id)
        return packet_id;
    }
  }

  /// Sends what `publish` queued, within the broker's receive maximum (I/O thread).
  void send_pending() {
    if (current != phase::up)
      return;
    std::vector<outgoing> written;  // QoS 0: done once written, told outside the lock
    std::unique_lock<std::mutex> guard{pub_mtx};
    while (!pending.empty() && unacked.size() < broker_receive_max) {
      auto& m = pending.front();
      if (m.qos == 0) {
        mqtt::write_publish(out, opts.version, m.topic, m.payload, 0, m.retain, false, 0);
        published.fetch_add(1, std::memory_order_relaxed);
        --queued;
        if (m.done)
          written.push_back(std::move(m));
      } else {
        auto id = next_packet_id();
        mqtt::write_publish(out, opts.version, m.topic, m.payload, 1, m.retain, false, id);
        unacked.emplace(id, in_flight{std::move(m), ++sent_order});
      }
      pending.pop_front();
    }
    pub_scheduled = false;
    guard.unlock();
    for (auto& m : written)
      finish(m, true);
  }

  void on_puback(const mqtt::frame& f) {
    uint16_t id = 0;
    if (!mqtt::read_packet_id(f.body, id))
      return fail("a malformed PUBACK");
    auto i = unacked.find(id);
    if (i == unacked.end())
      return;  // an answer to a message of an earlier session
    auto m = std::move(i->second.msg);
    unacked.erase(i);
    // MQTT 5: a reason code of 0x80 or more says the broker refused the message.
    bool refused_by_broker = opts.version == mqtt::v5 && f.body.size() > 2
                             && static_cast<uint8_t>(f.body[2]) >= 0x80;
    if (!refused_by_broker)
      published.fetch_add(1, std::memory_order_relaxed);
    finish(m, !refused_by_broker);
    {
      std::lock_guard<std::mutex> guard{pub_mtx};
      --queued;
    }
    send_pending();
    flush_out();
  }

  bool publish(std::string topic, std::string payload, uint8_t qos, bool retain,
               published_fn done) {
    std::lock_guard<std::mutex> guard{pub_mtx};
    if (stopped_publishing || queued >= opts.max_queued) {
      refused.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    pending.push_back(outgoing{std::move(topic), std::move(payload),
                               qos > 0 ? uint8_t{1} : uint8_t{0}, retain, std::move(done)});
    ++queued;
    if (!pub_scheduled) {
      pub_scheduled = true;
      asio::post(ioc, [self = shared_from_this()] {
        self->send_pending();
        self->flush_out();
      });
    }
    return true;
  }

  // -- time ------------------------------------------------------------------------------

  void tick() {
    timer.expires_after(tick_period);
    timer.async_wait([self = shared_from_this()](auto ec) {
      if (ec || self->current == phase::stopped)
        return;
      self->on_tick();
      self->tick();
    });
  }

  void on_tick() {
    auto now = clock_type::now();
    if ((current == phase::connecting || current == phase::subscribing)
        && now > connect_deadline)
      return fail("no answer within " + std::to_string(opts.connect_timeout.count()) + " ms");
    if (current != phase::up || keep_alive.count() == 0)
      return;
    // While paused (messages wait to be handled) nothing is read, so nothing is heard.
    if (!paused && now - last_heard > keep_alive * 3 / 2)
      return fail("nothing heard for " + std::to_string(keep_alive.count() * 3 / 2) + " s");
    if (now - last_sent >= keep_alive) {
      mqtt::write_pingreq(out);
      flush_out();
    }
  }

  // -- stopping ----------------------------------------------------------------------------

  void finish_stop() {
    if (current == phase::stopped)
      return;
    close_stream();
    current = phase::stopped;
    retry_timer.cancel();
    timer.cancel();
    set_up(false);
    // What was not delivered ends here.
    for (auto& [id, m] : unacked)
      finish(m.msg, false);
    unacked.clear();
    std::deque<outgoing> left;
    {
      std::lock_guard<std::mutex> guard{pub_mtx};
      left.swap(pending);
      queued = 0;
    }
    for (auto& m : left)
      finish(m, false);
  }

  mqtt_client_options opts;
  message_fn on_message;
  state_fn on_state;
  broker_address addr;
  asio::io_context ioc{1};
  std::optional<ssl::context> tls;
  std::optional<ssl::context> unused_tls;  ///< the plain stream's (never used) context
  tcp::resolver resolver{ioc};
  asio::steady_timer timer{ioc};
  asio::steady_timer retry_timer{ioc};
  std::thread thread;
  std::mt19937 rng{std::random_device{}()};

  // I/O thread only.
  phase current = phase::idle;
  uint64_t gen = 0;  ///< the connection's generation; handlers of older ones do nothing
  std::unique_ptr<ssl::stream<tcp::socket>> stream;
  std::vector<char> in;
  size_t in_used = 0;
  bool reading = false;
  bool paused = false;    ///< not reading: the window is full, or the client drains
  bool draining = false;  ///< stop() asked to read no more
  bool close_after_write = false;
  std::string out;      ///< packets to write next
  std::string writing;  ///< packets being written
  bool write_in_flight = false;
  std::shared_ptr<mqtt_ack_window> window;
  std::chrono::seconds keep_alive{0};
  clock_type::time_point last_sent{};
  clock_type::time_point last_heard{};
  clock_type::time_point connect_deadline{};
  std::chrono::milliseconds backoff{};
  std::chrono::milliseconds next_retry_delay{retry_delay};
  uint16_t broker_receive_max = 65535;
  bool session_present = false;
  uint16_t packet_id = 0;
  uint16_t subscribe_id = 0;
  std::unordered_map<uint16_t, in_flight> unacked;  ///< QoS 1 messages sent, by packet id
  std::vector<uint16_t> resend;
  uint64_t sent_order = 0;
  std::string last_text;

  // Shared with publish() (pub_mtx).
  std::mutex pub_mtx;
  std::deque<outgoing> pending;
  size_t queued = 0;  ///< pending, and QoS 1 messages sent and not acknowledged
  bool pub_scheduled = false;
  bool stopped_publishing = false;

  // Shared with start() and stop() (mtx).
  std::mutex mtx;
  std::condition_variable cv;
  std::atomic<bool> is_up{false};

  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> connections{0};
};

mqtt_client::mqtt_client(mqtt_client_options opts, message_fn on_message, state_fn on_state)
  : core_(std::make_shared<core>(std::move(opts), std::move(on_message), std::move(on_state))) {}

mqtt_client::~mqtt_client() {
  stop(std::chrono::milliseconds{0});
}

caf::error mqtt_client::start() {
  auto& c = *core_;
  if (c.thread.joinable())
    return make_error(runtime_errc::invalid_argument, "the MQTT client was started already");
  if (auto err = c.configure())
    return err;
  c.thread = std::thread{[self = core_] {
    auto guard = asio::make_work_guard(self->ioc);
    for (;;) {
      try {
        self->ioc.run();
        return;
      } catch (...) {
        // a defect in a handler: the client goes on
      }
    }
  }};
  asio::post(c.ioc, [self = core_] {
    self->tick();
    self->connect();
  });
  std::unique_lock<std::mutex> guard{c.mtx};
  if (c.cv.wait_for(guard, c.opts.connect_timeout, [&] { return c.is_up.load(); }))
    return {};
  guard.unlock();
  std::string why;
  {
    auto last = std::make_shared<std::promise<std::string>>();
    auto f = last->get_future();
    asio::post(c.ioc, [self = core_, last] { last->set_value(self->last_text); });
    if (f.wait_for(std::chrono::seconds{1}) == std::future_status::ready)
      why = f.get();
  }
  stop(std::chrono::milliseconds{0});
  return make_error(runtime_errc::unavailable,
                    "cannot reach the MQTT broker at " + c.opts.url + " (connected and subscribed) within "
                      + std::to_string(c.opts.connect_timeout.count()) + " ms"
                      + (why.empty() ? std::string{} : ": " + why));
}

void mqtt_client::stop(std::chrono::milliseconds drain) {
  auto& c = *core_;
  if (!c.thread.joinable())
    return;
  {
    std::lock_guard<std::mutex> guard{c.pub_mtx};
    c.stopped_publishing = true;
  }
  // No more messages; the ones received are handled and acknowledged, within `drain`.
  auto paused = std::make_shared<std::promise<void>>();
  asio::post(c.ioc, [self = core_, paused] {
    self->draining = true;
    self->paused = true;
    paused->set_value();
  });
  paused->get_future().wait_for(std::chrono::seconds{1});
  auto deadline = clock_type::now() + drain;
  for (;;) {
    auto empty = std::make_shared<std::promise<bool>>();
    auto f = empty->get_future();
    asio::post(c.ioc, [self = core_, empty] {
      empty->set_value(!self->window || self->window->empty());
    });
    if (f.wait_for(std::chrono::seconds{1}) != std::future_status::ready || f.get())
      break;
    std::unique_lock<std::mutex> guard{c.mtx};
    if (c.cv.wait_until(guard, std::min(deadline, clock_type::now() + std::chrono::milliseconds{50}))
          == std::cv_status::timeout
        && clock_type::now() >= deadline)
      break;
  }
  // DISCONNECT (the session stays with the broker), then close.
  asio::post(c.ioc, [self = core_] {
    auto& c = *self;
    if (c.current == core::phase::up || c.current == core::phase::subscribing) {
      mqtt::write_disconnect(c.out);
      c.close_after_write = true;
      c.current = core::phase::stopping;
      c.flush_out();
      if (!c.write_in_flight)
        c.finish_stop();
    } else {
      c.current = core::phase::stopping;
      c.finish_stop();
    }
  });
  {
    std::unique_lock<std::mutex> guard{c.mtx};
    c.cv.wait_for(guard, std::chrono::seconds{1}, [&] { return !c.is_up.load(); });
  }
  auto closed = std::make_shared<std::promise<void>>();
  asio::post(c.ioc, [self = core_, closed] {
    self->finish_stop();
    closed->set_value();
  });
  closed->get_future().wait_for(std::chrono::seconds{1});
  c.ioc.stop();
  c.thread.join();
  // Run what the stop left queued (handlers of cancelled operations), so that none keeps
  // the client, which owns the I/O context, alive.
  c.ioc.restart();
  c.ioc.poll();
}

bool mqtt_client::connected() const {
  return core_->is_up.load();
}

bool mqtt_client::publish(std::string topic, std::string payload, uint8_t qos, bool retain,
                          published_fn done) {
  return core_->publish(std::move(topic), std::move(payload), qos, retain, std::move(done));
}

mqtt_client_counts mqtt_client::counts() const {
  const auto& c = *core_;
  return {c.received.load(), c.acknowledged.load(), c.published.load(), c.refused.load(),
          c.connections.load()};
}

} // namespace twin::ingest
