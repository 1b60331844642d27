// The node's MQTT client: its packets, the order of its acknowledgements (against a
// scripted broker on a loopback socket), and against a real Mosquitto: MQTT 3.1.1 and 5,
// quick reconnection after a short outage, TLS, user name and password, and shared
// subscriptions.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "mqtt_codec.hpp"
#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"
#include "process.hpp"
#include "test_certs.hpp"
#include "test_support.hpp"
#include "twin/ingest/mqtt_client.hpp"

namespace twin::test {
namespace {

using namespace std::chrono_literals;
namespace mqtt = ingest::mqtt;
using ingest::mqtt_ack;
using ingest::mqtt_client;
using ingest::mqtt_client_options;
using ingest::mqtt_message;

// -- packets ------------------------------------------------------------------------------

TEST(mqtt_codec, frames_packets_split_anywhere_in_a_stream) {
  std::string stream;
  mqtt::write_publish(stream, mqtt::v311, "twins/a:b/telemetry", R"({"x":1})", 1, false, false,
                      7);
  mqtt::write_publish(stream, mqtt::v5, "t", std::string(300, 'p'), 0, true, false, 0);
  mqtt::write_puback(stream, 65535);
  // Where each packet ends, framed from the whole stream.
  std::vector<size_t> ends;
  {
    std::string_view rest{stream};
    mqtt::frame f;
    while (mqtt::next_frame(rest, 1 << 20, f) == mqtt::frame_status::complete) {
      rest.remove_prefix(f.size);
      ends.push_back(stream.size() - rest.size());
    }
    ASSERT_EQ(ends.size(), 3u);
    ASSERT_EQ(ends.back(), stream.size());
  }
  // Each prefix of the stream frames exactly the packets it holds whole.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    std::string_view bytes{stream.data(), cut};
    size_t whole = 0;
    mqtt::frame f;
    while (mqtt::next_frame(bytes, 1 << 20, f) == mqtt::frame_status::complete) {
      bytes.remove_prefix(f.size);
      ++whole;
    }
    auto expected = static_cast<size_t>(std::count_if(ends.begin(), ends.end(),
                                                      [&](size_t e) { return e <= cut; }));
    EXPECT_EQ(whole, expected) << cut;
  }
  std::string_view bytes{stream};
  mqtt::frame f;
  ASSERT_EQ(mqtt::next_frame(bytes, 1 << 20, f), mqtt::frame_status::complete);
  mqtt::publish_view p;
  ASSERT_TRUE(mqtt::read_publish(mqtt::v311, f.header, f.body, p));
  EXPECT_EQ(p.topic, "twins/a:b/telemetry");
  EXPECT_EQ(p.payload, R"({"x":1})");
  EXPECT_EQ(p.qos, 1);
  EXPECT_EQ(p.packet_id, 7);
  EXPECT_FALSE(p.retain);
  bytes.remove_prefix(f.size);
  ASSERT_EQ(mqtt::next_frame(bytes, 1 << 20, f), mqtt::frame_status::complete);
  ASSERT_TRUE(mqtt::read_publish(mqtt::v5, f.header, f.body, p));
  EXPECT_EQ(p.topic, "t");
  EXPECT_EQ(p.payload.size(), 300u);
  EXPECT_TRUE(p.retain);
  EXPECT_EQ(p.qos, 0);
  bytes.remove_prefix(f.size);
  ASSERT_EQ(mqtt::next_frame(bytes, 1 << 20, f), mqtt::frame_status::complete);
  EXPECT_EQ(f.type(), mqtt::packet_type::puback);
  uint16_t id = 0;
  ASSERT_TRUE(mqtt::read_packet_id(f.body, id));
  EXPECT_EQ(id, 65535);
}

TEST(mqtt_codec, refuses_malformed_and_oversized_packets) {
  mqtt::frame f;
  EXPECT_EQ(mqtt::next_frame("\x30\xff\xff\xff\xff\x01", 1 << 20, f),
            mqtt::frame_status::malformed);
  EXPECT_EQ(mqtt::next_frame(std::string_view{"\x30\x80\x80\x80\x01", 5}, 1 << 20, f),
            mqtt::frame_status::too_large);
  EXPECT_EQ(mqtt::next_frame(std::string_view{"\x30", 1}, 1 << 20, f),
            mqtt::frame_status::incomplete);
  mqtt::publish_view p;
  // A topic longer than the packet, QoS 3, a packet id of 0, and v5 properties cut short.
  EXPECT_FALSE(mqtt::read_publish(mqtt::v311, 0x30, std::string_view{"\x00\x09" "ab", 4}, p));
  EXPECT_FALSE(mqtt::read_publish(mqtt::v311, 0x36, std::string_view{"\x00\x01" "a", 3}, p));
  EXPECT_FALSE(mqtt::read_publish(mqtt::v311, 0x32, std::string_view{"\x00\x01" "a\x00\x00", 5}, p));
  EXPECT_FALSE(mqtt::read_publish(mqtt::v5, 0x30, std::string_view{"\x00\x01" "a\x05\x01", 5}, p));
  mqtt::connack_fields c;
  EXPECT_FALSE(mqtt::read_connack(mqtt::v311, std::string_view{"\x02\x00", 2}, c));
  // A v5 CONNACK with a receive maximum, a server keep-alive and a reason string.
  std::string body{"\x01\x00", 2};
  std::string props{"\x21\x00\x0a\x13\x00\x1e\x1f\x00\x02hi", 11};
  body += static_cast<char>(props.size());
  body += props;
  ASSERT_TRUE(mqtt::read_connack(mqtt::v5, body, c));
  EXPECT_TRUE(c.session_present);
  EXPECT_EQ(c.receive_maximum, 10);
  EXPECT_EQ(c.server_keep_alive_s, 30);
  EXPECT_EQ(c.reason, "hi");
}

TEST(mqtt_broker_url, is_parsed_or_refused_clearly) {
  auto a = ingest::parse_broker_url("tcp://127.0.0.1:1884");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 1884);
  EXPECT_FALSE(a->tls);
  auto s = ingest::parse_broker_url("mqtts://broker.example");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->tls);
  EXPECT_EQ(s->port, 8883);
  auto v6 = ingest::parse_broker_url("ssl://[::1]:8884");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  for (auto bad : {"127.0.0.1:1883", "http://h:1", "tcp://:1883", "tcp://h:0", "tcp://h:70000",
                   "tcp://h:x", "tcp://h:", "tcp://[::1"}) {
    auto r = ingest::parse_broker_url(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(error_message(r.error()).find("invalid MQTT broker URL"), std::string::npos);
    }
  }
}

