#pragma once

// The twinctl commands over twins, types and the cluster: get, put, patch, delete,
// telemetry send, command, query, alerts, history, anomalies, events, types, model put,
// cluster, rul.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "client.hpp"

namespace twinctl {

class twin_commands {
public:
  void add_to(CLI::App& app);

  /// Whether one of the commands was given.
  bool parsed() const;

  /// Runs the command given; returns the exit code.
  int run(const server_address& addr, const std::string& token, std::chrono::seconds timeout,
          bool as_json);

private:
  /// A call of the API.
  struct call {
    http::verb method = http::verb::get;
    std::string target;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<http::field, std::string>> headers;
  };

  void add_twin_commands(CLI::App& app);
  void add_reading_commands(CLI::App& app);
  void add_cluster_commands(CLI::App& app);
  /// The call of the command given, checked before anything is sent; false (said on
  /// stderr) when an argument is wrong.
  bool request(call& out) const;
  bool twin_request(call& out) const;
  /// `model put`: the file's text, for the type the file's last Interface is (or --type).
  bool model_request(call& out) const;
  /// Prints a successful answer `r` of the command given.
  void print(const reply& r, const json& item) const;
  /// The result of the one item of a telemetry batch; false (said on stderr) if it
  /// failed, with `code` set.
  bool item_result(const reply& r, bool as_json, json& item, int& code) const;

  std::string id_, type_, parent_, properties_, desired_, if_match_, values_;
  std::string relationships_, related_, model_file_;
  bool root_ = false;
  bool detach_ = false;
  bool cascade_ = false;
  std::string command_, args_;
  std::string ts_;
  std::string kind_, where_, cursor_, from_, to_, ns_, prefix_, property_, step_;
  size_t limit_ = 0;
  size_t count_ = 0;
  bool segment_ = false;
  std::string id_filter_;
  std::string drain_node_;
  std::string rul_type_, rul_inputs_, rul_prefix_, rul_twins_type_;
  double rul_cap_s_ = 0;
  CLI::App* get_ = nullptr;
  CLI::App* put_ = nullptr;
  CLI::App* patch_ = nullptr;
  CLI::App* del_ = nullptr;
  CLI::App* telemetry_ = nullptr;
  CLI::App* send_ = nullptr;
  CLI::App* command_cmd_ = nullptr;
  CLI::App* query_ = nullptr;
  CLI::App* history_ = nullptr;
  CLI::App* anomalies_ = nullptr;
  CLI::App* events_ = nullptr;
  CLI::App* cluster_ = nullptr;
  CLI::App* status_ = nullptr;
  CLI::App* drain_ = nullptr;
  CLI::App* rul_ = nullptr;
  CLI::App* rul_fit_ = nullptr;
  CLI::App* rul_show_ = nullptr;
  CLI::App* rul_delete_ = nullptr;
  CLI::App* types_ = nullptr;
  CLI::App* model_put_ = nullptr;
  CLI::App* alerts_ = nullptr;
  std::string severity_;
};

} // namespace twinctl
