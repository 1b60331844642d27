#pragma once

// The node's HTTP servers: their options, and who may call them (tokens, the admin token
// made at the first start, the metrics token).

#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "twin/node/options.hpp"
#include "twin/api/audit.hpp"
#include "twin/api/http_server.hpp"
#include "twin/api/tokens.hpp"
#include "twin/runtime/kv_store.hpp"

namespace twin::node {

/// Why the node must not start with `o` ("" if it may): --no-auth unless the API listens
/// on a loopback address only; --metrics-tls without the API's certificate; peer TLS
/// without all of its files, or without a cluster.
std::string check_access_options(const options& o);

/// The node's tokens from `store`, with the admin token made or read from its file (the
/// log says which, and where). nullptr with --no-auth.
caf::expected<std::unique_ptr<api::token_registry>>
open_tokens(const options& o, std::unique_ptr<runtime::kv_store> store);

/// The node's audit log, in `<data-dir>/audit`.
caf::expected<std::unique_ptr<api::audit_log>> open_audit(const options& o);

/// The options of the HTTP API.
api::http_options api_options(const options& o, const std::string& node_id);

/// The options of the metrics port (/metrics, /healthz, /readyz), with the metrics token
/// read from its file.
caf::expected<api::http_options> ops_options(const options& o, const std::string& node_id);

} // namespace twin::node
