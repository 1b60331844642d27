#include "twins.hpp"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "events.hpp"
#include "output.hpp"

namespace twinctl {

namespace {

/// `text` as a JSON object in `out`; false (said on stderr, with where the JSON is wrong)
/// if it is not one.
bool json_object_arg(const std::string& what, const std::string& text, json& out) {
  try {
    out = json::parse(text);
  } catch (const json::exception& e) {
    std::string why = e.what();
    if (auto tag = why.find("] "); tag != std::string::npos)
      why.erase(0, tag + 2);
    if (why.rfind("parse error ", 0) == 0)
      why.erase(0, 12);
    std::cerr << "twinctl: " << what << " is not valid JSON: " << why << '\n';
    return false;
  }
  if (!out.is_object()) {
    std::cerr << "twinctl: " << what << " must be a JSON object, e.g. '{\"rpm\": 1200}', not "
              << out.type_name() << '\n';
    return false;
  }
  return true;
}

/// A comma-separated list as a JSON array of strings.
json list_of(const std::string& text) {
  json out = json::array();
  for (size_t at = 0; at <= text.size();) {
    auto comma = std::min(text.find(',', at), text.size());
    out.push_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

/// A --ts, --from or --to: ms since the epoch as a number, anything else (an ISO 8601
/// time) as the node's to read.
json time_arg(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit))
    return std::stoll(text);
  return text;
}

std::string limit_text(size_t limit) {
  return limit > 0 ? std::to_string(limit) : std::string{};
}

} // namespace

void twin_commands::add_to(CLI::App& app) {
  add_twin_commands(app);
  add_reading_commands(app);
  add_cluster_commands(app);
}

void twin_commands::add_twin_commands(CLI::App& app) {
  get_ = app.add_subcommand("get", "Show a twin");
  get_->add_option("id", id_, "Twin id (namespace:name)")->required();
  // put and patch take the same state.
  auto state_options = [&](CLI::App* cmd) {
    cmd->add_option("id", id_, "Twin id")->required();
    cmd->add_option("--properties", properties_, "Reported properties, a JSON object");
    cmd->add_option("--desired", desired_, "Desired properties, a JSON object");
  };
  put_ = app.add_subcommand("put", "Create or replace a twin (what it does not give is gone)");
  state_options(put_);
  put_->add_option("--type", type_, "Twin type")->required();
  put_->add_option("--parent", parent_, "Parent twin id");
  put_->add_option("--if-match", if_match_,
                   "Only if the twin has this version; 0: only if it does not exist");
  patch_ = app.add_subcommand(
    "patch", "Merge-patch a twin: properties (null deletes), its parent, its relationships");
  state_options(patch_);
  auto* parent = patch_->add_option("--parent", parent_, "Move it under this parent");
  patch_->add_flag("--root", root_, "Take it from its parent: it becomes a root")
    ->excludes(parent);
  patch_->add_option("--if-match", if_match_, "Only if the twin has this version");
  for (auto* cmd : {put_, patch_})
    cmd->add_option("--relationships", relationships_,
                    "All its relationships, a JSON array of {\"name\", \"target\"} "
                    "(see relate and unrelate to change one)");
  del_ = app.add_subcommand("delete", "Delete a twin");
  del_->add_option("id", id_, "Twin id")->required();
  del_->add_option("--if-match", if_match_, "Only if the twin has this version");
  auto* detach = del_->add_flag(
    "--detach", detach_, "Even with children (they become roots) or relationships to it "
                         "(they are removed)");
  del_->add_flag("--cascade", cascade_,
                 "With its descendants, and the relationships to any of them")
    ->excludes(detach);
  telemetry_ = app.add_subcommand("telemetry", "Device telemetry");
  telemetry_->require_subcommand(1);
  send_ = telemetry_->add_subcommand("send", "Report property values of a twin");
  send_->add_option("id", id_, "Twin id")->required();
  send_->add_option("values", values_, "Values, a JSON object")->required();
  send_->add_option("--ts", ts_, "Sample time: ms since the epoch or ISO 8601 (default: now)");
  command_cmd_ = app.add_subcommand("command", "Send a command to a twin (and its device)");
  command_cmd_->add_option("id", id_, "Twin id")->required();
  command_cmd_->add_option("name", command_, "The command, as the twin's type declares it")
    ->required();
  command_cmd_->add_option("args", args_, "Its arguments, a JSON object (default: none)");
}

void twin_commands::add_reading_commands(CLI::App& app) {
  query_ = app.add_subcommand("query", "Find twins");
  query_->add_option("--type", type_, "Of this type");
  query_->add_option("--kind", kind_, "Of this kind");
  query_->add_option("--parent", parent_, "Children of this twin");
  query_->add_option("--namespace", ns_, "Twins of this namespace");
  query_->add_option("--prefix", prefix_, "Twins whose id starts so");
  query_->add_option("--related", related_,
                     "With this relationship: NAME:TARGET (NAME * for any), e.g. feeds:f:pump-1");
  query_->add_option("--where", where_, "A condition on properties, e.g. 'temperature > 80'");
  query_->add_option("--limit", limit_, "At most this many");
  query_->add_option("--cursor", cursor_, "Where the previous page ended");
  alerts_ = app.add_subcommand("alerts", "The active alerts of the twins");
  alerts_->add_option("--severity", severity_, "At least: warning (default) or critical");
  alerts_->add_option("--namespace", ns_, "Of twins in this namespace");
  alerts_->add_option("--prefix", prefix_, "Of twins whose id starts so");
  alerts_->add_option("--type", type_, "Of twins of this type");
  alerts_->add_option("--limit", limit_, "Of at most this many twins");
  alerts_->add_option("--cursor", cursor_, "Where the previous page ended");
  history_ = app.add_subcommand("history", "A twin's past states");
  history_->add_option("id", id_, "Twin id")->required();
  history_->add_option("--property", property_, "The property, or several: a,b")->required();
  history_->add_option("--from", from_, "From this time (ms since the epoch or ISO 8601)");
  history_->add_option("--to", to_, "Up to this time (ms since the epoch or ISO 8601)");
  history_->add_option("--step", step_, "Downsample: min, max, avg per this many ms");
  history_->add_option("--limit", limit_, "At most this many samples or steps");
  anomalies_ = app.add_subcommand("anomalies", "The anomalies a twin's detectors found");
  anomalies_->add_option("id", id_, "Twin id")->required();
  anomalies_->add_option("--property", property_, "Of this property only");
  anomalies_->add_option("--from", from_, "From this time (ms since the epoch or ISO 8601)");
  anomalies_->add_option("--to", to_, "Up to this time (ms since the epoch or ISO 8601)");
  anomalies_->add_option("--limit", limit_, "At most this many");
  events_ = app.add_subcommand("events", "Follow twin changes");
  events_->add_option("--namespace", ns_, "Of twins in this namespace");
  events_->add_option("--type", type_, "Of twins of this type");
  events_->add_option("--prefix", prefix_, "Of twins whose id starts so");
  events_->add_flag("--segment", segment_,
                    "The prefix ends a segment: line-1 takes line-1-2, not line-10");
  events_->add_option("--id", id_filter_, "Of this twin only");
  events_->add_option("--count", count_, "Stop after this many events (default: follow)");
}

void twin_commands::add_cluster_commands(CLI::App& app) {
  types_ = app.add_subcommand("types", "The twin types, or what one declares");
  types_->add_option("type", type_, "The type: its name or its DTMI");
  auto* model = app.add_subcommand("model", "Twin types added or upgraded while nodes run");
  model->require_subcommand(1);
  model_put_ = model->add_subcommand(
    "put", "Add or upgrade the types of a DTDL model file (one Interface or an array)");
  model_put_->add_option("file", model_file_, "The model file")->required()->check(CLI::ExistingFile);
  model_put_->add_option("--type", type_,
                         "The type it is for (default: the file's last Interface)");
  cluster_ = app.add_subcommand("cluster", "The cluster");
  cluster_->require_subcommand(1);
  status_ = cluster_->add_subcommand("status", "Members, their state and their shards");
  drain_ = cluster_->add_subcommand(
    "drain", "Move a member's shards to the others (before maintenance); it gets none until "
             "it starts again");
  drain_->add_option("node", drain_node_, "The member's node id")->required();
  rul_ = app.add_subcommand("rul", "Remaining useful life learned from a fleet");
  rul_->require_subcommand(1);
  rul_fit_ = rul_->add_subcommand(
    "fit", "Fit a type's model on the history of its run-to-failure twins, and install it");
  rul_fit_->add_option("type", rul_type_, "The twin type")->required();
  rul_fit_->add_option("--inputs", rul_inputs_, "The properties it reads, comma-separated")
    ->required();
  rul_fit_->add_option("--prefix", rul_prefix_,
                       "The run-to-failure twins: ids starting with this");
  rul_fit_->add_option("--twins-type", rul_twins_type_,
                       "The run-to-failure twins' type (default: the type)");
  rul_fit_->add_option("--cap", rul_cap_s_, "Seconds of life learned at most (default: 125)");
  rul_show_ = rul_->add_subcommand("show", "Show a type's model and its error");
  rul_show_->add_option("type", rul_type_, "The twin type")->required();
  rul_delete_ = rul_->add_subcommand("delete", "Remove a type's model");
  rul_delete_->add_option("type", rul_type_, "The twin type")->required();
}

bool twin_commands::parsed() const {
  for (auto* cmd : {get_, put_, patch_, del_, telemetry_, command_cmd_, query_, alerts_,
                    history_, anomalies_, events_, types_, model_put_, cluster_, rul_})
    if (cmd->parsed())
      return true;
  return false;
}

bool twin_commands::twin_request(call& out) const {
  out.target = "/v1/twins/" + percent_encode(id_);
  if (!if_match_.empty()) {
    if (put_->parsed() && if_match_ == "0")
      out.headers.emplace_back(http::field::if_none_match, "*");  // create only
    else
      out.headers.emplace_back(http::field::if_match, "\"" + if_match_ + "\"");
  }
  if (get_->parsed())
    return true;
  if (del_->parsed()) {
    out.method = http::verb::delete_;
    out.target += query_string({{"detach", detach_ ? "true" : ""},
                                {"cascade", cascade_ ? "true" : ""}});
    return true;
  }
  if (command_cmd_->parsed()) {
    json args = json::object();
    if (!args_.empty() && !json_object_arg("args", args_, args))
      return false;
    out.method = http::verb::post;
    out.target += "/commands/" + percent_encode(command_);
    out.body = args.dump();
    return true;
  }
  json doc = json::object();
  json p;
  json d;
  if (!properties_.empty() && !json_object_arg("--properties", properties_, p))
    return false;
  if (!desired_.empty() && !json_object_arg("--desired", desired_, d))
    return false;
  if (!p.is_null())
    doc["properties"] = p;
  if (!d.is_null())
    doc["desired"] = d;
  if (!relationships_.empty()) {
    auto rels = json::parse(relationships_, nullptr, false);
    if (!rels.is_array() && !rels.is_null()) {
      std::cerr << "twinctl: --relationships must be a JSON array, e.g. "
                   "'[{\"name\": \"feeds\", \"target\": \"f:pump-1\"}]'\n";
      return false;
    }
    doc["relationships"] = rels;
  }
  if (!parent_.empty() || root_)
    doc["parent"] = root_ ? json{} : json(parent_);
  if (put_->parsed()) {
    out.method = http::verb::put;
    doc["type"] = type_;
  } else {
    if (doc.empty()) {
      std::cerr << "twinctl: patch needs --properties, --desired, --parent, --root or "
                   "--relationships\n";
      return false;
    }
    out.method = http::verb::patch;
    out.content_type = "application/merge-patch+json";
  }
  out.body = doc.dump();
  return true;
}

bool twin_commands::request(call& out) const {
  auto twin_path = "/v1/twins/" + percent_encode(id_);
  if (get_->parsed() || put_->parsed() || patch_->parsed() || del_->parsed()
      || command_cmd_->parsed())
    return twin_request(out);
  if (send_->parsed()) {
    json v;
    if (!json_object_arg("values", values_, v))
      return false;
    json item{{"twin", id_}, {"values", v}};
    if (!ts_.empty())
      item["ts"] = time_arg(ts_);
    out.method = http::verb::post;
    out.target = "/v1/telemetry";
    out.body = json::array({item}).dump();
  } else if (query_->parsed()) {
    out.target = "/v1/twins"
                 + query_string({{"type", type_}, {"kind", kind_}, {"parent", parent_},
                                 {"namespace", ns_}, {"prefix", prefix_}, {"related", related_},
                                 {"where", where_}, {"limit", limit_text(limit_)},
                                 {"cursor", cursor_}});
  } else if (alerts_->parsed()) {
    out.target = "/v1/alerts"
                 + query_string({{"severity", severity_}, {"namespace", ns_}, {"prefix", prefix_},
                                 {"type", type_}, {"limit", limit_text(limit_)},
                                 {"cursor", cursor_}});
  } else if (history_->parsed()) {
    out.target = twin_path + "/history"
                 + query_string({{"property", property_}, {"from", from_}, {"to", to_},
                                 {"step", step_}, {"limit", limit_text(limit_)}});
  } else if (anomalies_->parsed()) {
    out.target = twin_path + "/anomalies"
                 + query_string({{"property", property_}, {"from", from_}, {"to", to_},
                                 {"limit", limit_text(limit_)}});
  } else if (types_->parsed()) {
    out.target = "/v1/types" + (type_.empty() ? "" : "/" + percent_encode(type_));
  } else if (model_put_->parsed()) {
    return model_request(out);
  } else if (status_->parsed()) {
    out.target = "/v1/cluster";
  } else if (drain_->parsed()) {
    out.method = http::verb::post;
    out.target = "/v1/cluster/members/" + percent_encode(drain_node_) + "/drain";
  } else if (rul_->parsed()) {
    out.target = "/v1/types/" + percent_encode(rul_type_) + "/rul";
    if (rul_delete_->parsed())
      out.method = http::verb::delete_;
    if (rul_fit_->parsed()) {
      out.method = http::verb::post;
      json twins = json::object();
      if (!rul_prefix_.empty())
        twins["prefix"] = rul_prefix_;
      if (!rul_twins_type_.empty())
        twins["type"] = rul_twins_type_;
      json doc{{"inputs", list_of(rul_inputs_)}, {"twins", twins}};
      if (rul_cap_s_ > 0)
        doc["cap_s"] = rul_cap_s_;
      out.body = doc.dump();
    }
  }
  return true;
}

bool twin_commands::model_request(call& out) const {
  std::ifstream in{model_file_};
  std::stringstream text;
  text << in.rdbuf();
  auto doc = json::parse(text.str(), nullptr, false);
  auto type = type_;
  if (type.empty()) {  // the last Interface's DTMI
    const auto& last = doc.is_array() && !doc.empty() ? doc.back() : doc;
    if (last.is_object() && last.contains("@id") && last["@id"].is_string())
      type = last["@id"].get<std::string>();
  }
  if (type.empty()) {
    std::cerr << "twinctl: " << model_file_ << " has no Interface with an @id: give --type\n";
    return false;
  }
  out.method = http::verb::put;
  out.target = "/v1/types/" + percent_encode(type);
  out.body = text.str();  // the node checks it, and says where it is wrong
  return true;
}

bool twin_commands::item_result(const reply& r, bool as_json, json& item, int& code) const {
  if (!r.body.is_object() || !r.body.contains("results") || !r.body["results"].is_array()
      || r.body["results"].empty() || !r.body["results"][0].is_object()) {
    std::cerr << "twinctl: an answer without the item's result: " << r.text << '\n';
    code = server_error;
    return false;
  }
  item = r.body["results"][0];
  if (item.value("ok", false))
    return true;
  const auto& err = item.contains("error") ? item["error"] : json::object();
  std::cerr << "twinctl: " << err.value("code", "") << ": " << err.value("message", "") << '\n';
  if (as_json)
    std::cout << r.body.dump(2) << '\n';
  code = exit_code_of(item.value("status", 500u));  // what the error answers alone
  return false;
}

int twin_commands::run(const server_address& addr, const std::string& token,
                       std::chrono::seconds timeout, bool as_json) {
  if (events_->parsed()) {
    auto target = "/v1/events"
                  + query_string({{"namespace", ns_}, {"type", type_}, {"prefix", prefix_},
                                  {"segment", segment_ ? "true" : ""}, {"id", id_filter_}});
    return follow_events(addr, token, target, timeout, as_json, count_);
  }
  call req;
  if (!request(req))
    return usage;
  client c{addr, token, timeout};
  reply r;
  try {
    r = c.call(req.method, req.target, req.body, req.content_type, req.headers);
  } catch (const std::exception& e) {
    std::cerr << "twinctl: no answer from the node at " << addr.host << ':' << addr.port << ": "
              << e.what() << '\n';
    return unreachable;
  }
  try {  // the answer's shape is the node's: nothing about it may abort
    int code = exit_code_of(r.status);
    // A batch is answered 202 with a result per item: the one item's result decides.
    json item;
    if (send_->parsed() && code == ok && !item_result(r, as_json, item, code))
      return code;
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
    } else {
      print(r, item);
    }
    return ok;
  } catch (const json::exception& e) {
    std::cerr << "twinctl: an answer of an unexpected shape (" << e.what() << "): " << r.text
              << '\n';
    return server_error;
  }
}

