#include "twin/runtime/model.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "model_names.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/suggest.hpp"

namespace twin::runtime {

namespace {

constexpr const char* property_type_names[] = {"bool",   "int",    "double",
                                               "string", "object", "array"};
constexpr const char* aggregate_names[] = {"sum", "avg", "min", "max",
                                           "count", "any", "all", "worst"};

} // namespace

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_'))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

const char* to_string(property_type x) {
  return property_type_names[static_cast<int>(x)];
}

bool from_string(std::string_view text, property_type& out) {
  for (int i = 0; i < 6; ++i)
    if (text == property_type_names[i]) {
      out = static_cast<property_type>(i);
      return true;
    }
  // DTDL spellings.
  if (text == "boolean")
    out = property_type::boolean;
  else if (text == "integer" || text == "long")
    out = property_type::integer;
  else if (text == "float")
    out = property_type::real;
  else
    return false;
  return true;
}

const char* to_string(aggregate_fn x) {
  return aggregate_names[static_cast<int>(x)];
}

bool from_string(std::string_view text, aggregate_fn& out) {
  for (int i = 0; i < 8; ++i)
    if (text == aggregate_names[i]) {
      out = static_cast<aggregate_fn>(i);
      return true;
    }
  return false;
}

twin_context::~twin_context() = default;

// -- twin_type ----------------------------------------------------------------

const property_spec* twin_type::property(std::string_view name) const {
  auto i = index_of(name);
  return i < 0 ? nullptr : &properties_[static_cast<size_t>(i)];
}

int twin_type::index_of(std::string_view name) const {
  for (size_t i = 0; i < properties_.size(); ++i)
    if (properties_[i].name == name)
      return static_cast<int>(i);
  return -1;
}

const command_spec* twin_type::command(std::string_view name) const {
  auto i = std::find_if(commands_.begin(), commands_.end(),
                        [&](const command_spec& c) { return c.name == name; });
  return i == commands_.end() ? nullptr : &*i;
}

bool twin_type::has_command(std::string_view name) const {
  return command(name) != nullptr;
}

caf::error twin_type::check_value(const property_spec& spec, const value& v) const {
  auto mismatch = [&] {
    return make_error(runtime_errc::type_mismatch,
                      "property '" + spec.name + "' of type '" + name_ + "' expects "
                        + to_string(spec.type) + ", got " + to_string(v.type()) + " "
                        + to_string(v));
  };
  switch (spec.type) {
    case property_type::boolean:
      if (!v.is_bool())
        return mismatch();
      break;
    case property_type::integer:
      if (!v.is_int() && !(v.is_double() && std::nearbyint(v.as_double()) == v.as_double()))
        return mismatch();
      break;
    case property_type::real:
      if (!v.is_number())
        return mismatch();
      if (!std::isfinite(v.as_double()))
        return make_error(runtime_errc::out_of_range,
                          "property '" + spec.name + "' must be a finite number");
      break;
    case property_type::string:
      if (!v.is_string())
        return mismatch();
      break;
    case property_type::object:
      if (!v.is_map())
        return mismatch();
      return spec.schema ? check_schema(*spec.schema, v, spec.name)
                         : caf::error{};
    case property_type::array:
      if (!v.is_list())
        return mismatch();
      return spec.schema ? check_schema(*spec.schema, v, spec.name)
                         : caf::error{};
  }
  if (spec.schema)  // an Enum's values, a date's form, an integer's width
    if (auto err = check_schema(*spec.schema, v, spec.name))
      return err;
  if (!v.is_number())
    return {};
  auto x = v.as_double();
  if ((spec.min && x < *spec.min) || (spec.max && x > *spec.max)) {
    auto bound = [](const std::optional<double>& b, const char* inf) {
      return b ? to_string(value{*b}) : std::string{inf};
    };
    return make_error(runtime_errc::out_of_range,
                      "property '" + spec.name + "' = " + to_string(v) + " is out of range ["
                        + bound(spec.min, "-inf") + ", " + bound(spec.max, "inf") + "]");
  }
  return {};
}

const relationship_spec* twin_type::relationship(std::string_view name) const {
  for (const auto& r : relationships_)
    if (r.name == name)
      return &r;
  return nullptr;
}

caf::error twin_type::check_relationships(const std::vector<runtime::relationship>& rels) const {
  std::map<std::string_view, uint32_t> counts;
  for (size_t i = 0; i < rels.size(); ++i) {
    const auto& r = rels[i];
    const auto* spec = relationship(r.name);
    if (spec == nullptr) {
      std::vector<std::string> declared;
      for (const auto& d : relationships_)
        declared.push_back(d.name);
      return make_error(runtime_errc::unknown_property,
                        "type '" + name_ + "' declares no relationship '" + r.name + "'"
                          + suggestion(r.name, declared));
    }
    for (size_t j = 0; j < i; ++j)
      if (rels[j].name == r.name && rels[j].target == r.target)
        return make_error(runtime_errc::invalid_argument,
                          "relationship '" + r.name + "' to " + r.target.str()
                            + " is given twice");
    if (spec->max && ++counts[spec->name] > *spec->max)
      return make_error(runtime_errc::out_of_range,
                        "relationship '" + r.name + "' of type '" + name_ + "' takes at most "
                          + std::to_string(*spec->max) + " target"
                          + (*spec->max == 1 ? "" : "s"));
  }
  return {};
}

caf::error twin_type::check_reported(const value_map& values) const {
  for (const auto& [k, v] : values) {
    auto* spec = property(k);
    if (spec == nullptr)
      return make_error(runtime_errc::unknown_property,
                        "type '" + name_ + "' has no property '" + k + "'");
    if (spec->computed)
      return make_error(runtime_errc::read_only,
                        "property '" + k + "' of type '" + name_ + "' is computed and read-only");
    if (v.is_null())
      continue;
    if (auto err = check_value(*spec, v))
      return err;
  }
  return {};
}

caf::error twin_type::check_desired(const value_map& values) const {
  for (const auto& [k, v] : values) {
    auto* spec = property(k);
    if (spec == nullptr)
      return make_error(runtime_errc::unknown_property,
                        "type '" + name_ + "' has no property '" + k + "'");
    if (!spec->writable || spec->computed)
      return make_error(runtime_errc::read_only,
                        "property '" + k + "' of type '" + name_
                          + "' is not writable: it cannot be desired");
    if (v.is_null())
      continue;
    if (auto err = check_value(*spec, v))
      return err;
  }
  return {};
}

// -- type_builder -------------------------------------------------------------

type_builder::type_builder(std::string name, twin_kind kind) {
  type_.name_ = std::move(name);
  type_.kind_ = kind;
}

type_builder& type_builder::description(std::string text) {
  type_.description_ = std::move(text);
  return *this;
}

type_builder& type_builder::dtmi(std::string id, std::vector<std::string> extends) {
  type_.dtmi_ = std::move(id);
  type_.extends_ = std::move(extends);
  return *this;
}

type_builder& type_builder::display_name(std::string text) {
  type_.display_name_ = std::move(text);
  return *this;
}

type_builder& type_builder::stand_in() {
  type_.stand_in_ = true;
  return *this;
}

type_builder& type_builder::schema(schema_ptr s) {
  if (auto* p = last_property("schema"))
    p->schema = std::move(s);
  return *this;
}

type_builder& type_builder::semantic_type(std::string name) {
  if (auto* p = last_property("semantic type"))
    p->semantic_type = std::move(name);
  return *this;
}

type_builder& type_builder::telemetry() {
  if (auto* p = last_property("telemetry"))
    p->telemetry = true;
  return *this;
}

type_builder& type_builder::relationship(relationship_spec r) {
  if (!error_ && !valid_name(r.name))
    error_ = make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': '" + r.name
                          + "' is not a valid relationship name");
  if (!error_ && type_.relationship(r.name) != nullptr)
    error_ = make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': relationship '" + r.name
                          + "' is declared twice");
  type_.relationships_.push_back(std::move(r));
  return *this;
}

