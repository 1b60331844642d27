#pragma once

// A GET /v1/events stream read over a raw socket, event by event.

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "process.hpp"

namespace twin::test {

/// A GET /v1/events stream read over a raw socket, event by event.
class event_reader {
public:
  /// Subscribes with `query` (e.g. "?prefix=t:") and `token`; `rcvbuf` > 0 shrinks the
  /// socket's receive buffer first (a slow consumer); `last_event_id` resumes.
  event_reader(int port, const std::string& query, int rcvbuf = 0,
               const std::string& token = test_admin_token,
               const std::string& last_event_id = {}) {
    fd_ = connect_loopback(port, rcvbuf);
    if (fd_ < 0)
      return;
    std::string req = "GET /v1/events" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer " + token + "\r\n"
                      + (last_event_id.empty() ? "" : "Last-Event-ID: " + last_event_id + "\r\n")
                      + "\r\n";
    send(fd_, req.data(), req.size(), 0);
  }
  event_reader(const event_reader&) = delete;
  event_reader& operator=(const event_reader&) = delete;
  ~event_reader() {
    if (fd_ >= 0)
      close(fd_);
  }

  /// The answer's head, once the node subscribed us (it sends ": subscribed" first).
  std::string head() {
    fill_until("\n\n");
    auto end = buf_.find("\r\n\r\n");
    if (end == std::string::npos)
      return buf_;
    auto out = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    return out;
  }

  /// The next event as {"event": name, "data": parsed data, "id"?}; null at the end of the
  /// stream or after 10 s without one. Comments (heartbeats) are skipped.
  nlohmann::json next() {
    for (;;) {
      if (!fill_until("\n\n"))
        return nullptr;
      auto end = buf_.find("\n\n");
      auto block = buf_.substr(0, end);
      buf_.erase(0, end + 2);
      nlohmann::json ev{{"event", "message"}};
      size_t pos = 0;
      while (pos < block.size()) {
        auto nl = std::min(block.find('\n', pos), block.size());
        auto line = block.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.rfind("event: ", 0) == 0)
          ev["event"] = line.substr(7);
        else if (line.rfind("id: ", 0) == 0)
          ev["id"] = line.substr(4);
        else if (line.rfind("data: ", 0) == 0)
          ev["data"] = nlohmann::json::parse(line.substr(6));
      }
      if (ev.contains("data"))
        return ev;
    }
  }

  /// Whether the node closed the stream (reads the rest).
  bool closed() {
    char c[4096];
    for (int i = 0; i < 100000; ++i) {
      auto n = recv(fd_, c, sizeof c, 0);
      if (n == 0)
        return true;
      if (n < 0)
        return false;
    }
    return false;
  }

  int fd() const { return fd_; }

private:
  bool fill_until(const std::string& marker) {
    char chunk[16384];
    while (buf_.find(marker) == std::string::npos) {
      auto n = recv(fd_, chunk, sizeof chunk, 0);  // at most 10 s each (connect_loopback)
      if (n <= 0)
        return false;
      buf_.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }

  int fd_ = -1;
  std::string buf_;
};

} // namespace twin::test
