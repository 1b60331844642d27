#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace twin::runtime {

/// A numeric formula over named inputs, e.g. `torque * rpm / 9549`,
/// `clamp((temperature - 40) / 50, 0, 1)`, `load > 0.8 ? rpm * 0.9 : rpm`. Parsed once into
/// a small stack program, then evaluated over an array of input values: what a model's
/// derived properties and dynamics compute on every change and every simulated step.
///
/// Grammar, lowest precedence first:
///
///     cond  := or ('?' cond ':' cond)?
///     or    := and ('or' and)*
///     and   := neg ('and' neg)*
///     neg   := 'not' neg | cmp                   (so `not a > 1` is `not (a > 1)`)
///     cmp   := sum (('<' | '<=' | '>' | '>=' | '==' | '=' | '!=' | '<>') sum)?
///     sum   := prod (('+' | '-') prod)*
///     prod  := unary (('*' | '/') unary)*
///     unary := ('-' | '+') unary | power
///     power := atom ('^' unary)?                  (so -2^2 = -4 and 2^3^2 = 2^9)
///     atom  := number | 'true' | 'false' | 'pi' | name | name '(' cond (',' cond)* ')'
///            | '(' cond ')'
///
/// Functions: `min` and `max` (one or more arguments), `abs`, `sqrt`, `exp`, `log`
/// (natural), `clamp(x, low, high)` and `if(condition, then, else)`. A comparison, `and`,
/// `or` and `not` give 1 or 0, and a condition holds when it is not 0. An input that is
/// missing or not a number is NaN, and NaN is unknown: it makes what it reaches NaN
/// (comparisons and logic included), and a condition that is NaN makes the formula NaN.
/// A result that is not finite (NaN, or a division by zero) is no value.
///
/// Immutable after parsing: may be shared and evaluated from any thread.
class formula {
public:
  /// Parses `text`; `invalid_argument` with the position and the reason on error. Limits:
  /// 4096 characters, nesting depth 32, 16 arguments to a function.
  static caf::expected<formula> parse(std::string_view text);

  /// The names the formula reads, each once, in the order they first appear: the value of
  /// `inputs()[i]` is `values[i]` in `eval`.
  const std::vector<std::string>& inputs() const { return inputs_; }
  const std::string& text() const { return text_; }

  /// The formula over `values`, one per input (NaN: missing).
  double eval(const double* values) const;

  /// One step of the program (public for the parser in formula.cpp).
  struct instr {
    uint8_t op = 0;
    uint8_t argc = 0;     ///< min, max: how many arguments
    uint32_t arg = 0;     ///< an input's index, or a jump's target
    double number = 0;    ///< a constant
  };

private:
  std::vector<instr> code_;
  std::vector<std::string> inputs_;
  std::string text_;
};

} // namespace twin::runtime