// -- a scripted broker ----------------------------------------------------------------------

/// One end of a loopback TCP connection that the test plays as the broker.
class scripted_broker {
public:
  scripted_broker() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listener_, 4);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~scripted_broker() {
    if (conn_ >= 0)
      ::close(conn_);
    ::close(listener_);
  }

  int port() const { return port_; }

  /// Takes the next connection (at most 10 s): CONNECT, then CONNACK and, for a
  /// SUBSCRIBE, its SUBACK.
  bool accept_session(uint8_t version = mqtt::v311) {
    timeval tv{10, 0};
    ::setsockopt(listener_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (conn_ >= 0)
      ::close(conn_);
    conn_ = ::accept(listener_, nullptr, nullptr);
    if (conn_ < 0)
      return false;
    ::setsockopt(conn_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto connect = next();
    if (!connect || connect->type() != mqtt::packet_type::connect)
      return false;
    send(version == mqtt::v5 ? std::string{"\x20\x03\x00\x00\x00", 5}
                             : std::string{"\x20\x02\x00\x00", 4});
    auto sub = next();
    if (!sub || sub->type() != mqtt::packet_type::subscribe)
      return false;
    std::string suback{"\x90", 1};
    suback += version == mqtt::v5 ? '\x04' : '\x03';
    suback += sub->body.substr(0, 2);
    if (version == mqtt::v5)
      suback += '\x00';  // no properties
    suback += '\x01';
    send(suback);
    return true;
  }

  void send(const std::string& bytes) { ::write(conn_, bytes.data(), bytes.size()); }

  /// The next packet from the client; nullopt when the connection ends or times out.
  std::optional<mqtt::frame> next(std::chrono::seconds timeout = 10s) {
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(conn_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
      buf_.erase(0, used_);
      used_ = 0;
      mqtt::frame f;
      if (mqtt::next_frame(buf_, 1 << 20, f) == mqtt::frame_status::complete) {
        used_ = f.size;
        return f;
      }
      char chunk[4096];
      auto n = ::read(conn_, chunk, sizeof chunk);
      if (n <= 0)
        return std::nullopt;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

private:
  int listener_ = -1;
  int conn_ = -1;
  int port_ = 0;
  std::string buf_;
  size_t used_ = 0;
};

/// Holds the acknowledgements of the messages a client receives, for the test to give.
struct held_acks {
  std::mutex mtx;
  std::vector<mqtt_ack> acks;
  std::vector<std::string> payloads;

  mqtt_client::message_fn handler() {
    return [this](const mqtt_message& m, mqtt_ack ack) {
      std::lock_guard<std::mutex> guard{mtx};
      acks.push_back(std::move(ack));
      payloads.emplace_back(m.payload);
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return acks.size();
  }
  mqtt_ack take(size_t i) {
    std::lock_guard<std::mutex> guard{mtx};
    return acks.at(i);
  }
};

mqtt_client_options options_for(int port, uint8_t version = mqtt::v311) {
  mqtt_client_options o;
  o.url = "tcp://127.0.0.1:" + std::to_string(port);
  o.client_id = "test-client";
  o.version = version;
  o.subscriptions = {{"twins/+/telemetry", 1}};
  o.connect_timeout = 5s;
  o.reconnect_min = 50ms;
  return o;
}

TEST(mqtt_client, acknowledges_in_arrival_order_once_each_message_up_to_it_is_handled) {
  scripted_broker broker;
  held_acks held;
  mqtt_client c{options_for(broker.port()), held.handler()};
  auto started = std::async(std::launch::async, [&] { return c.start(); });
  ASSERT_TRUE(broker.accept_session());
  ASSERT_FALSE(started.get());
  for (uint16_t id : {11, 12, 13}) {
    std::string p;
    mqtt::write_publish(p, mqtt::v311, "twins/a:b/telemetry", "{}", 1, false, false, id);
    broker.send(p);
  }
  std::string q0;
  mqtt::write_publish(q0, mqtt::v311, "twins/a:b/telemetry", "{}", 0, false, false, 0);
  broker.send(q0);
  ASSERT_TRUE(eventually([&] { return held.size() == 4; }));
  // The last ones handled first: nothing may be acknowledged yet.
  held.take(3).done();
  held.take(2).done();
  EXPECT_FALSE(broker.next(1s)) << "a PUBACK went out before the first message was handled";
  held.take(0).done();  // 11 may go now; 13 still waits for 12
  auto a = broker.next();
  ASSERT_TRUE(a);
  uint16_t id = 0;
  ASSERT_EQ(a->type(), mqtt::packet_type::puback);
  ASSERT_TRUE(mqtt::read_packet_id(a->body, id));
  EXPECT_EQ(id, 11);
  held.take(1).done();
  std::vector<uint16_t> rest;
  for (int i = 0; i < 2; ++i) {
    auto f = broker.next();
    ASSERT_TRUE(f);
    ASSERT_TRUE(mqtt::read_packet_id(f->body, id));
    rest.push_back(id);
  }
  EXPECT_EQ(rest, (std::vector<uint16_t>{12, 13}));
  EXPECT_EQ(c.counts().acknowledged, 3u);
  c.stop(0ms);
}

TEST(mqtt_client, a_message_to_retry_is_not_acknowledged_and_comes_again_on_a_new_connection) {
  scripted_broker broker;
  held_acks held;
  auto o = options_for(broker.port(), mqtt::v5);
  mqtt_client c{o, held.handler()};
  auto started = std::async(std::launch::async, [&] { return c.start(); });
  ASSERT_TRUE(broker.accept_session(mqtt::v5));
  ASSERT_FALSE(started.get());
  std::string p;
  mqtt::write_publish(p, mqtt::v5, "twins/a:b/telemetry", "first", 1, false, false, 5);
  broker.send(p);
  ASSERT_TRUE(eventually([&] { return held.size() == 1; }));
  held.take(0).retry();
  // The client goes away without a PUBACK and comes back (after about a second).
  for (;;) {
    auto f = broker.next(5s);
    if (!f)
      break;
    EXPECT_NE(f->type(), mqtt::packet_type::puback);
  }
  ASSERT_TRUE(broker.accept_session(mqtt::v5));
  p.clear();
  mqtt::write_publish(p, mqtt::v5, "twins/a:b/telemetry", "first", 1, false, true, 5);
  broker.send(p);
  ASSERT_TRUE(eventually([&] { return held.size() == 2; }));
  held.take(1).done();
  auto a = broker.next();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->type(), mqtt::packet_type::puback);
  c.stop(0ms);
}

TEST(mqtt_client, reads_no_more_while_its_window_of_unhandled_messages_is_full) {
  scripted_broker broker;
  held_acks held;
  auto o = options_for(broker.port());
  o.max_unhandled = 3;
  mqtt_client c{o, held.handler()};
  auto started = std::async(std::launch::async, [&] { return c.start(); });
  ASSERT_TRUE(broker.accept_session());
  ASSERT_FALSE(started.get());
  for (uint16_t id = 1; id <= 5; ++id) {
    std::string p;
    mqtt::write_publish(p, mqtt::v311, "twins/a:b/telemetry", std::to_string(id), 1, false,
                        false, id);
    broker.send(p);
  }
  ASSERT_TRUE(eventually([&] { return held.size() == 3; }));
  EXPECT_FALSE(eventually([&] { return held.size() > 3; }, 500ms));
  held.take(0).done();
  ASSERT_TRUE(eventually([&] { return held.size() == 4; }));
  for (size_t i = 1; i < 4; ++i)
    held.take(i).done();
  ASSERT_TRUE(eventually([&] { return held.size() == 5; }));
  held.take(4).done();
  EXPECT_TRUE(eventually([&] { return c.counts().acknowledged == 5; }));
  c.stop(0ms);
}

// -- a real broker ----------------------------------------------------------------------------

class mqtt_broker_test : public ::testing::Test {
protected:
  void SetUp() override {
    if (mosquitto_path().empty())
      GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the MQTT tests did not run";
    port_ = free_port();
  }

  void start_broker(const std::string& extra = {}) {
    broker_ = start_mosquitto(dir_, port_, extra);
  }

  void stop_broker() {
    broker_->signal(SIGTERM);
    broker_->wait(10s);
  }

  temp_dir dir_;
  int port_ = 0;
  std::unique_ptr<process> broker_;
};

TEST_F(mqtt_broker_test, speaks_mqtt_3_1_1_and_5_and_resumes_its_session) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  for (uint8_t version : {mqtt::v311, mqtt::v5}) {
    held_acks held;
    auto o = options_for(port_, version);
    o.client_id = "session-" + std::to_string(version);
    o.subscriptions = {{"v/#", 1}};
    {
      mqtt_client c{o, held.handler()};
      ASSERT_FALSE(c.start());
    }
    // Away: the broker keeps what comes for the session.
    device d{port_};
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(d.publish("v/x", std::to_string(i)));
    mqtt_client c{o, held.handler()};
    ASSERT_FALSE(c.start());
    ASSERT_TRUE(eventually([&] { return held.size() == 5; })) << int{version};
    EXPECT_EQ(held.payloads, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
    for (size_t i = 0; i < 5; ++i)
      held.take(i).done();
    // Publishing: retained and QoS 1 messages reach other clients.
    // Acknowledged by the broker before the other client subscribes: it comes retained.
    auto acked = std::make_shared<std::promise<bool>>();
    auto acked_f = acked->get_future();
    ASSERT_TRUE(c.publish("w/" + std::to_string(version), "kept", 1, true,
                          [acked](bool ok) { acked->set_value(ok); }));
    ASSERT_EQ(acked_f.wait_for(5s), std::future_status::ready);
    ASSERT_TRUE(acked_f.get());
    device later{port_, {"w/#"}};
    ASSERT_TRUE(eventually([&] { return later.on("w/" + std::to_string(version)).size() == 1; }));
    EXPECT_TRUE(later.on("w/" + std::to_string(version))[0].retained);
    c.stop(1s);
  }
}

TEST_F(mqtt_broker_test, reconnects_within_a_second_after_a_short_outage) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  std::atomic<int> ups{0};
  auto o = options_for(port_);
  o.reconnect_min = 100ms;
  mqtt_client c{o, [](const mqtt_message&, mqtt_ack a) { a.done(); },
                [&](bool up, const std::string&) { ups += up ? 1 : 0; }};
  ASSERT_FALSE(c.start());
  stop_broker();
  ASSERT_TRUE(eventually([&] { return !c.connected(); }));
  std::this_thread::sleep_for(300ms);  // the outage
  ASSERT_NO_FATAL_FAILURE(start_broker());
  auto back = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return c.connected(); }, 10s));
  auto took = std::chrono::steady_clock::now() - back;
  EXPECT_LT(took, 1s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms to reconnect";
  EXPECT_EQ(ups.load(), 2);
  c.stop(0ms);
}

