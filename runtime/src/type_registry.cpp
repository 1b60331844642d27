// The registry of a node's twin types: by name, by DTMI, by an unambiguous short name.

#include <algorithm>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/suggest.hpp"

namespace twin::runtime {

namespace {

/// "dtmi:factory:motor;1" -> "dtmi:factory:motor"
std::string_view dtmi_path(std::string_view id) {
  return id.substr(0, id.find(';'));
}

std::string_view short_name(std::string_view id) {
  auto path = dtmi_path(id);
  return path.substr(path.rfind(':') + 1);
}

} // namespace

caf::error type_registry::add(type_ptr type) {
  const auto& name = type->name();
  if (types_.count(name) > 0)
    return make_error(runtime_errc::invalid_model, "type '" + name + "' is defined twice");
  if (!type->dtmi().empty()) {
    auto path = std::string{dtmi_path(type->dtmi())};
    if (auto other = by_dtmi_.find(path); other != by_dtmi_.end())
      return make_error(runtime_errc::invalid_model,
                        "types '" + other->second->name() + "' and '" + name
                          + "' are both models of " + path);
    by_dtmi_.emplace(path, type);
    by_short_name_[std::string{short_name(type->dtmi())}].push_back(type);
  }
  types_.emplace(name, std::move(type));
  return {};
}

type_ptr type_registry::find(std::string_view name) const {
  if (auto i = types_.find(name); i != types_.end())
    return i->second;
  if (name.rfind("dtmi:", 0) == 0) {
    auto i = by_dtmi_.find(dtmi_path(name));
    if (i != by_dtmi_.end() && (name.find(';') == std::string_view::npos || i->second->dtmi() == name))
      return i->second;
    return nullptr;
  }
  if (auto i = by_short_name_.find(name); i != by_short_name_.end() && i->second.size() == 1)
    return i->second.front();
  return nullptr;
}

std::vector<std::string> type_registry::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : types_)
    out.push_back(k);
  return out;
}

std::vector<type_ptr> type_registry::types() const {
  std::vector<type_ptr> out;
  for (const auto& [k, v] : types_)
    out.push_back(v);
  return out;
}

caf::error type_registry::check_links() const {
  auto check = [&](const twin_type& t, const std::string& name, const std::string& what) {
    if (name.empty() || name == "*" || types_.count(name) > 0)
      return caf::error{};
    auto found = find(name);
    return make_error(runtime_errc::invalid_model,
                      "type '" + t.name() + "': " + what + " '" + name + "' "
                        + (found ? "must be written as its name, '" + found->name() + "'"
                                 : "is not a known type" + suggestion(name, names())));
  };
  for (const auto& [n, t] : types_) {
    for (const auto& a : t->aggregates())
      if (auto err = check(*t, a.child_type, "aggregate '" + a.name + "' over the child type"))
        return err;
    for (const auto& c : t->commands())
      for (const auto& e : c.effects)
        if (auto err = check(*t, e.child_type, "command '" + c.name + "' sets the child type"))
          return err;
    for (const auto& r : t->relationships())
      if (auto err = check(*t, r.target, "relationship '" + r.name + "' targets the type"))
        return err;
  }
  return {};
}

} // namespace twin::runtime
