#include "twin/cluster/node.hpp"

#include "node_impl.hpp"
#include "twin/cluster/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::cluster {

using json = nlohmann::json;
using runtime::make_error;
using runtime::runtime_errc;

void configure(caf::actor_system_config& cfg, const peer_tls& tls) {
  configure_transport(cfg, tls);
}

node::impl::impl(caf::actor_system& sys, runtime::host& host, tracking_store& store,
                 node_options opts)
  : sys(sys), host(host), store(store), opts(std::move(opts)), shard_count(host.shard_count()) {
  me = this->opts.id.str();
  fallback.n = this;
}

caf::expected<std::shared_ptr<const peer_tls_context>> node::impl::peer_tls() const {
  // CAF's OpenSSL module reads the files again at each connection, and cannot say why
  // one failed: they are checked here, once.
  if (opts.tls.enabled() != sys.has_openssl_manager())
    return make_error(runtime_errc::invalid_argument,
                      opts.tls.enabled()
                        ? "peer TLS: the actor system is not configured with it"
                        : "peer TLS: the actor system has it and the node's options do not");
  if (!opts.tls.enabled())
    return nullptr;
  auto tls = peer_tls_context::load(opts.tls);
  if (!tls)
    return tls.error();
  return std::shared_ptr<const peer_tls_context>{std::move(*tls)};
}

// -- routing ------------------------------------------------------------------------

void node::impl::route(const twin_id& id, twin_request req, uint8_t hops) {
  auto shard = runtime::shard_of(id, shard_count);
  if (wait_behind_handoff(shard, id, req) || wait_behind_waiting(shard, id, req))
    return;
  auto owner = table->get(shard);
  if (owner.owner == me)
    return host.route(id, std::move(req));
  if (owner.owner.empty())
    return runtime::fail_request(
      req, make_error(runtime_errc::unavailable,
                      "shard " + std::to_string(shard.value()) + " of twin " + id.str()
                        + " has no owner yet"));
  forward(owner.owner, shard, owner.epoch, id, std::move(req), hops);
}

void node::impl::route_unserved(const twin_id& id, twin_request req) {
  auto shard = runtime::shard_of(id, shard_count);
  if (wait_behind_handoff(shard, id, req))
    return;
  auto owner = table->get(shard);
  if (owner.owner != me || lost.load())
    return owner.owner.empty() || owner.owner == me
             ? runtime::fail_request(req, make_error(runtime_errc::unavailable,
                                                      "this node does not serve shard "
                                                        + std::to_string(shard.value())
                                                        + " now"))
             : forward(owner.owner, shard, owner.epoch, id, std::move(req), 1);
  // The table gives it to this node, whose host does not serve it yet: it waits, unless
  // the host began serving it meanwhile (and what waited went to it already).
  if (wait(shard.value(), id, req)) {
    if (host.serves(shard))
      flush_waiting(shard.value(), true);
    return;
  }
  runtime::fail_request(req, make_error(runtime_errc::unavailable,
                                        "too many requests wait for shards this node takes"));
}

void node::impl::forward(const std::string& owner, shard_id shard, int64_t epoch,
                         const twin_id& id, twin_request req, uint8_t hops) {
  if (hops > 2)
    return runtime::fail_request(req, make_error(runtime_errc::unavailable,
                                                 "the owner of twin " + id.str()
                                                   + " is changing; try again"));
  envelope env;
  env.kind = envelope::request;
  env.from = me;
  env.incarnation = members->incarnation();
  env.shard = shard.value();
  env.epoch = epoch;
  env.hops = hops;
  env.bytes = runtime::encode_request(id, req);
  if (runtime::expects_reply(req)) {
    env.token = pending.keep(req, owner, opts.request_timeout, opts.max_pending);
    if (env.token == 0) {
      forward_failures.fetch_add(1, std::memory_order_relaxed);
      return runtime::fail_request(req, make_error(runtime_errc::unavailable,
                                                   "too many requests are forwarded now"));
    }
  }
  forwarded.fetch_add(1, std::memory_order_relaxed);
  auto token = env.token;
  if (links->send(owner, std::move(env)))
    return;
  forward_failures.fetch_add(1, std::memory_order_relaxed);
  auto err = make_error(runtime_errc::unavailable,
                        "node " + owner + ", the owner of twin " + id.str()
                          + ", cannot be reached now");
  if (token == 0)
    return runtime::fail_request(req, err);
  if (auto e = pending.take(token))
    runtime::fail_request(e->req, err);
}

