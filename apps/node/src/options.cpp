#include "twin/node/options.hpp"

#include <filesystem>
#include <sstream>

#include <toml++/toml.h>

namespace twin::node {

void add_options(CLI::App& app, options& o) {
  // An option given twice takes its last value, as in most daemons.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--config", o.config, "TOML file with any of these options (the command line wins)");
  app.add_option("--data-dir", o.data_dir, "Directory of the twin database")->capture_default_str();
  app.add_option("--node-id", o.node_id, "This node's name (default: the host's name)");
  app.add_option("--bind", o.bind, "Address the node's ports listen on")->capture_default_str();
  app.add_option("--metrics-bind", o.metrics_bind,
                 "Address the metrics port listens on, apart from the API's (default: --bind)");
  app.add_option("--metrics-port", o.metrics_port, "Port of /metrics (0: off)")
    ->capture_default_str()
    ->check(CLI::Range(0, 65535));
  app.add_option("--http-port", o.http_port, "Port of the HTTP API (0: off)")
    ->capture_default_str()
    ->check(CLI::Range(0, 65535));
  app.add_option("--http-max-body", o.http_max_body, "Largest HTTP request body in bytes")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 30));
  app.add_option("--http-max-connections", o.http_max_connections,
                 "Open HTTP connections at most (more are answered 503)")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--http-event-buffer-kb", o.http_event_buffer_kb,
                 "KiB of events a /v1/events stream may fall behind by before it ends")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 22));
  app.add_option("--http-max-inflight-mb", o.http_max_inflight_mb,
                 "MiB of HTTP request bodies in memory at once (more are answered 503)")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--http-threads", o.http_threads, "HTTP I/O threads")
    ->capture_default_str()
    ->check(CLI::Range(1, 64));
  app.add_option("--cors-origins", o.cors_origins,
                 "Origins (scheme://host[:port], comma-separated) whose web pages may call the "
                 "API; a request from any other page is refused (default: none)")
    ->delimiter(',');
  app.add_option("--allowed-hosts", o.allowed_hosts,
                 "Host header values the API answers (name or name:port, comma-separated), "
                 "against DNS rebinding (default: any)")
    ->delimiter(',');
  app.add_option("--tls-cert", o.tls_cert,
                 "PEM certificate chain of the HTTP API: it then speaks HTTPS only (with "
                 "--tls-key)");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "PEM certificates that sign the API clients' certificates: each client must "
                 "show one (mutual TLS)");
  app.add_option("--admin-token-file", o.admin_token_file,
                 "File of the admin token: made at the first start if it does not exist and "
                 "no admin token is active; known to the node if it does (default: "
                 "<data-dir>/admin.token)");
  app.add_flag("--no-auth", o.no_auth,
               "Take every request without a token, as an admin's (refused unless --bind is a "
               "loopback address)");
  app.add_option("--metrics-token-file", o.metrics_token_file,
                 "File of the token that GET /metrics on the metrics port needs (default: "
                 "none needed)");
  app.add_flag("--metrics-tls", o.metrics_tls,
               "The metrics port speaks HTTPS too, with --tls-cert and --tls-key (it asks for "
               "no client certificate)");
  app.add_option("--auth-failure-limit", o.auth_failure_limit,
                 "Failed authentications in a row from one address before it must wait (1 s, "
                 "doubling up to 60 s; 0: never)")
    ->capture_default_str()
    ->check(CLI::Range(0, 1000000));
  app.add_option("--audit-days", o.audit_days,
                 "Keep the audit log (changes and refused requests) this many days")
    ->capture_default_str()
    ->check(CLI::Range(1, 3650));
  app.add_option("--http-event-buffer", o.http_event_buffer,
                 "Events a /v1/events stream may fall behind by before it ends")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app.add_option("--event-retention", o.event_retention,
                 "Events a node alone keeps (64 MiB at most) for /v1/events streams that resume "
                 "with Last-Event-ID (every change then makes an event, which costs); 0: none (a "
                 "resuming stream is told to read the twins again)")
    ->capture_default_str()
    ->check(CLI::Range(size_t{0}, size_t{1000000}));
  app.add_option("--mqtt-url", o.mqtt_url,
                 "MQTT broker for device telemetry, e.g. tcp://127.0.0.1:1883 (empty: none)");
  app.add_option("--mqtt-client-id", o.mqtt_client_id,
                 "Client id of the node's persistent MQTT session (default: made once from "
                 "the node id and a random part, kept in the data directory)");
  app.add_option("--mqtt-version", o.mqtt_version, "MQTT protocol: 5, or 4 for 3.1.1")
    ->capture_default_str()
    ->check(CLI::IsMember({4, 5}));
  app.add_option("--mqtt-username", o.mqtt_username, "User name at the MQTT broker");
  app.add_option("--mqtt-password", o.mqtt_password,
                 "Password at the MQTT broker (better in the environment or the config file)")
    ->envname("TWIN_MQTT_PASSWORD");
  app.add_option("--mqtt-ca-file", o.mqtt_ca_file,
                 "PEM certificates that sign the broker's (ssl:// URLs; default: the system's)");
  app.add_option("--mqtt-cert-file", o.mqtt_cert_file, "PEM client certificate for the broker");
  app.add_option("--mqtt-key-file", o.mqtt_key_file, "PEM key of --mqtt-cert-file");
  app.add_option("--mqtt-shared-group", o.mqtt_shared_group,
                 "Subscribe as a member of this MQTT 5 shared subscription group");
  app.add_option("--cluster-etcd", o.cluster_etcd,
                 "etcd endpoints (http://host:port, comma separated): join the cluster they "
                 "coordinate (empty: the node is alone)");
  app.add_option("--etcd-ca-file", o.etcd_ca_file,
                 "PEM certificates that sign an https:// etcd's (default: the system's)");
  app.add_option("--etcd-cert-file", o.etcd_cert_file,
                 "PEM certificate the node shows etcd (for etcd's --client-cert-auth)");
  app.add_option("--etcd-key-file", o.etcd_key_file, "PEM key of --etcd-cert-file");
  app.add_option("--peer-cert", o.peer_cert,
                 "PEM certificate this member shows the others: with --peer-key and "
                 "--peer-ca, members speak TLS to each other");
  app.add_option("--peer-key", o.peer_key, "PEM key of --peer-cert");
  app.add_option("--peer-ca", o.peer_ca,
                 "PEM certificates that sign the members' (a member without one is refused)");
  app.add_option("--cluster-name", o.cluster_name, "The cluster's name: its keys in etcd")
    ->capture_default_str();
  app.add_option("--cluster-port", o.cluster_port, "Port of the traffic between members")
    ->capture_default_str()
    ->check(CLI::Range(0, 65535));
  app.add_option("--replication-port", o.replication_port,
                 "Port of the direct connections that carry the shards' batches to their "
                 "followers (0: any free port; the members find it in etcd)")
    ->capture_default_str()
    ->check(CLI::Range(0, 65535));
  app.add_option("--advertise", o.advertise,
                 "host:port where the other members reach this one (default: --bind and "
                 "--cluster-port)");
  app.add_option("--cluster-lease", o.cluster_lease_s,
                 "Seconds of the membership lease: a member that cannot renew it for this long "
                 "stops serving")
    ->capture_default_str()
    ->check(CLI::Range(2, 60));
  app.add_option("--replication-factor", o.replication_factor,
                 "Copies of each shard in a cluster, on as many members (kept in etcd when the "
                 "cluster is created; a member configured otherwise is refused)")
    ->capture_default_str()
    ->check(CLI::Range(1u, 5u));
  app.add_option("--min-insync", o.min_insync,
                 "Copies a write needs before it is acknowledged (0: all of "
                 "--replication-factor); with fewer available, writes wait, then answer 503")
    ->capture_default_str()
    ->check(CLI::Range(0u, 5u));
  app.add_option("--replication-timeout", o.replication_timeout_s,
                 "Seconds a write waits for its copies (or for enough copies to exist) before "
                 "it is answered 503")
    ->capture_default_str()
    ->check(CLI::Range(1, 300));
  app.add_option("--shards", o.shards,
                 "Shards of a new data directory and of a cluster it starts (an existing one "
                 "keeps its own)")
    ->capture_default_str()
    ->check(CLI::Range(1u, 65535u));
  app.add_option("--models", o.models,
                 "Directory of twin model files (*.json), or one model file");
  app.add_flag("--stdin", o.stdin_requests,
               "Apply JSON-lines requests from standard input; answer on standard output");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
    ->capture_default_str()
    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--log-format", o.log_format,
                 "text, or json: one JSON object a line (ts, level, logger, thread, msg)")
    ->capture_default_str()
    ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--threads", o.threads, "Actor scheduler threads (0: one per core)")
    ->check(CLI::Range(0, 256));
  app.add_option("--idle-timeout", o.idle_timeout_s, "Seconds before an idle twin is passivated")
    ->capture_default_str()
    ->check(CLI::Range(1, 86400 * 365));
  app.add_option("--max-active", o.max_active, "Most twins active at once")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 40));
  app.add_flag("--sync", o.sync, "fsync every write: survives power loss, not only crashes");
  app.add_option("--cache-mb", o.cache_mb, "RocksDB block cache in MiB")
    ->capture_default_str()
    ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--min-free-mb", o.min_free_mb,
                 "MiB kept free on the data directory's disk: writes that would leave less "
                 "are refused (507) until space returns")
    ->capture_default_str()
    ->check(CLI::Range(size_t{0}, size_t{1} << 30));
  app.add_option("--max-disk-mb", o.max_disk_mb,
                 "MiB the store's table files may take at most (writes are refused, 507, at "
                 "three quarters of it, leaving compactions room); 0: no limit but the disk's")
    ->capture_default_str()
    ->check(CLI::Range(size_t{0}, size_t{1} << 30));
  app.add_option("--history-hours", o.history_hours,
                 "Keep the history of properties this many hours")
    ->capture_default_str()
    ->check(CLI::Range(1, 24 * 365 * 10));
  app.add_option("--max-clock-skew", o.max_clock_skew_s,
                 "Seconds a device sample's ts may be ahead of the node's clock (more: refused)")
    ->capture_default_str()
    ->check(CLI::Range(0, 86400 * 365));
}

