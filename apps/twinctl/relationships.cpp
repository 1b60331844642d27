#include "relationships.hpp"

#include <iostream>

#include "output.hpp"

namespace twinctl {

void relationship_commands::add_to(CLI::App& app) {
  list_ = app.add_subcommand("relationships", "A twin's relationships, or those to it");
  list_->add_option("id", id_, "Twin id")->required();
  list_->add_flag("--incoming", incoming_, "The relationships of other twins to this one");
  list_->add_option("--name", name_, "Of this name only");
  list_->add_option("--limit", limit_, "At most this many twins (--incoming)");
  list_->add_option("--cursor", cursor_, "Where the previous page ended (--incoming)");
  relate_ = app.add_subcommand("relate", "Add a relationship from a twin to another");
  unrelate_ = app.add_subcommand("unrelate", "Remove a relationship of a twin");
  for (auto* cmd : {relate_, unrelate_}) {
    cmd->add_option("id", id_, "The twin that has it")->required();
    cmd->add_option("name", name_, "The relationship, as the twin's type declares it")
      ->required();
    cmd->add_option("target", target_, "The twin it points at")->required();
  }
}

int relationship_commands::run(client& c, bool as_json) const {
  try {
    return list_->parsed() ? list(c, as_json) : change(c, as_json);
  } catch (const std::exception& e) {
    std::cerr << "twinctl: " << e.what() << '\n';
    return unreachable;
  }
}

int relationship_commands::list(client& c, bool as_json) const {
  int code = ok;
  auto target = "/v1/twins/" + percent_encode(id_) + "/relationships"
                + query_string({{"incoming", incoming_ ? "true" : ""},
                                {"name", name_},
                                {"limit", limit_ > 0 ? std::to_string(limit_) : ""},
                                {"cursor", cursor_}});
  auto r = call_checked(c, http::verb::get, target, code);
  if (!r)
    return code;
  if (as_json) {
    std::cout << r->body.dump(2) << '\n';
    return ok;
  }
  std::vector<std::vector<std::string>> rows{
    {incoming_ ? "SOURCE" : "TWIN", "RELATIONSHIP", incoming_ ? "TWIN" : "TARGET"}};
  for (const auto& x : r->body.value(incoming_ ? "incoming" : "relationships", json::array()))
    rows.push_back(incoming_ ? std::vector<std::string>{x.value("source", ""), x.value("name", ""), id_}
                             : std::vector<std::string>{id_, x.value("name", ""), x.value("target", "")});
  print_table(rows);
  if (r->body.contains("cursor") && r->body["cursor"].is_string())
    std::cout << "more: --cursor " << r->body["cursor"].get<std::string>() << '\n';
  return ok;
}

int relationship_commands::change(client& c, bool as_json) const {
  bool add = relate_->parsed();
  auto path = "/v1/twins/" + percent_encode(id_);
  for (int attempt = 0; attempt < 5; ++attempt) {
    int code = ok;
    auto twin = call_checked(c, http::verb::get, path, code);
    if (!twin)
      return code;
    auto rels = twin->body.value("relationships", json::array());
    json wanted{{"name", name_}, {"target", target_}};
    auto at = std::find(rels.begin(), rels.end(), wanted);
    if ((at != rels.end()) == add) {
      std::cout << id_ << (add ? " already has " : " has no ") << name_ << " -> " << target_
                << '\n';
      return ok;
    }
    if (add)
      rels.push_back(wanted);
    else
      rels.erase(at);
    auto version = std::to_string(twin->body.value("version", 0));
    auto r = c.call(http::verb::patch, path, json{{"relationships", rels}}.dump(),
                    "application/merge-patch+json", {{http::field::if_match, '"' + version + '"'}});
    if (r.status == 412)
      continue;  // changed since it was read: read it again
    if (exit_code_of(r.status) != ok) {
      std::cerr << "twinctl: " << error_text(r) << '\n';
      return exit_code_of(r.status);
    }
    if (as_json)
      std::cout << r.body.dump(2) << '\n';
    else
      std::cout << (add ? "related " : "unrelated ") << id_ << ' ' << name_ << " -> " << target_
                << ", version " << r.body.value("version", 0) << '\n';
    return ok;
  }
  std::cerr << "twinctl: " << id_ << " kept changing; try again\n";
  return conflict;
}

} // namespace twinctl