namespace {

/// The error a refusal carries ("<code>: <message>", see `answer`); a text without a
/// runtime error code is read as `unavailable`.
caf::error refusal_error(const std::string& text) {
  auto colon = text.find(": ");
  if (colon != std::string::npos)
    for (auto c = uint8_t{1}; c <= static_cast<uint8_t>(runtime_errc::not_owner); ++c)
      if (runtime::to_string(static_cast<runtime_errc>(c)) == text.substr(0, colon))
        return make_error(static_cast<runtime_errc>(c), text.substr(colon + 2));
  return make_error(runtime_errc::unavailable, text);
}

} // namespace

void node::impl::answer(const envelope& asked, uint8_t kind, caf::expected<std::string> bytes) {
  envelope r;
  r.from = me;
  r.incarnation = members->incarnation();
  r.token = asked.token;
  if (bytes) {
    r.kind = kind;
    r.bytes = std::move(*bytes);
  } else {  // the error's code travels in the text, as `refusal_error` reads it
    r.kind = envelope::refusal;
    r.bytes = runtime::to_string(runtime::error_code(bytes.error())) + ": "
              + runtime::error_message(bytes.error());
  }
  links->send(asked.from, std::move(r));  // a lost link fails the question there
}

void node::impl::on_envelope(envelope&& env) {
  received.fetch_add(1, std::memory_order_relaxed);
  switch (env.kind) {
    case envelope::request: return on_request(std::move(env));
    case envelope::reply: return on_reply(std::move(env));
    case envelope::replicate:
      if (replicas)
        replicas->on_batches(std::move(env));
      return;
    case envelope::replica_acks:
      if (replicas)
        replicas->on_acks(env);
      return;
    case envelope::follow:
      if (replicas)
        return on_follow(env);
      return answer(env, envelope::answer,
                    make_error(runtime_errc::conflict, "this cluster keeps one copy of a shard"));
    case envelope::copy:  // these read the store: on the worker, not this actor
    case envelope::catch_up:
    case envelope::snapshot:
    case envelope::history:
    case envelope::query: {
      std::lock_guard<std::mutex> guard{handoff_mtx};
      if (queries.size() < 64) {
        queries.push_back(std::move(env));
        query_cv.notify_all();
        return;
      }
      answer(env, envelope::answer,
             make_error(runtime_errc::unavailable, "too many queries wait on member " + me));
      return;
    }
    case envelope::watch: {
      auto err = streams->on_watch(env);
      if (env.token != 0)
        answer(env, envelope::answer, err ? caf::expected<std::string>{err} : std::string{});
      return;
    }
    case envelope::events: return streams->on_events(env);
    case envelope::gap: return streams->on_gap(env.from);
    case envelope::sync:  // what the sender sent before is in: this actor took it in order
      return answer(env, envelope::answer, std::string{});
    case envelope::page:
    case envelope::answer:
    case envelope::refusal: {
      std::lock_guard<std::mutex> guard{page_mtx};
      auto i = pages.find(env.token);
      if (i == pages.end())
        return;  // the copier gave up on it
      i->second = env.kind != envelope::refusal
                    ? caf::expected<std::string>{std::move(env.bytes)}
                    : caf::expected<std::string>{refusal_error(env.bytes)};
      page_cv.notify_all();
      return;
    }
    default: return;  // a kind of a newer version
  }
}

