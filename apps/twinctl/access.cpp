#include "access.hpp"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include "output.hpp"

namespace twinctl {

namespace {

/// The items of a comma-separated list.
json list_of(const std::string& text) {
  json out = json::array();
  for (size_t at = 0; at < text.size();) {
    auto comma = std::min(text.find(',', at), text.size());
    if (comma > at)
      out.push_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

/// The `key = "value"` lines of a small TOML file (other lines are skipped).
std::map<std::string, std::string> config_values(std::istream& in) {
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    auto open = line.find('"', eq);
    auto close = open == std::string::npos ? open : line.find('"', open + 1);
    if (eq == std::string::npos || line.find('#') < eq || close == std::string::npos)
      continue;
    auto name = line.substr(0, eq);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    out[name] = line.substr(open + 1, close - open - 1);
  }
  return out;
}

} // namespace

void credentials::add_to(CLI::App& app) {
  app.add_option("--server", server, "The node's HTTP API")->capture_default_str();
  app.add_option("--token", token, "Bearer token sent with every request")
    ->envname("TWIN_TOKEN");
  app.add_option("--token-file", token_file, "File that holds the token (e.g. the node's "
                                             "<data-dir>/admin.token)")
    ->envname("TWIN_TOKEN_FILE");
  app.add_option("--ca-file", ca_file,
                 "PEM certificates that sign an https node's certificate (default: the "
                 "system's)")
    ->envname("TWIN_CA_FILE");
  app.add_option("--cert-file", cert_file,
                 "PEM certificate twinctl shows an https node that asks for one (mutual TLS)")
    ->envname("TWIN_CERT_FILE");
  app.add_option("--key-file", key_file, "PEM key of --cert-file (default: in that file)")
    ->envname("TWIN_KEY_FILE");
  app.add_option("--config", config,
                 "TOML file of server, token, token-file, ca-file, cert-file and key-file "
                 "(default: "
                 "~/.config/twinctl/config.toml)")
    ->envname("TWINCTL_CONFIG");
}

std::string credentials::resolve(const CLI::App& app) {
  bool explicit_config = !config.empty();
  if (config.empty()) {
    const char* xdg = std::getenv("XDG_CONFIG_HOME");
    const char* home = std::getenv("HOME");
    if (xdg != nullptr && *xdg != '\0')
      config = std::string{xdg} + "/twinctl/config.toml";
    else if (home != nullptr)
      config = std::string{home} + "/.config/twinctl/config.toml";
  }
  if (!config.empty()) {
    std::ifstream in{config};
    if (!in && explicit_config)
      return "cannot read the config file " + config;
    auto values = config_values(in);
    if (app.get_option("--server")->count() == 0 && values.count("server") > 0)
      server = values["server"];
    if (token.empty() && token_file.empty()) {
      token = values["token"];
      token_file = values["token-file"];
    }
    for (auto [key, field] : {std::pair{"ca-file", &ca_file}, {"cert-file", &cert_file},
                              {"key-file", &key_file}})
      if (field->empty())
        *field = values[key];
  }
  if (token.empty() && !token_file.empty()) {
    std::ifstream in{token_file};
    if (!(in >> token))
      return "cannot read a token from " + token_file;
  }
  return {};
}

void token_commands::add_to(CLI::App& app) {
  cmd_ = app.add_subcommand("token", "The node's API tokens (an admin token's)");
  cmd_->require_subcommand(1);
  create_ = cmd_->add_subcommand(
    "create", "Make a token; its text (the secret, shown only now) is printed alone");
  create_->add_option("name", name_, "What the token is for")->required();
  create_->add_option("--role", role_, "reader, operator, writer, admin or device")
    ->required()
    ->check(CLI::IsMember({"reader", "operator", "writer", "admin", "device"}));
  create_->add_option("--namespaces", namespaces_,
                      "The namespaces whose twins it sees, comma-separated (default: all)");
  create_->add_option("--twins", twins_, "A device's own twins, comma-separated");
  create_->add_option("--expires-in", expires_in_s_, "Seconds it is valid (default: ever)")
    ->check(CLI::PositiveNumber);
  list_ = cmd_->add_subcommand("list", "List the tokens (never their secrets)");
  revoke_ = cmd_->add_subcommand("revoke", "Revoke a token on every member");
  revoke_->add_option("id", id_, "The token's id")->required();
}

int token_commands::run(client& c, bool as_json) const {
  http::verb method = http::verb::get;
  std::string target = "/v1/tokens";
  std::string body;
  if (create_->parsed()) {
    method = http::verb::post;
    json doc{{"name", name_}, {"role", role_}};
    if (!namespaces_.empty())
      doc["namespaces"] = list_of(namespaces_);
    if (!twins_.empty())
      doc["twins"] = list_of(twins_);
    if (expires_in_s_ > 0)
      doc["expires_in_s"] = expires_in_s_;
    body = doc.dump();
  } else if (revoke_->parsed()) {
    method = http::verb::delete_;
    target += "/" + id_;
  }
  int code = ok;
  auto answer = call_checked(c, method, target, code, body);
  if (!answer)
    return code;
  const auto& r = *answer;
  try {
    if (revoke_->parsed()) {
      std::cout << "revoked " << id_ << '\n';
    } else if (as_json) {
      std::cout << r.body.dump(2) << '\n';
    } else if (create_->parsed()) {
      auto scope = r.body.contains("twins") ? "twins " + text_of(r.body["twins"])
                                            : "namespaces " + text_of(r.body["namespaces"]);
      std::cerr << "token " << text_of(r.body["id"]) << " (" << text_of(r.body["role"]) << ", "
                << scope << ") made; its secret is shown only now:\n";
      std::cout << text_of(r.body["token"]) << '\n';
    } else {
      std::vector<std::vector<std::string>> rows{
        {"ID", "NAME", "ROLE", "SEES", "STATE", "CREATED", "EXPIRES"}};
      for (const auto& t : r.body.value("items", json::array())) {
        auto sees = t.contains("twins") ? t["twins"] : t.value("namespaces", json::array());
        std::string list;
        for (const auto& x : sees)
          list += (list.empty() ? "" : ",") + text_of(x);
        rows.push_back({text_of(t.value("id", json{})), text_of(t.value("name", json{})),
                        text_of(t.value("role", json{})), list,
                        text_of(t.value("state", json{})), time_of(t.value("created_ms", json{})),
                        t.value("expires_ms", json{}).is_null()
                          ? "-"
                          : time_of(t["expires_ms"])});
      }
      print_table(rows);
    }
  } catch (const json::exception& e) {
    std::cerr << "twinctl: an answer of an unexpected shape (" << e.what() << "): " << r.text
              << '\n';
    return server_error;
  }
  return ok;
}

void audit_command::add_to(CLI::App& app) {
  cmd_ = app.add_subcommand("audit", "The node's audit log: changes and refused requests");
  cmd_->add_option("--from", from_, "From this time (ms since the epoch or ISO 8601)");
  cmd_->add_option("--to", to_, "Up to this time (ms since the epoch or ISO 8601)");
  cmd_->add_option("--token", token_, "Of this token id");
  cmd_->add_option("--twin", twin_, "On this twin");
  cmd_->add_option("--limit", limit_, "At most this many entries");
  cmd_->add_option("--cursor", cursor_, "Where the previous page ended");
}

int audit_command::run(client& c, bool as_json) const {
  auto query = query_string({{"from", from_}, {"to", to_}, {"token", token_}, {"twin", twin_},
                             {"cursor", cursor_}, {"limit", limit_ ? std::to_string(limit_) : ""}});
  int code = ok;
  auto answer = call_checked(c, http::verb::get, "/v1/audit" + query, code);
  if (!answer)
    return code;
  const auto& r = *answer;
  if (as_json) {
    std::cout << r.body.dump(2) << '\n';
    return ok;
  }
  try {
    std::vector<std::vector<std::string>> rows{
      {"TIME", "TOKEN", "PEER", "METHOD", "PATH", "STATUS", "OUTCOME"}};
    for (const auto& e : r.body.value("items", json::array())) {
      auto token = e.value("token", json{});
      rows.push_back({time_of(e.value("ts", json{})),
                      token.is_object() ? text_of(token["name"]) + " (" + text_of(token["id"]) + ")"
                                        : "-",
                      text_of(e.value("peer", json{})), text_of(e.value("method", json{})),
                      text_of(e.value("path", json{})), text_of(e.value("status", json{})),
                      text_of(e.value("outcome", json{}))});
    }
    print_table(rows);
    if (r.body.contains("cursor") && r.body["cursor"].is_string())
      std::cout << "\nmore: --cursor " << r.body["cursor"].get<std::string>() << '\n';
  } catch (const json::exception& e) {
    std::cerr << "twinctl: an answer of an unexpected shape (" << e.what() << "): " << r.text
              << '\n';
    return server_error;
  }
  return ok;
}

} // namespace twinctl
