#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/make_message.hpp>

namespace twin::cluster {

/// Errors of the cluster module. Registered with CAF under the category "cluster"; each
/// carries a message for users as its context (`runtime::error_message` reads it).
enum class cluster_errc : uint8_t {
  none = 0,
  etcd_unavailable,  ///< no etcd endpoint answered in time
  etcd_failure,      ///< etcd answered with an error, or with something that is no answer
  lease_lost,        ///< this node's lease expired: it serves nothing until it joins again
  config_mismatch,   ///< this node's configuration disagrees with the cluster's
  not_member,        ///< no member has that id
};

/// Returns the enum name, e.g. "lease_lost".
std::string to_string(cluster_errc x);

caf::error make_error(cluster_errc code, std::string message);

/// The code of `err` if it belongs to this module, `cluster_errc::none` otherwise.
cluster_errc error_code(const caf::error& err);

} // namespace twin::cluster

CAF_ERROR_CODE_ENUM(twin::cluster::cluster_errc, "cluster")
