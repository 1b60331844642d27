#include "twin/runtime/model_catalog.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

namespace {

/// Models stored at most (each a type's upload).
constexpr size_t max_models = 10000;

/// Index keys (type names) read at most when looking for types no model defines.
constexpr size_t max_type_names = 100000;

std::string dtmi_path(const std::string& id) {
  return id.substr(0, id.find(';'));
}

caf::error refuse(const std::string& why) {
  return make_error(runtime_errc::invalid_model, why);
}

} // namespace

struct model_catalog::plan {
  /// The interfaces, each a document by its DTMI without the version, as stored.
  std::vector<std::pair<std::string, std::string>> interfaces;
  std::vector<type_ptr> added;
  std::vector<type_ptr> upgraded;
  std::vector<type_ptr> unchanged;
};

model_catalog::model_catalog(std::unique_ptr<kv_store> store, type_registry& types,
                             state_store& twins, warn_fn warn, installed_fn installed)
  : store_(std::move(store)),
    types_(types),
    twins_(twins),
    warn_(std::move(warn)),
    installed_(std::move(installed)) {}

model_catalog::~model_catalog() {
  store_.reset();  // first: its follower calls into the rest until it goes
}

namespace {

/// The interfaces of the model documents `texts` (parsed already), each as a document of
/// its own by its DTMI without the version; those that others here extend come first.
std::vector<std::pair<std::string, std::string>>
interfaces_of(const std::vector<std::pair<std::string, std::string>>& texts,
              const std::vector<type_ptr>& types) {
  std::vector<std::pair<size_t, std::pair<std::string, std::string>>> out;
  for (const auto& [origin, text] : texts) {
    auto doc = nlohmann::json::parse(text);
    for (const auto& i : doc.is_array() ? doc : nlohmann::json::array({doc})) {
      auto path = dtmi_path(i.at("@id").get<std::string>());
      auto t = std::find_if(types.begin(), types.end(),
                            [&](const type_ptr& x) { return dtmi_path(x->dtmi()) == path; });
      out.push_back({t == types.end() ? 0 : (*t)->extends().size(), {path, i.dump()}});
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<std::string, std::string>> sorted;
  for (auto& [depth, i] : out)
    sorted.push_back(std::move(i));
  return sorted;
}

/// The interfaces the registry's sources hold, by DTMI.
std::map<std::string, nlohmann::json> loaded_interfaces(const type_registry& types) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& [origin, text] : types.sources()) {
    auto doc = nlohmann::json::parse(text, nullptr, false);
    for (auto& i : doc.is_array() ? doc : nlohmann::json::array({doc}))
      if (i.is_object() && i.contains("@id") && i["@id"].is_string()) {
        auto id = i["@id"].get<std::string>();
        out[id] = std::move(i);
      }
  }
  return out;
}

} // namespace