void node::impl::on_request(envelope&& env) {
  auto from = env.from;
  auto token = env.token;
  runtime::reply_fn reply;
  if (token != 0)
    reply = [this, from, token](std::string bytes) {
      envelope r;
      r.kind = envelope::reply;
      r.from = me;
      r.incarnation = members->incarnation();
      r.token = token;
      r.bytes = std::move(bytes);
      links->send(from, std::move(r));  // a lost link fails the request there
    };
  auto decoded = runtime::decode_request(env.bytes, reply);
  if (!decoded) {
    if (reply)
      reply(runtime::encode_error_reply(decoded.error()));
    return;
  }
  auto shard = runtime::shard_of(decoded->id, shard_count);
  if (shard.value() != env.shard) {
    runtime::fail_request(decoded->req, make_error(runtime_errc::invalid_argument,
                                                   "a request for twin " + decoded->id.str()
                                                     + " named another shard"));
    return;
  }
  auto owner = table->get(shard);
  if (owner.owner == me) {
    if (!wait_behind_waiting(shard, decoded->id, decoded->req))
      host.route(decoded->id, std::move(decoded->req));
    return;
  }
  // The sender's table is behind (or this one is): pass it on once to the owner known here.
  redirected.fetch_add(1, std::memory_order_relaxed);
  route(decoded->id, std::move(decoded->req), static_cast<uint8_t>(env.hops + 1));
}

void node::impl::on_reply(envelope&& env) {
  auto e = pending.take(env.token);
  if (!e)
    return;  // it timed out
  forward_latency.observe(std::chrono::duration<double>(clock_type::now() - e->sent).count());
  runtime::deliver_reply(e->req, env.bytes);
}

void node::impl::on_peer_down(const std::string& node) {
  streams->on_peer_down(node);
  if (replicas)
    replicas->on_peer_down(node);
  for (auto& e : pending.take_if(&node))
    runtime::fail_request(e.req, make_error(runtime_errc::timeout,
                                            "node " + node + " went away before it answered "
                                              "(the request may or may not have been applied)"));
}

// -- node -------------------------------------------------------------------------------

node::node(caf::actor_system& sys, runtime::host& host, tracking_store& store,
           node_options opts)
  : impl_(std::make_unique<impl>(sys, host, store, std::move(opts))) {
  auto* d = impl_.get();
  d->links = std::make_unique<transport>(
    sys, d->me, [d](envelope&& env) { d->on_envelope(std::move(env)); },
    [d](const std::string& n) { d->on_peer_down(n); });
  auto send = [d](const std::string& n, envelope env) {
    env.from = d->me;
    env.incarnation = d->members ? d->members->incarnation() : 0;
    if ((env.kind == envelope::replicate || env.kind == envelope::replica_acks)
        && d->replica_links && d->replica_links->reaches(n))
      return d->replica_links->send(n, env);
    return d->links->send(n, std::move(env));
  };
  auto ask = [d](const std::string& n, envelope env, std::chrono::milliseconds timeout) {
    return d->ask(n, std::move(env), timeout);
  };
  d->streams = std::make_unique<change_streams>(send, ask);
  if (d->opts.replication_factor > 1) {
    replication_options ro;
    ro.factor = d->opts.replication_factor;
    ro.min_insync = d->opts.min_insync;
    ro.timeout = d->opts.replication_timeout;
    d->replicas = std::make_unique<replication>(
      store, host.local_commit(), d->me, ro, send, ask,
      [d](shard_id shard, int64_t epoch, const std::string& n, int64_t incarnation, bool add) {
        return d->record_insync(shard, epoch, n, incarnation, add);
      });
    host.set_commit(d->replicas.get());
    d->replica_links = std::make_unique<replica_link>(
      d->me,
      [d](std::vector<envelope>& frames) {
        d->received.fetch_add(frames.size(), std::memory_order_relaxed);
        d->replicas->on_link_frames(frames);
      },
      [d](const std::string& n) { d->replicas->on_peer_down(n); });
  }
  host.set_router(this);
  host.set_fallback(&d->fallback);
}

node::~node() {
  stop();
}

