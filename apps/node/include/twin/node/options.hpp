#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace twin::node {

/// Everything a node can be told, with its default. Every field is a command-line
/// flag and a key of the TOML config file (same name); the command line wins.
struct options {
  std::string config;                  ///< --config FILE
  std::string data_dir = "data";       ///< --data-dir
  std::string node_id;                 ///< --node-id; empty: the host's name
  std::string bind = "127.0.0.1";      ///< --bind: address of the listening ports
  std::string metrics_bind;  ///< --metrics-bind: address of the metrics port; empty: --bind
  int metrics_port = 9464;             ///< --metrics-port; 0 disables /metrics
  int http_port = 8080;                ///< --http-port of the HTTP API; 0 disables it
  size_t http_max_body = 1u << 20;     ///< --http-max-body: larger request bodies get 413
  size_t http_max_connections = 10000;  ///< --http-max-connections: more get 503
  size_t http_event_buffer = 4096;      ///< --http-event-buffer: events a stream may lag
  size_t http_event_buffer_kb = 1024;   ///< --http-event-buffer-kb: bytes a stream may lag
  size_t event_retention = 0;           ///< --event-retention: events kept for resuming streams
  size_t http_max_inflight_mb = 128;    ///< --http-max-inflight-mb: request bodies in memory
  int http_threads = 1;                 ///< --http-threads: HTTP I/O threads
  std::vector<std::string> cors_origins;   ///< --cors-origins: pages that may call the API
  std::vector<std::string> allowed_hosts;  ///< --allowed-hosts: Host values answered; empty: any
  std::string tls_cert;                ///< --tls-cert: the API's certificate chain (PEM); empty: plain
  std::string tls_key;                 ///< --tls-key: its key (PEM)
  std::string tls_client_ca;           ///< --tls-client-ca: CA of client certificates (mutual TLS)
  /// --admin-token-file: the admin token's text; empty: `<data-dir>/admin.token`, made at
  /// the first start
  std::string admin_token_file;
  bool no_auth = false;                ///< --no-auth: every caller may do everything (loopback)
  std::string metrics_token_file;      ///< --metrics-token-file: the token /metrics needs
  bool metrics_tls = false;            ///< --metrics-tls: the metrics port with the API's certificate
  int auth_failure_limit = 5;          ///< --auth-failure-limit: failures before a wait; 0: none
  int audit_days = 30;                 ///< --audit-days: audit log retention
  std::string mqtt_url;                ///< --mqtt-url of the broker; empty: no MQTT
  /// --mqtt-client-id of the persistent session; empty: made once from the node id and a
  /// random part, and kept in the data directory (file `mqtt-client-id`)
  std::string mqtt_client_id;
  int mqtt_version = 5;                ///< --mqtt-version: 5 or 4 (3.1.1)
  std::string mqtt_username;           ///< --mqtt-username; empty: none
  std::string mqtt_password;           ///< --mqtt-password (or TWIN_MQTT_PASSWORD); empty: none
  std::string mqtt_ca_file;            ///< --mqtt-ca-file for ssl:// URLs; empty: the system's
  std::string mqtt_cert_file;          ///< --mqtt-cert-file: client certificate; empty: none
  std::string mqtt_key_file;           ///< --mqtt-key-file of that certificate
  std::string mqtt_shared_group;       ///< --mqtt-shared-group: MQTT 5 shared subscription
  // cluster
  std::string cluster_etcd;            ///< --cluster-etcd URL[,URL]: join that cluster; empty: alone
  std::string etcd_ca_file;            ///< --etcd-ca-file: signs an https etcd's certificate
  std::string etcd_cert_file;          ///< --etcd-cert-file: the node's certificate for etcd
  std::string etcd_key_file;           ///< --etcd-key-file: its key
  std::string peer_cert;               ///< --peer-cert: the member's certificate for the others
  std::string peer_key;                ///< --peer-key: its key
  std::string peer_ca;                 ///< --peer-ca: signs the members' certificates
  std::string cluster_name = "twin";   ///< --cluster-name: the cluster's keys in etcd
  int cluster_port = 7700;             ///< --cluster-port: traffic between members
  int replication_port = 0;            ///< --replication-port: shards' batches (0: any)
  std::string advertise;               ///< --advertise HOST:PORT the members reach this one at
  int cluster_lease_s = 3;             ///< --cluster-lease: membership lease TTL in s
  uint32_t replication_factor = 2;     ///< --replication-factor: copies of each shard
  uint32_t min_insync = 0;             ///< --min-insync: copies a write needs (0: all)
  int replication_timeout_s = 5;       ///< --replication-timeout: how long writes wait for copies
  uint32_t shards = 1024;              ///< --shards of a new data directory (and of its cluster)
  std::string models;                  ///< --models DIR of model files
  bool stdin_requests = false;         ///< --stdin: JSON-lines requests on stdin
  std::string log_level = "info";      ///< --log-level
  std::string log_format = "text";     ///< --log-format: text or json
  int threads = 0;                     ///< --threads of the actor scheduler; 0: one per core
  int idle_timeout_s = 300;            ///< --idle-timeout: passivate after this many s
  size_t max_active = 2'000'000;       ///< --max-active twins
  bool sync = false;                   ///< --sync: fsync every write (power-loss safe)
  size_t cache_mb = 256;               ///< --cache-mb: RocksDB block cache
  size_t min_free_mb = 256;            ///< --min-free-mb: disk space writes never use
  size_t max_disk_mb = 0;              ///< --max-disk-mb: the store's files at most; 0: none
  int history_hours = 24 * 7;          ///< --history-hours: history retention
  int max_clock_skew_s = 60;           ///< --max-clock-skew: device samples ahead of it are refused
};

/// Declares every option on `app`.
void add_options(CLI::App& app, options& o);

/// Applies the TOML file named by --config to the options not given on the command
/// line. Returns an error message (unknown key, wrong type, unreadable file) or "".
std::string apply_config_file(CLI::App& app, const std::string& path);

} // namespace twin::node
