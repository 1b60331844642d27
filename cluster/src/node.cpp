#include "twin/cluster/node.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <caf/actor_system.hpp>

#include "membership.hpp"
#include "shard_table.hpp"
#include "transport.hpp"
#include "twin/cluster/errc.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/wire.hpp"

namespace twin::cluster {

using json = nlohmann::json;
using runtime::make_error;
using runtime::runtime_errc;
using runtime::shard_id;
using runtime::twin_id;
using runtime::twin_request;
using clock_type = std::chrono::steady_clock;

void configure(caf::actor_system_config& cfg) {
  configure_transport(cfg);
}

namespace {

/// Requests forwarded to other members, by token, until their answer or their deadline.
class pending_requests {
public:
  struct entry {
    twin_request req;
    std::string node;
    clock_type::time_point sent;
    clock_type::time_point deadline;
  };

  /// Keeps `req` under a new token; 0 (and `req` untouched) if `limit` are pending.
  uint64_t keep(twin_request& req, const std::string& node, std::chrono::milliseconds timeout,
                size_t limit) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (map_.size() >= limit)
      return 0;
    auto token = ++next_;
    auto now = clock_type::now();
    map_.emplace(token, entry{std::move(req), node, now, now + timeout});
    return token;
  }

  std::optional<entry> take(uint64_t token) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = map_.find(token);
    if (i == map_.end())
      return std::nullopt;
    auto e = std::move(i->second);
    map_.erase(i);
    return e;
  }

  /// Takes those past their deadline, or (if `node` is given) sent to `node`.
  std::vector<entry> take_if(const std::string* node) {
    std::vector<entry> out;
    auto now = clock_type::now();
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto i = map_.begin(); i != map_.end();) {
      if (node != nullptr ? i->second.node == *node : i->second.deadline <= now) {
        out.push_back(std::move(i->second));
        i = map_.erase(i);
      } else {
        ++i;
      }
    }
    return out;
  }

  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return map_.size();
  }

private:
  mutable std::mutex mtx_;
  uint64_t next_ = 0;
  std::unordered_map<uint64_t, entry> map_;
};

} // namespace

struct node::impl : runtime::metrics::collectable {
  impl(caf::actor_system& sys, runtime::host& host, node_options opts);

  // -- routing ------------------------------------------------------------------------

  void route(const twin_id& id, twin_request req, uint8_t hops);
  /// For the host: a request for a shard it does not serve.
  void route_unserved(const twin_id& id, twin_request req);
  void forward(const std::string& owner, shard_id shard, int64_t epoch, const twin_id& id,
               twin_request req, uint8_t hops);
  void on_envelope(envelope&& env);
  void on_request(envelope&& env);
  void on_reply(envelope&& env);
  void on_peer_down(const std::string& node);

  // -- ownership ------------------------------------------------------------------------

  /// Makes the host serve what the table gives this node, and nothing else.
  void reconcile();
  void on_lease_lost();
  /// Expires forwarded requests; rejoins after a lost lease.
  void supervise();

  void collect(std::vector<runtime::metrics::family>& out) const override;

  caf::actor_system& sys;
  runtime::host& host;
  node_options opts;
  uint32_t shard_count;
  std::string me;
  std::unique_ptr<membership> members;
  std::unique_ptr<shard_table> table;
  std::unique_ptr<coordinator> coord;
  std::unique_ptr<transport> links;
  uint16_t port = 0;
  pending_requests pending;

  /// Requests for shards the table gives this node before its host serves them.
  std::mutex waiting_mtx;
  std::unordered_map<uint32_t, std::vector<runtime::routed_request>> waiting;
  static constexpr size_t max_waiting = 100'000;
  size_t waiting_count = 0;

  std::mutex reconcile_mtx;
  std::atomic<bool> started{false};
  std::atomic<bool> lost{false};
  std::mutex sup_mtx;
  std::condition_variable sup_cv;
  bool stopping = false;
  std::thread supervisor;

