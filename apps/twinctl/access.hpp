#pragma once

// twinctl's credentials (the token from --token, TWIN_TOKEN, --token-file or the config
// file), its `token` commands (create, list, revoke) and `audit`.

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "client.hpp"

namespace twinctl {

/// What twinctl connects with: the node, and the token it shows.
struct credentials {
  std::string server = "http://127.0.0.1:8080";
  std::string token;       ///< --token, or TWIN_TOKEN
  std::string token_file;  ///< --token-file, or TWIN_TOKEN_FILE
  std::string ca_file;     ///< --ca-file, or TWIN_CA_FILE: signs an https node's certificate
  std::string cert_file;   ///< --cert-file, or TWIN_CERT_FILE: twinctl's own (mutual TLS)
  std::string key_file;    ///< --key-file, or TWIN_KEY_FILE: its key
  std::string config;      ///< --config; default: $XDG_CONFIG_HOME/twinctl/config.toml

  /// Declares --server, --token, --token-file, --ca-file, --cert-file, --key-file and
  /// --config on `app`.
  void add_to(CLI::App& app);

  /// After parsing: fills what the command line and the environment left empty from the
  /// config file (keys `server`, `token`, `token-file`, `ca-file`, `cert-file`, `key-file`),
  /// then reads the token of the token
  /// file. The reason if that fails, "" if not.
  std::string resolve(const CLI::App& app);
};

/// `twinctl token create NAME --role R [--namespaces a,b | --twins x,y] [--expires-in S]`,
/// `token list`, `token revoke ID` (admin tokens only).
class token_commands {
public:
  void add_to(CLI::App& app);
  bool parsed() const { return cmd_->parsed(); }
  /// Runs the command given; `create` prints the token's text alone on stdout (its secret,
  /// shown this once) and what it may do on stderr. Returns the exit code.
  int run(client& c, bool as_json) const;

private:
  CLI::App* cmd_ = nullptr;
  CLI::App* create_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* revoke_ = nullptr;
  std::string name_, role_, namespaces_, twins_, id_;
  int64_t expires_in_s_ = 0;
};

/// `twinctl audit [--from T] [--to T] [--token ID] [--twin ID] [--limit N] [--cursor C]`
/// (admin tokens only): the node's audit log as a table, oldest first.
class audit_command {
public:
  void add_to(CLI::App& app);
  bool parsed() const { return cmd_->parsed(); }
  /// Returns the exit code.
  int run(client& c, bool as_json) const;

private:
  CLI::App* cmd_ = nullptr;
  std::string from_, to_, token_, twin_, cursor_;
  size_t limit_ = 0;
};

} // namespace twinctl
