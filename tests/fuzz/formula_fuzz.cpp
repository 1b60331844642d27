// libFuzzer target: a formula (derived properties and dynamics in model files) from
// untrusted text. Whatever the input, it parses or gives an error; a parsed formula
// evaluates over any inputs (missing ones included) without failing, and parses again from
// its own text to the same program.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <vector>

#include "twin/runtime/formula.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using twin::runtime::formula;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  auto f = formula::parse(text);
  if (!f)
    return 0;
  // Inputs from the input's own bytes, every third missing.
  std::vector<double> values;
  for (size_t i = 0; i < f->inputs().size(); ++i)
    values.push_back(i % 3 == 2 ? std::numeric_limits<double>::quiet_NaN()
                                : static_cast<double>(data[i % size]) - 100.0);
  double first = f->eval(values.data());
  auto again = formula::parse(f->text());
  if (!again || again->inputs() != f->inputs())
    std::abort();
  double second = again->eval(values.data());
  if (!(first == second || (std::isnan(first) && std::isnan(second))))
    std::abort();
  return 0;
}
