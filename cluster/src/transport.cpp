#include "transport.hpp"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iterator>
#include <set>
#include <shared_mutex>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "twin/cluster/peer_tls.hpp"
#include "twin/runtime/thread_name.hpp"

// CAF 0.17's OpenSSL module calls SSL_read, SSL_write, SSL_accept and SSL_connect without
// clearing the thread's error queue first, which OpenSSL requires (SSL_get_error reads the
// queue). The errors of a failed handshake (any client that reaches the cluster port can
// cause one: a wrong certificate, none, or no TLS at all) stayed on CAF's I/O thread, and
// the next read of a healthy member's connection took them for its own and closed it:
// measured, every such client cut the members' connection. Defined in the program, these
// come first in the dynamic linker's lookup, so CAF calls them: they clear the queue, then
// call OpenSSL's own.
namespace {

template <class Fn>
Fn openssl_own(const char* name) {
  auto fn = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (fn == nullptr)
    std::abort();  // libssl is linked: it has them
  return fn;
}

} // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto own = openssl_own<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return own(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto own = openssl_own<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return own(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static const auto own = openssl_own<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return own(ssl);
}

int SSL_connect(SSL* ssl) {
  static const auto own = openssl_own<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return own(ssl);
}

} // extern "C"

namespace twin::cluster {

namespace {

using monitor_atom = caf::atom_constant<caf::atom("monitor")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using credit_atom = caf::atom_constant<caf::atom("credit")>;
using hello_atom = caf::atom_constant<caf::atom("hello")>;

/// Envelopes a member may have sent another that the other has not said it took: what the
/// link and the receiver's mailbox hold at most, about.
constexpr uint64_t credit = 8192;
/// The receiver says what it took once it took this many more (and every 250 ms anyway).
constexpr uint64_t grant_every = 1024;
/// Envelopes, and their bytes, a member queues for a link at most: beyond, `send` fails.
constexpr size_t max_queued = 65'536;
constexpr size_t max_queued_bytes = 64u << 20;
/// Bytes of envelopes handed to CAF as one message, at most (but at least one envelope).
constexpr size_t max_batch_bytes = 4u << 20;

/// A copy of file `path` that nothing can change, as a path CAF can open ("/proc/self/fd/N"
/// of a memfd, open for the process's life); `path` itself if it cannot be read. CAF's
/// OpenSSL module reads its files at each connection, and one it cannot read then (a file
/// being replaced) ends the process.
std::string pinned(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::string bytes{std::istreambuf_iterator<char>{in}, {}};
  int fd = in.bad() || bytes.empty() ? -1 : ::memfd_create("twin-peer-tls", MFD_CLOEXEC);
  if (fd < 0)
    return path;
  for (size_t done = 0; done < bytes.size();) {
    auto k = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (k <= 0) {
      ::close(fd);
      return path;
    }
    done += static_cast<size_t>(k);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

} // namespace

void configure_transport(caf::actor_system_config& cfg, const peer_tls& tls) {
  cfg.load<caf::io::middleman>();
  if (tls.enabled()) {
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = pinned(tls.cert_file);
    cfg.openssl_key = pinned(tls.key_file);
    cfg.openssl_cafile = pinned(tls.ca_file);
  }
  cfg.add_message_type<envelope>("twin.envelope");
  cfg.add_message_type<envelopes>("twin.envelopes");
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds{200}});
  cfg.set("middleman.connection-timeout", caf::timespan{std::chrono::seconds{1}});
}

struct transport::impl {
  impl(caf::actor_system& sys, std::string self, receive_fn r, down_fn d)
    : sys(sys), self(std::move(self)), on_receive(std::move(r)), on_down(std::move(d)) {}

  struct peer {
    std::string address;
    caf::actor handle;
    std::unique_ptr<std::mutex> send_mtx = std::make_unique<std::mutex>();
    uint64_t next_seq = 1;
    std::deque<envelope> queued;   ///< sent, not yet handed to CAF
    size_t queued_bytes = 0;
    bool flushing = false;         ///< the sender actor was asked to hand them over
    uint64_t handed = 0;           ///< the last sequence number handed to CAF
    uint64_t taken = 0;            ///< the last one the peer said it took

    bool may_hand() const { return !queued.empty() && handed - taken < credit; }
  };