  // Figures.
  std::atomic<uint64_t> forwarded{0};
  std::atomic<uint64_t> forward_failures{0};
  std::atomic<uint64_t> redirected{0};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> leases_lost{0};
  runtime::metrics::histogram forward_latency{runtime::metrics::histogram::latency_bounds()};

  /// The host's fallback: requests for shards the host does not serve.
  struct fallback_router final : runtime::router {
    impl* n = nullptr;
    void route(const twin_id& id, twin_request req) override {
      n->route_unserved(id, std::move(req));
    }
  } fallback;
};

node::impl::impl(caf::actor_system& sys, runtime::host& host, node_options opts)
  : sys(sys), host(host), opts(std::move(opts)), shard_count(host.shard_count()) {
  me = this->opts.id.str();
  fallback.n = this;
}

// -- routing ------------------------------------------------------------------------

void node::impl::route(const twin_id& id, twin_request req, uint8_t hops) {
  auto shard = runtime::shard_of(id, shard_count);
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
  auto owner = table->get(shard);
  if (owner.owner != me || lost.load())
    return owner.owner.empty() || owner.owner == me
             ? runtime::fail_request(req, make_error(runtime_errc::unavailable,
                                                      "this node does not serve shard "
                                                        + std::to_string(shard.value())
                                                        + " now"))
             : forward(owner.owner, shard, owner.epoch, id, std::move(req), 1);
  // The table gives it to this node, whose host does not serve it yet: it waits.
  {
    std::lock_guard<std::mutex> guard{waiting_mtx};
    if (waiting_count < max_waiting) {
      waiting[shard.value()].push_back({id, std::move(req)});
      ++waiting_count;
      return;
    }
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

void node::impl::on_envelope(envelope&& env) {
  received.fetch_add(1, std::memory_order_relaxed);
  if (env.kind == envelope::request)
    on_request(std::move(env));
  else
    on_reply(std::move(env));
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
  if (owner.owner == me)
    return host.route(decoded->id, std::move(decoded->req));
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
  for (auto& e : pending.take_if(&node))
    runtime::fail_request(e.req, make_error(runtime_errc::unavailable,
                                            "node " + node + " went away before it answered"));
}

// -- ownership ------------------------------------------------------------------------

void node::impl::reconcile() {
  std::lock_guard<std::mutex> guard{reconcile_mtx};
  if (!started.load() || lost.load())
    return;
  auto owners = table->all();
  std::vector<shard_id> leaving;
  for (uint32_t s = 0; s < owners.size(); ++s) {
    shard_id shard{s};
    bool mine = owners[s].owner == me;
    if (mine && !host.serves(shard)) {
      if (host.adopt(shard))
        continue;  // still being released: the next change adopts it
      std::vector<runtime::routed_request> ready;
      {
        std::lock_guard<std::mutex> w{waiting_mtx};
        auto i = waiting.find(s);
        if (i != waiting.end()) {
          ready = std::move(i->second);
          waiting_count -= ready.size();
          waiting.erase(i);
        }
      }
      for (auto& r : ready)
        host.route(r.id, std::move(r.req));
    } else if (!mine && host.serves(shard)) {
      leaving.push_back(shard);
    }
  }
  if (!leaving.empty())
    host.release(leaving, [this](shard_id, std::vector<runtime::routed_request> held) {
      for (auto& r : held)
        route(r.id, std::move(r.req), 1);
    });
}

void node::impl::on_lease_lost() {
  lost = true;
  leases_lost.fetch_add(1, std::memory_order_relaxed);
  sup_cv.notify_all();
}

void node::impl::supervise() {
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{sup_mtx};
      if (sup_cv.wait_for(guard, std::chrono::milliseconds{100}, [&] { return stopping; }))
        return;
    }
    for (auto& e : pending.take_if(nullptr))
      runtime::fail_request(e.req, make_error(runtime_errc::timeout,
                                              "node " + e.node + " did not answer in time"));
    if (!lost.load())
      continue;
    // The lease is gone: nothing is served from here until the node joined again, and
    // then only what the table still gives it.
    std::vector<shard_id> served;
    for (uint32_t s = 0; s < shard_count; ++s)
      if (host.serves(shard_id{s}))
        served.push_back(shard_id{s});
    if (!served.empty())
      host.release(served, [](shard_id, std::vector<runtime::routed_request> held) {
        for (auto& r : held)
          runtime::fail_request(r.req, make_error(runtime_errc::unavailable,
                                                  "this node lost its cluster membership"));
      });
    members->leave();
    if (!members->join()) {
      lost = false;
      reconcile();
    }
  }
}