type_builder& type_builder::property(std::string name, property_type type) {
  property_spec p;
  p.name = std::move(name);
  p.type = type;
  type_.properties_.push_back(std::move(p));
  return *this;
}

property_spec* type_builder::last_property(const char* what) {
  if (!type_.properties_.empty())
    return &type_.properties_.back();
  if (!error_)
    error_ = make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': " + what + " before any property");
  return nullptr;
}

type_builder& type_builder::unit(std::string unit) {
  if (auto* p = last_property("unit"))
    p->unit = std::move(unit);
  return *this;
}

type_builder& type_builder::range(std::optional<double> min, std::optional<double> max) {
  if (auto* p = last_property("range")) {
    p->min = min;
    p->max = max;
  }
  return *this;
}

type_builder& type_builder::writable(bool yes) {
  if (auto* p = last_property("writable"))
    p->writable = yes;
  return *this;
}

type_builder& type_builder::describe(std::string text) {
  if (auto* p = last_property("describe"))
    p->description = std::move(text);
  return *this;
}

type_builder& type_builder::command(std::string name, std::string description) {
  type_.commands_.push_back(command_spec{std::move(name), std::move(description), {}});
  return *this;
}

type_builder& type_builder::command_effect(std::string command, value_map desired,
                                           std::string child_type) {
  effects_.emplace_back(std::move(command),
                        runtime::command_effect{std::move(desired), std::move(child_type)});
  return *this;
}

