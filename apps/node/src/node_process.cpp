#include "node_process.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <spdlog/spdlog.h>
#include <spdlog/fmt/ranges.h>

#include "api_setup.hpp"
#include "lone_node_probe.hpp"
#include "twin/api/http_server.hpp"
#include "twin/api/probe.hpp"
#include "twin/cluster/node.hpp"
#include "twin/cluster/tracking_store.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "twin/ingest/probe.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/metrics.hpp"
#include "twin/runtime/probe.hpp"
#include "twin/runtime/model_catalog.hpp"
#include "twin/runtime/rul_catalog.hpp"
#include "twin/runtime/scheduler.hpp"
#include "twin/runtime/version.hpp"

namespace twin::node {

using namespace twin::runtime;

namespace {

/// `err` (its code and category) with `what` before its message.
caf::error prefixed(const std::string& what, const caf::error& err) {
  return caf::error{err.code(), err.category(),
                    caf::make_message(what + ": " + error_message(err))};
}

/// The client id of the node's MQTT session: made once (`twind-{node id}-{8 random hex
/// digits}`, so that no other client guesses it by accident) and kept in the data
/// directory, so that the session outlives restarts.
caf::expected<std::string> node_session_id(const std::string& data_dir, const std::string& node) {
  auto path = std::filesystem::path{data_dir} / "mqtt-client-id";
  std::ifstream in{path};
  std::string id;
  if (in && std::getline(in, id) && !id.empty())
    return id;
  std::string name;
  for (char c : node)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')
      name += c;
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  id = "twind-" + name.substr(0, 40) + "-" + suffix;
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f{tmp, std::ios::trunc};
    f << id << '\n';
    if (!f.flush())
      return make_error(runtime_errc::store_failure, "cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    return make_error(runtime_errc::store_failure,
                      "cannot write " + path.string() + ": " + ec.message());
  return id;
}

cluster::peer_tls peer_tls_of(const options& o) {
  return {o.peer_cert, o.peer_key, o.peer_ca};
}

/// What the cluster member is made with, from the node's options.
caf::expected<cluster::node_options> member_options(const options& o, const std::string& name) {
  auto id = node_id::parse(name);
  if (!id)
    return id.error();
  cluster::node_options c;
  c.etcd = o.cluster_etcd;
  c.etcd_ca_file = o.etcd_ca_file;
  c.etcd_cert_file = o.etcd_cert_file;
  c.etcd_key_file = o.etcd_key_file;
  c.tls = peer_tls_of(o);
  c.cluster = o.cluster_name;
  c.id = *id;
  c.bind = o.bind;
  c.port = static_cast<uint16_t>(o.cluster_port);
  c.replication_port = static_cast<uint16_t>(o.replication_port);
  c.advertise = o.advertise;
  auto host = o.advertise.empty() ? o.bind : o.advertise.substr(0, o.advertise.rfind(':'));
  c.http_url = (o.tls_cert.empty() ? "http://" : "https://") + host + ":"
               + std::to_string(o.http_port);
  c.ttl = std::chrono::seconds{o.cluster_lease_s};
  c.replication_factor = o.replication_factor;
  c.min_insync = o.min_insync;
  c.replication_timeout = std::chrono::seconds{o.replication_timeout_s};
  return c;
}

/// Raises the soft limit of open files to the hard one, and warns when that cannot hold
/// `connections` and the node's own files: connections beyond it are answered 503.
void raise_fd_limit(size_t connections) {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0)
    return;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
  }
  constexpr size_t own_files = 512;  // the store's files, the broker, the metrics port
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < connections + own_files)
    spdlog::warn("open files are limited to {} (ulimit -n), fewer than --http-max-connections "
                 "{} and {} for the node itself: connections beyond it are answered 503",
                 r.rlim_cur, connections, own_files);
}

} // namespace