void node::impl::collect(std::vector<runtime::metrics::family>& out) const {
  using runtime::metrics::family;
  using runtime::metrics::metric_type;
  using runtime::metrics::single;
  family ms{"twin_cluster_members", "Members of the node's cluster, by state.",
            metric_type::gauge, {}};
  std::map<std::string, double> by_state{{"up", 0}, {"draining", 0}};
  for (const auto& m : members->members())
    by_state[m.state] += 1;
  for (const auto& [state, n] : by_state)
    ms.samples.push_back({{{"state", state}}, n, {}});
  out.push_back(std::move(ms));
  out.push_back(single("twin_shards_owned", "Shards this node serves.", metric_type::gauge,
                       host.shards_served()));
  family handoffs{"twin_handoffs_total", "Shards handed to or taken from another node.",
                  metric_type::counter, {}};
  for (const char* result : {"done", "failed"})
    handoffs.samples.push_back({{{"result", result}}, 0, {}});
  out.push_back(std::move(handoffs));
  out.push_back(single("twin_cluster_forwarded_total",
                       "Requests sent to the member that owns their twin.", metric_type::counter,
                       forwarded.load()));
  out.push_back(single("twin_cluster_forward_failures_total",
                       "Requests that could not be sent to their twin's owner.",
                       metric_type::counter, forward_failures.load()));
  out.push_back(single("twin_cluster_redirected_total",
                       "Requests from other members passed on to the owner this node knows.",
                       metric_type::counter, redirected.load()));
  out.push_back(single("twin_cluster_pending_requests",
                       "Forwarded requests awaiting their answer.", metric_type::gauge,
                       pending.size()));
  family latency{"twin_cluster_forward_latency_seconds",
                 "Seconds from forwarding a request to its answer.", metric_type::histogram, {}};
  runtime::metrics::sample s;
  s.histogram = forward_latency.snapshot();
  latency.samples.push_back(std::move(s));
  out.push_back(std::move(latency));
  out.push_back(single("twin_etcd_round_trips_total", "Requests to etcd.", metric_type::counter,
                       members->etcd().round_trips()));
  out.push_back(single("twin_etcd_failures_total", "Requests to etcd that failed.",
                       metric_type::counter, members->etcd().failures()));
  family renewals{"twin_cluster_lease_renewals_total",
                  "Renewals of the node's membership lease.", metric_type::counter, {}};
  renewals.samples.push_back({{{"result", "ok"}}, double(members->renewals()), {}});
  renewals.samples.push_back({{{"result", "failed"}}, double(members->renewal_failures()), {}});
  out.push_back(std::move(renewals));
  out.push_back(single("twin_cluster_leases_lost_total",
                       "Times the node lost its membership and stopped serving.",
                       metric_type::counter, leases_lost.load()));
  out.push_back(single("twin_cluster_out_of_order_total",
                       "Messages from other members that came out of order on their link.",
                       metric_type::counter, links->out_of_order()));
}

// -- node -------------------------------------------------------------------------------

node::node(caf::actor_system& sys, runtime::host& host, node_options opts)
  : impl_(std::make_unique<impl>(sys, host, std::move(opts))) {
  auto* d = impl_.get();
  d->links = std::make_unique<transport>(
    sys, d->me, [d](envelope&& env) { d->on_envelope(std::move(env)); },
    [d](const std::string& n) { d->on_peer_down(n); });
  host.set_router(this);
  host.set_fallback(&d->fallback);
}

node::~node() {
  stop();
}