type_builder& type_builder::aggregate(std::string name, aggregate_fn fn, std::string source,
                                      std::string child_type) {
  type_.aggregates_.push_back(
    aggregate_spec{std::move(name), fn, std::move(source), std::move(child_type)});
  return *this;
}

type_builder& type_builder::derive(std::string name, std::string formula, std::string unit) {
  derived_texts_.push_back({std::move(name), std::move(formula), std::move(unit)});
  return *this;
}

type_builder& type_builder::alert(std::string name, std::string condition, severity level) {
  alert_texts_.emplace_back(std::move(name), std::move(condition));
  alert_levels_.push_back(level);
  return *this;
}

type_builder& type_builder::handlers(type_handlers h) {
  type_.handlers_ = std::move(h);
  return *this;
}

type_builder& type_builder::keep_history(std::string name) {
  history_names_.push_back(std::move(name));
  return *this;
}

type_builder& type_builder::detect_anomalies(std::string source, anomaly_options options) {
  type_.anomalies_.push_back(anomaly_spec{std::move(source), options, -1, -1});
  return *this;
}

type_builder& type_builder::dynamics(std::string property, std::string expr, double lag_s,
                                    double noise) {
  dynamics_texts_.push_back({std::move(property), std::move(expr), lag_s, noise});
  return *this;
}

type_builder& type_builder::time_to_limit(std::string source, double limit, bool upper,
                                         double half_life_s) {
  limit_texts_.push_back({std::move(source), {}, limit, upper, half_life_s});
  return *this;
}

type_builder& type_builder::time_to_limit(std::string source, std::string from,
                                         double half_life_s) {
  limit_texts_.push_back({std::move(source), std::move(from), 0, true, half_life_s});
  return *this;
}

type_builder& type_builder::learn_rul() {
  learns_rul_ = true;
  return *this;
}

