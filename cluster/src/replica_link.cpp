#include "replica_link.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::cluster {

using runtime::make_error;
using runtime::runtime_errc;

namespace {

constexpr size_t header_size = 16;

void put_u32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint32_t get_u32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

void put_i64(unsigned char* p, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<unsigned char>(u >> (8 * i));
}

int64_t get_i64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<int64_t>(v);
}

/// Writes what the socket takes of `parts` (`count` of them) now, without waiting; the
/// bytes written, or -1 on an error.
ssize_t write_some(int fd, const iovec* parts, int count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(parts);
  msg.msg_iovlen = static_cast<size_t>(count);
  for (;;) {
    auto k = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k >= 0)
      return k;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

} // namespace

/// A connection to a member. A frame is written at once as far as the socket takes it;
/// the rest waits in `pending`, which the writing thread writes as the socket drains.
struct replica_link::outbound {
  std::mutex mtx;  ///< its writers; the writing thread writes, the connecting one closes
  std::condition_variable room;  ///< `pending` shrank, or the connection broke
  int fd = -1;
  std::string address;
  std::string pending;  ///< accepted and not written yet: from `written` on
  size_t written = 0;
  std::chrono::steady_clock::time_point since{};  ///< when `pending` last made progress
  std::atomic<bool> broken{false};
  ssl_ptr ssl;  ///< with TLS

  size_t unsent() const { return pending.size() - written; }
  /// Nothing more goes on it (with `mtx`).
  void fail() {
    broken = true;
    ::shutdown(fd, SHUT_RDWR);
    room.notify_all();
  }
  /// Writes what the socket takes of `pending` now (with `mtx`); false on an error.
  bool flush() {
    if (unsent() == 0)
      return true;  // another writer wrote it meanwhile
    auto before = written;
    do {  // TLS takes a record (16 KiB at most) a call
      iovec part{pending.data() + written, unsent()};
      auto k = ssl ? tls_write_some(ssl.get(), pending.data() + written, unsent())
                   : write_some(fd, &part, 1);
      if (k < 0)
        return false;
      if (k == 0)
        break;
      written += static_cast<size_t>(k);
    } while (ssl && unsent() > 0);
    if (written > before) {
      since = std::chrono::steady_clock::now();
      room.notify_all();
    }
    if (unsent() == 0) {
      written = 0;
      pending.clear();
      if (pending.capacity() > (1u << 20))
        pending.shrink_to_fit();
    } else if (written >= (1u << 20) && written >= unsent()) {  // what was written goes
      pending.erase(0, written);
      written = 0;
    }
    return true;
  }
};

struct replica_link::inbound {
  int fd = -1;
  ssl_ptr ssl;  ///< with TLS
  std::atomic<bool> done{false};
  std::thread thread;
};

replica_link::replica_link(std::string self, receive_fn on_receive, down_fn on_down)
  : self_(std::move(self)),
    on_receive_(std::move(on_receive)),
    on_down_(std::move(on_down)),
    wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
}

replica_link::~replica_link() {
  close();
  if (wake_fd_ >= 0)
    ::close(wake_fd_);
}

caf::expected<uint16_t> replica_link::open(const std::string& bind, uint16_t port,
                                           std::shared_ptr<const peer_tls_context> tls) {
  tls_ = std::move(tls);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  auto where = bind + ":" + std::to_string(port);
  if (::getaddrinfo(bind.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found)
    return make_error(runtime_errc::invalid_argument, "replication link: cannot resolve " + where);
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool ok = fd >= 0 && ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd, 64) == 0;
  ::freeaddrinfo(found);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (!ok || ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    auto why = std::string{std::strerror(errno)};
    if (fd >= 0)
      ::close(fd);
    return make_error(runtime_errc::unavailable,
                      "replication link: cannot listen on " + where + " (" + why + ")");
  }
  listener_ = fd;
  auto bound_port = bound.ss_family == AF_INET6
                      ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  closing_ = false;
  acceptor_ = std::thread{[this] {
    runtime::name_thread("twin.repl.accept");
    accept_loop();
  }};
  connector_ = std::thread{[this] {
    runtime::name_thread("twin.repl.link");
    connect_loop();
  }};
  writer_ = std::thread{[this] {
    runtime::name_thread("twin.repl.send");
    write_loop();
  }};
  return static_cast<uint16_t>(bound_port);
}

