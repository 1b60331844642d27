// twinctl's what-if scenarios: run one from a file, compare several, or optimise one.

#include "scenarios.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "output.hpp"

namespace twinctl {

namespace {

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

/// Min, mean, max and final value of a series' points ([t, value or null]).
struct summary {
  double min = NAN, mean = NAN, max = NAN, last = NAN;
};

summary summary_of(const json& points) {
  summary s;
  double sum = 0;
  size_t n = 0;
  for (const auto& p : points) {
    if (!p.is_array() || p.size() != 2 || !p[1].is_number())
      continue;
    double x = p[1].get<double>();
    s.min = n == 0 ? x : std::min(s.min, x);
    s.max = n == 0 ? x : std::max(s.max, x);
    s.last = x;
    sum += x;
    ++n;
  }
  if (n > 0)
    s.mean = sum / static_cast<double>(n);
  return s;
}

std::string name_of(const json& series) {
  return text_of(series.value("twin", json{})) + "/" + text_of(series.value("property", json{}));
}

void print_one(const json& answer) {
  std::vector<std::vector<std::string>> rows{{"SERIES", "MIN", "MEAN", "MAX", "FINAL"}};
  for (const auto& s : answer.value("series", json::array())) {
    auto sum = summary_of(s.value("points", json::array()));
    rows.push_back({name_of(s), number(sum.min), number(sum.mean), number(sum.max),
                    number(sum.last)});
  }
  print_table(rows);
  std::vector<std::vector<std::string>> alerts{{"T (S)", "TWIN", "ALERT", "SEVERITY", "STATE"}};
  for (const auto& a : answer.value("alerts", json::array()))
    alerts.push_back({number(a.value("t_s", 0.0)), text_of(a.value("twin", json{})),
                      text_of(a.value("alert", json{})), text_of(a.value("severity", json{})),
                      text_of(a.value("state", json{}))});
  std::cout << '\n';
  if (alerts.size() > 1)
    print_table(alerts);
  else
    std::cout << "no alert raised or cleared\n";
  std::cout << '\n'
            << text_of(answer.value("twins", json{})) << " twins, "
            << text_of(answer.value("twin_steps", json{})) << " twin-steps over "
            << number(answer.value("horizon_s", 0.0)) << " s in "
            << number(answer.value("elapsed_s", 0.0)) << " s\n";
}

void print_side_by_side(const std::vector<std::string>& files, const std::vector<json>& answers) {
  std::vector<std::string> header{"SERIES (MEAN / FINAL)"};
  for (const auto& f : files)
    header.push_back(f);
  std::vector<std::vector<std::string>> rows{header};
  std::map<std::string, std::vector<std::string>> by_series;
  std::vector<std::string> order;
  for (size_t k = 0; k < answers.size(); ++k)
    for (const auto& s : answers[k].value("series", json::array())) {
      auto name = name_of(s);
      auto& cells = by_series[name];
      if (cells.empty()) {
        cells.assign(answers.size(), "-");
        order.push_back(name);
      }
      auto sum = summary_of(s.value("points", json::array()));
      cells[k] = number(sum.mean) + " / " + number(sum.last);
    }
  for (const auto& name : order) {
    std::vector<std::string> row{name};
    row.insert(row.end(), by_series[name].begin(), by_series[name].end());
    rows.push_back(std::move(row));
  }
  std::vector<std::string> raised{"alerts raised / cleared"};
  for (const auto& a : answers) {
    size_t up = 0, down = 0;
    for (const auto& e : a.value("alerts", json::array()))
      (e.value("state", "") == "raised" ? up : down) += 1;
    raised.push_back(std::to_string(up) + " / " + std::to_string(down));
  }
  rows.push_back(std::move(raised));
  print_table(rows);
}

/// Posts the body in `file` to `target`; the answer goes to `out`. Returns the exit code.
int post_file(client& c, const std::string& file, const std::string& target, json& out) {
  std::ifstream in{file};
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    std::cerr << "twinctl: cannot read " << file << '\n';
    return usage;
  }
  reply r;
  try {
    r = c.call(http::verb::post, target, text.str());
  } catch (const std::exception& e) {
    std::cerr << "twinctl: no answer from the node: " << e.what() << '\n';
    return unreachable;
  }
  if (int code = exit_code_of(r.status); code != ok) {
    std::cerr << "twinctl: " << file << ": " << error_text(r) << '\n';
    return code;
  }
  if (!r.body.is_object()) {
    std::cerr << "twinctl: an answer that is not a JSON object: " << r.text << '\n';
    return server_error;
  }
  out = std::move(r.body);
  return ok;
}

void print_optimization(const json& answer) {
  std::vector<std::vector<std::string>> rows{{"TWIN", "DESIRED", "BEST"}};
  for (const auto& b : answer.value("best", json::array()))
    rows.push_back({text_of(b.value("twin", json{})), text_of(b.value("desired", json{})),
                    number(b.value("value", NAN))});
  print_table(rows);
  const auto& objective = answer.value("objective", json{});
  std::cout << "\nobjective " << (objective.is_number() ? number(objective.get<double>()) : "-")
            << (answer.value("feasible", false) ? "" : " (no candidate met the constraints)")
            << " after " << text_of(answer.value("evaluations", json{})) << " scenarios in "
            << number(answer.value("elapsed_s", 0.0)) << " s\n\nits scenario:\n";
  print_one(answer.value("scenario", json::object()));
}

} // namespace

int run_scenarios(client& c, const std::vector<std::string>& files, bool compare, bool as_json) {
  std::vector<json> answers(files.size());
  for (size_t k = 0; k < files.size(); ++k)
    if (int code = post_file(c, files[k], "/v1/scenarios", answers[k]); code != ok)
      return code;
  if (as_json) {
    std::cout << (compare ? json(answers) : answers[0]).dump(2) << '\n';
    return ok;
  }
  try {  // the answer's shape is the node's: nothing about it may abort
    if (compare)
      print_side_by_side(files, answers);
    else
      print_one(answers[0]);
  } catch (const json::exception& e) {
    std::cerr << "twinctl: an answer of an unexpected shape (" << e.what() << ")\n";
    return server_error;
  }
  return ok;
}

int run_optimization(client& c, const std::string& file, bool as_json) {
  json answer;
  if (int code = post_file(c, file, "/v1/scenarios/optimize", answer); code != ok)
    return code;
  if (as_json) {
    std::cout << answer.dump(2) << '\n';
    return ok;
  }
  try {
    print_optimization(answer);
  } catch (const json::exception& e) {
    std::cerr << "twinctl: an answer of an unexpected shape (" << e.what() << ")\n";
    return server_error;
  }
  return ok;
}

} // namespace twinctl
