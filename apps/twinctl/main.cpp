// twinctl: the command line of the twin runtime, over a node's HTTP API.
//
//   twinctl get plant1:motor-7
//   twinctl put plant1:motor-7 --type motor --parent plant1:robot-2 --properties '{"rpm": 1200}'
//   twinctl patch plant1:motor-7 --desired '{"rpm": 1500}' --if-match 3
//   twinctl telemetry send plant1:motor-7 '{"temperature": 71.5}'
//   twinctl --json get plant1:motor-7 | jq .properties
//   twinctl scenario compare slow.json fast.json
//   twinctl rul fit engine --inputs s2,s3,s4 --prefix fleet:
//   twinctl token create dashboards --role reader --namespaces plant1
//
// Exit codes: 0 done; 1 usage; 2 no answer from the node (unreachable, or --timeout);
// 3 no such twin (404); 4 a version conflict or failed precondition (409, 412); 5 a
// refused request (another 4xx); 6 the node failed or does not serve the call (5xx); 7 no
// valid token (401) or a role too weak (403). The token comes from --token, TWIN_TOKEN,
// --token-file, TWIN_TOKEN_FILE or the config file (~/.config/twinctl/config.toml).
// `events` follows the node's server-sent events: one line per event (`--json`: one
// JSON object per line) until --count events, or exit code 6 if the stream fell behind
// and the node ended it, 2 if the node went away.

#include <algorithm>
#include <array>
#include <optional>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>

#include "access.hpp"
#include "client.hpp"
#include "devices.hpp"
#include "output.hpp"
#include "scenarios.hpp"

