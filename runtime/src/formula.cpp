#include "twin/runtime/formula.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <utility>

#include "text_scanner.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::runtime {

namespace {

constexpr size_t max_text = 4096;
constexpr int max_depth = 32;
constexpr size_t max_args = 16;
/// Values on the evaluation stack at most: a nesting level holds at most `max_args`.
constexpr size_t max_stack = 256;

enum op : uint8_t {
  push_number,
  push_input,
  neg, truth_not,
  add, sub, mul, div, pow,
  lt, le, gt, ge, eq, ne, both, either,
  fn_min, fn_max, fn_abs, fn_sqrt, fn_exp, fn_log, fn_clamp,
  jump_unless,  ///< pops the condition: on to `arg` unless it holds (NaN: the result is NaN)
  jump,
};

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

double truth(bool b) {
  return b ? 1.0 : 0.0;
}

/// A one-argument function's op, by name.
bool unary_function(std::string_view name, uint8_t& out) {
  static constexpr std::pair<std::string_view, op> table[] = {
    {"abs", fn_abs}, {"sqrt", fn_sqrt}, {"exp", fn_exp}, {"log", fn_log}};
  for (const auto& [n, o] : table)
    if (n == name) {
      out = o;
      return true;
    }
  return false;
}

class parser : text_scanner {
public:
  parser(std::string_view text, std::vector<formula::instr>& code,
         std::vector<std::string>& inputs)
    : text_scanner(text, "formula"), code_(code), inputs_(inputs) {}

  caf::error run() {
    if (auto err = cond(0))
      return err;
    skip_ws();
    if (pos_ != s_.size())
      return fail("unexpected '" + std::string{s_.substr(pos_, 12)} + "'");
    return {};
  }

private:
  void emit(uint8_t o, uint32_t arg = 0, double number = 0, uint8_t argc = 0) {
    code_.push_back({o, argc, arg, number});
  }

  caf::error deeper(int depth) const {
    return depth > max_depth ? fail("nested deeper than " + std::to_string(max_depth))
                             : caf::error{};
  }

  /// cond := or ('?' cond ':' cond)?
  caf::error cond(int depth) {
    if (auto err = deeper(depth))
      return err;
    if (auto err = logic_or(depth))
      return err;
    if (!take("?"))
      return {};
    return branches(depth, ":", "expected ':'");
  }

  /// After a condition: `then`, `separator`, `else`, as jumps around each other; `missing`
  /// tells of a missing separator.
  caf::error branches(int depth, std::string_view separator, const char* missing) {
    auto unless = code_.size();
    emit(jump_unless);
    if (auto err = cond(depth + 1))
      return err;
    if (!take(separator))
      return fail(missing);
    auto over = code_.size();
    emit(jump);
    code_[unless].arg = static_cast<uint32_t>(code_.size());
    if (auto err = cond(depth + 1))
      return err;
    code_[over].arg = static_cast<uint32_t>(code_.size());
    return {};
  }

  using level = caf::error (parser::*)(int);

  /// `next (op next)*` for the operators of one level, left to right.
  caf::error chain(int depth, level next,
                   std::initializer_list<std::pair<std::string_view, op>> ops) {
    if (auto err = (this->*next)(depth))
      return err;
    for (;;) {
      auto o = std::find_if(ops.begin(), ops.end(), [&](const auto& x) { return take(x.first); });
      if (o == ops.end())
        return {};
      if (auto err = (this->*next)(depth))
        return err;
      emit(o->second);
    }
  }

  caf::error logic_or(int depth) { return chain(depth, &parser::logic_and, {{"or", either}}); }
  caf::error logic_and(int depth) { return chain(depth, &parser::negation, {{"and", both}}); }

  /// negation := 'not' negation | cmp (so `not a > 1` is `not (a > 1)`)
  caf::error negation(int depth) {
    if (auto err = deeper(depth))
      return err;
    if (!take("not"))
      return comparison(depth);
    if (auto err = negation(depth + 1))
      return err;
    emit(truth_not);
    return {};
  }

  caf::error comparison(int depth) {
    if (auto err = sum(depth))
      return err;
    static constexpr std::pair<std::string_view, op> ops[] = {
      {"==", eq}, {"!=", ne}, {"<>", ne}, {"<=", le}, {">=", ge}, {"=", eq}, {"<", lt}, {">", gt}};
    for (const auto& [tok, o] : ops)
      if (take(tok)) {
        if (auto err = sum(depth))
          return err;
        emit(o);
        return {};
      }
    return {};
  }

