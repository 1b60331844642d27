#include <algorithm>
#include <cstring>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "mqtt_client_core.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::ingest {

using runtime::make_error;
using runtime::runtime_errc;

// -- reading ------------------------------------------------------------------------

void mqtt_client::core::read() {
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

void mqtt_client::core::parse() {
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

void mqtt_client::core::handle(const mqtt::frame& f) {
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

void mqtt_client::core::on_connack(const mqtt::frame& f) {
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

void mqtt_client::core::on_suback(const mqtt::frame& f) {
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

void mqtt_client::core::became_up() {
  current = phase::up;
  backoff = opts.reconnect_min;
  connections.fetch_add(1, std::memory_order_relaxed);
  // QoS 1 messages the broker did not acknowledge go again, in their order.
  std::vector<std::pair<uint64_t, uint16_t>> resend;  // (order, packet id)
  for (const auto& [id, m] : unacked)
    resend.emplace_back(m.order, id);
  std::sort(resend.begin(), resend.end());
  for (auto [order, id] : resend) {
    const auto& m = unacked.at(id).msg;
    mqtt::write_publish(out, opts.version, m.topic, m.payload, 1, m.retain, true, id);
  }
  send_pending();
  flush_out();
  set_up(true);
  tell(true, "MQTT connected to " + opts.url + (session_present ? " (session resumed)" : "")
               + (opts.subscriptions.empty()
                    ? std::string{}
                    : ", subscribed to " + opts.subscriptions.front().first));
}

void mqtt_client::core::on_publish(const mqtt::frame& f) {
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

// -- acknowledgements -------------------------------------------------------------

void mqtt_client::core::flush_acks(uint64_t g) {
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

void mqtt_client::core::drained_cv_notify() {
  std::lock_guard<std::mutex> guard{mtx};
  cv.notify_all();
}

// -- writing ------------------------------------------------------------------------

void mqtt_client::core::flush_out() {
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

// -- publishing ---------------------------------------------------------------------

uint16_t mqtt_client::core::next_packet_id() {
  for (;;) {
    packet_id = static_cast<uint16_t>(packet_id == 65535 ? 1 : packet_id + 1);
    if (unacked.count(packet_id) == 0 && packet_id != subscribe_id)
      return packet_id;
  }
}

void mqtt_client::core::send_pending() {
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
    m.end(true);
}

void mqtt_client::core::on_puback(const mqtt::frame& f) {
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
  m.end(!refused_by_broker);
  {
    std::lock_guard<std::mutex> guard{pub_mtx};
    --queued;
  }
  send_pending();
  flush_out();
}

bool mqtt_client::core::publish(std::string topic, std::string payload, uint8_t qos, bool retain,
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

} // namespace twin::ingest
