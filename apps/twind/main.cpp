// twind: one node of the twin runtime. `twind --demo` runs the factory example with
// simulated devices; `twind --help` lists every option.

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <spdlog/spdlog.h>

#include "api_setup.hpp"
#include "factory.hpp"
#include "line_requests.hpp"
#include "lone_node_probe.hpp"
#include "logging.hpp"
#include "options.hpp"
#include "twin/actors/device_simulator.hpp"
#include "twin/cluster/node.hpp"
#include "twin/cluster/tracking_store.hpp"
#include "twin/api/http_server.hpp"
#include "twin/api/probe.hpp"
#include "twin/ingest/mqtt_gateway.hpp"
#include "twin/ingest/probe.hpp"
#include "twin/runtime/await.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/metrics.hpp"
#include "twin/runtime/probe.hpp"
#include "twin/runtime/rul_catalog.hpp"
#include "twin/runtime/scheduler.hpp"
#include "twin/runtime/version.hpp"

namespace {

using namespace twin;
using namespace twin::runtime;

int fail(const std::string& msg) {
  spdlog::error("{}", msg);
  return 1;
}

/// Reads request lines from stdin until EOF or `stop`; then waits for the answers and
/// asks the node to shut down.
void read_stdin(node::line_requests& lr, const std::atomic<bool>& stop) {
  std::string line;
  std::string buf;
  uint64_t seq = 0;
  char chunk[65536];
  bool too_long = false;
  while (!stop.load()) {
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    int r = poll(&pfd, 1, 200);
    if (r <= 0)
      continue;
    auto n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n <= 0)
      break;
    for (ssize_t i = 0; i < n; ++i) {
      char c = chunk[i];
      if (c != '\n') {
        if (buf.size() <= node::line_requests::max_line)
          buf += c;
        else
          too_long = true;
        continue;
      }
      ++seq;
      if (too_long)
        buf.assign(node::line_requests::max_line + 1, ' ');
      if (!buf.empty())
        lr.handle(buf, seq);
      buf.clear();
      too_long = false;
    }
  }
  for (int i = 0; i < 3000 && lr.pending() > 0 && !stop.load(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  if (!stop.load())
    kill(getpid(), SIGTERM);
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

cluster::peer_tls peer_tls_of(const node::options& o) {
  return {o.peer_cert, o.peer_key, o.peer_ca};
}

/// What the cluster member is made with, from twind's options.
caf::expected<cluster::node_options> member_options(const node::options& o,
                                                    const std::string& name) {
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

/// Reads a twin's property, for the demo summary (waits at most 1 s).
value read_property(router& rt, const std::string& id, const std::string& name) {
  auto tid = twin_id::parse(id);
  if (!tid)
    return value{};
  auto r = await_answer<twin_record>(
    [&](auto done) { rt.route(*tid, get_request{std::move(done)}); }, std::chrono::seconds{1});
  if (!r)
    return value{};
  auto i = r->reported.find(name);
  return i == r->reported.end() ? value{} : i->second;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"twind: a node of the twin runtime (version " + std::string{version} + ")"};
  app.set_version_flag("--version", std::string{"twind "} + version);
  node::options o;
  node::add_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  node::setup_logging(o.log_format);
  if (!o.config.empty()) {
    if (auto msg = node::apply_config_file(app, o.config); !msg.empty())
      return fail(msg);
    node::setup_logging(o.log_format);
  }
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (auto why = node::check_access_options(o); !why.empty())
    return fail(why);
  raise_fd_limit(o.http_port > 0 ? o.http_max_connections : 0);

  // Signals are taken by the main thread only (sigwait below).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  type_registry types;
  if (o.demo) {
    if (auto err = factory::register_types(types, o.models))
      return fail(error_message(err));
  } else if (!o.models.empty()) {
    auto n = load_models(o.models, types);
    if (!n)
      return fail(error_message(n.error()));
  }
  spdlog::info("twind {} starting: data {}, {} twin types ({})", version, o.data_dir,
               types.size(), fmt::join(types.names(), ", "));

  std::string node_id = o.node_id;
  if (node_id.empty()) {
    char host[256] = {};
    node_id = gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' ? host : "twind";
  }

  rocksdb_options store_opts;
  store_opts.path = o.data_dir;
  store_opts.sync = o.sync;
  store_opts.block_cache_bytes = o.cache_mb << 20;
  store_opts.min_free_bytes = uint64_t{o.min_free_mb} << 20;
  store_opts.max_disk_bytes = uint64_t{o.max_disk_mb} << 20;
  store_opts.history_retention = std::chrono::hours{o.history_hours};
  store_opts.shard_count = app.get_option("--shards")->count() > 0 ? o.shards : 0;
  auto store = open_rocksdb_store(store_opts);
  if (!store)
    return fail(error_message(store.error()));

  bool clustered = !o.cluster_etcd.empty();
  caf::actor_system_config cfg;
  configure_scheduler(cfg, o.threads);
  if (clustered)
    cluster::configure(cfg, peer_tls_of(o));
  auto sys = std::make_unique<caf::actor_system>(cfg);

  host_options hopts;
  hopts.idle_timeout = std::chrono::seconds{o.idle_timeout_s};
  hopts.max_active = o.max_active;
  hopts.histograms = o.metrics_port > 0;
  hopts.max_clock_skew = std::chrono::seconds{o.max_clock_skew_s};
  hopts.serve_all_shards = !clustered;  // a member serves what the shard table gives it
  // A member's host writes through a store that records the changes of shards being
  // copied to another member.
  std::unique_ptr<cluster::tracking_store> tracked;
  if (clustered)
    tracked = std::make_unique<cluster::tracking_store>(**store);
  host node_host{*sys, tracked ? *tracked : **store, types, hopts};
  change_feed feed;
  node_host.set_feed(&feed);
  // A member routes every request to the owner of its twin's shard; a node alone is it.
  std::unique_ptr<cluster::node> member;
  if (clustered) {
    auto opts = member_options(o, node_id);
    if (!opts)
      return fail(error_message(opts.error()));
    member = std::make_unique<cluster::node>(*sys, node_host, *tracked, std::move(*opts));
    member->set_local_feed(&feed);
    member->set_local_query(
      [&db = **store, &types](const twin_query& q) { return run_query(db, types, q); });
    member->set_local_history(
      [&db = **store, &types](const history_query& q) { return read_history(db, types, q); });
  }
  router& front = member ? static_cast<router&>(*member) : node_host;

  // The demo's devices run in-process, unless they come over MQTT (twinsim).
  std::unique_ptr<actors::device_simulator> sim;
  if (o.demo && o.mqtt_url.empty()) {
    actors::device_simulator::options so;
    so.period = std::chrono::milliseconds{o.demo_period_ms};
    sim = std::make_unique<actors::device_simulator>(front, so);
    node_host.set_gateway(sim.get());
  }
  if (auto err = node_host.start())
    return fail(error_message(err));
  if (member) {
    if (auto err = member->start()) {
      member.reset();
      node_host.stop();
      return fail("cannot join cluster '" + o.cluster_name + "': " + error_message(err));
    }
    spdlog::info("member {} of cluster '{}' (etcd {}), members connect on port {}", node_id,
                 o.cluster_name, o.cluster_etcd, member->port());
  }
  // The types' remaining-useful-life models: in the node's store, or shared by the members.
  rul_catalog rul_models{member ? member->shared_kv_store("rul/")
                                : make_local_kv_store(**store, node_host.local_commit(), "rul/"),
                         types, [](const std::string& why) { spdlog::warn("{}", why); }};
  auto skipped = rul_models.load();
  if (!skipped) {
    if (member)
      member->stop();
    node_host.stop();
    return fail("cannot read the RUL models: " + error_message(skipped.error()));
  }
  for (const auto& why : *skipped)
    spdlog::warn("the stored RUL model of type {} is not installed", why);
  // The API's tokens: in the node's store, or shared by the members.
  auto tokens = node::open_tokens(
    o, member ? member->shared_kv_store("tokens/")
              : make_local_kv_store(**store, node_host.local_commit(), "tokens/"));
  auto audit = node::open_audit(o);
  if (!tokens || !audit) {
    if (member)
      member->stop();
    node_host.stop();
    return fail(error_message(tokens ? audit.error() : tokens.error()));
  }

  std::atomic<bool> ready{false};
  std::unique_ptr<api::http_server> ops;  // the metrics port: /metrics, /healthz, /readyz
  std::unique_ptr<api::http_server> http;
  std::unique_ptr<ingest::mqtt_gateway> mqtt;
  std::atomic<const ingest::mqtt_gateway*> mqtt_started{nullptr};  // read by /readyz
  std::atomic<const api::http_server*> api_started{nullptr};
  std::atomic<const api::http_server*> ops_started{nullptr};
  // Stops what takes work in, then the twins: also when starting fails half way. HTTP
  // requests that come while the twins stop are answered 503; answers under way are
  // written before the server closes. The metrics port goes last.
  auto stop_node = [&] {
    ready = false;
    if (sim)
      sim->stop();
    if (mqtt)
      mqtt->stop();
    if (member)
      member->stop();
    auto err = node_host.stop();
    if (http)
      http->stop();
    node_host.set_gateway(nullptr);
    if (ops)
      ops->stop();  // no scrape reads the probes below any more
    return err;
  };
  // Each module's probe, read when /metrics is asked for.
  metrics::registry probes;
  probe runtime_probe{node_host, **store};
  std::unique_ptr<api::probe> http_probe;
  std::unique_ptr<ingest::probe> mqtt_probe;
  node::lone_node_probe node_probe{ready};
  probes.add(&runtime_probe);
  probes.add(member ? &member->probe() : &node_probe);
  auto readiness = [&] {
    std::vector<api::readiness_check> checks;
    bool started = ready.load();
    checks.push_back({"node", started, started ? "started" : "starting or stopping"});
    auto failure = (*store)->write_failure();
    checks.push_back({"store", failure.empty(),
                      failure.empty() ? "open at " + o.data_dir : "takes no writes: " + failure});
    checks.push_back({"models", true, std::to_string(types.size()) + " twin types"});
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
  };
  if (o.metrics_port > 0) {
    auto oo = node::ops_options(o, node_id);
    if (!oo) {
      stop_node();
      return fail(error_message(oo.error()));
    }
    api::backend ob;
    ob.ready = readiness;
    ob.metrics = [&probes] { return metrics::to_text(probes.collect()); };
    ops = std::make_unique<api::http_server>(std::move(ob), *oo);
    if (auto err = ops->start()) {
      ops.reset();
      stop_node();
      return fail(error_message(err));
    }
    ops_started = ops.get();
    spdlog::info("metrics on {}://{}:{}/metrics (also /healthz, /readyz)",
                 o.metrics_tls ? "https" : "http", oo->bind, ops->port());
  }

  if (o.http_port > 0) {
    api::backend be;
    be.rt = &front;
    be.ready = readiness;
    if (member) {
      be.cluster = [&member] { return member->status(); };
      be.drain = [&member](const std::string& node) { return member->drain(node); };
    }
    be.query = [&db = **store, &types](const twin_query& q) { return run_query(db, types, q); };
    be.history = [&db = **store, &types](const history_query& q) {
      return read_history(db, types, q);
    };
    if (member) {  // over every member's shards; history from the twin's owner
      be.query = [&member](const twin_query& q) { return member->query(q); };
      be.history = [&member](const history_query& q) { return member->history(q); };
    }
    be.types = &types;
    be.rul = &rul_models;
    be.feed = &feed;
    if (member) {  // the whole cluster's changes
      be.feed = &member->events();
      be.watch = [&member] { member->watch(); };
    }
    be.tokens = tokens->get();
    be.audit = audit->get();
    http = std::make_unique<api::http_server>(std::move(be), node::api_options(o, node_id));
    if (auto err = http->start()) {
      http.reset();
      stop_node();
      return fail(error_message(err));
    }
    api_started = http.get();
    http_probe = std::make_unique<api::probe>(*http);
    probes.add(http_probe.get());
    spdlog::info("HTTP API on {}://{}:{}/v1/", o.tls_cert.empty() ? "http" : "https", o.bind,
                 http->port());
  }

  if (!o.mqtt_url.empty()) {
    ingest::mqtt_options mo;
    auto& c = mo.client;
    c.url = o.mqtt_url;
    c.client_id = o.mqtt_client_id;
    if (c.client_id.empty()) {
      auto id = node_session_id(o.data_dir, node_id);
      if (!id) {
        stop_node();
        return fail(error_message(id.error()));
      }
      c.client_id = std::move(*id);
    }
    c.version = static_cast<uint8_t>(o.mqtt_version);
    c.username = o.mqtt_username;
    c.password = o.mqtt_password;
    c.tls_ca_file = o.mqtt_ca_file;
    c.tls_cert_file = o.mqtt_cert_file;
    c.tls_key_file = o.mqtt_key_file;
    mo.shared_group = o.mqtt_shared_group;
    mo.log = [](bool warning, const std::string& text) {
      if (warning)
        spdlog::warn("{}", text);
      else
        spdlog::info("{}", text);
    };
    mqtt = std::make_unique<ingest::mqtt_gateway>(front, mo);
    mqtt_probe = std::make_unique<ingest::probe>(*mqtt);
    probes.add(mqtt_probe.get());
    if (auto err = mqtt->start()) {
      stop_node();
      return fail(error_message(err));
    }
    mqtt_started = mqtt.get();
    node_host.set_gateway(mqtt.get());
  }

  if (o.demo) {
    factory::layout l;
    l.lines = o.demo_lines;
    l.robots_per_line = o.demo_robots;
    l.motors_per_robot = o.demo_motors;
    auto t0 = std::chrono::steady_clock::now();
    auto created = factory::build_plant(front, l, types, sim.get());
    if (!created) {
      stop_node();
      return fail("cannot build the demo plant: " + error_message(created.error()));
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
    if (sim) {
      spdlog::info("demo plant: {} twins ({} created in {} ms), {} simulated motors; "
                   "watch factory:plant, e.g. max_temperature and health",
                   l.twins(), *created, ms, sim->size());
      sim->start();
    } else {
      spdlog::info("demo plant: {} twins ({} created in {} ms); its devices come over MQTT: "
                   "twinsim --mqtt-url {} --lines {} --robots {} --motors {}",
                   l.twins(), *created, ms, o.mqtt_url, l.lines, l.robots_per_line,
                   l.motors_per_robot);
    }
  }

  std::atomic<bool> stop_stdin{false};
  std::unique_ptr<node::line_requests> lines;
  std::thread stdin_thread;
  if (o.stdin_requests) {
    lines = std::make_unique<node::line_requests>(front, stdout);
    stdin_thread = std::thread{[&] { read_stdin(*lines, stop_stdin); }};
  }
  ready = true;
  spdlog::info("ready");

  // Wait for SIGINT/SIGTERM; print a summary now and then in the demo.
  auto last = std::chrono::steady_clock::now();
  uint64_t last_updates = node_host.stats().updates.load();
  for (;;) {
    timespec timeout{o.demo ? o.summary_s : 3600, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("{} received: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (!o.demo)
      continue;
    auto now = std::chrono::steady_clock::now();
    auto updates = node_host.stats().updates.load();
    double secs = std::chrono::duration<double>(now - last).count();
    auto c = node_host.counts();
    auto plant_temp = read_property(front, "factory:plant", "max_temperature");
    auto plant_health = read_property(front, "factory:plant", "health");
    spdlog::info("twins stored {} active {} | updates/s {:.0f} | alerts warning {} critical {} "
                 "| plant max_temperature {} health {}",
                 c.twins, node_host.active_count(), (updates - last_updates) / secs,
                 c.alerts_warning, c.alerts_critical, to_string(plant_temp),
                 plant_health.is_string() ? plant_health.as_string() : to_string(plant_health));
    last = now;
    last_updates = updates;
  }

  // The inputs, then the twins, then the store.
  stop_stdin = true;
  if (stdin_thread.joinable())
    stdin_thread.join();
  auto err = stop_node();
  sys.reset();
  store->reset();
  if (err)
    return fail("shutdown: " + error_message(err));
  spdlog::info("stopped cleanly");
  return 0;
}
