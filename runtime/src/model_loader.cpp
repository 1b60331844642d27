// Model files: DTDL v2 or v3 Interfaces (dtdl.cpp reads them: extends, schemas, contents)
// plus a "twin" object for what DTDL has no words for: the kind, aggregates over children,
// derived properties, what commands set, alert rules, anomaly detection, times to limits,
// dynamics, and the properties whose history is kept. See docs/models.md.

#include <algorithm>
#include <set>

#include "dtdl.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/suggest.hpp"

namespace twin::runtime {

namespace {

using json = nlohmann::json;
using dtdl::fail;
using dtdl::model_error;

/// Maps a type's name as a model writes it (a DTMI, a type's name, or a short name that
/// is not ambiguous) to the type's name in the registry; "" and "*" stay. `what` names
/// where it is written, for the error.
using name_resolver = std::function<std::string(const std::string& text, const std::string& what)>;

const json& member(const json& obj, const char* key, const char* where) {
  auto i = obj.find(key);
  if (i == obj.end())
    fail(std::string{where} + " has no \"" + key + "\"");
  return *i;
}

std::string string_member(const json& obj, const char* key, const char* where) {
  const auto& v = member(obj, key, where);
  if (!v.is_string())
    fail(std::string{where} + ": \"" + key + "\" must be a string");
  return v.get<std::string>();
}

std::string optional_string(const json& obj, const char* key) {
  auto i = obj.find(key);
  if (i == obj.end() || !i->is_string())
    return {};
  return i->get<std::string>();
}

std::optional<double> optional_number(const json& obj, const char* key) {
  auto i = obj.find(key);
  if (i == obj.end())
    return std::nullopt;
  if (!i->is_number())
    fail(std::string{"\""} + key + "\" must be a number");
  return i->get<double>();
}

/// The entries of the list `key` of `ext` (none if it has no such key), each an object.
const json::array_t& entries(const json& ext, const char* key) {
  static const json::array_t none;
  auto i = ext.find(key);
  if (i == ext.end())
    return none;
  if (!i->is_array())
    fail(std::string{"\""} + key + "\" must be a list");
  for (const auto& e : *i)
    if (!e.is_object())
      fail(std::string{"every entry of \""} + key + "\" must be an object");
  return i->get_ref<const json::array_t&>();
}

anomaly_options anomaly_options_of(const std::string& name, const json& o) {
  auto where = "anomaly detection of '" + name + "'";
  if (!o.is_object())
    fail(where + ": its options must be an object ({} for the defaults)");
  anomaly_options out;
  for (const auto& [key, v] : o.items()) {
    if (!v.is_number())
      fail(where + ": \"" + key + "\" must be a number");
    auto count = [&] {
      if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX)
        fail(where + ": \"" + key + "\" must be a whole number of samples");
      return static_cast<uint32_t>(v.get<uint64_t>());
    };
    if (key == "sensitivity")
      out.sensitivity = v.get<double>();
    else if (key == "threshold")
      out.threshold = v.get<double>();
    else if (key == "warmup")
      out.warmup = count();
    else if (key == "hold")
      out.hold = count();
    else if (key == "memory")
      out.memory = count();
    else
      fail(where + ": unknown option \"" + key
           + "\" (sensitivity, threshold, warmup, hold, memory)");
  }
  return out;
}

/// Adds what the twin extension says of children and commands: aggregates, command
/// effects, derived properties and alerts.
void add_rollups(type_builder& b, const json& ext, const name_resolver& resolve) {
  for (const auto& a : entries(ext, "aggregates")) {
    aggregate_fn fn;
    auto fn_name = string_member(a, "function", "an aggregate");
    if (!from_string(fn_name, fn))
      fail("aggregate function \"" + fn_name
           + "\" is not one of sum, avg, min, max, count, any, all, worst");
    b.aggregate(string_member(a, "name", "an aggregate"), fn, optional_string(a, "source"),
                resolve(optional_string(a, "childType"), "an aggregate's childType"));
  }
  for (const auto& c : entries(ext, "commands")) {
    auto name = string_member(c, "name", "a command's effect");
    auto desired = map_from_json(member(c, "desired", ("command '" + name + "'").c_str()));
    if (!desired)
      fail("command '" + name + "': \"desired\": " + error_message(desired.error()));
    b.command_effect(name, std::move(*desired),
                     resolve(optional_string(c, "childType"), "command '" + name + "'"));
  }
  for (const auto& d : entries(ext, "derived"))
    b.derive(string_member(d, "name", "a derived property"),
             string_member(d, "formula", "a derived property"), optional_string(d, "unit"));
  for (const auto& a : entries(ext, "alerts")) {
    severity level;
    if (!from_string(string_member(a, "severity", "an alert"), level) || level == severity::ok)
      fail("an alert's \"severity\" must be warning or critical");
    b.alert(string_member(a, "name", "an alert"), string_member(a, "when", "an alert"), level);
  }
}

/// Adds what the twin extension says of predictions: anomaly detection, dynamics, times to
/// limits, remaining useful life, and the properties whose history is kept.
void add_predictions(type_builder& b, const json& ext) {
  if (auto anomaly = ext.find("anomaly"); anomaly != ext.end()) {
    if (!anomaly->is_object())
      fail("\"anomaly\" must map property names to their options ({} for the defaults)");
    for (const auto& [name, o] : anomaly->items())
      b.detect_anomalies(name, anomaly_options_of(name, o));
  }
  if (auto dynamics = ext.find("dynamics"); dynamics != ext.end()) {
    if (!dynamics->is_object())
      fail("\"dynamics\" must map property names to {\"target\", \"lag\"} or {\"rate\"}");
    for (const auto& [name, d] : dynamics->items()) {
      auto where = "the dynamics of '" + name + "'";
      if (!d.is_object())
        fail(where + " must be {\"target\", \"lag\", \"noise\"?} or {\"rate\", \"noise\"?}");
      for (const auto& [key, v] : d.items())
        if (key != "target" && key != "lag" && key != "rate" && key != "noise")
          fail(where + ": unknown field \"" + key + "\" (target, lag, rate, noise)");
      bool lag = d.contains("target");
      if (lag == d.contains("rate"))
        fail(where + " need either a \"target\" (with a \"lag\") or a \"rate\"");
      auto lag_s = optional_number(d, "lag");
      if (lag && (!lag_s || *lag_s <= 0))
        fail(where + ": \"lag\" must be the target's time constant in seconds, above 0");
      if (!lag && lag_s)
        fail(where + ": a \"rate\" takes no \"lag\"");
      b.dynamics(name, string_member(d, lag ? "target" : "rate", where.c_str()),
                 lag ? *lag_s : 0, optional_number(d, "noise").value_or(0));
    }
  }
  if (auto limits = ext.find("timeToLimit"); limits != ext.end()) {
    if (!limits->is_object())
      fail("\"timeToLimit\" must map property names to {\"limit\"}, {\"above\"} or "
           "{\"below\"}");
    for (const auto& [name, l] : limits->items()) {
      auto where = "the time to limit of '" + name + "'";
      if (!l.is_object())
        fail(where + " must be {\"limit\": alert, \"max\" or \"min\"}, {\"above\": x} or "
                     "{\"below\": x}, with an optional \"halfLife\" in seconds");
      for (const auto& [key, v] : l.items())
        if (key != "limit" && key != "above" && key != "below" && key != "halfLife")
          fail(where + ": unknown field \"" + key + "\" (limit, above, below, halfLife)");
      if (l.contains("limit") + l.contains("above") + l.contains("below") != 1)
        fail(where + " needs one of \"limit\", \"above\" and \"below\"");
      double half_life = optional_number(l, "halfLife").value_or(600);
      if (l.contains("limit"))
        b.time_to_limit(name, string_member(l, "limit", where.c_str()), half_life);
      else
        b.time_to_limit(name, *optional_number(l, l.contains("above") ? "above" : "below"),
                        l.contains("above"), half_life);
    }
  }
  if (auto rul = ext.find("rul"); rul != ext.end()) {
    if (!rul->is_boolean())
      fail("\"rul\" must be true (the twins show a remaining useful life learned from the "
           "fleet) or false");
    if (rul->get<bool>())
      b.learn_rul();
  }
  if (auto history = ext.find("history"); history != ext.end()) {
    if (!history->is_array())
      fail("\"history\" must be a list of property names");
    for (const auto& h : *history) {
      if (!h.is_string())
        fail("\"history\" must be a list of property names");
      b.keep_history(h.get<std::string>());
    }
  }
}

/// The twin extension of `i` with its bases': lists joined (the bases' first), maps merged
/// and other values taken from the nearest that has them; "name" is the interface's own.
json merged_extension(const dtdl::interface& i, const dtdl::flattened& f) {
  json out = json::object();
  auto merge = [&](const json& ext) {
    if (!ext.is_object())
      fail("interface '" + i.id.text() + "': \"twin\" must be an object");
    for (const auto& [key, v] : ext.items()) {
      if (key == "name")
        continue;
      auto& slot = out[key];
      if (slot.is_array() && v.is_array())
        slot.insert(slot.end(), v.begin(), v.end());
      else if (slot.is_object() && v.is_object())
        slot.update(v);
      else
        slot = v;
    }
  };
  for (const auto* base : f.bases)
    if (auto e = base->doc.find("twin"); e != base->doc.end())
      merge(*e);
  if (auto e = i.doc.find("twin"); e != i.doc.end())
    merge(*e);
  return out;
}

property_type type_of(const value_schema& s) {
  using k = value_schema::kind;
  switch (s.k) {
    case k::boolean: return property_type::boolean;
    case k::integer: return property_type::integer;
    case k::real: return property_type::real;
    case k::enumeration:
      return s.enum_kind == k::integer ? property_type::integer : property_type::string;
    case k::object:
    case k::map: return property_type::object;
    case k::array: return property_type::array;
    default: return property_type::string;
  }
}

/// Adds a Property or Telemetry `item` to `b`.
void add_property(type_builder& b, const json& item, const std::string& name,
                  const dtdl::library& lib, const std::string& where) {
  auto schema = dtdl::schema_of(member(item, "schema", where.c_str()), lib, where);
  b.property(name, type_of(*schema));
  using k = value_schema::kind;
  bool plain = schema->k == k::boolean || schema->k == k::real || schema->k == k::string
               || (schema->k == k::integer && !schema->min && !schema->max);
  if (!plain)
    b.schema(schema);
  if (dtdl::has_class(item, "Telemetry"))
    b.telemetry();
  if (auto st = dtdl::semantic_type(item); !st.empty())
    b.semantic_type(st);
  if (auto u = optional_string(item, "unit"); !u.empty())
    b.unit(u);
  auto lo = optional_number(item, "minimum");
  auto hi = optional_number(item, "maximum");
  if (lo || hi)
    b.range(lo, hi);
  if (auto w = item.find("writable"); w != item.end()) {
    if (!w->is_boolean())
      fail(where + ": \"writable\" must be true or false");
    b.writable(w->get<bool>() && !dtdl::has_class(item, "Telemetry"));
  }
  if (auto d = dtdl::text_of(item, "description"); !d.empty())
    b.describe(d);
}

/// Adds a Component `item`: a property holding an object of the component interface's
/// properties, writable if one of them is.
void add_component(type_builder& b, const json& item, const std::string& name,
                   const dtdl::library& lib, const std::string& where) {
  const auto& s = member(item, "schema", where.c_str());
  auto id = s.is_object() ? optional_string(s, "@id") : s.is_string() ? s.get<std::string>() : "";
  const auto* component = lib.find(dtdl::dtmi::parse(id, where).text());
  if (component == nullptr)
    fail(where + ": its schema '" + id + "' is not a defined interface");
  auto object = std::make_shared<value_schema>();
  object->k = value_schema::kind::object;
  object->id = component->id.text();
  bool writable = false;
  for (const auto& c : dtdl::flatten(*component, lib).contents) {
    const auto& e = *c.element;
    if (!dtdl::has_class(e, "Property") && !dtdl::has_class(e, "Telemetry"))
      continue;
    auto field = e["name"].get<std::string>();
    object->fields.emplace_back(
      field, dtdl::schema_of(member(e, "schema", where.c_str()), lib, where + "." + field));
    writable = writable || e.value("writable", false);
  }
  b.property(name, property_type::object).schema(object).writable(writable);
  if (auto d = dtdl::text_of(item, "description"); !d.empty())
    b.describe(d);
}

void add_relationship(type_builder& b, const json& item, const std::string& name,
                      const name_resolver& resolve, const std::string& where, bool external) {
  relationship_spec r;
  r.name = name;
  r.external = external;
  if (item.contains("target"))
    r.target = resolve(string_member(item, "target", where.c_str()),
                      "relationship " + where + ": its target");
  if (auto m = item.find("maxMultiplicity"); m != item.end()) {
    if (!m->is_number_unsigned() || m->get<uint64_t>() < 1 || m->get<uint64_t>() > UINT32_MAX)
      fail(where + ": \"maxMultiplicity\" must be a whole number from 1");
    r.max = static_cast<uint32_t>(m->get<uint64_t>());
  }
  if (auto m = item.find("minMultiplicity"); m != item.end() && *m != 0)
    fail(where + ": \"minMultiplicity\" must be 0 (DTDL)");
  if (auto w = item.find("writable"); w != item.end() && w->is_boolean())
    r.writable = w->get<bool>();
  r.description = dtdl::text_of(item, "description");
  b.relationship(std::move(r));
}

/// The type of interface `i` (with what it inherits, `f`), named `name`.
type_builder builder_of(const dtdl::interface& i, const dtdl::flattened& f,
                        const std::string& name, const dtdl::library& lib,
                        const name_resolver& resolve) {
  auto ext = merged_extension(i, f);
  twin_kind kind = twin_kind::asset;  // what a model without the extension describes
  if (ext.contains("kind") && !from_string(string_member(ext, "kind", "\"twin\""), kind))
    fail("\"kind\" must be component, asset, system or process");
  type_builder b{name, kind};
  std::vector<std::string> bases;
  for (auto base = f.bases.rbegin(); base != f.bases.rend(); ++base)
    bases.push_back((*base)->id.text());
  b.dtmi(i.id.text(), std::move(bases));
  b.display_name(dtdl::text_of(i.doc, "displayName"));
  if (auto d = dtdl::text_of(i.doc, "description"); !d.empty())
    b.description(d);
  std::set<std::string> external;  // relationships whose targets are not checked
  if (auto e = ext.find("externalTargets"); e != ext.end()) {
    if (!e->is_array() || !std::all_of(e->begin(), e->end(), [](const json& x) { return x.is_string(); }))
      fail("\"externalTargets\" must be a list of relationship names");
    for (const auto& x : *e)
      external.insert(x.get<std::string>());
  }
  for (const auto& c : f.contents) {
    const auto& item = *c.element;
    auto item_name = item["name"].get<std::string>();
    auto where = "'" + item_name + "'";
    if (c.owner != &i)
      where += " (of " + c.owner->id.text() + ")";
    if (dtdl::has_class(item, "Property") || dtdl::has_class(item, "Telemetry"))
      add_property(b, item, item_name, lib, where);
    else if (dtdl::has_class(item, "Command"))
      b.command(item_name, dtdl::text_of(item, "description"));
    else if (dtdl::has_class(item, "Relationship"))
      add_relationship(b, item, item_name, resolve, where, external.erase(item_name) > 0);
    else if (dtdl::has_class(item, "Component"))
      add_component(b, item, item_name, lib, where);
    else
      fail(where + ": unsupported \"@type\" (Property, Telemetry, Command, Relationship or "
                   "Component)");
  }
  if (!external.empty())
    fail("\"externalTargets\": '" + *external.begin() + "' is no relationship of the interface");
  add_rollups(b, ext, resolve);
  add_predictions(b, ext);
  return b;
}

/// The type of interface `i`, named `name`.
type_builder builder_of(const dtdl::interface& i, const std::string& name,
                        const dtdl::library& lib, const name_resolver& resolve) {
  auto f = dtdl::flatten(i, lib);  // its errors name the interfaces they are about
  try {
    return builder_of(i, f, name, lib, resolve);
  } catch (const model_error& e) {
    throw model_error{"interface '" + i.id.text() + "': " + e.why};
  }
}

/// A model document, parsed.
struct document {
  std::string origin;
  json doc;
};

/// The model batch of `docs`: their interfaces, each type's name, and how names resolve
/// against them and `known` (the registry's types).
class batch {
public:
  /// `strict`: a name that is neither in `docs` nor in `known` is an error; otherwise it
  /// stays as written (for `type_registry::check_links` to check once every type is in).
  batch(const std::vector<document>& docs, const type_registry& known, bool strict = true,
        const std::vector<document>& library = {})
    : known_(known), strict_(strict) {
    // The library's interfaces may be extended and named, and are not built; its named
    // schemas yield to the batch's own.
    for (const auto& d : library)
      dtdl::read_document(d.doc, d.origin, library_, lib_.schemas);
    for (const auto& d : docs)
      try {
        dtdl::read_document(d.doc, d.origin, interfaces_, lib_.schemas);
      } catch (const model_error& e) {
        throw model_error{d.origin + ": " + e.why};
      }
    for (const auto& i : interfaces_) {
      auto other = lib_.interfaces.emplace(i.id.text(), &i);
      if (!other.second)
        fail("interface '" + i.id.text() + "' is defined twice: in " + other.first->second->origin
             + " and " + i.origin);
      auto version = paths_.emplace(i.id.path, &i);
      if (!version.second)
        fail(i.id.path + " is defined in two versions, '" + version.first->second->id.text()
             + "' (" + version.first->second->origin + ") and '" + i.id.text() + "' ("
             + i.origin + "): keep one");
    }
    for (const auto& i : library_)
      lib_.interfaces.emplace(i.id.text(), &i);
    name_types();
  }

