// The parts of a twin type that predict: anomaly scores, times to limits, dynamics and
// the remaining useful life, as the type builder checks and adds them.

#include <cmath>
#include <cstdio>
#include <optional>
#include <regex>

#include "model_names.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"

namespace twin::runtime {

caf::error type_builder::add_anomaly_scores() {
  for (size_t k = 0; k < type_.anomalies_.size(); ++k) {
    auto& a = type_.anomalies_[k];
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': anomaly detection of '" + a.source + "' "
                          + why);
    };
    a.source_position = type_.index_of(a.source);
    if (a.source_position < 0)
      return fail("names no property");
    const auto& src = type_.properties_[static_cast<size_t>(a.source_position)];
    if (src.computed || (src.type != property_type::real && src.type != property_type::integer))
      return fail("needs a declared number: it scores telemetry samples");
    for (size_t j = 0; j < k; ++j)
      if (type_.anomalies_[j].source == a.source)
        return fail("is declared twice");
    if (const char* why = a.options.check())
      return fail(std::string{"has invalid options: "} + why);
    property_spec p;
    p.name = a.source + "_anomaly";
    if (!valid_name(p.name) || type_.property(p.name) != nullptr)
      return fail("needs the name '" + p.name + "', which is taken");
    p.type = property_type::real;
    p.min = 0;
    p.max = 1;
    p.computed = true;
    p.transient = true;
    p.history = true;  // written as the score changes, by the twin's detector
    p.description = "anomaly score of " + a.source + " (1: a level never seen)";
    type_.properties_.push_back(std::move(p));
  }
  return {};
}

namespace {

/// The threshold of an alert condition `property > x` (or >=, <, <=): x, and whether it is
/// an upper one. nullopt if the condition is not such a threshold on `property`.
std::optional<std::pair<double, bool>> threshold_of(const std::string& condition,
                                                    const std::string& property) {
  static const std::regex form{R"(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|>|<=|<)\s*)"
                               R"(([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*)"};
  std::smatch m;
  if (!std::regex_match(condition, m, form) || m[1] != property)
    return std::nullopt;
  auto text = m[3].str();
  errno = 0;
  double x = std::strtod(text.c_str(), nullptr);
  if (errno == ERANGE || !std::isfinite(x))
    return std::nullopt;  // a threshold no double holds
  return std::make_pair(x, m[2].str()[0] == '>');
}

} // namespace

caf::error type_builder::add_limit_projections() {
  type_.limits_.clear();
  for (const auto& l : limit_texts_) {
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': the time to limit of '" + l.source + "' "
                          + why);
    };
    int at = type_.index_of(l.source);
    if (at < 0)
      return fail("names no property");
    const auto& p = type_.properties_[static_cast<size_t>(at)];
    if (p.computed || (p.type != property_type::real && p.type != property_type::integer))
      return fail("needs a declared number: it follows telemetry samples");
    for (const auto& other : type_.limits_)
      if (other.source == l.source)
        return fail("is declared twice");
    if (!(l.half_life_s > 0 && l.half_life_s < 1e9))
      return fail("needs a half-life above 0 seconds");
    limit_spec spec{l.source, l.limit, l.upper, l.half_life_s, at, -1};
    if (l.from == "max" || l.from == "min") {
      const auto& end = l.from == "max" ? p.max : p.min;
      if (!end)
        return fail("reads the " + l.from + "imum of its range, which it does not declare");
      spec.limit = *end;
      spec.upper = l.from == "max";
    } else if (!l.from.empty()) {
      auto alert = std::find_if(alert_texts_.begin(), alert_texts_.end(),
                                [&](const auto& a) { return a.first == l.from; });
      if (alert == alert_texts_.end())
        return fail("names no alert '" + l.from + "' (nor max or min)");
      auto t = threshold_of(alert->second, l.source);
      if (!t)
        return fail("reads alert '" + l.from + "', whose condition is not '" + l.source
                    + " > x' (or >=, <, <=)");
      std::tie(spec.limit, spec.upper) = *t;
    }
    if (!std::isfinite(spec.limit))
      return fail("needs a finite limit");
    char limit_text[32];
    std::snprintf(limit_text, sizeof limit_text, "%g", spec.limit);
    const std::pair<const char*, const char*> parts[] = {
      {"_time_to_limit_s", ""},
      {"_time_to_limit_low_s", ", at the soonest"},
      {"_time_to_limit_high_s", ", at the latest"}};
    spec.eta_position = static_cast<int>(type_.properties_.size());
    for (const auto& [suffix, note] : parts) {
      property_spec q;
      q.name = l.source + suffix;
      if (!valid_name(q.name) || type_.property(q.name) != nullptr)
        return fail("needs the name '" + q.name + "', which is taken");
      q.type = property_type::real;
      q.unit = "s";
      q.computed = true;
      q.transient = true;
      q.description = "seconds until the trend of " + l.source + " reaches "
                      + (spec.upper ? "up to " : "down to ") + limit_text + note;
      type_.properties_.push_back(std::move(q));
    }
    type_.limits_.push_back(std::move(spec));
  }
  return {};
}