caf::error node::start() {
  auto& d = *impl_;
  if (auto err = etcd::client::check_endpoints(d.opts.etcd))
    return err;
  auto port = d.links->open(d.opts.bind, d.opts.port);
  if (!port)
    return port.error();
  d.port = *port;
  membership_options mo;
  mo.etcd = d.opts.etcd;
  mo.cluster = d.opts.cluster;
  mo.node = d.opts.id;
  mo.cluster_address = d.opts.advertise.empty() ? d.opts.bind + ":" + std::to_string(*port)
                                                : d.opts.advertise;
  mo.http_url = d.opts.http_url;
  mo.shard_count = d.shard_count;
  mo.ttl = d.opts.ttl;
  d.members = std::make_unique<membership>(
    mo,
    [&d](const std::vector<member>& ms) {
      std::map<std::string, std::string> addresses;
      for (const auto& m : ms)
        addresses[m.id.str()] = m.cluster_address;
      d.links->set_peers(std::move(addresses));
      if (d.coord)
        d.coord->poke();
    },
    [&d] { d.on_lease_lost(); });
  d.table = std::make_unique<shard_table>(*d.members, d.shard_count, [&d] { d.reconcile(); });
  if (auto err = d.members->join())
    return err;
  d.started = true;
  if (auto err = d.table->start())
    return err;
  d.coord = std::make_unique<coordinator>(*d.members, *d.table, d.opts.settle);
  d.coord->start();
  d.coord->poke();
  d.supervisor = std::thread{[&d] { d.supervise(); }};
  return {};
}

void node::stop() {
  auto& d = *impl_;
  {
    std::lock_guard<std::mutex> guard{d.sup_mtx};
    if (d.stopping)
      return;
    d.stopping = true;
  }
  d.sup_cv.notify_all();
  if (d.supervisor.joinable())
    d.supervisor.join();
  d.coord.reset();
  d.table.reset();
  if (d.members)
    d.members->leave();
  d.started = false;
  d.links->close();
  for (auto& e : d.pending.take_if(nullptr))
    runtime::fail_request(e.req, make_error(runtime_errc::shutting_down, "the node is stopping"));
}

void node::route(const twin_id& id, twin_request req) {
  impl_->route(id, std::move(req), 0);
}

std::pair<bool, std::string> node::ready() const {
  auto& d = *impl_;
  if (!d.started.load() || !d.members || d.lost.load() || !d.members->alive())
    return {false, "not a member of cluster '" + d.opts.cluster + "' now"};
  uint32_t mine = 0;
  uint32_t served = 0;
  for (uint32_t s = 0; s < d.shard_count; ++s)
    if (d.table->get(shard_id{s}).owner == d.me) {
      ++mine;
      served += d.host.serves(shard_id{s}) ? 1 : 0;
    }
  auto detail = "member of cluster '" + d.opts.cluster + "' (incarnation "
                + std::to_string(d.members->incarnation()) + "), serving " + std::to_string(served)
                + " of the " + std::to_string(mine) + " shards it owns";
  return {served == mine, detail};
}

json node::status() const {
  auto& d = *impl_;
  json out{{"node", d.me}, {"cluster", d.opts.cluster}, {"shards", d.shard_count}};
  auto owners = d.table ? d.table->all() : std::vector<shard_owner>{};
  std::map<std::string, uint32_t> owned;
  json table = json::array();
  for (uint32_t s = 0; s < owners.size(); ++s) {
    ++owned[owners[s].owner];
    table.push_back({{"shard", s}, {"owner", owners[s].owner}, {"epoch", owners[s].epoch}});
  }
  json ms = json::array();
  if (d.members)
    for (const auto& m : d.members->members())
      ms.push_back({{"node", m.id.str()},
                    {"state", m.state},
                    {"incarnation", m.incarnation},
                    {"cluster", m.cluster_address},
                    {"http", m.http_url},
                    {"shards", owned[m.id.str()]}});
  out["members"] = std::move(ms);
  out["leader"] = d.coord && d.coord->leading();
  out["shard_table"] = std::move(table);
  out["unowned"] = owned[""];
  out["handoffs"] = json::array();
  return out;
}

const runtime::metrics::collectable& node::probe() const {
  return *impl_;
}

uint16_t node::port() const {
  return impl_->port;
}

} // namespace twin::cluster