TEST_F(mqtt_broker_test, logs_in_with_a_user_name_and_password) {
  auto passwords = dir_.sub("passwords");
  auto r = run_to_end({"/usr/bin/mosquitto_passwd", "-b", "-c", passwords, "node", "s3cret"});
  if (r.code != 0)
    GTEST_SKIP() << "MOSQUITTO_PASSWD FAILED: " << r.err;
  ASSERT_NO_FATAL_FAILURE(start_broker("allow_anonymous false\npassword_file " + passwords + "\n"));
  auto o = options_for(port_, mqtt::v5);
  o.username = "node";
  o.password = "s3cret";
  mqtt_client good{o, [](const mqtt_message&, mqtt_ack a) { a.done(); }};
  auto ok = good.start();
  EXPECT_FALSE(ok) << error_message(ok);
  good.stop(0ms);
  o.password = "wrong";
  o.client_id = "other";
  o.connect_timeout = 1s;
  mqtt_client bad{o, [](const mqtt_message&, mqtt_ack a) { a.done(); }};
  auto err = bad.start();
  ASSERT_TRUE(err);
  auto text = error_message(err);
  EXPECT_TRUE(text.find("bad user name or password") != std::string::npos
              || text.find("not authorized") != std::string::npos)
    << text;
}

TEST_F(mqtt_broker_test, connects_over_tls_and_checks_the_broker_certificate) {
  ASSERT_TRUE(make_test_certs(dir_.path())) << "openssl cannot make the test certificates";
  ASSERT_NO_FATAL_FAILURE(start_broker("allow_anonymous true\ncafile " + dir_.sub("ca.pem")
                                       + "\ncertfile " + dir_.sub("server.pem") + "\nkeyfile "
                                       + dir_.sub("server.key") + "\n"));
  auto o = options_for(port_, mqtt::v5);
  o.url = "ssl://127.0.0.1:" + std::to_string(port_);
  o.tls_ca_file = dir_.sub("ca.pem");
  o.subscriptions = {{"tls/#", 1}};
  held_acks held;
  mqtt_client c{o, held.handler()};
  auto err = c.start();
  ASSERT_FALSE(err) << error_message(err);
  ASSERT_TRUE(c.publish("tls/x", "over tls", 1, false));
  ASSERT_TRUE(eventually([&] { return held.size() == 1; }));
  EXPECT_EQ(held.payloads[0], "over tls");
  held.take(0).done();
  c.stop(1s);
  // A broker whose certificate another authority signed is refused.
  o.tls_ca_file = dir_.sub("other.pem");
  o.client_id = "untrusting";
  o.connect_timeout = 2s;
  mqtt_client wary{o, [](const mqtt_message&, mqtt_ack a) { a.done(); }};
  err = wary.start();
  ASSERT_TRUE(err);
  EXPECT_NE(error_message(err).find("TLS handshake failed"), std::string::npos)
    << error_message(err);
  // A missing CA file is a clear error at once.
  o.tls_ca_file = dir_.sub("missing.pem");
  mqtt_client lost{o, [](const mqtt_message&, mqtt_ack a) { a.done(); }};
  err = lost.start();
  ASSERT_TRUE(err);
  EXPECT_NE(error_message(err).find("MQTT TLS settings"), std::string::npos);
}