caf::expected<type_ptr> type_builder::build() {
  if (error_)
    return error_;
  const auto& tn = type_.name_;
  auto fail = [&](const std::string& why) {
    return make_error(runtime_errc::invalid_model, "type '" + tn + "': " + why);
  };
  // A name, or the DTMI (without its version) of a model whose short name is taken.
  bool dtmi_name = tn.rfind("dtmi:", 0) == 0 && tn.size() <= 2048
                   && tn.find_first_of(std::string_view{";\0 ", 3}) == std::string::npos;
  if (!valid_name(tn) && !dtmi_name)
    return fail("invalid type name (letters, digits and '_', at most 64, not starting with a "
                "digit; or a DTMI without its version)");
  auto taken = [&](const std::string& n) { return type_.property(n) != nullptr; };
  std::vector<property_spec> declared;
  declared.swap(type_.properties_);
  for (auto& p : declared) {
    if (!valid_name(p.name))
      return fail("invalid property name '" + p.name + "'");
    if (p.name == "health")
      return fail("'health' is computed by the runtime and cannot be declared");
    if (taken(p.name))
      return fail("property '" + p.name + "' is declared twice");
    if (p.min && p.max && *p.min > *p.max)
      return fail("property '" + p.name + "' has min > max");
    if ((p.min || p.max) && p.type != property_type::integer && p.type != property_type::real)
      return fail("property '" + p.name + "' has a range but is not a number");
    p.computed = false;
    type_.properties_.push_back(std::move(p));
  }
  for (const auto& a : type_.aggregates_) {
    if (!valid_name(a.name) || taken(a.name))
      return fail("aggregate '" + a.name + "' has an invalid or taken name");
    if (a.fn != aggregate_fn::count && !valid_name(a.source))
      return fail("aggregate '" + a.name + "' needs a source property");
    property_spec p;
    p.name = a.name;
    p.computed = true;
    p.type = a.fn == aggregate_fn::any || a.fn == aggregate_fn::all ? property_type::boolean
             : a.fn == aggregate_fn::count                          ? property_type::integer
             : a.fn == aggregate_fn::worst                          ? property_type::string
                                                                    : property_type::real;
    p.description = std::string{to_string(a.fn)} + " of the children's " + a.source;
    type_.properties_.push_back(std::move(p));
  }
  if (auto err = add_derived_properties())
    return err;
  if (auto err = add_anomaly_scores())
    return err;
  if (auto err = add_limit_projections())
    return err;
  if (auto err = add_rul_properties())
    return err;
  property_spec health;
  health.name = "health";
  health.type = property_type::string;
  health.computed = true;
  health.description = "worst active alert of this twin and everything below it";
  type_.properties_.push_back(std::move(health));
  type_.history_.clear();
  for (const auto& name : history_names_) {
    int i = type_.index_of(name);
    if (i < 0)
      return fail("history of '" + name + "', which is no property");
    auto& p = type_.properties_[static_cast<size_t>(i)];
    if (p.type == property_type::object)
      return fail("history of '" + name + "', an object: only scalars have a history");
    if (!p.history)
      type_.history_.push_back(i);
    p.history = true;
  }
  if (auto err = resolve_derived())
    return err;
  for (auto& a : type_.anomalies_)
    a.score_position = type_.index_of(a.source + "_anomaly");
  if (auto err = resolve_dynamics())
    return err;
  for (size_t i = 0; i < type_.commands_.size(); ++i) {
    if (!valid_name(type_.commands_[i].name))
      return fail("invalid command name '" + type_.commands_[i].name + "'");
    for (size_t j = 0; j < i; ++j)
      if (type_.commands_[j].name == type_.commands_[i].name)
        return fail("command '" + type_.commands_[i].name + "' is declared twice");
  }
  if (auto err = add_command_effects())
    return err;
  type_.alerts_.clear();
  for (size_t i = 0; i < alert_texts_.size(); ++i) {
    const auto& [name, text] = alert_texts_[i];
    if (!valid_name(name))
      return fail("invalid alert name '" + name + "'");
    if (name == anomaly_alert && !type_.anomalies_.empty())
      return fail("alert 'anomaly' is raised by anomaly detection and cannot be declared");
    if (alert_levels_[i] == severity::ok)
      return fail("alert '" + name + "' needs severity warning or critical");
    auto cond = expression::parse(text);
    if (!cond)
      return fail("alert '" + name + "': " + error_message(cond.error()));
    for (const auto& p : cond->properties())
      if (!taken(p))
        return fail("alert '" + name + "' reads unknown property '" + p + "'");
    type_.alerts_.push_back(alert_rule{name, std::move(*cond), alert_levels_[i]});
  }
  return type_ptr{std::make_shared<twin_type>(type_)};
}