  caf::actor_system& sys;
  std::string self;
  const bool tls = sys.has_openssl_manager();  ///< CAF's OpenSSL module: TLS only
  receive_fn on_receive;
  down_fn on_down;
  caf::actor link;
  caf::actor sender;  ///< hands each peer's queued envelopes to CAF, one batch at a time
  uint16_t port = 0;
  std::atomic<bool> closing{false};
  std::atomic<uint64_t> out_of_order{0};

  mutable std::shared_mutex peers_mtx;
  std::map<std::string, peer> peers;  ///< connected

  /// The last sequence number taken from each node, and the last one told to it.
  struct taken_from {
    uint64_t last = 0;
    uint64_t told = 0;
  };
  std::mutex grant_mtx;
  std::map<std::string, taken_from> taken;

  std::mutex wanted_mtx;
  std::condition_variable wanted_cv;
  std::map<std::string, std::string> wanted;  ///< node -> host:port
  std::thread connector;

  /// Hands the envelopes queued for `node` to CAF as one message; only `sender` calls it,
  /// so the batches of a link go in order.
  void flush(const std::string& node) {
    envelopes batch;
    caf::actor handle;
    with_peer(node, [&](peer& p) {
      size_t bytes = 0;
      while (p.may_hand() && (batch.items.empty() || bytes < max_batch_bytes)) {
        bytes += p.queued.front().bytes.size();
        p.queued_bytes -= p.queued.front().bytes.size();
        p.handed = p.queued.front().seq;
        batch.items.push_back(std::move(p.queued.front()));
        p.queued.pop_front();
      }
      p.flushing = false;
      want_flush(node, p);  // what is left, in a batch of its own
      handle = p.handle;
    });
    if (!batch.items.empty() && !closing)
      caf::anon_send(handle, std::move(batch));
  }

  /// Calls `f` with the peer `node` and its `send_mtx` held; false if not connected.
  template <class F>
  bool with_peer(const std::string& node, F&& f) {
    std::shared_lock<std::shared_mutex> guard{peers_mtx};
    auto i = peers.find(node);
    if (i == peers.end())
      return false;
    std::lock_guard<std::mutex> order{*i->second.send_mtx};
    f(i->second);
    return true;
  }

  /// Asks the sender actor to hand `node`'s queue over; with its `send_mtx` held.
  void want_flush(const std::string& node, peer& p) {
    if (p.flushing || !p.may_hand())
      return;
    p.flushing = true;
    caf::anon_send(sender, flush_atom::value, node);
  }

  /// `node` took the envelopes from this one up to sequence number `seq`.
  void on_taken(const std::string& node, uint64_t seq) {
    with_peer(node, [&](peer& p) {
      // A number of an earlier connection, beyond what this one handed, counts as all.
      p.taken = std::max(p.taken, std::min(seq, p.handed));
      want_flush(node, p);
    });
  }

  /// This node took the envelopes of `node` up to `seq`: it says so once it took
  /// `grant_every` more since it last did (or `always`). The last number always holds, so
  /// that a word lost on the way is made good by the next.
  void took(const std::string& node, uint64_t seq, bool always) {
    {
      std::lock_guard<std::mutex> guard{grant_mtx};
      auto& t = taken[node];
      if (seq != 0)
        t.last = seq;
      bool due = t.last < t.told || t.last - t.told >= grant_every;  // less: numbered anew
      if (t.last == 0 || !(always || due))
        return;
      t.told = t.last;
      seq = t.last;
    }
    caf::actor handle;
    {
      std::shared_lock<std::shared_mutex> guard{peers_mtx};
      auto i = peers.find(node);
      if (i != peers.end())
        handle = i->second.handle;
    }
    if (handle)
      caf::anon_send(handle, credit_atom::value, self, seq);
  }

  /// `node` connected to this one, and says where its actor is: it is a peer, if it is a
  /// member as far as this one knows (else it says so again within 250 ms).
  void greeted(const std::string& node, const caf::actor& handle) {
    if (!tls)
      return;  // both connect
    {
      std::lock_guard<std::mutex> guard{wanted_mtx};
      auto w = wanted.find(node);
      if (w == wanted.end() || closing)
        return;
      std::unique_lock<std::shared_mutex> peers_guard{peers_mtx};
      auto i = peers.find(node);
      if (i != peers.end() && i->second.handle == handle)
        return;
      peer p;  // a connection before this one, if any, is gone with its queue
      p.address = w->second;
      p.handle = handle;
      peers[node] = std::move(p);
    }
    caf::anon_send(link, monitor_atom::value, node, handle);
  }