TEST_F(mqtt_broker_test, members_of_a_shared_subscription_split_the_messages) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  held_acks a;
  held_acks b;
  auto o = options_for(port_, mqtt::v5);
  o.subscriptions = {{"$share/nodes/s/#", 1}};
  o.client_id = "member-a";
  mqtt_client ca{o, a.handler()};
  o.client_id = "member-b";
  mqtt_client cb{o, b.handler()};
  ASSERT_FALSE(ca.start());
  ASSERT_FALSE(cb.start());
  device d{port_};
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE(d.publish("s/" + std::to_string(i), std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return a.size() + b.size() == 40; }));
  EXPECT_FALSE(eventually([&] { return a.size() + b.size() > 40; }, 300ms));
  EXPECT_GT(a.size(), 0u);
  EXPECT_GT(b.size(), 0u);
  std::set<std::string> all(a.payloads.begin(), a.payloads.end());
  all.insert(b.payloads.begin(), b.payloads.end());
  EXPECT_EQ(all.size(), 40u);
  for (size_t i = 0; i < a.size(); ++i)
    a.take(i).done();
  for (size_t i = 0; i < b.size(); ++i)
    b.take(i).done();
  ca.stop(1s);
  cb.stop(1s);
}

} // namespace
} // namespace twin::test