/// What the services are made of; each is set by the step that starts it.
struct node_process::state {
  std::unique_ptr<state_store> store;
  caf::actor_system_config cfg;  // the actor system keeps a reference to it
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<cluster::tracking_store> tracked;
  std::unique_ptr<runtime::host> twins;
  change_feed feed;
  std::unique_ptr<cluster::node> member;
  std::unique_ptr<rul_catalog> rul_models;
  std::unique_ptr<model_catalog> models;
  std::unique_ptr<api::token_registry> tokens;
  std::unique_ptr<api::audit_log> audit;
  metrics::registry probes;  // each module's probe, read when /metrics is asked for
  std::unique_ptr<probe> runtime_probe;
  std::unique_ptr<lone_node_probe> node_probe;
  std::unique_ptr<api::probe> http_probe;
  std::unique_ptr<ingest::probe> mqtt_probe;
  std::unique_ptr<api::http_server> ops;  // the metrics port: /metrics, /healthz, /readyz
  std::unique_ptr<api::http_server> http;
  std::unique_ptr<ingest::mqtt_gateway> mqtt;
  std::atomic<bool> ready{false};
  // Set once started, read by /readyz.
  std::atomic<const ingest::mqtt_gateway*> mqtt_started{nullptr};
  std::atomic<const api::http_server*> api_started{nullptr};
  std::atomic<const api::http_server*> ops_started{nullptr};

  router& front() { return member ? static_cast<router&>(*member) : *twins; }

  std::vector<api::readiness_check> readiness(const options& o, size_t types) const;
};

std::vector<api::readiness_check> node_process::state::readiness(const options& o,
                                                                  size_t types) const {
  std::vector<api::readiness_check> checks;
  bool started = ready.load();
  checks.push_back({"node", started, started ? "started" : "starting or stopping"});
  auto failure = store->write_failure();
  checks.push_back({"store", failure.empty(),
                    failure.empty() ? "open at " + o.data_dir : "takes no writes: " + failure});
  auto missing = models ? models->missing() : std::vector<std::string>{};
  std::string without;
  for (const auto& name : missing)
    without += (without.empty() ? "'" : ", '") + name + "'";
  checks.push_back({"models", missing.empty(),
                    missing.empty() ? std::to_string(types) + " twin types"
                                    : "twins have types no model defines (" + without
                                        + "): load their models (PUT /v1/types/{type}) or "
                                          "delete the twins"});
  if (member) {
    auto [ok, detail] = member->ready();
    checks.push_back({"cluster", ok, detail});
  }
  std::string fds;
  for (const auto* s : {api_started.load(), ops_started.load()})
    if (s != nullptr && fds.empty())
      fds = s->saturation();
  checks.push_back({"fds", fds.empty(), fds.empty() ? "connections are taken" : fds});
  if (!o.mqtt_url.empty()) {
    const auto* g = mqtt_started.load();
    bool up = g != nullptr && g->connected();
    checks.push_back({"mqtt", up, (up ? "connected to " : "not connected to ") + o.mqtt_url});
  }
  return checks;
}

caf::error service_stack::stop_all() {
  caf::error first;
  while (!stops_.empty()) {
    auto stop = std::move(stops_.back());
    stops_.pop_back();
    if (auto err = stop(); err && !first)
      first = std::move(err);
  }
  return first;
}

node_process::node_process(const options& o, const extensions& ext, bool shards_given)
  : o_(o), ext_(ext), shards_given_(shards_given), s_(std::make_unique<state>()) {
  node_id_ = o.node_id;
  if (node_id_.empty()) {
    char host[256] = {};
    node_id_ = gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' ? host : "twind";
  }
}

node_process::~node_process() {
  stop();
}

router& node_process::front() {
  return s_->front();
}

runtime::host& node_process::host() {
  return *s_->twins;
}