  /// With TLS, of two members the one with the lesser id connects, and says hello over the
  /// connection (again every round): CAF's OpenSSL module closes both connections of a
  /// pair that connect to each other at once. In plain text both connect, as members
  /// before TLS did.
  bool connects_to(const std::string& node) const { return !tls || self < node; }

  void peer_down(const std::string& node, const caf::actor_addr& who) {
    {
      std::unique_lock<std::shared_mutex> guard{peers_mtx};
      auto i = peers.find(node);
      if (i == peers.end() || i->second.handle.address() != who)
        return;
      peers.erase(i);
    }
    wanted_cv.notify_all();  // connect again if it is still a member
    if (!closing)
      on_down(node);
  }

  /// What publishes and connects: CAF's OpenSSL module's when it is loaded.
  caf::io::middleman_actor middleman() const {
    return tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
  }

  /// Connects to the members not connected yet, until closed.
  void connect_loop() {
    for (;;) {
      std::map<std::string, std::string> todo;
      {
        std::unique_lock<std::mutex> guard{wanted_mtx};
        wanted_cv.wait_for(guard, std::chrono::milliseconds{250});
        if (closing)
          return;
      }
      std::vector<std::string> senders;
      {
        std::lock_guard<std::mutex> guard{grant_mtx};
        for (const auto& [node, t] : taken)
          senders.push_back(node);
      }
      for (const auto& node : senders)
        took(node, 0, true);
      {
        std::lock_guard<std::mutex> guard{wanted_mtx};
        std::shared_lock<std::shared_mutex> peers_guard{peers_mtx};
        for (const auto& [node, address] : wanted) {
          if (!connects_to(node))
            continue;
          auto i = peers.find(node);
          if (i == peers.end() || i->second.address != address)
            todo.emplace(node, address);
          else if (tls)
            caf::anon_send(i->second.handle, hello_atom::value, self, link);
        }
      }
      for (const auto& [node, address] : todo) {
        if (closing)
          return;
        auto colon = address.rfind(':');
        if (colon == std::string::npos)
          continue;
        auto host = address.substr(0, colon);
        auto port_num = static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1));
        caf::actor handle;
        {
          caf::scoped_actor s{sys};
          s->request(middleman(), std::chrono::seconds{2},
                     caf::connect_atom::value, host, port_num)
            .receive(
              [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
                handle = caf::actor_cast<caf::actor>(ptr);
              },
              [&](caf::error&) {});
        }
        if (!handle)
          continue;
        {
          std::unique_lock<std::shared_mutex> guard{peers_mtx};
          peer p;
          p.address = address;
          p.handle = handle;
          peers[node] = std::move(p);
        }
        caf::anon_send(link, monitor_atom::value, node, handle);
        if (tls)
          caf::anon_send(handle, hello_atom::value, self, link);
      }
    }
  }
};

namespace {

struct link_state {
  std::map<caf::actor_addr, std::string> watched;  ///< peers' actors -> node ids
  std::map<std::string, uint64_t> next_seq;        ///< by sender and incarnation
};

caf::behavior link_actor(caf::stateful_actor<link_state>* self,
                         std::shared_ptr<transport::impl> t) {
  self->set_down_handler([self, t](caf::down_msg& dm) {
    auto i = self->state.watched.find(dm.source);
    if (i == self->state.watched.end())
      return;
    auto node = i->second;
    self->state.watched.erase(i);
    t->peer_down(node, dm.source);
  });
  return {
    [self, t](envelopes& batch) {
      if (!batch.items.empty())
        t->took(batch.items.back().from, batch.items.back().seq, false);
      for (auto& env : batch.items) {
        if (t->closing)
          return;
        auto& expected = self->state.next_seq[env.from + "/" + std::to_string(env.incarnation)];
        if (expected != 0 && env.seq != expected)
          t->out_of_order.fetch_add(1, std::memory_order_relaxed);
        expected = env.seq + 1;
        t->on_receive(std::move(env));
      }
    },
    [t](credit_atom, const std::string& node, uint64_t seq) { t->on_taken(node, seq); },
    [t](hello_atom, const std::string& node, const caf::actor& peer) { t->greeted(node, peer); },
    [self](monitor_atom, const std::string& node, const caf::actor& peer) {
      self->monitor(peer);
      self->state.watched[peer.address()] = node;
    },
  };
}

caf::behavior sender_actor(caf::event_based_actor*, std::shared_ptr<transport::impl> t) {
  return {
    [t](flush_atom, const std::string& node) { t->flush(node); },
  };
}

} // namespace

