// libFuzzer target: a `where` condition (the expression language of alert rules and
// queries) from untrusted text. Whatever the input, it parses or gives an error; a parsed
// condition evaluates against any properties without failing, and parses again from its
// own text to the same answers.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "twin/runtime/expression.hpp"

namespace {

using namespace twin::runtime;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  auto e = expression::parse(text);
  if (!e)
    return 0;
  // Properties from the input's own bytes: numbers, strings, booleans and nulls, and some
  // missing (names of a length divisible by 6).
  value values[] = {value{static_cast<double>(size)}, value{std::string{text.substr(0, 8)}},
                    value{size % 2 == 0}, value{}, value{int64_t{-7}}};
  auto get = [&](std::string_view name) -> const value* {
    return name.size() % 6 == 0 ? nullptr : &values[name.size() % 6 - 1];
  };
  bool first = e->eval(get);
  auto again = expression::parse(e->text());
  if (!again || again->eval(get) != first)
    std::abort();
  return 0;
}
