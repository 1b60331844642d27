// What twinctl prints: tables, twins, events, pages of history and anomalies.

#include "output.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <set>

namespace twinctl {

std::string text_of(const json& v) {
  if (v.is_string())
    return v.get<std::string>();
  if (!v.is_number_float())
    return v.dump();
  // Rounded for reading: three decimals (trailing zeros dropped), three significant
  // digits below 0.01; --json keeps every digit.
  double x = v.get<double>();
  char text[64];
  if (x != 0 && std::abs(x) < 0.01) {
    std::snprintf(text, sizeof text, "%.3g", x);
    return text;
  }
  std::snprintf(text, sizeof text, "%.3f", x);
  std::string out = text;
  while (out.back() == '0')
    out.pop_back();
  if (out.back() == '.')
    out.pop_back();
  return out == "-0" ? "0" : out;
}

/// A table with a header row, columns as wide as their widest cell.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size())
        line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << '\n';
  }
}

void print_twin(const json& t) {
  std::cout << t.value("id", "") << "  type " << t.value("type", "") << "  kind "
            << t.value("kind", "") << "  version " << t.value("version", 0);
  if (t.contains("parent") && t["parent"].is_string())
    std::cout << "  parent " << t["parent"].get<std::string>();
  std::cout << "\n\n";
  std::vector<std::vector<std::string>> rows{{"PROPERTY", "REPORTED", "DESIRED", "SOURCE"}};
  std::set<std::string> names;
  for (const auto* part : {"properties", "desired"})
    if (t.contains(part) && t[part].is_object())
      for (const auto& [k, v] : t[part].items())
        names.insert(k);
  for (const auto& n : names) {
    auto get = [&](const char* part) {
      return t.contains(part) && t[part].contains(n) ? text_of(t[part][n]) : std::string{};
    };
    std::string source;
    if (t.contains("metadata") && t["metadata"].contains(n))
      source = t["metadata"][n].value("source", "");
    rows.push_back({n, get("properties"), get("desired"), source});
  }
  print_table(rows);
  if (t.contains("alerts") && !t["alerts"].empty()) {
    std::cout << "\nalerts:";
    for (const auto& a : t["alerts"])
      std::cout << ' ' << a.value("name", "") << " (" << a.value("severity", "") << ')';
    std::cout << '\n';
  }
  if (t.contains("children") && !t["children"].empty())
    std::cout << "\nchildren: " << t["children"].size() << '\n';
  if (t.contains("relationships") && !t["relationships"].empty()) {
    std::cout << "\nrelationships:\n";
    for (const auto& r : t["relationships"])
      std::cout << "  " << r.value("name", "") << " -> " << r.value("target", "") << '\n';
  }
}

/// A time in ms since the epoch as UTC, e.g. 2026-11-23T06:16:14.123Z; other JSON as is.
std::string time_of(const json& ms) {
  if (!ms.is_number_integer())
    return text_of(ms);
  auto t = ms.get<int64_t>();
  std::time_t secs = static_cast<std::time_t>(t / 1000);
  std::tm utc{};
  if (t < 0 || gmtime_r(&secs, &utc) == nullptr)
    return text_of(ms);
  char buf[40];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(t % 1000));
  return buf;
}

