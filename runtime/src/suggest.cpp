#include "twin/runtime/suggest.hpp"

#include <algorithm>
#include <cctype>

namespace twin::runtime {

namespace {

/// Levenshtein distance of `a` and `b`, ignoring case; stops counting past `limit`.
size_t distance(std::string_view a, std::string_view b, size_t limit) {
  if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit)
    return limit + 1;
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1]))
                  == std::tolower(static_cast<unsigned char>(b[j - 1]));
      size_t next = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = row[j];
      row[j] = next;
    }
  }
  return row[b.size()];
}

} // namespace

std::string nearest_name(std::string_view name, const std::vector<std::string>& known) {
  if (name.empty())
    return {};
  size_t limit = std::min<size_t>(2, (name.size() - 1) / 2);
  std::string best;
  size_t best_distance = limit + 1;
  for (const auto& k : known) {
    auto d = distance(name, k, limit);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  return best;
}

std::string suggestion(std::string_view name, const std::vector<std::string>& known,
                       size_t listed) {
  if (auto near = nearest_name(name, known); !near.empty())
    return " (did you mean '" + near + "'?)";
  if (known.empty() || listed == 0)
    return {};
  std::string out = " (known: ";
  for (size_t i = 0; i < known.size() && i < listed; ++i)
    out += (i > 0 ? ", " : "") + known[i];
  if (known.size() > listed)
    out += ", ... " + std::to_string(known.size() - listed) + " more";
  return out + ")";
}

} // namespace twin::runtime