caf::error node::start() {
  auto& d = *impl_;
  etcd::endpoints where{d.opts.etcd, d.opts.etcd_ca_file, d.opts.etcd_cert_file,
                        d.opts.etcd_key_file};
  if (auto err = etcd::client::check_endpoints(where))
    return err;
  auto tls = d.peer_tls();
  if (!tls)
    return tls.error();
  auto port = d.links->open(d.opts.bind, d.opts.port);
  if (!port)
    return port.error();
  d.port = *port;
  membership_options mo;
  mo.etcd = where;
  mo.cluster = d.opts.cluster;
  mo.node = d.opts.id;
  mo.cluster_address = d.opts.advertise.empty() ? d.opts.bind + ":" + std::to_string(*port)
                                                : d.opts.advertise;
  if (d.replica_links) {
    auto link_port = d.replica_links->open(d.opts.bind, d.opts.replication_port, *tls);
    if (!link_port)
      return link_port.error();
    mo.replication_address = mo.cluster_address.substr(0, mo.cluster_address.rfind(':') + 1)
                             + std::to_string(*link_port);
  }
  mo.http_url = d.opts.http_url;
  mo.shard_count = d.shard_count;
  mo.replication = std::max<uint32_t>(1, d.opts.replication_factor);
  mo.tls = d.opts.tls.enabled();
  mo.ttl = d.opts.ttl;
  d.members = std::make_unique<membership>(
    mo,
    [&d](const std::vector<member>& ms) {
      std::map<std::string, std::string> addresses, replication;
      for (const auto& m : ms) {
        addresses[m.id.str()] = m.cluster_address;
        if (!m.replication_address.empty())
          replication[m.id.str()] = m.replication_address;
      }
      d.links->set_peers(std::move(addresses));
      if (d.replica_links)
        d.replica_links->set_peers(std::move(replication));
      std::lock_guard<std::mutex> guard{d.coord_mtx};
      if (d.coord)
        d.coord->poke();
    },
    [&d] { d.on_lease_lost(); });
  d.table = std::make_unique<shard_table>(*d.members, d.shard_count, [&d] { d.reconcile(); });
  // etcd may still be starting (or electing its leader): try for a while.
  auto give_up = clock_type::now() + d.opts.join_timeout;
  for (;;) {
    auto err = d.members->join();
    if (!err)
      break;
    auto code = error_code(err);
    if ((code != cluster_errc::etcd_unavailable && code != cluster_errc::etcd_failure)
        || clock_type::now() > give_up)
      return err;
    std::this_thread::sleep_for(std::chrono::milliseconds{500});
  }
  d.members->etcd().del(d.members->keys().drains() + d.me);  // started: not draining
  if (d.replicas)
    d.replicas->start();
  d.started = true;
  if (auto err = d.table->start())
    return err;
  {
    std::lock_guard<std::mutex> guard{d.coord_mtx};
    d.coord = std::make_unique<coordinator>(*d.members, *d.table, d.opts.settle,
                                            std::max<uint32_t>(1, d.opts.replication_factor));
    d.coord->start();
    d.coord->poke();
  }
  d.supervisor = std::thread{[&d] {
    runtime::name_thread("twin.supervise");
    d.supervise();
  }};
  d.copier = std::thread{[&d] {
    runtime::name_thread("twin.handoff");
    d.copy_loop();
  }};
  d.query_worker = std::thread{[&d] {
    runtime::name_thread("twin.query");
    d.query_loop();
  }};
  return {};
}