std::string apply_config_file(CLI::App& app, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return "config file " + path
           + (std::filesystem::exists(path, ec) ? " is not a file" : " does not exist");
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "config file " << path << ": " << e.description() << " (line "
        << e.source().begin.line << ")";
    return msg.str();
  }
  for (const auto& [key, node] : table) {
    std::string name{key.str()};
    if (name == "config")
      return "config file " + path + ": \"config\" cannot be set in a config file";
    CLI::Option* opt = nullptr;
    try {
      opt = app.get_option("--" + name);
    } catch (const CLI::OptionNotFound&) {
      return "config file " + path + ": unknown option \"" + name + "\"";
    }
    if (opt->count() > 0)
      continue;  // given on the command line
    std::vector<std::string> texts;  // one, or a list's strings (for a list option)
    if (auto s = node.as_string())
      texts.push_back(s->get());
    else if (auto i = node.as_integer())
      texts.push_back(std::to_string(i->get()));
    else if (auto b = node.as_boolean())
      texts.push_back(b->get() ? "true" : "false");
    else if (auto d = node.as_floating_point())
      texts.push_back(std::to_string(d->get()));
    else if (auto list = node.as_array(); list && opt->get_expected_max() > 1)
      for (const auto& item : *list) {
        if (!item.as_string())
          return "config file " + path + ": \"" + name + "\" must be a list of strings";
        texts.push_back(item.as_string()->get());
      }
    else
      return "config file " + path + ": \"" + name + "\" must be a string, number or boolean";
    try {
      for (const auto& text : texts)
        opt->add_result(text);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return "config file " + path + ": \"" + name + "\": " + e.what();
    }
  }
  return {};
}

} // namespace twin::node
