// The registry of a node's twin types: by name, by DTMI, by an unambiguous short name.

#include <algorithm>
#include <cstdlib>
#include <mutex>

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

type_registry::type_registry(type_registry&& other) noexcept
  : generation_(other.generation_.load()),
    replaced_(std::move(other.replaced_)),
    stand_ins_(std::move(other.stand_ins_)),
    sources_(std::move(other.sources_)),
    types_(std::move(other.types_)),
    by_dtmi_(std::move(other.by_dtmi_)),
    by_short_name_(std::move(other.by_short_name_)) {}

caf::error type_registry::add(type_ptr type) {
  std::unique_lock<std::shared_mutex> guard{mu_};
  const auto& name = type->name();
  if (!type->dtmi().empty()) {
    auto path = std::string{dtmi_path(type->dtmi())};
    if (auto other = by_dtmi_.find(path); other != by_dtmi_.end())
      return make_error(runtime_errc::invalid_model,
                        "types '" + other->second->name() + "' (" + other->second->dtmi()
                          + ") and '" + name + "' (" + type->dtmi() + ") are both models of "
                          + path);
  }
  if (types_.count(name) > 0)
    return make_error(runtime_errc::invalid_model, "type '" + name + "' is defined twice");
  index_locked(type);
  types_.emplace(name, std::move(type));
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

void type_registry::index_locked(const type_ptr& type) {
  if (type->dtmi().empty())
    return;
  by_dtmi_[std::string{dtmi_path(type->dtmi())}] = type;
  auto& same = by_short_name_[std::string{short_name(type->dtmi())}];
  same.erase(std::remove_if(same.begin(), same.end(),
                            [&](const type_ptr& t) { return t->name() == type->name(); }),
             same.end());
  same.push_back(type);
}

namespace {

/// The version of a DTMI, major and minor ("dtmi:a:b;3" -> {3, 0}, ";1.2" -> {1, 2};
/// none: {0, 0}).
std::pair<long, long> dtmi_version(const std::string& id) {
  auto semi = id.find(';');
  if (semi == std::string::npos)
    return {0, 0};
  char* end = nullptr;
  long major = std::strtol(id.c_str() + semi + 1, &end, 10);
  long minor = *end == '.' ? std::strtol(end + 1, nullptr, 10) : 0;
  return {major, minor};
}

std::string version_text(std::pair<long, long> v) {
  return std::to_string(v.first) + (v.second > 0 ? "." + std::to_string(v.second) : "");
}

} // namespace

caf::error type_registry::can_replace(const twin_type& type) const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  return check_replace_locked(type);
}

caf::error type_registry::check_replace_locked(const twin_type& type) const {
  auto i = types_.find(type.name());
  if (i == types_.end())
    return make_error(runtime_errc::invalid_model, "no type '" + type.name() + "' to upgrade");
  const auto& old = *i->second;
  auto refuse = [&](const std::string& why) {
    return make_error(runtime_errc::invalid_model, "type '" + old.name() + "': " + why);
  };
  if (dtmi_path(old.dtmi()) != dtmi_path(type.dtmi()))
    return refuse("its model is " + std::string{dtmi_path(old.dtmi())} + ", not "
                  + std::string{dtmi_path(type.dtmi())});
  if (!old.dtmi().empty() && dtmi_version(type.dtmi()) <= dtmi_version(old.dtmi()))
    return refuse(old.dtmi() + " is loaded: an upgrade takes a higher version than "
                  + version_text(dtmi_version(old.dtmi())));
  if (type.kind() != old.kind())
    return refuse(std::string{"an upgrade keeps the kind ("} + to_string(old.kind()) + ")");
  return {};
}

caf::error type_registry::replace(type_ptr type) {
  std::unique_lock<std::shared_mutex> guard{mu_};
  if (auto err = check_replace_locked(*type))
    return err;
  index_locked(type);
  auto& slot = types_[type->name()];
  replaced_.push_back(std::move(slot));
  slot = std::move(type);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

const twin_type& type_registry::stand_in(const std::string& name) const {
  std::unique_lock<std::shared_mutex> guard{mu_};
  auto& slot = stand_ins_[name];
  if (!slot) {
    auto built = type_builder{name, twin_kind::component}.stand_in().build();
    slot = *built;  // a type without contents always builds
  }
  return *slot;
}

void type_registry::add_source(std::string origin, std::string text) {
  std::unique_lock<std::shared_mutex> guard{mu_};
  sources_[std::move(origin)] = std::move(text);
}

std::vector<std::pair<std::string, std::string>> type_registry::sources() const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  return {sources_.begin(), sources_.end()};
}

size_t type_registry::size() const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  return types_.size();
}

type_ptr type_registry::find(std::string_view name) const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  return find_locked(name);
}

type_ptr type_registry::find_locked(std::string_view name) const {
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
  std::shared_lock<std::shared_mutex> guard{mu_};
  std::vector<std::string> out;
  for (const auto& [k, v] : types_)
    out.push_back(k);
  return out;
}

std::vector<type_ptr> type_registry::types() const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  std::vector<type_ptr> out;
  for (const auto& [k, v] : types_)
    out.push_back(v);
  return out;
}

caf::error type_registry::check_links() const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  auto check = [&](const twin_type& t, const std::string& name, const std::string& what) {
    if (name.empty() || name == "*" || types_.count(name) > 0)
      return caf::error{};
    auto found = find_locked(name);
    std::vector<std::string> known;
    for (const auto& [n, x] : types_)
      known.push_back(n);
    return make_error(runtime_errc::invalid_model,
                      "type '" + t.name() + "': " + what + " '" + name + "' "
                        + (found ? "must be written as its name, '" + found->name() + "'"
                                 : "is not a known type" + suggestion(name, known)));
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