void replica_link::set_peers(std::map<std::string, std::string> addresses) {
  std::lock_guard<std::mutex> guard{mtx_};
  addresses.erase(self_);
  // A member that moved (it restarted on another port) is another process: what went to
  // the old one is lost.
  // (Its descriptor is closed only once it is out of `out_`, so shutting it down is safe.)
  for (auto& [node, c] : out_) {
    auto now = addresses.find(node);
    if (now == addresses.end() || now->second != c->address) {
      std::lock_guard<std::mutex> writing{c->mtx};
      c->fail();
    }
  }
  peers_ = std::move(addresses);
}

bool replica_link::reaches(const std::string& node) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return peers_.count(node) > 0;
}

bool replica_link::send(const std::string& node, const envelope& env) {
  if (env.bytes.size() > max_frame)
    return false;  // the receiver would close the connection
  std::shared_ptr<outbound> c;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = out_.find(node);
    if (i != out_.end())
      c = i->second;
  }
  if (!c)
    return false;  // the connecting thread makes one within its next round
  unsigned char header[header_size] = {};
  put_u32(header, static_cast<uint32_t>(env.bytes.size()));
  header[4] = env.kind;
  put_i64(header + 8, env.incarnation);
  iovec parts[2] = {{header, header_size},
                    {const_cast<char*>(env.bytes.data()), env.bytes.size()}};
  std::unique_lock<std::mutex> guard{c->mtx};
  // Batches wait while the member is this far behind (their sender slows down with it);
  // anything else is taken at once, so that a member's readers, which acknowledge what
  // they apply, never wait on the member they acknowledge to (who may be writing to them).
  while (env.kind == envelope::replicate && c->unsent() > max_pending && !c->broken) {
    auto progress = c->since;
    if (!c->room.wait_for(guard, stall_limit,
                          [&] { return c->broken.load() || c->unsent() <= max_pending; })
        && c->since == progress)  // none of it was written meanwhile
      broke(*c);
  }
  if (c->broken)
    return false;
  size_t done = 0;
  if (c->unsent() == 0) {  // idle until now: its time to drain starts
    c->since = std::chrono::steady_clock::now();
    auto k = c->ssl ? 0 : write_some(c->fd, parts, 2);  // TLS writes from `pending` only
    if (k < 0) {  // what the follower got of it is incomplete: nothing more goes on it
      broke(*c);
      return false;
    }
    done = static_cast<size_t>(k);
  }
  if (done < header_size + env.bytes.size()) {
    for (const auto& part : parts) {  // the rest, for the writing thread
      auto skip = std::min(done, part.iov_len);
      c->pending.append(static_cast<const char*>(part.iov_base) + skip, part.iov_len - skip);
      done -= skip;
    }
    if (c->ssl && !c->flush()) {
      broke(*c);
      return false;
    }
  }
  sent_.fetch_add(1, std::memory_order_relaxed);
  if (c->unsent() > 0) {
    guard.unlock();
    wake();
  }
  return true;
}

uint64_t replica_link::unsent() const {
  std::vector<std::shared_ptr<outbound>> all;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [node, c] : out_)
      all.push_back(c);
  }
  uint64_t n = 0;
  for (const auto& c : all) {
    std::lock_guard<std::mutex> guard{c->mtx};
    n += c->broken ? 0 : c->unsent();
  }
  return n;
}

void replica_link::broke(outbound& c) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  c.fail();
}

void replica_link::wake() {
  uint64_t one = 1;
  [[maybe_unused]] auto k = ::write(wake_fd_, &one, sizeof one);
}