caf::error node_process::start() {
  raise_fd_limit(o_.http_port > 0 ? o_.http_max_connections : 0);
  for (auto step : {&node_process::load_types, &node_process::open_store,
                    &node_process::start_twins, &node_process::open_shared_state,
                    &node_process::start_metrics, &node_process::start_api,
                    &node_process::start_mqtt, &node_process::start_program})
    if (auto err = (this->*step)()) {
      stop();
      return err;
    }
  s_->ready = true;
  return {};
}

caf::error node_process::stop() {
  s_->ready = false;
  return services_.stop_all();
}

caf::error node_process::load_types() {
  if (ext_.types)
    if (auto err = ext_.types(types_))
      return err;
  size_t own = types_.size();
  if (!o_.models.empty()) {
    auto n = load_models(o_.models, types_);
    if (!n)
      return n.error();
  }
  if (auto err = types_.check_links())
    return err;
  spdlog::info("{} {} starting: data {}, {} twin types ({})", ext_.name, version, o_.data_dir,
               types_.size(), fmt::join(types_.names(), ", "));
  if (types_.size() == 0)
    spdlog::warn("no twin types: give --models DIR (model files), or build a program with C++ "
                 "types over the node library");
  else if (own > 0)
    spdlog::info("{} of the types are the program's own", own);
  return {};
}

caf::error node_process::open_store() {
  rocksdb_options so;
  so.path = o_.data_dir;
  so.sync = o_.sync;
  so.block_cache_bytes = o_.cache_mb << 20;
  so.min_free_bytes = uint64_t{o_.min_free_mb} << 20;
  so.max_disk_bytes = uint64_t{o_.max_disk_mb} << 20;
  so.history_retention = std::chrono::hours{o_.history_hours};
  so.shard_count = shards_given_ ? o_.shards : 0;
  auto store = open_rocksdb_store(so);
  if (!store)
    return store.error();
  s_->store = std::move(*store);
  configure_scheduler(s_->cfg, o_.threads);
  if (!o_.cluster_etcd.empty())
    cluster::configure(s_->cfg, peer_tls_of(o_));
  s_->sys = std::make_unique<caf::actor_system>(s_->cfg);
  // Last: the twins are stopped first, the actor system then, the store last.
  services_.push([this] {
    s_->sys.reset();
    s_->store.reset();
    return caf::error{};
  });
  return {};
}

caf::error node_process::start_twins() {
  bool clustered = !o_.cluster_etcd.empty();
  host_options hopts;
  hopts.idle_timeout = std::chrono::seconds{o_.idle_timeout_s};
  hopts.max_active = o_.max_active;
  hopts.histograms = o_.metrics_port > 0;
  hopts.max_clock_skew = std::chrono::seconds{o_.max_clock_skew_s};
  hopts.serve_all_shards = !clustered;  // a member serves what the shard table gives it
  // A member's host writes through a store that records the changes of shards being
  // copied to another member.
  if (clustered)
    s_->tracked = std::make_unique<cluster::tracking_store>(*s_->store);
  s_->twins = std::make_unique<runtime::host>(
    *s_->sys, s_->tracked ? *s_->tracked : *s_->store, types_, hopts);
  s_->twins->set_feed(&s_->feed);
  // A node alone keeps its last events for streams that resume; a member's streams gather
  // every member's events, for their filters only, so it could not keep them all.
  if (!clustered)
    s_->feed.retain(o_.event_retention, size_t{64} << 20);
  // A member routes every request to the owner of its twin's shard; a node alone is it.
  if (clustered) {
    auto opts = member_options(o_, node_id_);
    if (!opts)
      return opts.error();
    auto& db = *s_->store;
    s_->member = std::make_unique<cluster::node>(*s_->sys, *s_->twins, *s_->tracked,
                                                 std::move(*opts));
    s_->member->set_local_feed(&s_->feed);
    s_->member->set_local_query(
      [&db, this](const twin_query& q) { return run_query(db, types_, q); });
    s_->member->set_local_history(
      [&db, this](const history_query& q) { return read_history(db, types_, q); });
  }
  if (auto err = s_->twins->start())
    return err;
  services_.push([this] {
    auto err = s_->twins->stop();
    s_->twins->set_gateway(nullptr);
    return err;
  });
  if (s_->member) {
    if (auto err = s_->member->start()) {
      s_->member.reset();  // before the twins stop: it holds their commits
      return prefixed("cannot join cluster '" + o_.cluster_name + "'", err);
    }
    services_.push([this] {
      s_->member->stop();
      return caf::error{};
    });
    spdlog::info("member {} of cluster '{}' (etcd {}), members connect on port {}", node_id_,
                 o_.cluster_name, o_.cluster_etcd, s_->member->port());
  }
  return {};
}