  /// The builder of interface `i`'s type.
  type_builder builder(const dtdl::interface& i) const {
    try {
      return builder_of(i, names_.at(i.id.path), lib_, resolver());
    } catch (const model_error& e) {
      throw model_error{i.origin + ": " + e.why};
    }
  }

  /// Builds every interface's type, in the order of the documents.
  std::vector<type_ptr> build() const {
    std::vector<type_ptr> out;
    for (const auto& i : interfaces_) {
      auto t = builder(i).build();
      if (!t)
        fail(i.origin + ": interface '" + i.id.text() + "': " + error_message(t.error()));
      out.push_back(*t);
    }
    return out;
  }

  /// The last interface read: a document's own (those inline in it come before it);
  /// nullptr if there is none.
  const dtdl::interface* last() const {
    return interfaces_.empty() ? nullptr : &interfaces_.back();
  }

  /// Resolves names written in the models (see `name_resolver`).
  name_resolver resolver() const {
    return [this](const std::string& text, const std::string& what) -> std::string {
      if (text.empty() || text == "*")
        return text;
      if (text.rfind("dtmi:", 0) == 0) {
        auto id = dtdl::dtmi::parse(text, what);
        if (auto i = paths_.find(id.path); i != paths_.end())
          return names_.at(i->first);
      }
      for (const auto& [path, name] : names_)
        if (name == text)
          return name;
      if (auto t = known_.find(text))
        return t->name();
      if (!strict_)
        return text;
      if (text.rfind("dtmi:", 0) == 0)
        fail(what + ": no model defines '" + text + "'");
      std::vector<std::string> all = known_.names();
      for (const auto& [path, name] : names_)
        all.push_back(name);
      fail(what + ": '" + text + "' is not a known type" + suggestion(text, all));
    };
  }

private:
  /// A type's name: its "twin" extension's "name", else the last segment of its DTMI,
  /// unless another model or a type already known has it: then the DTMI without version.
  void name_types() {
    std::map<std::string, int> uses;
    for (const auto& i : interfaces_)
      ++uses[i.id.short_name()];
    for (const auto& i : interfaces_) {
      auto ext = i.doc.find("twin");
      auto given = ext != i.doc.end() && ext->is_object() ? optional_string(*ext, "name") : "";
      auto name = !given.empty() ? given : i.id.short_name();
      if (auto same = known_.find(i.id.path); same && given.empty())
        name = same->name();  // a new version of a known model: an upgrade keeps the name
      else if (given.empty() && (uses[name] > 1 || known_.find(name)))
        name = i.id.path;
      names_[i.id.path] = name;
    }
  }