caf::error type_builder::add_command_effects() {
  for (auto& c : type_.commands_)
    c.effects.clear();
  for (auto& [name, effect] : effects_) {
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': command '" + name + "' " + why);
    };
    auto c = std::find_if(type_.commands_.begin(), type_.commands_.end(),
                          [&](const command_spec& s) { return s.name == name; });
    if (c == type_.commands_.end())
      return fail("has effects but is not declared");
    if (effect.desired.empty())
      return fail("sets no desired value");
    if (effect.child_type.empty()) {
      if (auto err = type_.check_desired(effect.desired))
        return fail("cannot set its desired values: " + error_message(err));
    } else if (effect.child_type != "*" && !valid_name(effect.child_type)) {
      return fail("names an invalid child type '" + effect.child_type + "'");
    }
    c->effects.push_back(effect);
  }
  return {};
}

caf::error type_builder::add_derived_properties() {
  type_.derived_.clear();
  for (const auto& d : derived_texts_) {
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': derived property '" + d.name + "' " + why);
    };
    if (!valid_name(d.name) || d.name == "health" || type_.property(d.name) != nullptr)
      return fail("has an invalid or taken name");
    auto f = formula::parse(d.formula);
    if (!f)
      return fail(error_message(f.error()));
    property_spec p;
    p.name = d.name;
    p.type = property_type::real;
    p.unit = d.unit;
    p.computed = true;
    p.description = "= " + d.formula;
    type_.properties_.push_back(std::move(p));
    type_.derived_.push_back(derived_spec{d.name, std::move(*f), {}, -1});
  }
  return {};
}

caf::error type_builder::resolve_derived() {
  auto& derived = type_.derived_;
  // Which derived properties each one reads (by position in `derived`).
  std::vector<std::vector<size_t>> reads(derived.size());
  for (size_t k = 0; k < derived.size(); ++k) {
    auto& d = derived[k];
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': derived property '" + d.name + "' " + why);
    };
    d.position = type_.index_of(d.name);
    d.inputs.clear();
    for (const auto& name : d.expr.inputs()) {
      int i = type_.index_of(name);
      if (i < 0)
        return fail("reads unknown property '" + name + "'");
      auto t = type_.properties_[static_cast<size_t>(i)].type;
      if (t != property_type::integer && t != property_type::real && t != property_type::boolean)
        return fail("reads '" + name + "', which is not a number or a boolean");
      d.inputs.push_back(i);
      for (size_t j = 0; j < derived.size(); ++j)
        if (derived[j].name == name)
          reads[k].push_back(j);
    }
  }
  // Each after those it reads: repeatedly take those whose inputs are all placed.
  std::vector<derived_spec> ordered;
  std::vector<bool> placed(derived.size(), false);
  while (ordered.size() < derived.size()) {
    bool progress = false;
    for (size_t k = 0; k < derived.size(); ++k) {
      if (placed[k] || !std::all_of(reads[k].begin(), reads[k].end(),
                                    [&](size_t j) { return placed[j]; }))
        continue;
      placed[k] = true;
      ordered.push_back(derived[k]);
      progress = true;
    }
    if (!progress) {
      std::string circle;
      for (size_t k = 0; k < derived.size(); ++k)
        if (!placed[k])
          circle += (circle.empty() ? "'" : ", '") + derived[k].name + "'";
      return make_error(runtime_errc::invalid_model, "type '" + type_.name_
                                                       + "': derived properties " + circle
                                                       + " read each other in a circle");
    }
  }
  derived = std::move(ordered);
  return {};
}

} // namespace twin::runtime