void replica_link::close() {
  if (closing_.exchange(true))
    return;
  if (listener_ >= 0)
    ::shutdown(listener_, SHUT_RDWR);  // wakes the acceptor
  if (acceptor_.joinable())
    acceptor_.join();
  if (connector_.joinable())
    connector_.join();
  if (writer_.joinable())
    writer_.join();
  if (listener_ >= 0)
    ::close(listener_);
  listener_ = -1;
  std::map<std::string, std::shared_ptr<outbound>> out;
  std::list<std::unique_ptr<inbound>> in;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    out.swap(out_);
    in.swap(in_);
  }
  for (auto& [node, c] : out) {
    std::lock_guard<std::mutex> guard{c->mtx};
    c->fail();
    ::close(c->fd);
  }
  for (auto& r : in)
    ::shutdown(r->fd, SHUT_RDWR);
  for (auto& r : in) {
    if (r->thread.joinable())
      r->thread.join();
    ::close(r->fd);
  }
}

void replica_link::accept_loop() {
  while (!closing_.load()) {
    int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (!closing_.load())
        std::this_thread::sleep_for(std::chrono::milliseconds{100});  // out of descriptors
      continue;
    }
    std::lock_guard<std::mutex> guard{mtx_};
    // Readers whose connection ended go first.
    for (auto i = in_.begin(); i != in_.end();) {
      if ((*i)->done.load()) {
        (*i)->thread.join();
        ::close((*i)->fd);
        i = in_.erase(i);
      } else {
        ++i;
      }
    }
    if (closing_.load()) {
      ::close(fd);
      return;
    }
    auto& r = *in_.emplace_back(std::make_unique<inbound>());
    r.fd = fd;
    r.thread = std::thread{[this, &r] {
      runtime::name_thread("twin.repl.recv");
      read_loop(r);
      ::shutdown(r.fd, SHUT_RDWR);  // the sender learns it at once
      r.done = true;
    }};
  }
}

void replica_link::read_loop(inbound& in) {
  // What the socket holds is read at once, and the frames in it are handed on together:
  // a receiver that falls behind then takes several at a time.
  constexpr size_t usual = 256u << 10;
  std::string buf(usual, '\0');
  size_t begin = 0, end = 0;  // unread bytes: [begin, end)
  auto available = [&] { return end - begin; };
  auto at = [&](size_t offset) {
    return reinterpret_cast<const unsigned char*>(buf.data() + begin + offset);
  };
  // Reads until at least `n` bytes are unread; false at the end of the stream.
  auto fill = [&](size_t n) {
    if (begin == end) {
      begin = end = 0;
      if (buf.size() > usual)  // after a large frame
        std::string(usual, '\0').swap(buf);
    }
    if (buf.size() - begin < n) {  // the unread bytes go to the front; the buffer grows
      std::memmove(buf.data(), buf.data() + begin, available());
      end -= begin;
      begin = 0;
      if (buf.size() < n)
        buf.resize(n);
    }
    while (available() < n) {
      if (in.ssl) {
        auto k = tls_read_some(in.ssl.get(), buf.data() + end, buf.size() - end);
        if (k == 0)
          return false;
        end += k;
        continue;
      }
      auto k = ::recv(in.fd, buf.data() + end, buf.size() - end, 0);
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        return false;
      end += static_cast<size_t>(k);
    }
    return true;
  };
  if (tls_ && !(in.ssl = tls_->accept(in.fd, handshake_limit)))
    return;
  if (!fill(4) || get_u32(at(0)) > 1024 || !fill(4 + get_u32(at(0))))
    return;
  std::string from{reinterpret_cast<const char*>(at(4)), get_u32(at(0))};
  begin += 4 + from.size();
  std::vector<envelope> frames;
  while (fill(header_size)) {
    do {
      auto size = get_u32(at(0));
      if (size > max_frame) {  // the connection closes after those before it
        if (!frames.empty())
          on_receive_(frames);
        return;
      }
      if (available() < header_size + size)
        break;
      envelope env;
      env.kind = *at(4);
      env.from = from;
      env.incarnation = get_i64(at(8));
      env.bytes.assign(reinterpret_cast<const char*>(at(header_size)), size);
      begin += header_size + size;
      frames.push_back(std::move(env));
    } while (available() >= header_size);
    if (!frames.empty()) {
      on_receive_(frames);
      frames.clear();
    }
    if (available() >= header_size && !fill(header_size + get_u32(at(0))))
      return;
  }
}

