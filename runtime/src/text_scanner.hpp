#pragma once

// What the parsers of conditions (expression.cpp) and formulas (formula.cpp) share: a
// position in the text, blanks skipped, words and symbols taken, names and numbers read,
// and errors that say where. Internal to the runtime.

#include <cctype>
#include <string>
#include <string_view>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

class text_scanner {
protected:
  /// `what` names the text in errors ("expression", "formula").
  text_scanner(std::string_view text, const char* what) : s_(text), what_(what) {}

  /// `invalid_argument`: "invalid <what> at position <pos>: <why>".
  caf::error fail(const std::string& why) const {
    return make_error(runtime_errc::invalid_argument, std::string{"invalid "} + what_
                                                        + " at position "
                                                        + std::to_string(pos_ + 1) + ": " + why);
  }

  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_])))
      ++pos_;
  }

  static bool ident_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
  }
  static bool ident_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  }

  /// Consumes `tok` (lower case) if it comes next after blanks: a word in any case and
  /// whole, a symbol as it is.
  bool take(std::string_view tok) {
    skip_ws();
    if (s_.size() - pos_ < tok.size())
      return false;
    for (size_t i = 0; i < tok.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(s_[pos_ + i])) != tok[i])
        return false;
    if (ident_start(tok[0]) && pos_ + tok.size() < s_.size() && ident_char(s_[pos_ + tok.size()]))
      return false;
    pos_ += tok.size();
    return true;
  }

  /// Reads the name that starts here (at an `ident_start` character).
  std::string read_name() {
    size_t start = pos_;
    while (pos_ < s_.size() && ident_char(s_[pos_]))
      ++pos_;
    return std::string{s_.substr(start, pos_ - start)};
  }

  /// Reads the characters of the number that starts here: digits, letters, points, and a
  /// sign after an exponent's e (what is not a number is left to the caller to say).
  std::string number_text() {
    size_t start = pos_++;
    while (pos_ < s_.size()
           && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.'
               || ((s_[pos_] == '-' || s_[pos_] == '+')
                   && (s_[pos_ - 1] == 'e' || s_[pos_ - 1] == 'E'))))
      ++pos_;
    return std::string{s_.substr(start, pos_ - start)};
  }

  std::string_view s_;
  size_t pos_ = 0;

private:
  const char* what_;
};

} // namespace twin::runtime