namespace {

using namespace twinctl;

/// Follows GET `target`, a stream of server-sent events, and prints each event as it
/// comes, until `count` events (0: no end), the node ends the stream, or nothing (not
/// even a heartbeat) came for 45 s. `timeout` bounds the wait for the answer's header.
int follow_events(const server_address& addr, const std::string& token, const std::string& target,
                  std::chrono::seconds timeout, bool as_json, size_t count) {
  asio::io_context ioc;
  tcp::resolver resolver{ioc};
  std::optional<asio::ssl::context> tls;
  std::optional<transport> made;
  try {
    made.emplace(make_stream(ioc, addr, tls));
  } catch (const std::exception& e) {
    std::cerr << "twinctl: cannot speak TLS to the node: " << e.what() << '\n';
    return unreachable;
  }
  auto& stream = *made;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  address(req, addr, token);
  req.set(http::field::accept, "text/event-stream");
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  std::array<char, 16384> chunk;
  std::string text;  // of the body, not yet a whole event
  size_t printed = 0;
  int code = ok;
  beast::error_code failure;
  std::string error_body;

  // Takes the whole events out of `text`; returns false once done.
  auto take_events = [&] {
    size_t end;
    while ((end = text.find("\n\n")) != std::string::npos) {
      std::string name = "message";
      std::string data;
      std::string block = text.substr(0, end);
      text.erase(0, end + 2);
      size_t pos = 0;
      while (pos <= block.size()) {
        auto nl = block.find('\n', pos);
        auto line = block.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? block.size() + 1 : nl + 1;
        if (line.rfind("event: ", 0) == 0)
          name = line.substr(7);
        else if (line.rfind("data: ", 0) == 0)
          data += line.substr(6);
      }
      if (data.empty())
        continue;  // a comment (heartbeat)
      print_event(name, data, as_json);
      if (name == "lagged") {
        std::cerr << "twinctl: the stream fell too far behind and the node ended it\n";
        code = server_error;
        return false;
      }
      if (count > 0 && ++printed == count)
        return false;
    }
    return true;
  };
  std::function<void()> read_body = [&] {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    stream.tcp().expires_after(std::chrono::seconds{45});
    http::async_read_some(stream, buffer, parser, [&](beast::error_code ec, size_t) {
      auto n = chunk.size() - parser.get().body().size;
      if (ec == http::error::need_buffer)
        ec = {};
      if (parser.get().result_int() != 200) {
        error_body.append(chunk.data(), n);
        if (!ec && !parser.is_done())
          return read_body();
        code = exit_code_of(parser.get().result_int());
        return;
      }
      text.append(chunk.data(), n);
      if (!take_events())
        return stream.tcp().close();
      if (ec || parser.is_done()) {
        std::cerr << "twinctl: the node ended the stream" << (ec ? ": " + ec.message() : "")
                  << '\n';
        code = unreachable;
        return;
      }
      read_body();
    });
  };
  stream.tcp().expires_after(timeout);
  connect(stream, resolver, addr, [&](beast::error_code ec) {
    if (ec)
      return void(failure = ec);
    http::async_write(stream, req, [&](beast::error_code ec, size_t) {
      if (ec)
        return void(failure = ec);
      http::async_read_header(stream, buffer, parser, [&](beast::error_code ec, size_t) {
        if (ec)
          return void(failure = ec);
        read_body();
      });
    });
  });
  ioc.run();
  if (failure) {
    std::cerr << "twinctl: no answer from the node at " << addr.host << ':' << addr.port << ": "
              << failure.message() << '\n';
    return unreachable;
  }
  if (parser.is_header_done() && parser.get().result_int() != 200)
    std::cerr << "twinctl: " << error_text(reply_of(parser.get().result_int(), error_body))
              << '\n';
  return code;
}

/// Checks that `text` is a JSON object; prints why not.
bool json_object_arg(const std::string& what, const std::string& text, json& out) {
  out = json::parse(text, nullptr, false);
  if (out.is_discarded() || !out.is_object()) {
    std::cerr << "twinctl: " << what << " must be a JSON object, e.g. '{\"rpm\": 1200}'\n";
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"twinctl: the twins of a node, over its HTTP API"};
  app.require_subcommand(1);
  credentials creds;
  creds.add_to(app);
  bool as_json = false;
  int timeout_s = 30;
  app.add_option("--timeout", timeout_s, "Seconds to wait for the node")
    ->capture_default_str()
    ->check(CLI::Range(1, 3600));
  app.add_flag("--json", as_json, "Print the node's JSON answer as it is");

  std::string id, type, parent, properties, desired, if_match, values;
  int64_t ts = 0;
  auto* get = app.add_subcommand("get", "Show a twin");
  get->add_option("id", id, "Twin id (namespace:name)")->required();
  // put and patch take the same state.
  auto state_options = [&](CLI::App* cmd) {
    cmd->add_option("id", id, "Twin id")->required();
    cmd->add_option("--properties", properties, "Reported properties, a JSON object");
    cmd->add_option("--desired", desired, "Desired properties, a JSON object");
    cmd->add_option("--if-match", if_match,
                    "Only if the twin has this version (put: 0, only if it does not exist)");
  };
  auto* put = app.add_subcommand("put", "Create or replace a twin");
  state_options(put);
  put->add_option("--type", type, "Twin type")->required();
  put->add_option("--parent", parent, "Parent twin id");
  auto* patch = app.add_subcommand("patch", "Merge-patch a twin's properties (null deletes)");
  state_options(patch);
  auto* del = app.add_subcommand("delete", "Delete a twin");
  del->add_option("id", id, "Twin id")->required();
  del->add_option("--if-match", if_match, "Only if the twin has this version");
  auto* telemetry = app.add_subcommand("telemetry", "Device telemetry");
  telemetry->require_subcommand(1);
  auto* send = telemetry->add_subcommand("send", "Report property values of a twin");
  send->add_option("id", id, "Twin id")->required();
  send->add_option("values", values, "Values, a JSON object")->required();
  send->add_option("--ts", ts, "Sample time, ms since the epoch (default: now)");
  std::string kind, where, cursor, from, to, ns, prefix, property, step;
  size_t limit = 0;
  size_t count = 0;
  auto* query = app.add_subcommand("query", "Find twins");
  query->add_option("--type", type, "Of this type");
  query->add_option("--kind", kind, "Of this kind");
  query->add_option("--parent", parent, "Children of this twin");
  query->add_option("--where", where, "A condition on properties, e.g. 'temperature > 80'");
  query->add_option("--limit", limit, "At most this many");
  query->add_option("--cursor", cursor, "Where the previous page ended");
  auto* history = app.add_subcommand("history", "A twin's past states");
  history->add_option("id", id, "Twin id")->required();
  history->add_option("--property", property, "The property")->required();
  history->add_option("--from", from, "From this time (ms since the epoch or ISO 8601)");
  history->add_option("--to", to, "Up to this time (ms since the epoch or ISO 8601)");
  history->add_option("--step", step, "Downsample: min, max, avg per this many ms");
  history->add_option("--limit", limit, "At most this many samples or steps");
  auto* anomalies = app.add_subcommand("anomalies", "The anomalies a twin's detectors found");
  anomalies->add_option("id", id, "Twin id")->required();
  anomalies->add_option("--property", property, "Of this property only");
  anomalies->add_option("--from", from, "From this time (ms since the epoch or ISO 8601)");
  anomalies->add_option("--to", to, "Up to this time (ms since the epoch or ISO 8601)");
  anomalies->add_option("--limit", limit, "At most this many");
  auto* events = app.add_subcommand("events", "Follow twin changes");
  events->add_option("--namespace", ns, "Of twins in this namespace");
  events->add_option("--type", type, "Of twins of this type");
  events->add_option("--prefix", prefix, "Of twins whose id starts so");
  events->add_option("--count", count, "Stop after this many events (default: follow)");
  auto* cluster = app.add_subcommand("cluster", "The cluster");
  cluster->require_subcommand(1);
  auto* status = cluster->add_subcommand("status", "Members, their state and their shards");
  std::string drain_node;
  auto* drain = cluster->add_subcommand(
    "drain", "Move a member's shards to the others (before maintenance); it gets none until "
             "it starts again");
  drain->add_option("node", drain_node, "The member's node id")->required();
  std::vector<std::string> scenario_files;
  auto* scenario = app.add_subcommand("scenario", "What-if scenarios on a copy of a subtree");
  scenario->require_subcommand(1);
  auto* scenario_run = scenario->add_subcommand(
    "run", "Run the scenario of a JSON file (the body of POST /v1/scenarios)");
  scenario_run->add_option("file", scenario_files, "The scenario")->required();
  auto* scenario_compare =
    scenario->add_subcommand("compare", "Run several scenarios and show them side by side");
  scenario_compare->add_option("files", scenario_files, "The scenarios")->required();
  auto* scenario_optimize = scenario->add_subcommand(
    "optimize", "Find the best set-points of a JSON file (the body of POST /v1/scenarios/optimize)");
  scenario_optimize->add_option("file", scenario_files, "The optimisation")->required();
  std::string rul_type, rul_inputs, rul_prefix, rul_twins_type;
  double rul_cap_s = 0;
  auto* rul = app.add_subcommand("rul", "Remaining useful life learned from a fleet");
  rul->require_subcommand(1);
  auto* rul_fit = rul->add_subcommand(
    "fit", "Fit a type's model on the history of its run-to-failure twins, and install it");
  rul_fit->add_option("type", rul_type, "The twin type")->required();
  rul_fit->add_option("--inputs", rul_inputs, "The properties it reads, comma-separated")
    ->required();
  rul_fit->add_option("--prefix", rul_prefix, "The run-to-failure twins: ids starting with this");
  rul_fit->add_option("--twins-type", rul_twins_type,
                      "The run-to-failure twins' type (default: the type)");
  rul_fit->add_option("--cap", rul_cap_s, "Seconds of life learned at most (default: 125)");
  auto* rul_show = rul->add_subcommand("show", "Show a type's model and its error");
  rul_show->add_option("type", rul_type, "The twin type")->required();
  auto* rul_delete = rul->add_subcommand("delete", "Remove a type's model");
  rul_delete->add_option("type", rul_type, "The twin type")->required();
  token_commands tokens;
  tokens.add_to(app);
  audit_command audit;
  audit.add_to(app);
  device_commands devices;
  devices.add_to(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? ok : usage;
  }
  if (auto why = creds.resolve(app); !why.empty()) {
    std::cerr << "twinctl: " << why << '\n';
    return usage;
  }
  const auto& server = creds.server;
  const auto& token = creds.token;
  server_address addr;
  if (!parse_server(server, addr)) {
    std::cerr << "twinctl: --server must be http://host:port or https://host:port, not "
              << server << '\n';
    return usage;
  }
  addr.ca_file = creds.ca_file;
  addr.cert_file = creds.cert_file;
  addr.key_file = creds.key_file;
  if (tokens.parsed() || audit.parsed() || devices.parsed()) {
    client c{addr, token, std::chrono::seconds{timeout_s}};
    if (devices.parsed())
      return devices.run(c);
    return tokens.parsed() ? tokens.run(c, as_json) : audit.run(c, as_json);
  }
  if (scenario->parsed()) {
    if (scenario_files.size() != 1 && !scenario_compare->parsed()) {
      std::cerr << "twinctl: scenario run and optimize take one file\n";
      return usage;
    }
    client c{addr, token, std::chrono::seconds{timeout_s}};
    if (scenario_optimize->parsed())
      return run_optimization(c, scenario_files[0], as_json);
    return run_scenarios(c, scenario_files, scenario_compare->parsed(), as_json);
  }
  // The request, checked before anything is sent.
  auto twin_path = "/v1/twins/" + percent_encode(id);
  http::verb method = http::verb::get;
  std::string target;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<http::field, std::string>> headers;
  if (!if_match.empty()) {
    if (put->parsed() && if_match == "0")
      headers.emplace_back(http::field::if_none_match, "*");  // create only
    else
      headers.emplace_back(http::field::if_match, "\"" + if_match + "\"");
  }
  if (get->parsed()) {
    target = twin_path;
  } else if (put->parsed() || patch->parsed()) {
    json doc = json::object();
    json p;
    json d;
    if (!properties.empty() && !json_object_arg("--properties", properties, p))
      return usage;
    if (!desired.empty() && !json_object_arg("--desired", desired, d))
      return usage;
    if (!p.is_null())
      doc["properties"] = p;
    if (!d.is_null())
      doc["desired"] = d;
    target = twin_path;
    if (put->parsed()) {
      method = http::verb::put;
      doc["type"] = type;
      if (!parent.empty())
        doc["parent"] = parent;
    } else {
      if (doc.empty()) {
        std::cerr << "twinctl: patch needs --properties or --desired\n";
        return usage;
      }
      method = http::verb::patch;
      content_type = "application/merge-patch+json";
    }
    body = doc.dump();
  } else if (del->parsed()) {
    method = http::verb::delete_;
    target = twin_path;
  } else if (send->parsed()) {
    json v;
    if (!json_object_arg("values", values, v))
      return usage;
    json item{{"twin", id}, {"values", v}};
    if (ts > 0)
      item["ts"] = ts;
    method = http::verb::post;
    target = "/v1/telemetry";
    body = json::array({item}).dump();
  } else if (query->parsed()) {
    target = "/v1/twins"
             + query_string({{"type", type}, {"kind", kind}, {"parent", parent},
                             {"where", where}, {"limit", limit ? std::to_string(limit) : ""},
                             {"cursor", cursor}});
  } else if (history->parsed()) {
    target = twin_path + "/history"
             + query_string({{"property", property}, {"from", from}, {"to", to},
                             {"step", step}, {"limit", limit ? std::to_string(limit) : ""}});
  } else if (anomalies->parsed()) {
    target = twin_path + "/anomalies"
             + query_string({{"property", property}, {"from", from}, {"to", to},
                             {"limit", limit ? std::to_string(limit) : ""}});
  } else if (events->parsed()) {
    target = "/v1/events" + query_string({{"namespace", ns}, {"type", type}, {"prefix", prefix}});
    return follow_events(addr, token, target, std::chrono::seconds{timeout_s}, as_json, count);
  } else if (status->parsed()) {
    target = "/v1/cluster";
  } else if (drain->parsed()) {
    method = http::verb::post;
    target = "/v1/cluster/members/" + percent_encode(drain_node) + "/drain";
  } else if (rul->parsed()) {
    target = "/v1/types/" + percent_encode(rul_type) + "/rul";
    if (rul_delete->parsed())
      method = http::verb::delete_;
    if (rul_fit->parsed()) {
      method = http::verb::post;
      json inputs = json::array();
      for (size_t at = 0; at <= rul_inputs.size();) {
        auto comma = std::min(rul_inputs.find(',', at), rul_inputs.size());
        inputs.push_back(rul_inputs.substr(at, comma - at));
        at = comma + 1;
      }
      json twins = json::object();
      if (!rul_prefix.empty())
        twins["prefix"] = rul_prefix;
      if (!rul_twins_type.empty())
        twins["type"] = rul_twins_type;
      json doc{{"inputs", inputs}, {"twins", twins}};
      if (rul_cap_s > 0)
        doc["cap_s"] = rul_cap_s;
      body = doc.dump();
    }
  }

  client c{addr, token, std::chrono::seconds{timeout_s}};
  reply r;
  try {
    r = c.call(method, target, body, content_type, headers);
  } catch (const std::exception& e) {
    std::cerr << "twinctl: no answer from the node at " << server << ": " << e.what() << '\n';
    return unreachable;
  }
  try {  // the answer's shape is the node's: nothing about it may abort
    int code = exit_code_of(r.status);
    // A batch is answered 202 with a result per item: the one item's result decides.
    json item;
    if (send->parsed() && code == ok) {
      if (!r.body.is_object() || !r.body.contains("results") || !r.body["results"].is_array()
          || r.body["results"].empty() || !r.body["results"][0].is_object()) {
        std::cerr << "twinctl: an answer without the item's result: " << r.text << '\n';
        return server_error;
      }
      item = r.body["results"][0];
      if (!item.value("ok", false)) {
        const auto& err = item.contains("error") ? item["error"] : json::object();
        std::cerr << "twinctl: " << err.value("code", "") << ": " << err.value("message", "")
                  << '\n';
        if (as_json)
          std::cout << r.body.dump(2) << '\n';
        return exit_code_of(item.value("status", 500u));  // what the error answers alone
      }
    }
    if (code != ok) {
      std::cerr << "twinctl: " << error_text(r) << '\n';
      return code;
    }
    if (r.status != 204 && !r.body.is_object()) {  // the API answers with JSON objects
      std::cerr << "twinctl: an answer that is not a JSON object: " << r.text << '\n';
      return server_error;
    }
    if (as_json) {
      if (!r.body.is_null())
        std::cout << r.body.dump(2) << '\n';
    } else if (get->parsed()) {
      print_twin(r.body);
    } else if (del->parsed()) {
      std::cout << "deleted " << id << '\n';
    } else if (put->parsed() || patch->parsed()) {
      std::cout << (r.body.value("created", false) ? "created " : "updated ") << id
                << ", version " << r.body.value("version", 0) << '\n';
    } else if (send->parsed()) {
      std::cout << "applied to " << id << ", version " << item.value("version", 0) << '\n';
    } else if (query->parsed()) {
      std::vector<std::vector<std::string>> rows{{"ID", "TYPE", "KIND", "PARENT", "VERSION",
                                                  "HEALTH"}};
      for (const auto& t : r.body.value("items", json::array()))
        rows.push_back({text_of(t.value("id", json{})), text_of(t.value("type", json{})),
                        text_of(t.value("kind", json{})), text_of(t.value("parent", json{})),
                        text_of(t.value("version", json{})),
                        text_of(t.value("properties", json::object()).value("health", json{}))});
      print_table(rows);
      if (r.body.contains("cursor") && r.body["cursor"].is_string())
        std::cout << "\nmore: --cursor " << r.body["cursor"].get<std::string>() << '\n';
    } else if (history->parsed()) {
      print_history(r.body);
    } else if (anomalies->parsed()) {
      print_anomalies(r.body);
    } else if (rul_delete->parsed()) {
      std::cout << "removed the RUL model of " << rul_type << '\n';
    } else if (rul->parsed()) {
      print_rul_model(r.body);
    } else if (status->parsed()) {
      std::vector<std::vector<std::string>> rows{
        {"NODE", "STATE", "INCARNATION", "SHARDS", "FOLLOWS", "HTTP", "CLUSTER"}};
      for (const auto& m : r.body.value("members", json::array()))
        rows.push_back({text_of(m.value("node", json{})), text_of(m.value("state", json{})),
                        text_of(m.value("incarnation", json{})),
                        text_of(m.value("shards", json{})), m.contains("follows") ? text_of(m["follows"]) : "-",
                        text_of(m.value("http", json{})),
                        text_of(m.value("cluster", json{}))});
      print_table(rows);
      auto handoffs = r.body.value("handoffs", json::array());
      std::cout << '\n' << r.body.value("shards", 0) << " shards, "
                << r.body.value("unowned", 0) << " without an owner, " << handoffs.size()
                << " handoffs under way\n";
      for (const auto& h : handoffs)
        std::cout << "  shard " << text_of(h.value("shard", json{})) << ": "
                  << text_of(h.value("from", json{})) << " -> " << text_of(h.value("to", json{}))
                  << '\n';
    } else {
      std::cout << r.body.dump(2) << '\n';
    }
    return ok;
  } catch (const json::exception& e) {
    std::cerr << "twinctl: an answer of an unexpected shape (" << e.what() << "): " << r.text
              << '\n';
    return server_error;
  }
}