caf::expected<model_catalog::plan>
model_catalog::check(const std::vector<std::pair<std::string, std::string>>& texts) const {
  auto parsed = parse_models(texts, types_);
  if (!parsed)
    return parsed.error();
  if (parsed->empty())
    return refuse(texts.front().first + ": the document holds no Interface");
  plan p;
  p.interfaces = interfaces_of(texts, *parsed);
  for (const auto& t : *parsed) {
    auto known = types_.find(t->name());
    if (known && known->name() != t->name())
      known = nullptr;  // found by another name: not this type
    if (!known) {
      if (auto other = types_.find(dtmi_path(t->dtmi())); other && !t->dtmi().empty())
        return refuse("type '" + t->name() + "' is a model of " + dtmi_path(t->dtmi())
                      + ", which type '" + other->name() + "' is: an upgrade keeps its name");
      p.added.push_back(t);
      continue;
    }
    if (dtmi_path(known->dtmi()) != dtmi_path(t->dtmi()))
      return refuse("type '" + t->name() + "' exists as a model of "
                    + (known->dtmi().empty() ? std::string{"C++ code"} : known->dtmi())
                    + ", not of " + dtmi_path(t->dtmi()));
    if (known->dtmi() == t->dtmi()) {
      p.unchanged.push_back(t);
      continue;
    }
    if (auto err = types_.can_replace(*t))
      return err;
    p.upgraded.push_back(t);
  }
  // The same version must be the same model: else nodes would differ after a restart.
  auto loaded = p.unchanged.empty() ? std::map<std::string, nlohmann::json>{}
                                    : loaded_interfaces(types_);
  for (const auto& same : p.unchanged) {
    auto path = dtmi_path(same->dtmi());
    auto mine = std::find_if(p.interfaces.begin(), p.interfaces.end(),
                             [&](const auto& i) { return i.first == path; });
    auto theirs = loaded.find(same->dtmi());
    if (mine != p.interfaces.end() && theirs != loaded.end()
        && theirs->second != nlohmann::json::parse(mine->second))
      return refuse(same->dtmi() + " is loaded with other contents: a change takes a higher "
                                   "version");
  }
  // A type that extends an upgraded one keeps the old contents: it must come along.
  for (const auto& up : p.upgraded) {
    auto path = dtmi_path(up->dtmi());
    for (const auto& t : types_.types()) {
      bool along = std::any_of(parsed->begin(), parsed->end(),
                               [&](const type_ptr& x) { return x->name() == t->name(); });
      if (along)
        continue;
      for (const auto& base : t->extends())
        if (dtmi_path(base) == path)
          return refuse("type '" + t->name() + "' extends " + path
                        + ": upgrade them together (one upload with both interfaces)");
    }
  }
  return p;
}

caf::error model_catalog::apply(const plan& p) {
  for (const auto& t : p.added)
    if (auto err = types_.add(t))
      return err;
  for (const auto& t : p.upgraded)
    if (auto err = types_.replace(t))
      return err;
  for (const auto& [path, text] : p.interfaces)
    types_.add_source("the stored model of " + path, text);  // the latest version's
  if (installed_) {
    for (const auto& t : p.added)
      installed_(*t);
    for (const auto& t : p.upgraded)
      installed_(*t);
  }
  return {};
}

caf::expected<std::vector<std::string>> model_catalog::reconcile() {
  auto stored = store_->list(max_models);
  if (!stored)
    return stored.error();
  std::vector<std::pair<std::string, std::string>> texts;
  for (auto& [path, text] : *stored)
    texts.emplace_back("the stored model of " + path, std::move(text));
  std::lock_guard<std::mutex> guard{mu_};
  if (texts.empty())
    return std::vector<std::string>{};
  if (auto p = check(texts); p && !apply(*p))
    return std::vector<std::string>{};
  // As one set they do not install (a model file has a higher version of one now, ...):
  // each on its own, bases before what extends them, again while any installs.
  std::vector<std::string> refused;
  for (bool progress = true; progress && !texts.empty();) {
    progress = false;
    refused.clear();
    for (auto it = texts.begin(); it != texts.end();) {
      auto p = check({*it});
      auto err = p ? apply(*p) : p.error();
      if (err) {
        auto why = error_message(err);
        refused.push_back(why.rfind(it->first, 0) == 0 ? why : it->first + ": " + why);
        ++it;
      } else {
        progress = true;
        it = texts.erase(it);
      }
    }
  }
  return refused;
}

caf::expected<std::vector<std::string>> model_catalog::load() {
  // Another node's upload comes as one stored interface after another: each change installs
  // what is stored as one set, and one that refers to a part still to come waits for it.
  auto follow = store_->follow([this](const std::string&, const std::string&) {
    auto refused = reconcile();
    if (!refused && warn_)
      warn_("cannot read the stored models: " + error_message(refused.error()));
    for (const auto& why : refused ? *refused : std::vector<std::string>{})
      if (warn_)
        warn_("a model stored by another node is not installed (yet): " + why);
    if (auto err = refresh_missing(); err && warn_)
      warn_("cannot look for twins of types no model defines: " + error_message(err));
  });
  if (follow)
    return follow;
  auto skipped = reconcile();
  if (!skipped)
    return skipped.error();
  if (auto err = refresh_missing())
    return err;
  return skipped;
}

