#include "twin/ingest/mqtt_client.hpp"

#include <future>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "mqtt_client_core.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::ingest {

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

mqtt_client::timer_fn mqtt_client::timer() const {
  return [weak = std::weak_ptr<core>{core_}](std::chrono::milliseconds delay,
                                              std::function<void()> fn) {
    auto self = weak.lock();
    if (!self)
      return;
    asio::post(self->ioc, [weak, delay, fn = std::move(fn)]() mutable {
      auto self = weak.lock();
      if (!self || self->current == core::phase::stopped)
        return;
      auto& timers = self->timers;
      auto t = timers.emplace(timers.end(), self->ioc, delay);
      t->async_wait([weak, t, fn = std::move(fn)](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (!self)
          return;
        self->timers.erase(t);
        if (!ec && self->current != core::phase::stopped)
          fn();
      });
    });
  };
}

mqtt_client_counts mqtt_client::counts() const {
  const auto& c = *core_;
  return {c.received.load(), c.acknowledged.load(), c.published.load(), c.refused.load(),
          c.connections.load()};
}

} // namespace twin::ingest
