#include <algorithm>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "mqtt_client_core.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::ingest {

using runtime::make_error;
using runtime::runtime_errc;

// -- configuration and connection ---------------------------------------------------

caf::error mqtt_client::core::configure() {
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

void mqtt_client::core::connect() {
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

ssl::context& mqtt_client::core::plain_ctx() {
  if (!unused_tls)
    unused_tls.emplace(ssl::context::tls_client);
  return *unused_tls;
}

void mqtt_client::core::on_resolved(const tcp::resolver::results_type& results) {
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

void mqtt_client::core::handshake() {
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

void mqtt_client::core::send_connect() {
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

void mqtt_client::core::fail(const std::string& why, std::chrono::milliseconds at_least) {
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

std::chrono::milliseconds mqtt_client::core::jittered(std::chrono::milliseconds d) {
  std::uniform_real_distribution<double> f{0.8, 1.2};
  return std::chrono::milliseconds{static_cast<int64_t>(d.count() * f(rng))};
}

void mqtt_client::core::close_stream() {
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

void mqtt_client::core::set_up(bool up) {
  std::lock_guard<std::mutex> guard{mtx};
  is_up.store(up);
  cv.notify_all();
}

void mqtt_client::core::tell(bool up, const std::string& text) {
  last_text = text;
  if (!on_state)
    return;
  try {
    on_state(up, text);
  } catch (...) {
  }
}

// -- time --------------------------------------------------------------------------

void mqtt_client::core::tick() {
  timer.expires_after(tick_period);
  timer.async_wait([self = shared_from_this()](auto ec) {
    if (ec || self->current == phase::stopped)
      return;
    self->on_tick();
    self->tick();
  });
}

void mqtt_client::core::on_tick() {
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

// -- stopping ----------------------------------------------------------------------

void mqtt_client::core::finish_stop() {
  if (current == phase::stopped)
    return;
  close_stream();
  current = phase::stopped;
  retry_timer.cancel();
  timer.cancel();
  for (auto& t : timers)
    t.cancel();
  set_up(false);
  // What was not delivered ends here.
  for (auto& [id, m] : unacked)
    m.msg.end(false);
  unacked.clear();
  std::deque<outgoing> left;
  {
    std::lock_guard<std::mutex> guard{pub_mtx};
    left.swap(pending);
    queued = 0;
  }
  for (auto& m : left)
    m.end(false);
}

} // namespace twin::ingest
