#include "api_setup.hpp"

#include <fstream>

#include <spdlog/spdlog.h>

#include "twin/runtime/errc.hpp"

namespace twin::node {

using runtime::make_error;
using runtime::runtime_errc;

namespace {

bool is_loopback(const std::string& address) {
  return address.rfind("127.", 0) == 0 || address == "::1" || address == "localhost";
}

} // namespace

std::string check_access_options(const options& o) {
  if (o.no_auth && o.http_port > 0 && !is_loopback(o.bind))
    return "--no-auth is refused: the API would listen on " + o.bind
           + ", beyond this host (use --bind 127.0.0.1, or tokens)";
  bool peer_tls = !o.peer_cert.empty() || !o.peer_key.empty() || !o.peer_ca.empty();
  if (peer_tls && (o.peer_cert.empty() || o.peer_key.empty() || o.peer_ca.empty()))
    return "--peer-cert, --peer-key and --peer-ca go together";
  if (o.metrics_tls && o.tls_cert.empty())
    return "--metrics-tls takes the API's certificate: give --tls-cert and --tls-key";
  if (peer_tls && o.cluster_etcd.empty())
    return "--peer-cert is for the members of a cluster (--cluster-etcd)";
  return {};
}

caf::expected<std::unique_ptr<api::token_registry>>
open_tokens(const options& o, std::unique_ptr<runtime::kv_store> store) {
  if (o.no_auth) {
    spdlog::warn("authentication is off (--no-auth): any caller on this host may do anything");
    return std::unique_ptr<api::token_registry>{};
  }
  auto tokens = std::make_unique<api::token_registry>(
    std::move(store), [](const std::string& why) { spdlog::warn("{}", why); });
  if (auto err = tokens->load())
    return make_error(runtime_errc::unavailable,
                      "cannot read the API tokens: " + runtime::error_message(err));
  auto path = o.admin_token_file.empty() ? o.data_dir + "/admin.token" : o.admin_token_file;
  auto said = tokens->bootstrap(path);
  if (!said)
    return said.error();
  spdlog::info("{}", *said);
  return tokens;
}

caf::expected<std::unique_ptr<api::audit_log>> open_audit(const options& o) {
  api::audit_options ao;
  ao.path = o.data_dir + "/audit";
  ao.retention = std::chrono::hours{24 * o.audit_days};
  ao.min_free_bytes = uint64_t{o.min_free_mb} << 20;
  return api::audit_log::open(ao);
}

api::http_options api_options(const options& o, const std::string& node_id) {
  api::http_options ho;
  ho.bind = o.bind;
  ho.port = static_cast<uint16_t>(o.http_port);
  ho.max_body = o.http_max_body;
  ho.max_connections = o.http_max_connections;
  ho.event_buffer = o.http_event_buffer;
  ho.event_buffer_bytes = o.http_event_buffer_kb << 10;
  ho.max_inflight_body_bytes = o.http_max_inflight_mb << 20;
  ho.threads = o.http_threads;
  ho.cors_origins = o.cors_origins;
  ho.allowed_hosts = o.allowed_hosts;
  ho.auth_failure_limit = o.auth_failure_limit;
  ho.tls_cert_file = o.tls_cert;
  ho.tls_key_file = o.tls_key;
  ho.tls_client_ca_file = o.tls_client_ca;
  ho.node_id = node_id;
  return ho;
}

caf::expected<api::http_options> ops_options(const options& o, const std::string& node_id) {
  api::http_options oo;
  oo.bind = o.metrics_bind.empty() ? o.bind : o.metrics_bind;
  oo.port = static_cast<uint16_t>(o.metrics_port);
  oo.max_body = 4096;
  oo.max_inflight_body_bytes = 1u << 20;
  // Probes and scrapes make short requests: idle sockets go quickly, and at the bound
  // the oldest waiting one makes room, so that /healthz always answers.
  oo.max_connections = 256;
  oo.idle_timeout = std::chrono::seconds{5};
  oo.node_id = node_id;
  if (o.metrics_tls) {
    oo.tls_cert_file = o.tls_cert;
    oo.tls_key_file = o.tls_key;
  }
  if (!o.metrics_token_file.empty()) {
    std::ifstream in{o.metrics_token_file};
    in >> oo.metrics_token;
    if (!in && oo.metrics_token.empty())
      return make_error(runtime_errc::invalid_argument,
                        "cannot read a token from --metrics-token-file "
                          + o.metrics_token_file);
    if (oo.metrics_token.size() < 16)
      return make_error(runtime_errc::invalid_argument,
                        "the metrics token of " + o.metrics_token_file
                          + " is too short: 16 characters at least");
  }
  return oo;
}

} // namespace twin::node
