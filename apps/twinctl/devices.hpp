#pragma once

// `twinctl device credentials`: the broker accounts of devices, each allowed its own twin's
// topics only, as entries of Mosquitto's password file and ACL file.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "client.hpp"

namespace twinctl {

/// The broker user name of a device that reports for twin `id`: the id with its ':' as '/'
/// (Mosquitto's password file takes no ':' in a name; '/' is in no twin id, so no two ids
/// share a name).
std::string device_user(const std::string& id);

/// A Mosquitto 2 password file line for `user` and `password`: PBKDF2-SHA512, 101 rounds, a
/// random 12-byte salt (`$7$101$<salt>$<hash>`, base64), as `mosquitto_passwd` writes it.
std::string mosquitto_password_line(const std::string& user, const std::string& password);

/// The ACL entries of the device of twin `id`: it publishes `twins/{id}/telemetry` and
/// reads `twins/{id}/desired` and `twins/{id}/commands/#`, nothing else.
std::string mosquitto_acl_entry(const std::string& id);

/// `twinctl device credentials ID... [--type T] --password-file F --acl-file F`: for each
/// twin (those named, and with --type every twin of that type the node has), a random
/// password; appends the password lines and ACL entries to the files (made with mode 0600),
/// and prints `user password` lines for the devices on stdout.
class device_commands {
public:
  void add_to(CLI::App& app);
  bool parsed() const { return cmd_->parsed(); }
  /// Returns the exit code; `c` is asked only with --type.
  int run(client& c) const;

private:
  CLI::App* cmd_ = nullptr;
  std::vector<std::string> ids_;
  std::string type_, password_file_, acl_file_;
};

} // namespace twinctl
