#include "twin/cluster/errc.hpp"

#include <caf/message.hpp>

namespace twin::cluster {

std::string to_string(cluster_errc x) {
  switch (x) {
    case cluster_errc::none: return "none";
    case cluster_errc::etcd_unavailable: return "etcd_unavailable";
    case cluster_errc::etcd_failure: return "etcd_failure";
    case cluster_errc::lease_lost: return "lease_lost";
    case cluster_errc::config_mismatch: return "config_mismatch";
    case cluster_errc::not_member: return "not_member";
  }
  return "unknown";
}

caf::error make_error(cluster_errc code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), caf::atom("cluster"),
                    caf::make_message(std::move(message))};
}

cluster_errc error_code(const caf::error& err) {
  if (!err || err.category() != caf::atom("cluster"))
    return cluster_errc::none;
  return static_cast<cluster_errc>(err.code());
}

} // namespace twin::cluster