caf::error node_process::open_shared_state() {
  auto& member = s_->member;
  auto shared = [&](const std::string& prefix) {
    return member ? member->shared_kv_store(prefix)
                  : make_local_kv_store(*s_->store, s_->twins->local_commit(), prefix);
  };
  // The types' remaining-useful-life models: in the node's store, or shared by the members.
  s_->rul_models = std::make_unique<rul_catalog>(
    shared("rul/"), types_, [](const std::string& why) { spdlog::warn("{}", why); });
  auto skipped = s_->rul_models->load();
  if (!skipped)
    return prefixed("cannot read the RUL models", skipped.error());
  for (const auto& why : *skipped)
    spdlog::warn("the stored RUL model of type {} is not installed", why);
  // The types added and upgraded while nodes run: in the node's store, or shared.
  s_->models = std::make_unique<model_catalog>(
    shared("models/"), types_, *s_->store, [](const std::string& why) { spdlog::warn("{}", why); },
    [this](const twin_type& t) {
      spdlog::info("twin type {} ({}) installed", t.name(), t.dtmi());
      if (auto err = s_->rul_models->reinstall(t.name()))
        spdlog::warn("the RUL model of type {} is not installed: {}", t.name(),
                     error_message(err));
    });
  auto unloaded = s_->models->load();
  if (!unloaded)
    return prefixed("cannot read the stored models", unloaded.error());
  for (const auto& why : *unloaded)
    spdlog::warn("a stored model is not installed: {}", why);
  for (const auto& name : s_->models->missing())
    spdlog::warn("twins have type '{}', which no model defines: they can be read and deleted "
                 "only; load its model (PUT /v1/types/{}) or delete them", name, name);
  // The API's tokens: in the node's store, or shared by the members.
  auto tokens = open_tokens(o_, shared("tokens/"));
  if (!tokens)
    return tokens.error();
  s_->tokens = std::move(*tokens);
  auto audit = open_audit(o_);
  if (!audit)
    return audit.error();
  s_->audit = std::move(*audit);
  s_->runtime_probe = std::make_unique<probe>(*s_->twins, *s_->store);
  s_->node_probe = std::make_unique<lone_node_probe>(s_->ready);
  s_->probes.add(s_->runtime_probe.get());
  s_->probes.add(s_->models.get());
  s_->probes.add(member ? &member->probe() : s_->node_probe.get());
  return {};
}

caf::error node_process::start_metrics() {
  if (o_.metrics_port <= 0)
    return {};
  auto oo = ops_options(o_, node_id_);
  if (!oo)
    return oo.error();
  api::backend ob;
  ob.ready = [this] { return s_->readiness(o_, types_.size()); };
  ob.metrics = [this] { return metrics::to_text(s_->probes.collect()); };
  s_->ops = std::make_unique<api::http_server>(std::move(ob), *oo);
  if (auto err = s_->ops->start())
    return prefixed("metrics port (--metrics-port)", err);
  s_->ops_started = s_->ops.get();
  services_.push([this] {
    s_->ops_started = nullptr;
    s_->ops->stop();
    return caf::error{};
  });
  spdlog::info("metrics on {}://{}:{}/metrics (also /healthz, /readyz)",
               o_.metrics_tls ? "https" : "http", oo->bind, s_->ops->port());
  return {};
}