void node::stop() {
  auto& d = *impl_;
  if (d.stopping.load())
    return;
  if (d.started.load() && !d.lost.load()) {
    // Hand every shard to the others first (the coordinator moves a draining member's),
    // while another member can take them.
    auto drain_key = d.members->keys().drains() + d.me;
    if (d.members->etcd().put(drain_key, "")) {
      auto deadline = clock_type::now() + d.opts.drain_timeout;
      while (clock_type::now() < deadline && d.others_can_take()) {
        bool none = d.host.shards_served() == 0;
        {
          std::lock_guard<std::mutex> h{d.handoff_mtx};
          none = none && d.outgoing.empty();
        }
        if (none)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds{50});
      }
      d.members->etcd().del(drain_key);
    }
  }
  {
    std::lock_guard<std::mutex> guard{d.sup_mtx};
    if (d.stopping.exchange(true))
      return;
  }
  d.sup_cv.notify_all();
  {
    std::lock_guard<std::mutex> h{d.handoff_mtx};
    d.copy_cv.notify_all();
    d.query_cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> p{d.page_mtx};
    d.page_cv.notify_all();
  }
  if (d.supervisor.joinable())
    d.supervisor.join();
  if (d.replicas)
    d.replicas->stop();  // what still waits for copies fails
  if (d.copier.joinable())
    d.copier.join();
  if (d.query_worker.joinable())
    d.query_worker.join();
  // The table stays (twins that passivate after this still route through the node), but
  // no longer follows etcd.
  {
    std::lock_guard<std::mutex> guard{d.coord_mtx};
    d.coord.reset();
  }
  if (d.table)
    d.table->stop();
  if (d.members)
    d.members->leave();
  d.started = false;
  if (d.replica_links)
    d.replica_links->close();
  d.links->close();
  auto stopping_error = make_error(runtime_errc::shutting_down, "the node is stopping");
  for (auto& e : d.pending.take_if(nullptr))
    runtime::fail_request(e.req, stopping_error);
  // What waited for a shard or followed one in handoff: nobody else will answer it.
  std::vector<runtime::routed_request> left;
  {
    std::lock_guard<std::mutex> h{d.handoff_mtx};
    for (auto& [s, out] : d.outgoing)
      for (auto& r : out.held)
        left.push_back(std::move(r));
    d.outgoing.clear();
    std::lock_guard<std::mutex> w{d.waiting_mtx};
    for (auto& [s, list] : d.waiting)
      for (auto& r : list.requests)
        left.push_back(std::move(r));
    d.waiting.clear();
    d.waiting_count = 0;
    d.waiting_shards = 0;
  }
  for (auto& r : left)
    runtime::fail_request(r.req, stopping_error);
}

bool node::impl::others_can_take() {
  auto drains = members->etcd().get_prefix(members->keys().drains());
  if (!drains)
    return false;
  std::set<std::string> draining;
  for (const auto& kv : drains->kvs)
    draining.insert(kv.key.substr(members->keys().drains().size()));
  for (const auto& m : members->members())
    if (m.id.str() != me && draining.count(m.id.str()) == 0)
      return true;
  return false;
}

caf::error node::drain(const std::string& id) {
  auto& d = *impl_;
  auto ms = d.members->members();
  if (std::none_of(ms.begin(), ms.end(), [&](const member& m) { return m.id.str() == id; }))
    return make_error(cluster_errc::not_member,
                      "no member of cluster '" + d.opts.cluster + "' has node id '" + id + "'");
  auto r = d.members->etcd().put(d.members->keys().drains() + id, "");
  return r ? caf::error{} : r.error();
}

void node::set_local_query(local_query_fn fn) {
  impl_->local_query = std::move(fn);
}

caf::expected<runtime::query_page> node::query(const runtime::twin_query& q) {
  return impl_->query(q);
}

void node::set_local_feed(runtime::change_feed* local) {
  impl_->streams->set_local(local);
}

runtime::change_feed& node::events() {
  return impl_->streams->feed();
}

void node::watch() {
  if (impl_->started.load())
    impl_->streams->watch(impl_->peers(), std::chrono::seconds{2});
}

std::vector<std::string> node::impl::peers() const {
  std::vector<std::string> out;
  for (const auto& m : members->members())
    if (m.id.str() != me)
      out.push_back(m.id.str());
  return out;
}

void node::set_local_history(local_history_fn fn) {
  impl_->local_history = std::move(fn);
}

caf::expected<runtime::history_page> node::history(const runtime::history_query& q) {
  return impl_->history(q);
}

void node::route(const twin_id& id, twin_request req) {
  impl_->route(id, std::move(req), 0);
}

const runtime::metrics::collectable& node::probe() const {
  return *impl_;
}

uint16_t node::port() const {
  return impl_->port;
}

} // namespace twin::cluster