  caf::error sum(int depth) { return chain(depth, &parser::product, {{"+", add}, {"-", sub}}); }
  caf::error product(int depth) { return chain(depth, &parser::unary, {{"*", mul}, {"/", div}}); }

  caf::error unary(int depth) {
    if (auto err = deeper(depth))
      return err;
    if (take("-")) {
      if (auto err = unary(depth + 1))
        return err;
      emit(neg);
      return {};
    }
    if (take("+"))
      return unary(depth + 1);
    if (auto err = atom(depth))
      return err;
    if (!take("^"))
      return {};
    if (auto err = unary(depth + 1))
      return err;
    emit(pow);
    return {};
  }

  caf::error atom(int depth) {
    skip_ws();
    if (pos_ >= s_.size())
      return fail("expected a number, a name or '(', found the end");
    char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      if (auto err = cond(depth + 1))
        return err;
      if (!take(")"))
        return fail("missing ')'");
      return {};
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.')
      return number();
    if (!ident_start(c))
      return fail(std::string{"unexpected character '"} + c + "'");
    size_t start = pos_;
    auto name = read_name();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '(') {
      pos_ = start;  // errors point at the function's name
      return call(name, depth);
    }
    std::string word = name;  // the words are read in any case
    std::transform(word.begin(), word.end(), word.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (word == "true" || word == "false" || word == "pi") {
      emit(push_number, 0, word == "true" ? 1.0 : word == "false" ? 0.0 : M_PI);
      return {};
    }
    if (word == "and" || word == "or" || word == "not") {
      pos_ = start;
      return fail("expected a number, a name or '(', found '" + name + "'");
    }
    auto at = std::find(inputs_.begin(), inputs_.end(), name);
    if (at == inputs_.end())
      at = inputs_.insert(inputs_.end(), std::move(name));
    emit(push_input, static_cast<uint32_t>(at - inputs_.begin()));
    return {};
  }

  caf::error number() {
    size_t start = pos_;
    auto text = number_text();
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(d)) {
      pos_ = start;
      return fail("'" + text + "' is not a number");
    }
    emit(push_number, 0, d);
    return {};
  }

  /// `name(` comes next.
  caf::error call(const std::string& name, int depth) {
    auto at = pos_;
    pos_ += name.size();
    take("(");
    if (name == "if") {
      constexpr const char* takes = "if takes a condition, a value and another value";
      if (auto err = cond(depth + 1))
        return err;
      if (!take(","))
        return fail(takes);
      if (auto err = branches(depth, ",", takes))
        return err;
      return take(")") ? caf::error{} : fail(takes);
    }
    size_t argc = 0;
    do {
      if (argc == max_args)
        return fail("more than " + std::to_string(max_args) + " arguments");
      if (auto err = cond(depth + 1))
        return err;
      ++argc;
    } while (take(","));
    if (!take(")"))
      return fail("missing ')' after the arguments of " + name);
    uint8_t o;
    auto wrong = [&](const char* takes) {
      pos_ = at;
      return fail(name + " takes " + takes);
    };
    if (name == "min" || name == "max") {
      emit(name == "min" ? fn_min : fn_max, 0, 0, static_cast<uint8_t>(argc));
    } else if (name == "clamp") {
      if (argc != 3)
        return wrong("a value, a low and a high bound");
      emit(fn_clamp);
    } else if (unary_function(name, o)) {
      if (argc != 1)
        return wrong("one argument");
      emit(o);
    } else {
      pos_ = at;
      return fail("unknown function '" + name
                  + "' (there are min, max, abs, sqrt, exp, log, clamp and if)");
    }
    return {};
  }

  std::vector<formula::instr>& code_;
  std::vector<std::string>& inputs_;
};

/// The most values the program holds on its stack at once.
size_t stack_needed(const std::vector<formula::instr>& code) {
  // Each branch of a jump starts from the depth before it: the paths are followed in
  // program order, a jump's target taking the depth the jump left.
  std::vector<long> at(code.size() + 1, -1);
  long depth = 0, most = 0;
  for (size_t i = 0; i < code.size(); ++i) {
    if (at[i] >= 0)
      depth = at[i];
    const auto& in = code[i];
    switch (in.op) {
      case push_number:
      case push_input: ++depth; break;
      case neg: case truth_not: case fn_abs: case fn_sqrt: case fn_exp: case fn_log: break;
      case fn_min: case fn_max: depth -= in.argc - 1; break;
      case fn_clamp: depth -= 2; break;
      case jump_unless: --depth; at[in.arg] = std::max(at[in.arg], depth); break;
      case jump: at[in.arg] = std::max(at[in.arg], depth); depth = 0; break;
      default: --depth; break;  // the binary operators
    }
    most = std::max(most, depth);
  }
  return static_cast<size_t>(most);
}

} // namespace