  const type_registry& known_;
  bool strict_;
  std::vector<dtdl::interface> interfaces_;
  std::vector<dtdl::interface> library_;
  dtdl::library lib_;
  std::map<std::string, const dtdl::interface*> paths_;  ///< by DTMI without version
  std::map<std::string, std::string> names_;             ///< type names, by DTMI path
};

caf::error model_failure(const std::string& why) {
  return make_error(runtime_errc::invalid_model, why);
}

/// The document of `text`, or a model error naming `origin`.
document read_text(std::string_view text, const std::string& origin) {
  auto doc = parse_json(text, origin, 64);
  if (!doc)
    throw model_error{error_message(doc.error())};
  return {origin, std::move(*doc)};
}

} // namespace

caf::expected<std::vector<type_ptr>>
parse_models(const std::vector<std::pair<std::string, std::string>>& texts,
             const type_registry& known) {
  try {
    std::vector<document> docs;
    for (const auto& [origin, text] : texts)
      docs.push_back(read_text(text, origin));
    std::vector<document> library;
    for (const auto& [origin, text] : known.sources())
      library.push_back(read_text(text, origin));
    batch b{docs, known, true, library};
    return b.build();
  } catch (const model_error& e) {
    return model_failure(e.why);
  }
}

caf::expected<type_builder> model_builder(std::string_view text, const std::string& origin) {
  try {
    type_registry none;
    batch b{{read_text(text, origin)}, none, false};
    if (b.last() == nullptr)
      fail(origin + ": the document holds no Interface");
    return b.builder(*b.last());
  } catch (const model_error& e) {
    return model_failure(e.why);
  }
}

caf::expected<type_ptr> parse_model(std::string_view text, const std::string& origin) {
  auto b = model_builder(text, origin);
  if (!b)
    return b.error();
  auto t = b->build();
  if (!t)
    return model_failure(origin + ": " + error_message(t.error()));
  return t;
}

} // namespace twin::runtime