/// Prints one server-sent event: a line of text, or with `as_json` its data as one line
/// of JSON with the event's name in "event".
void print_event(const std::string& name, const std::string& data, bool as_json) {
  auto doc = json::parse(data, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    doc = json::object({{"data", data}});
  if (as_json) {
    doc["event"] = name;
    std::cout << doc.dump() << std::endl;
    return;
  }
  std::string line = time_of(doc.value("ts", json{})) + "  " + name + "  "
                     + text_of(doc.value("id", json{}));
  if (name == "command")
    line += "  " + text_of(doc.value("command", json{})) + " " + doc.value("args", json{}).dump();
  else if (doc.contains("version"))
    line += "  v" + text_of(doc["version"]);
  if (doc.contains("properties"))
    line += "  " + doc["properties"].dump();
  if (name == "lagged")
    line += text_of(doc.value("message", json{}));
  std::cout << line << std::endl;
}

/// A page of history as a table, and where the next one starts.
void print_history(const json& page) {
  if (page.contains("series")) {  // several properties: a table each
    bool first = true;
    for (const auto& one : page["series"]) {
      std::cout << (first ? "" : "\n") << text_of(one.value("property", json{})) << ":\n";
      print_history(one);
      first = false;
    }
    return;
  }
  std::vector<std::vector<std::string>> rows;
  if (page.contains("buckets")) {
    rows.push_back({"TIME", "MIN", "MAX", "AVG", "COUNT"});
    for (const auto& b : page["buckets"])
      rows.push_back({time_of(b.value("ts", json{})), text_of(b.value("min", json{})),
                      text_of(b.value("max", json{})), text_of(b.value("avg", json{})),
                      text_of(b.value("count", json{}))});
  } else {
    rows.push_back({"TIME", "VALUE"});
    for (const auto& x : page.value("points", json::array()))
      rows.push_back({time_of(x.value("ts", json{})), text_of(x.value("value", json{}))});
  }
  print_table(rows);
  if (page.contains("next_from") && !page["next_from"].is_null())
    std::cout << "\nmore: --from " << text_of(page["next_from"]) << '\n';
}

/// A page of anomalies as a table, and where the next one starts.
void print_anomalies(const json& page) {
  std::vector<std::vector<std::string>> rows{{"TIME", "PROPERTY", "VALUE", "SCORE", "EXPECTED"}};
  for (const auto& a : page.value("items", json::array())) {
    auto expected = a.value("expected", json::array());
    rows.push_back({time_of(a.value("ts", json{})), text_of(a.value("property", json{})),
                    text_of(a.value("value", json{})), text_of(a.value("score", json{})),
                    expected.size() == 2 ? text_of(expected[0]) + " .. " + text_of(expected[1])
                                         : "-"});
  }
  print_table(rows);
  if (page.contains("next_from") && !page["next_from"].is_null())
    std::cout << "\nmore: --from " << text_of(page["next_from"]) << '\n';
}

void print_rul_model(const json& m) {
  auto seconds = [](const json& x) {
    if (!x.is_number())
      return text_of(x);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", x.get<double>());
    return std::string{buf};
  };
  const auto& fit = m.value("fit", json::object());
  const auto& twins = m.value("twins", json::object());
  std::string inputs;
  for (const auto& i : m.value("inputs", json::array()))
    inputs += (inputs.empty() ? "" : ", ") + text_of(i);
  print_table({{"TYPE", "VERSION", "FITTED", "CAP (S)", "TWINS", "SAMPLES", "CV RMSE (S)",
                "CV MAE (S)"},
               {text_of(m.value("type", json{})), text_of(m.value("version", json{})),
                time_of(m.value("fitted", json{})), text_of(m.value("cap_s", json{})),
                text_of(fit.value("twins", json{})), text_of(fit.value("samples", json{})),
                seconds(fit.value("cv_rmse_s", json{})), seconds(fit.value("cv_mae_s", json{}))}});
  std::cout << "\ninputs: " << inputs << "\nfitted on the twins of type "
            << text_of(twins.value("type", json{})) << " whose id starts with '"
            << text_of(twins.value("prefix", json{})) << "', " << text_of(fit.value("folds", json{}))
            << "-fold cross-validated by twin\n";
}

void print_twins(const json& page) {
  std::vector<std::vector<std::string>> rows{{"ID", "TYPE", "KIND", "PARENT", "VERSION",
                                              "HEALTH"}};
  for (const auto& t : page.value("items", json::array()))
    rows.push_back({text_of(t.value("id", json{})), text_of(t.value("type", json{})),
                    text_of(t.value("kind", json{})), text_of(t.value("parent", json{})),
                    text_of(t.value("version", json{})),
                    text_of(t.value("properties", json::object()).value("health", json{}))});
  print_table(rows);
  if (page.contains("cursor") && page["cursor"].is_string())
    std::cout << "\nmore: --cursor " << page["cursor"].get<std::string>() << '\n';
}

namespace {

/// A schema as GET /v1/types/{type} shows it, in a few words: "map of boolean",
/// "enum (A, AB)", "Georeference (latitude, longitude)".
std::string schema_text(const json& s) {
  if (!s.is_object())
    return text_of(s);
  auto type = s.value("type", "");
  auto names = [](const json& o) {
    std::string out;
    for (const auto& [k, v] : o.items())
      out += (out.empty() ? "" : ", ") + k;
    return out;
  };
  if (type == "map")
    return "map of " + schema_text(s.value("values", json{}));
  if (type == "array")
    return "array of " + schema_text(s.value("items", json{}));
  if (type == "enum")
    return "enum (" + names(s.value("values", json::object())) + ")";
  std::string id = s.value("@id", "");
  auto name = id.empty() ? std::string{"object"}
                         : id.substr(id.rfind(':') + 1, id.find(';') - id.rfind(':') - 1);
  return name + " (" + names(s.value("fields", json::object())) + ")";
}

} // namespace

void print_alerts(const json& page) {
  std::vector<std::vector<std::string>> rows{{"TWIN", "ALERT", "SEVERITY", "SINCE", "TYPE"}};
  for (const auto& a : page.value("items", json::array()))
    rows.push_back({text_of(a.value("twin", json{})), text_of(a.value("alert", json{})),
                    text_of(a.value("severity", json{})), time_of(a.value("since", json{})),
                    text_of(a.value("type", json{}))});
  print_table(rows);
  if (page.contains("cursor") && page["cursor"].is_string())
    std::cout << "\nmore: --cursor " << page["cursor"].get<std::string>() << '\n';
}

void print_types(const json& page) {
  std::vector<std::vector<std::string>> rows{{"NAME", "KIND", "DTMI"}};
  for (const auto& t : page.value("items", json::array()))
    rows.push_back({text_of(t.value("name", json{})), text_of(t.value("kind", json{})),
                    t.contains("dtmi") ? text_of(t["dtmi"]) : "-"});
  print_table(rows);
}

void print_type(const json& t) {
  std::cout << text_of(t.value("name", json{})) << " (" << text_of(t.value("kind", json{}))
            << (t.contains("dtmi") ? ", " + text_of(t["dtmi"]) : "") << ")\n";
  if (t.contains("extends") && !t["extends"].empty()) {
    std::cout << "extends:";
    for (const auto& e : t["extends"])
      std::cout << ' ' << text_of(e);
    std::cout << '\n';
  }
  std::vector<std::vector<std::string>> rows{{"PROPERTY", "SCHEMA", "UNIT", "WRITABLE"}};
  for (const auto& p : t.value("properties", json::array()))
    rows.push_back({text_of(p.value("name", json{})), schema_text(p.value("schema", json{})),
                    p.contains("unit") ? text_of(p["unit"]) : "",
                    p.value("writable", false) ? "yes" : (p.value("computed", false) ? "computed" : "")});
  std::cout << '\n';
  print_table(rows);
  auto list = [](const json& items, const char* title, auto describe) {
    if (items.empty())
      return;
    std::cout << '\n' << title << ":\n";
    for (const auto& x : items)
      std::cout << "  " << text_of(x.value("name", json{})) << describe(x) << '\n';
  };
  list(t.value("relationships", json::array()), "relationships", [](const json& r) {
    std::string out = " -> " + (r.contains("target") ? text_of(r["target"]) : std::string{"any"});
    if (r.contains("maxMultiplicity"))
      out += " (at most " + text_of(r["maxMultiplicity"]) + ")";
    return out;
  });
  list(t.value("commands", json::array()), "commands", [](const json&) { return std::string{}; });
  list(t.value("aggregates", json::array()), "aggregates", [](const json& a) {
    return " = " + text_of(a.value("function", json{})) + "(" + text_of(a.value("source", json{}))
           + ")" + (a.contains("childType") ? " of " + text_of(a["childType"]) : "");
  });
  list(t.value("alerts", json::array()), "alerts", [](const json& a) {
    return " when " + text_of(a.value("when", json{})) + " (" + text_of(a.value("severity", json{}))
           + ")";
  });
}

void print_cluster(const json& status) {
  std::vector<std::vector<std::string>> rows{
    {"NODE", "STATE", "INCARNATION", "SHARDS", "FOLLOWS", "HTTP", "CLUSTER"}};
  for (const auto& m : status.value("members", json::array()))
    rows.push_back({text_of(m.value("node", json{})), text_of(m.value("state", json{})),
                    text_of(m.value("incarnation", json{})), text_of(m.value("shards", json{})),
                    m.contains("follows") ? text_of(m["follows"]) : "-",
                    text_of(m.value("http", json{})), text_of(m.value("cluster", json{}))});
  print_table(rows);
  auto handoffs = status.value("handoffs", json::array());
  std::cout << '\n' << status.value("shards", 0) << " shards, " << status.value("unowned", 0)
            << " without an owner, " << handoffs.size() << " handoffs under way\n";
  for (const auto& h : handoffs)
    std::cout << "  shard " << text_of(h.value("shard", json{})) << ": "
              << text_of(h.value("from", json{})) << " -> " << text_of(h.value("to", json{}))
              << '\n';
}

} // namespace twinctl