caf::error type_builder::resolve_dynamics() {
  type_.dynamics_.clear();
  auto n = static_cast<int>(type_.properties_.size());
  for (const auto& d : dynamics_texts_) {
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': the dynamics of '" + d.property + "' " + why);
    };
    auto numeric = [](const property_spec& p) {
      return p.type == property_type::real || p.type == property_type::integer;
    };
    int at = type_.index_of(d.property);
    if (at < 0)
      return fail("name no property");
    if (type_.properties_[static_cast<size_t>(at)].computed
        || !numeric(type_.properties_[static_cast<size_t>(at)]))
      return fail("need a declared number: the runtime computes the others");
    for (const auto& other : type_.dynamics_)
      if (other.position == at)
        return fail("are declared twice");
    if (!(d.lag_s >= 0 && d.lag_s < 1e9) || !(d.noise >= 0 && d.noise < 1e9))
      return fail("need a lag and a noise of 0 or more");
    auto f = formula::parse(d.expr);
    if (!f)
      return fail(error_message(f.error()));
    dynamics_spec spec{d.property, std::move(*f), d.lag_s, d.noise, at, {}};
    for (const auto& name : spec.expr.inputs()) {
      constexpr std::string_view desired = "desired.";
      bool wants = name.compare(0, desired.size(), desired) == 0;
      int i = type_.index_of(wants ? name.substr(desired.size()) : name);
      if (i < 0)
        return fail("read unknown property '" + name + "'");
      const auto& p = type_.properties_[static_cast<size_t>(i)];
      if (wants && (!p.writable || !numeric(p)))
        return fail("read '" + name + "', which is not a writable number");
      if (!numeric(p) && p.type != property_type::boolean)
        return fail("read '" + name + "', which is not a number or a boolean");
      spec.inputs.push_back(wants ? n + i : i);
    }
    type_.dynamics_.push_back(std::move(spec));
  }
  return {};
}

caf::error type_builder::add_rul_properties() {
  type_.rul_position_ = -1;
  if (!learns_rul_)
    return {};
  const std::pair<const char*, const char*> parts[] = {
    {"rul_s", "remaining useful life in seconds, from the type's model of its fleet"},
    {"rul_low_s", "the remaining useful life at the soonest (80 % of the model's errors)"},
    {"rul_high_s", "the remaining useful life at the latest (80 % of the model's errors)"}};
  type_.rul_position_ = static_cast<int>(type_.properties_.size());
  for (const auto& [name, description] : parts) {
    if (type_.property(name) != nullptr)
      return make_error(runtime_errc::invalid_model,
                        "type '" + type_.name_ + "': the remaining useful life needs the name '"
                          + name + "', which is taken");
    property_spec q;
    q.name = name;
    q.type = property_type::real;
    q.unit = "s";
    q.min = 0;
    q.computed = true;
    q.transient = true;
    q.description = description;
    type_.properties_.push_back(std::move(q));
  }
  return {};
}

} // namespace twin::runtime
