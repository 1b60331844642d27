#pragma once

#include <string>

namespace twin::cluster {

/// TLS between members, on the port between nodes and on the replication link: each
/// member shows its certificate (`cert_file`, a PEM chain, and `key_file`) and accepts
/// only a peer whose certificate `ca_file` signs: the cluster's own CA makes its members.
/// All empty: plain TCP.
struct peer_tls {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

} // namespace twin::cluster
