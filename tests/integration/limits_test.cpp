// What a real twind does when clients try to make it hold more than it should: event
// streams that never read end within seconds, request bodies in memory are bounded, idle
// sockets cannot shut the metrics port's /healthz out, and running out of file
// descriptors is answered 503 and shown by /readyz.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "gauge_node_test.hpp"

namespace twin::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

/// Closes the sockets it holds.
struct sockets {
  std::vector<int> fds;
  ~sockets() {
    for (int fd : fds)
      ::close(fd);
  }
};

/// Sends `text` on a new connection to `port`; -1 if it cannot connect.
int send_raw(int port, const std::string& text, int rcvbuf = 0) {
  int fd = connect_loopback(port, rcvbuf);
  if (fd >= 0 && ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class limits_test : public gauge_node_test {
protected:
  std::vector<std::string> extra_args() override {
    metrics_port_ = free_port();
    return {"--metrics-port", std::to_string(metrics_port_), "--http-max-inflight-mb", "1"};
  }

  int metrics_port_ = 0;
};

TEST_F(limits_test, event_streams_that_read_nothing_end_within_seconds) {
  ASSERT_EQ(put("t:g", {{"type", "gauge"}}).status, 201u);
  sockets streams;
  for (int i = 0; i < 40; ++i) {
    int fd = send_raw(port_, "GET /v1/events HTTP/1.1\r\nHost: t\r\n" + bearer + "\r\n", 4096);
    ASSERT_GE(fd, 0);
    streams.fds.push_back(fd);  // and never read
  }
  ASSERT_TRUE(eventually([&] { return metric_value(metrics_port_, "twin_http_connections_open") >= 40; }));
  // 8 MB of changes: far more than a stream may hold (1 MiB) or a socket buffer takes.
  std::string label(100'000, 'x');
  for (int i = 0; i < 80; ++i) {
    label[0] = static_cast<char>('a' + i % 26);
    auto r = client_->call("PATCH", "/v1/twins/t:g", json{{"properties", {{"label", label}}}}.dump(),
                           json_type);
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  // They fell behind and end once their last write stalls for 10 s; writes went on.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return metric_value(metrics_port_, "twin_http_connections_open") <= 1; },
                         30s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 25s);
}

TEST_F(limits_test, request_bodies_in_memory_are_bounded) {
  // A client sends the head of a 900 KB body and stalls: its body is reserved.
  std::string body = json{{"twin", "t:x"}, {"values", {{"label", std::string(900'000, 'y')}}}}.dump();
  sockets slow;
  int fd = send_raw(port_, "POST /v1/telemetry HTTP/1.1\r\nHost: t\r\n" + bearer
                             + "Content-Type: application/json\r\nContent-Length: "
                             + std::to_string(body.size() + 2) + "\r\n\r\n[");
  ASSERT_GE(fd, 0);
  slow.fds.push_back(fd);
  ASSERT_TRUE(eventually([&] {
    auto r = http_client{port_}.call("POST", "/v1/telemetry", "[" + body + "]", json_type);
    return r.status == 503;
  })) << "a second large body was taken while the first one was held";
  auto refused = http_client{port_}.call("POST", "/v1/telemetry", "[" + body + "]", json_type);
  EXPECT_EQ(refused.status, 503u);
  EXPECT_NE(refused.body.find("too_many_requests_in_flight"), std::string::npos) << refused.body;
  // Small requests still pass, and so does the large one once the first is done.
  EXPECT_EQ(client_->call("GET", "/healthz").status, 200u);
  std::string rest = body + "]";
  ASSERT_EQ(::write(fd, rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  char answer[64];
  ASSERT_GT(::read(fd, answer, sizeof answer), 0);
  EXPECT_EQ(std::string(answer, 12), "HTTP/1.1 202");
  EXPECT_EQ(http_client{port_}.call("POST", "/v1/telemetry", "[" + body + "]", json_type).status,
            202u);
}

TEST_F(limits_test, idle_sockets_do_not_shut_healthz_out_of_the_metrics_port) {
  sockets idle;
  for (int i = 0; i < 400; ++i) {
    int fd = connect_loopback(metrics_port_);
    ASSERT_GE(fd, 0);
    idle.fds.push_back(fd);
  }
  http_client probe{metrics_port_};
  auto r = probe.call("GET", "/healthz");
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(http_client{metrics_port_}.call("GET", "/metrics").status, 200u);
}

TEST(fd_limits, running_out_of_file_descriptors_is_answered_503_and_shown_by_readyz) {
  temp_dir dir;
  int port = free_port();
  std::filesystem::create_directories(dir.sub("models"));
  std::ofstream{dir.sub("models/gauge.json")} << gauge_model;
  process node{{"/usr/bin/prlimit", "--nofile=160:160", "--", TWIND_PATH, "--data-dir",
                dir.sub("data"), "--models", dir.sub("models"), "--bind", "127.0.0.1",
                "--http-port", std::to_string(port), "--metrics-port", "0",
                "--admin-token-file", admin_token_args(dir.path())[1]}};
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node.stderr_text();
  EXPECT_NE(node.stderr_text().find("open files are limited to 160"), std::string::npos)
    << node.stderr_text();
  // More connections than descriptors: those beyond are told so at once (a served
  // connection says nothing unasked).
  sockets held;
  std::vector<pollfd> watch;
  for (int i = 0; i < 250; ++i) {
    int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    held.fds.push_back(fd);
    watch.push_back({fd, POLLIN, 0});
  }
  std::string refusal;
  ASSERT_GT(::poll(watch.data(), watch.size(), 10'000), 0) << "no connection was answered";
  for (const auto& w : watch)
    if ((w.revents & POLLIN) != 0 && refusal.empty()) {
      char buf[512];
      auto n = ::read(w.fd, buf, sizeof buf);
      if (n > 0)
        refusal.assign(buf, static_cast<size_t>(n));
    }
  ASSERT_FALSE(refusal.empty()) << "no connection was refused";
  EXPECT_EQ(refusal.rfind("HTTP/1.1 503", 0), 0u) << refusal;
  EXPECT_NE(refusal.find("out_of_file_descriptors"), std::string::npos) << refusal;
  // With descriptors back, /readyz says what happened for a few seconds.
  for (int fd : held.fds)
    ::close(fd);
  held.fds.clear();
  http_client c{port};
  auto ready = c.call("GET", "/readyz");
  EXPECT_EQ(ready.status, 503u) << ready.body;
  EXPECT_NE(ready.body.find("out of file descriptors"), std::string::npos) << ready.body;
  EXPECT_TRUE(eventually([&] { return c.call("GET", "/readyz").status == 200; }, 15s));
  node.signal(SIGTERM);
  EXPECT_EQ(node.wait(30s), 0) << node.stderr_text();
}

} // namespace
} // namespace twin::test