int replica_link::connect_to(const std::string& address) const {
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return -1;
  auto host = address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), address.substr(colon + 1).c_str(), &hints, &found) != 0
      || !found)
    return -1;
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  bool ok = fd >= 0;
  if (ok && ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = errno == EINPROGRESS && ::poll(&p, 1, 1000) == 1
         && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  ::freeaddrinfo(found);
  if (!ok) {
    if (fd >= 0)
      ::close(fd);
    return -1;
  }
  no_delay(fd);
  return fd;
}

void replica_link::connect_loop() {
  while (!closing_.load()) {
    // Connections that failed, or to members that left or moved, close; their members are
    // reported down (once).
    std::vector<std::pair<std::string, std::shared_ptr<outbound>>> down;
    std::map<std::string, std::string> wanted;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (auto i = out_.begin(); i != out_.end();) {
        if (i->second->broken.load()) {
          down.emplace_back(i->first, std::move(i->second));
          i = out_.erase(i);
        } else {
          ++i;
        }
      }
      for (const auto& [node, address] : peers_)
        if (out_.count(node) == 0)
          wanted.emplace(node, address);
    }
    for (auto& [node, c] : down) {
      {
        std::lock_guard<std::mutex> writing{c->mtx};
        c->fail();
        ::close(c->fd);
      }
      on_down_(node);
    }
    for (const auto& [node, address] : wanted)
      if (int fd = connect_to(address); fd >= 0) {
        // The hello goes first, like any frame: what the socket does not take at once,
        // the writing thread writes.
        auto c = std::make_shared<outbound>();
        c->fd = fd;
        c->address = address;
        if (tls_ && !(c->ssl = tls_->connect(fd, handshake_limit))) {
          ::close(fd);  // not a member of this cluster's CA, or silent: tried again later
          continue;
        }
        unsigned char length[4];
        put_u32(length, static_cast<uint32_t>(self_.size()));
        c->pending.assign(reinterpret_cast<const char*>(length), 4);
        c->pending += self_;
        c->since = std::chrono::steady_clock::now();
        if (!c->flush()) {
          ::close(fd);
          continue;
        }
        std::lock_guard<std::mutex> guard{mtx_};
        auto peer = peers_.find(node);
        if (closing_.load() || peer == peers_.end() || peer->second != address
            || out_.count(node) > 0) {
          ::close(fd);
          continue;
        }
        out_[node] = std::move(c);
      }
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
}

void replica_link::write_loop() {
  while (!closing_.load()) {
    // The other side never writes on these connections: one that turns readable has
    // ended (its process died), and is known broken before a frame is lost on it. Those
    // with bytes waiting are written as they drain; one that takes none of them for too
    // long is as good as gone. (Connecting, which may wait on an unreachable member, is
    // the other thread's.)
    std::vector<std::shared_ptr<outbound>> watched;
    std::vector<pollfd> fds{{wake_fd_, POLLIN, 0}};
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (const auto& [node, c] : out_) {
        watched.push_back(c);
        fds.push_back({c->fd, POLLIN | POLLRDHUP, 0});
      }
    }
    auto now = std::chrono::steady_clock::now();
    for (size_t k = 0; k < watched.size(); ++k) {
      auto& c = *watched[k];
      std::lock_guard<std::mutex> writing{c.mtx};
      if (!c.broken && c.unsent() > 0 && now - c.since > stall_limit)
        broke(c);
      if (c.broken)
        fds[k + 1].fd = -1;  // closed by the connecting thread, soon
      else if (c.unsent() > 0)
        fds[k + 1].events |= POLLOUT;
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0)
      continue;
    if (fds[0].revents != 0) {
      uint64_t n;
      [[maybe_unused]] auto k = ::read(wake_fd_, &n, sizeof n);
    }
    for (size_t k = 0; k < watched.size(); ++k) {
      auto events = fds[k + 1].revents;
      if (events == 0)
        continue;
      auto& c = *watched[k];
      std::lock_guard<std::mutex> writing{c.mtx};
      if (c.broken)
        continue;
      if ((events & ~POLLOUT) != 0)  // it ended
        c.fail();
      else if (!c.flush())
        broke(c);
    }
  }
}

} // namespace twin::cluster
