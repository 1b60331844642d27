// Model files: a DTDL v3 Interface (contents: Property, Telemetry, Command,
// Relationship) plus a "twin" object for what DTDL has no words for: the kind,
// aggregates over children, derived properties, what commands set, alert rules, anomaly
// detection, times to limits, dynamics, and the properties whose history is kept. See
// examples/factory/models.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/model.hpp"

namespace twin::runtime {

namespace {

using json = nlohmann::json;

struct model_error {
  std::string why;
};

[[noreturn]] void fail(std::string why) {
  throw model_error{std::move(why)};
}

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

// "@type" is a string or a list whose first element is the DTDL class.
bool has_type(const json& item, std::string_view t) {
  auto i = item.find("@type");
  if (i == item.end())
    return false;
  if (i->is_string())
    return i->get<std::string>() == t;
  if (i->is_array())
    return std::any_of(i->begin(), i->end(),
                       [&](const json& x) { return x.is_string() && x.get<std::string>() == t; });
  return false;
}

// "dtmi:factory:robot;1" -> "robot"
std::string name_from_dtmi(const std::string& id) {
  auto end = id.find(';');
  auto s = id.substr(0, end);
  auto colon = s.rfind(':');
  return colon == std::string::npos ? s : s.substr(colon + 1);
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

type_builder model_builder(const json& doc) {
  if (!doc.is_object())
    fail("the top level must be a JSON object (a DTDL Interface)");
  if (!has_type(doc, "Interface"))
    fail("\"@type\" must be \"Interface\"");
  auto ext = doc.find("twin");
  if (ext == doc.end() || !ext->is_object())
    fail("no \"twin\" object with the kind of the type");
  std::string name = optional_string(*ext, "name");
  if (name.empty())
    name = name_from_dtmi(string_member(doc, "@id", "the interface"));
  twin_kind kind;
  if (!from_string(string_member(*ext, "kind", "\"twin\""), kind))
    fail("\"kind\" must be component, asset, system or process");
  type_builder b{name, kind};
  if (auto d = optional_string(doc, "description"); !d.empty())
    b.description(d);
  if (auto c = doc.find("contents"); c != doc.end()) {
    if (!c->is_array())
      fail("\"contents\" must be a list");
    for (const auto& item : *c) {
      if (!item.is_object())
        fail("every entry of \"contents\" must be an object");
      auto item_name = string_member(item, "name", "an entry of \"contents\"");
      if (has_type(item, "Property") || has_type(item, "Telemetry")) {
        const auto& schema = member(item, "schema", ("\"" + item_name + "\"").c_str());
        property_type pt = property_type::object;
        if (schema.is_string()) {
          if (!from_string(schema.get<std::string>(), pt))
            fail("\"" + item_name + "\": unsupported schema \"" + schema.get<std::string>()
                 + "\" (use boolean, integer, long, double, float, string or an Object)");
        } else if (!schema.is_object()) {
          fail("\"" + item_name + "\": \"schema\" must be a string or an object");
        }
        b.property(item_name, pt);
        if (auto u = optional_string(item, "unit"); !u.empty())
          b.unit(u);
        auto lo = optional_number(item, "minimum");
        auto hi = optional_number(item, "maximum");
        if (lo || hi)
          b.range(lo, hi);
        if (auto w = item.find("writable"); w != item.end()) {
          if (!w->is_boolean())
            fail("\"" + item_name + "\": \"writable\" must be true or false");
          b.writable(w->get<bool>());
        }
        if (auto d = optional_string(item, "description"); !d.empty())
          b.describe(d);
      } else if (has_type(item, "Command")) {
        b.command(item_name, optional_string(item, "description"));
      } else if (has_type(item, "Relationship") || has_type(item, "Component")) {
        // Relationships are instance data (the twin's "relationships"); nothing to check.
      } else {
        fail("\"" + item_name + "\": unsupported \"@type\"");
      }
    }
  }
  for (const auto& a : entries(*ext, "aggregates")) {
    aggregate_fn fn;
    auto fn_name = string_member(a, "function", "an aggregate");
    if (!from_string(fn_name, fn))
      fail("aggregate function \"" + fn_name
           + "\" is not one of sum, avg, min, max, count, any, all, worst");
    b.aggregate(string_member(a, "name", "an aggregate"), fn, optional_string(a, "source"),
                optional_string(a, "childType"));
  }
  for (const auto& c : entries(*ext, "commands")) {
    auto name = string_member(c, "name", "a command's effect");
    auto desired = map_from_json(member(c, "desired", ("command '" + name + "'").c_str()));
    if (!desired)
      fail("command '" + name + "': \"desired\": " + error_message(desired.error()));
    b.command_effect(name, std::move(*desired), optional_string(c, "childType"));
  }
  for (const auto& d : entries(*ext, "derived"))
    b.derive(string_member(d, "name", "a derived property"),
             string_member(d, "formula", "a derived property"), optional_string(d, "unit"));
  for (const auto& a : entries(*ext, "alerts")) {
    severity level;
    if (!from_string(string_member(a, "severity", "an alert"), level) || level == severity::ok)
      fail("an alert's \"severity\" must be warning or critical");
    b.alert(string_member(a, "name", "an alert"), string_member(a, "when", "an alert"), level);
  }
  if (auto anomaly = ext->find("anomaly"); anomaly != ext->end()) {
    if (!anomaly->is_object())
      fail("\"anomaly\" must map property names to their options ({} for the defaults)");
    for (const auto& [name, o] : anomaly->items())
      b.detect_anomalies(name, anomaly_options_of(name, o));
  }
  if (auto dynamics = ext->find("dynamics"); dynamics != ext->end()) {
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
  if (auto limits = ext->find("timeToLimit"); limits != ext->end()) {
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
  if (auto rul = ext->find("rul"); rul != ext->end()) {
    if (!rul->is_boolean())
      fail("\"rul\" must be true (the twins show a remaining useful life learned from the "
           "fleet) or false");
    if (rul->get<bool>())
      b.learn_rul();
  }
  if (auto history = ext->find("history"); history != ext->end()) {
    if (!history->is_array())
      fail("\"history\" must be a list of property names");
    for (const auto& h : *history) {
      if (!h.is_string())
        fail("\"history\" must be a list of property names");
      b.keep_history(h.get<std::string>());
    }
  }
  return b;
}

} // namespace

caf::expected<type_builder> model_builder(std::string_view text, const std::string& origin) {
  try {
    auto doc = json::parse(text);
    return model_builder(doc);
  } catch (const model_error& e) {
    return make_error(runtime_errc::invalid_model, origin + ": " + e.why);
  } catch (const json::exception& e) {
    return make_error(runtime_errc::invalid_model, origin + ": " + e.what());
  }
}

caf::expected<type_ptr> parse_model(std::string_view text, const std::string& origin) {
  auto b = model_builder(text, origin);
  if (!b)
    return b.error();
  auto t = b->build();
  if (!t)
    return make_error(runtime_errc::invalid_model, origin + ": " + error_message(t.error()));
  return t;
}

caf::expected<type_ptr> load_model_file(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return make_error(runtime_errc::invalid_model, "cannot read model file " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_model(buf.str(), path);
}

caf::expected<size_t> load_models(const std::string& path, type_registry& registry) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  auto status = fs::status(path, ec);
  if (fs::is_regular_file(status))
    files.push_back(path);
  else if (!fs::exists(status))
    return make_error(runtime_errc::invalid_model, "model path " + path + " does not exist");
  else if (!fs::is_directory(status))
    return make_error(runtime_errc::invalid_model,
                      "model path " + path + " is neither a directory nor a file");
  else
    for (const auto& e : fs::directory_iterator{path, ec})
      if (e.is_regular_file() && e.path().extension() == ".json")
        files.push_back(e.path());
  if (ec)
    return make_error(runtime_errc::invalid_model, "cannot list " + path + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto t = load_model_file(f.string());
    if (!t)
      return t.error();
    if (auto err = registry.add(*t))
      return make_error(runtime_errc::invalid_model, f.string() + ": " + error_message(err));
  }
  return files.size();
}

} // namespace twin::runtime