void twin_commands::print(const reply& r, const json& item) const {
  if (get_->parsed()) {
    print_twin(r.body);
  } else if (del_->parsed()) {
    std::cout << "deleted " << id_ << '\n';
  } else if (put_->parsed() || patch_->parsed()) {
    // A put replaces the whole twin: what it did not give is gone, and it says so.
    auto done = r.body.value("created", false) ? "created " : put_->parsed() ? "replaced "
                                                                             : "updated ";
    std::cout << done << id_ << ", version " << r.body.value("version", 0) << '\n';
  } else if (send_->parsed()) {
    std::cout << "applied to " << id_ << ", version " << item.value("version", 0) << '\n';
  } else if (command_cmd_->parsed()) {
    std::cout << "sent " << command_ << " to " << id_;
    if (r.body.contains("result") && !r.body["result"].is_null())
      std::cout << ": " << text_of(r.body["result"]);
    std::cout << '\n';
  } else if (query_->parsed()) {
    print_twins(r.body);
  } else if (alerts_->parsed()) {
    print_alerts(r.body);
  } else if (history_->parsed()) {
    print_history(r.body);
  } else if (anomalies_->parsed()) {
    print_anomalies(r.body);
  } else if (rul_delete_->parsed()) {
    std::cout << "removed the RUL model of " << rul_type_ << '\n';
  } else if (rul_->parsed()) {
    print_rul_model(r.body);
  } else if (model_put_->parsed()) {
    for (const char* what : {"added", "upgraded", "unchanged"})
      for (const auto& name : r.body.value(what, json::array()))
        std::cout << what << ' ' << name.get<std::string>() << '\n';
  } else if (types_->parsed()) {
    if (type_.empty())
      print_types(r.body);
    else
      print_type(r.body);
  } else if (status_->parsed()) {
    print_cluster(r.body);
  } else {
    std::cout << r.body.dump(2) << '\n';
  }
}

} // namespace twinctl
