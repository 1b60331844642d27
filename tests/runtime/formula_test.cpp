// Formulas: what derived properties and dynamics compute, parsed once and evaluated over
// an array of inputs.

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/formula.hpp"

namespace twin::runtime {
namespace {

constexpr double missing = std::numeric_limits<double>::quiet_NaN();

/// `text` over `values` of its inputs, in the order they first appear.
double eval(std::string_view text, std::vector<double> values = {}) {
  auto f = formula::parse(text);
  EXPECT_TRUE(f) << text << ": " << (f ? "" : error_message(f.error()));
  if (!f)
    return missing;
  EXPECT_EQ(f->inputs().size(), values.size()) << text;
  values.resize(f->inputs().size(), missing);
  return f->eval(values.data());
}

TEST(formula, computes_arithmetic_with_the_usual_precedence) {
  EXPECT_DOUBLE_EQ(eval("1 + 2 * 3"), 7);
  EXPECT_DOUBLE_EQ(eval("(1 + 2) * 3"), 9);
  EXPECT_DOUBLE_EQ(eval("10 - 4 - 3"), 3);
  EXPECT_DOUBLE_EQ(eval("8 / 4 / 2"), 1);
  EXPECT_DOUBLE_EQ(eval("-2^2"), -4);
  EXPECT_DOUBLE_EQ(eval("2^3^2"), 512);
  EXPECT_DOUBLE_EQ(eval("2 * -3"), -6);
  EXPECT_DOUBLE_EQ(eval("1.5e3 + .5"), 1500.5);
  EXPECT_DOUBLE_EQ(eval("torque * rpm / 9549", {200, 1500}), 200.0 * 1500 / 9549);
  EXPECT_DOUBLE_EQ(eval("x * x + x", {3}), 12);  // one input, read three times
}

TEST(formula, has_functions_comparisons_and_conditionals) {
  EXPECT_DOUBLE_EQ(eval("min(3, 1, 2)"), 1);
  EXPECT_DOUBLE_EQ(eval("max(3)"), 3);
  EXPECT_DOUBLE_EQ(eval("abs(-2.5) + sqrt(16) + log(exp(2))"), 8.5);
  EXPECT_DOUBLE_EQ(eval("clamp((t - 40) / 50, 0, 1)", {65}), 0.5);
  EXPECT_DOUBLE_EQ(eval("clamp((t - 40) / 50, 0, 1)", {140}), 1);
  EXPECT_DOUBLE_EQ(eval("load > 0.8 ? rpm * 0.5 : rpm", {0.9, 1000}), 500);
  EXPECT_DOUBLE_EQ(eval("load > 0.8 ? rpm * 0.5 : rpm", {0.2, 1000}), 1000);
  EXPECT_DOUBLE_EQ(eval("if(a >= 1 and not b, 10, 20)", {1, 0}), 10);
  EXPECT_DOUBLE_EQ(eval("if(a >= 1 and not b, 10, 20)", {1, 1}), 20);
  EXPECT_DOUBLE_EQ(eval("not load > 0.8", {0.5}), 1);  // not (load > 0.8)
  EXPECT_DOUBLE_EQ(eval("not not x = 2 or x > 5", {2}), 1);
  EXPECT_DOUBLE_EQ(eval("a < 0 ? -1 : a == 0 ? 0 : 1", {0}), 0);
  EXPECT_DOUBLE_EQ(eval("a < 0 ? -1 : a == 0 ? 0 : 1", {7}), 1);
  EXPECT_DOUBLE_EQ(eval("(a = 2) + (a != 2) + (a <> 3) + (a <= 2) + TRUE OR false", {2}), 1);
  EXPECT_NEAR(eval("2 * pi"), 2 * M_PI, 1e-12);
}

TEST(formula, is_unknown_when_an_input_is_missing_and_never_guesses) {
  EXPECT_TRUE(std::isnan(eval("a + 1", {missing})));
  EXPECT_TRUE(std::isnan(eval("a > 1", {missing})));
  EXPECT_TRUE(std::isnan(eval("max(a, 5)", {missing})));
  EXPECT_TRUE(std::isnan(eval("a > 1 ? 1 : 2", {missing})));
  EXPECT_TRUE(std::isnan(eval("not a", {missing})));
  EXPECT_TRUE(std::isnan(eval("a ^ 0", {missing})));
  EXPECT_TRUE(std::isnan(eval("1 ^ a", {missing})));
  // Only the branch taken is read.
  EXPECT_DOUBLE_EQ(eval("c ? a : 3", {0, missing}), 3);
  EXPECT_FALSE(std::isfinite(eval("1 / z", {0})));
  EXPECT_TRUE(std::isnan(eval("sqrt(-1)")));
}

TEST(formula, lists_its_inputs_once_in_order) {
  auto f = formula::parse("b * a + b / max(c, a)");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->inputs(), (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(f->text(), "b * a + b / max(c, a)");
}

TEST(formula, refuses_what_does_not_parse_saying_where_and_why) {
  auto why = [](std::string_view text) {
    auto f = formula::parse(text);
    EXPECT_FALSE(f) << text;
    if (f)
      return std::string{};
    EXPECT_EQ(error_code(f.error()), runtime_errc::invalid_argument);
    return error_message(f.error());
  };
  EXPECT_NE(why("").find("found the end"), std::string::npos);
  EXPECT_NE(why("1 +").find("found the end"), std::string::npos);
  EXPECT_NE(why("(1 + 2").find("missing ')'"), std::string::npos);
  EXPECT_NE(why("1 2").find("position 3"), std::string::npos);
  EXPECT_NE(why("a ? 1").find("expected ':'"), std::string::npos);
  EXPECT_NE(why("foo(1)").find("unknown function 'foo'"), std::string::npos);
  EXPECT_NE(why("clamp(1, 2)").find("clamp takes"), std::string::npos);
  EXPECT_NE(why("sqrt(1, 2)").find("one argument"), std::string::npos);
  EXPECT_NE(why("if(a, 1)").find("if takes"), std::string::npos);
  EXPECT_NE(why("2x").find("'2x' is not a number"), std::string::npos);
  EXPECT_NE(why("1e999").find("is not a number"), std::string::npos);
  EXPECT_NE(why("a $ b").find("unexpected"), std::string::npos);
  EXPECT_NE(why("a and").find("found the end"), std::string::npos);
  EXPECT_NE(why(std::string(40, '(') + "1" + std::string(40, ')')).find("nested deeper"),
            std::string::npos);
  EXPECT_NE(why(std::string(5000, '1')).find("longer than"), std::string::npos);
  EXPECT_NE(why("max(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17)").find("more than 16"),
            std::string::npos);
}

} // namespace
} // namespace twin::runtime