transport::transport(caf::actor_system& sys, std::string self, receive_fn on_receive,
                     down_fn on_down)
  : impl_(std::make_shared<impl>(sys, std::move(self), std::move(on_receive),
                                 std::move(on_down))) {
}

transport::~transport() {
  close();
}

caf::expected<uint16_t> transport::open(const std::string& bind, uint16_t port) {
  auto& d = *impl_;
  d.link = d.sys.spawn(link_actor, impl_);
  d.sender = d.sys.spawn(sender_actor, impl_);
  auto bound = d.tls ? caf::openssl::publish(d.link, port, bind.c_str(), true)
                     : d.sys.middleman().publish(d.link, port, bind.c_str(), true);
  if (!bound) {
    caf::anon_send_exit(d.link, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(d.sender, caf::exit_reason::user_shutdown);
    d.link = caf::actor{};
    d.sender = caf::actor{};
    return bound.error();
  }
  d.port = *bound;
  d.connector = std::thread{[t = impl_] {
    runtime::name_thread("twin.connect");
    t->connect_loop();
  }};
  return *bound;
}

void transport::set_peers(std::map<std::string, std::string> addresses) {
  auto& d = *impl_;
  addresses.erase(d.self);
  std::vector<std::string> gone;
  {
    std::lock_guard<std::mutex> guard{d.wanted_mtx};
    d.wanted = addresses;
  }
  {
    std::unique_lock<std::shared_mutex> guard{d.peers_mtx};
    for (auto i = d.peers.begin(); i != d.peers.end();)
      if (addresses.count(i->first) == 0) {
        gone.push_back(i->first);
        i = d.peers.erase(i);
      } else {
        ++i;
      }
  }
  d.wanted_cv.notify_all();
  if (!d.closing)
    for (const auto& node : gone)
      d.on_down(node);  // what awaits its answers fails now, not at its deadline
}

bool transport::send(const std::string& node, envelope env) {
  auto& d = *impl_;
  bool queued = false;
  if (d.closing)
    return false;
  d.with_peer(node, [&](impl::peer& p) {
    if (p.queued.size() >= max_queued
        || (!p.queued.empty() && p.queued_bytes + env.bytes.size() > max_queued_bytes))
      return;  // the peer takes nothing: what waits for it is bounded
    env.seq = p.next_seq++;
    p.queued_bytes += env.bytes.size();
    p.queued.push_back(std::move(env));
    d.want_flush(node, p);
    queued = true;
  });
  return queued;
}

bool transport::connected(const std::string& node) const {
  std::shared_lock<std::shared_mutex> guard{impl_->peers_mtx};
  return impl_->peers.count(node) > 0;
}

uint64_t transport::out_of_order() const {
  return impl_->out_of_order.load(std::memory_order_relaxed);
}

void transport::close() {
  auto& d = *impl_;
  if (d.closing.exchange(true))
    return;
  d.wanted_cv.notify_all();
  if (d.connector.joinable())
    d.connector.join();
  {
    std::unique_lock<std::shared_mutex> guard{d.peers_mtx};
    d.peers.clear();
  }
  if (d.link) {
    if (d.tls)  // (caf::openssl::unpublish does not compile in 0.17.6)
      caf::anon_send(d.middleman(), caf::unpublish_atom::value, d.link.address(), d.port);
    else
      d.sys.middleman().unpublish(d.link, d.port);
    caf::anon_send_exit(d.link, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(d.sender, caf::exit_reason::user_shutdown);
    d.link = caf::actor{};
    d.sender = caf::actor{};
  }
}

} // namespace twin::cluster