caf::error node_process::start_api() {
  if (o_.http_port <= 0)
    return {};
  auto& member = s_->member;
  auto& db = *s_->store;
  api::backend be;
  be.rt = &s_->front();
  be.ready = [this] { return s_->readiness(o_, types_.size()); };
  be.query = [&db, this](const twin_query& q) { return run_query(db, types_, q); };
  be.history = [&db, this](const history_query& q) { return read_history(db, types_, q); };
  be.feed = &s_->feed;
  if (member) {  // over every member's shards; history from the twin's owner; every change
    be.cluster = [&member] { return member->status(); };
    be.drain = [&member](const std::string& node) { return member->drain(node); };
    be.query = [&member](const twin_query& q) { return member->query(q); };
    be.history = [&member](const history_query& q) { return member->history(q); };
    be.feed = &member->events();
    be.watch = [&member] { member->watch(); };
  }
  be.types = &types_;
  be.rul = s_->rul_models.get();
  be.models = s_->models.get();
  be.tokens = s_->tokens.get();
  be.audit = s_->audit.get();
  s_->http = std::make_unique<api::http_server>(std::move(be), api_options(o_, node_id_));
  if (auto err = s_->http->start())
    return prefixed("HTTP API (--http-port)", err);
  s_->api_started = s_->http.get();
  // Requests under way are answered before the twins stop.
  services_.push([this] {
    s_->api_started = nullptr;
    s_->http->stop();
    return caf::error{};
  });
  s_->http_probe = std::make_unique<api::probe>(*s_->http);
  s_->probes.add(s_->http_probe.get());
  spdlog::info("HTTP API on {}://{}:{}/v1/twins", o_.tls_cert.empty() ? "http" : "https",
               o_.bind, s_->http->port());
  return {};
}

caf::error node_process::start_mqtt() {
  if (o_.mqtt_url.empty())
    return {};
  ingest::mqtt_options mo;
  auto& c = mo.client;
  c.url = o_.mqtt_url;
  c.client_id = o_.mqtt_client_id;
  if (c.client_id.empty()) {
    auto id = node_session_id(o_.data_dir, node_id_);
    if (!id)
      return id.error();
    c.client_id = std::move(*id);
  }
  c.version = static_cast<uint8_t>(o_.mqtt_version);
  c.username = o_.mqtt_username;
  c.password = o_.mqtt_password;
  c.tls_ca_file = o_.mqtt_ca_file;
  c.tls_cert_file = o_.mqtt_cert_file;
  c.tls_key_file = o_.mqtt_key_file;
  mo.shared_group = o_.mqtt_shared_group;
  mo.log = [](bool warning, const std::string& text) {
    if (warning)
      spdlog::warn("{}", text);
    else
      spdlog::info("{}", text);
  };
  s_->mqtt = std::make_unique<ingest::mqtt_gateway>(s_->front(), mo);
  s_->mqtt_probe = std::make_unique<ingest::probe>(*s_->mqtt);
  s_->probes.add(s_->mqtt_probe.get());
  if (auto err = s_->mqtt->start())
    return err;
  s_->mqtt_started = s_->mqtt.get();
  s_->twins->set_gateway(s_->mqtt.get());
  services_.push([this] {
    s_->mqtt->stop();
    return caf::error{};
  });
  return {};
}

caf::error node_process::start_program() {
  if (!ext_.start)
    return {};
  services ctx{o_, node_id_, s_->front(), *s_->twins, types_, !o_.mqtt_url.empty()};
  auto stop = ext_.start(ctx);
  if (!stop)
    return stop.error();
  if (*stop)
    services_.push([stop = std::move(*stop)] {
      stop();
      return caf::error{};
    });
  return {};
}

} // namespace twin::node