caf::expected<formula> formula::parse(std::string_view text) {
  if (text.size() > max_text)
    return make_error(runtime_errc::invalid_argument,
                      "formula longer than " + std::to_string(max_text) + " characters");
  formula out;
  parser p{text, out.code_, out.inputs_};
  if (auto err = p.run())
    return err;
  if (stack_needed(out.code_) > max_stack)
    return make_error(runtime_errc::invalid_argument, "formula too large to evaluate");
  out.text_ = std::string{text};
  return out;
}

double formula::eval(const double* values) const {
  std::array<double, max_stack> st;
  size_t n = 0;
  auto nan2 = [&] { return std::isnan(st[n - 2]) || std::isnan(st[n - 1]); };
  for (size_t pc = 0; pc < code_.size(); ++pc) {
    const auto& in = code_[pc];
    switch (in.op) {
      case push_number: st[n++] = in.number; break;
      case push_input: st[n++] = values[in.arg]; break;
      case neg: st[n - 1] = -st[n - 1]; break;
      case truth_not: st[n - 1] = std::isnan(st[n - 1]) ? nan : truth(st[n - 1] == 0); break;
      case add: st[n - 2] += st[n - 1]; --n; break;
      case sub: st[n - 2] -= st[n - 1]; --n; break;
      case mul: st[n - 2] *= st[n - 1]; --n; break;
      case div: st[n - 2] /= st[n - 1]; --n; break;
      case pow: st[n - 2] = nan2() ? nan : std::pow(st[n - 2], st[n - 1]); --n; break;
      case lt: st[n - 2] = nan2() ? nan : truth(st[n - 2] < st[n - 1]); --n; break;
      case le: st[n - 2] = nan2() ? nan : truth(st[n - 2] <= st[n - 1]); --n; break;
      case gt: st[n - 2] = nan2() ? nan : truth(st[n - 2] > st[n - 1]); --n; break;
      case ge: st[n - 2] = nan2() ? nan : truth(st[n - 2] >= st[n - 1]); --n; break;
      case eq: st[n - 2] = nan2() ? nan : truth(st[n - 2] == st[n - 1]); --n; break;
      case ne: st[n - 2] = nan2() ? nan : truth(st[n - 2] != st[n - 1]); --n; break;
      case both: st[n - 2] = nan2() ? nan : truth(st[n - 2] != 0 && st[n - 1] != 0); --n; break;
      case either: st[n - 2] = nan2() ? nan : truth(st[n - 2] != 0 || st[n - 1] != 0); --n; break;
      case fn_min:
      case fn_max: {
        auto first = n - in.argc;
        double r = st[first];
        for (size_t i = first + 1; i < n; ++i)
          r = std::isnan(r) || std::isnan(st[i]) ? nan
              : in.op == fn_min                  ? std::min(r, st[i])
                                                 : std::max(r, st[i]);
        n = first;
        st[n++] = r;
        break;
      }
      case fn_abs: st[n - 1] = std::fabs(st[n - 1]); break;
      case fn_sqrt: st[n - 1] = std::sqrt(st[n - 1]); break;
      case fn_exp: st[n - 1] = std::exp(st[n - 1]); break;
      case fn_log: st[n - 1] = std::log(st[n - 1]); break;
      case fn_clamp: {
        double x = st[n - 3], lo = st[n - 2], hi = st[n - 1];
        n -= 2;
        st[n - 1] = std::isnan(x) || std::isnan(lo) || std::isnan(hi) || lo > hi
                      ? nan
                      : std::min(std::max(x, lo), hi);
        break;
      }
      case jump_unless: {
        double c = st[--n];
        if (std::isnan(c))
          return nan;
        if (c == 0)
          pc = in.arg - 1;
        break;
      }
      case jump: pc = in.arg - 1; break;
    }
  }
  return n == 1 ? st[0] : nan;
}

} // namespace twin::runtime