caf::expected<model_catalog::outcome> model_catalog::put(const std::string& name,
                                                         const std::string& text) {
  outcome out;
  {
    std::lock_guard<std::mutex> guard{mu_};
    // What the store holds before the check: stored after it by another node, it conflicts.
    std::map<std::string, std::optional<std::string>> before;
    auto doc = nlohmann::json::parse(text, nullptr, false);
    for (const auto& i : doc.is_array() ? doc : nlohmann::json::array({doc}))
      if (i.is_object() && i.contains("@id") && i["@id"].is_string()) {
        auto path = dtmi_path(i["@id"].get<std::string>());
        auto held = store_->get(path);
        if (!held)
          return held.error();
        before[path] = std::move(*held);
      }
    auto p = check({{"the model of '" + name + "'", text}});
    if (!p)
      return p.error();
    std::vector<std::string> defined;
    bool named = false;
    for (const auto* list : {&p->added, &p->upgraded, &p->unchanged})
      for (const auto& t : *list) {
        defined.push_back("'" + t->name() + "'");
        named = named || t->name() == name || t->dtmi() == name || dtmi_path(t->dtmi()) == name;
      }
    if (!named) {
      std::string all;
      for (const auto& d : defined)
        all += (all.empty() ? "" : ", ") + d;
      return refuse("the model of '" + name + "' defines no type '" + name + "' (it defines "
                    + all + ")");
    }
    // Bases first: a node that follows the store installs what it has at each step.
    for (const auto& [path, doc] : p->interfaces) {
      auto stored = store_->put(path, doc, before[path]);
      if (!stored)
        return stored.error();
      if (!*stored)
        return make_error(runtime_errc::conflict,
                          "another model of " + path + " was stored meanwhile: try again");
    }
    if (auto err = apply(*p))
      return err;
    for (const auto& t : p->added)
      out.added.push_back(t->name());
    for (const auto& t : p->upgraded)
      out.upgraded.push_back(t->name());
    for (const auto& t : p->unchanged)
      out.unchanged.push_back(t->name());
  }
  if (auto err = refresh_missing(); err && warn_)
    warn_("cannot look for twins of types no model defines: " + error_message(err));
  return out;
}

std::vector<std::string> model_catalog::missing() const {
  {
    std::lock_guard<std::mutex> guard{missing_mu_};
    if (std::chrono::steady_clock::now() - looked_ < std::chrono::seconds{10})
      return missing_;
  }
  if (auto err = refresh_missing(); err && warn_)
    warn_("cannot look for twins of types no model defines: " + error_message(err));
  std::lock_guard<std::mutex> guard{missing_mu_};
  return missing_;
}

caf::error model_catalog::refresh_missing() const {
  auto names = twins_.index_keys(index_kind::by_type, max_type_names);
  std::lock_guard<std::mutex> guard{missing_mu_};
  looked_ = std::chrono::steady_clock::now();  // a failure too: not again at once
  if (!names)
    return names.error();
  missing_.clear();
  for (const auto& n : *names)
    if (!types_.find(n))
      missing_.push_back(n);
  return {};
}

void model_catalog::collect(std::vector<metrics::family>& out) const {
  out.push_back(metrics::single("twin_types", "Twin types the node has.",
                                metrics::metric_type::gauge,
                                static_cast<double>(types_.size())));
  out.push_back(metrics::single("twin_types_missing",
                                "Types that twins in the store have and no model of the node "
                                "defines (those twins can be read and deleted only).",
                                metrics::metric_type::gauge,
                                static_cast<double>(missing().size())));
}

} // namespace twin::runtime
