#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/value.hpp"

namespace twin::runtime {

/// A parsed boolean condition over property values, e.g.
/// `temperature > 90`, `(load >= 0.8 or rpm > 3000) and status = "on"`.
///
/// Grammar: or := and ('or' and)*; and := not ('and' not)*; not := 'not' not | primary;
/// primary := '(' or ')' | 'exists' '(' property ')' | property 'in' '(' value (',' value)*
/// ')' | operand op operand; op := = == != <> < <= > >=;
/// operand := property name | number | "string" | 'string' | true | false | null.
/// A comparison (or `in`) with a missing property, or of values of different kinds, is
/// false; `exists(p)` is whether the twin has `p`. See docs/queries.md.
/// Immutable after parsing: may be shared and evaluated from any thread.
class expression {
public:
  /// Parses `text`; returns `invalid_argument` with the position and reason on error.
  /// Limits: 4096 characters, nesting depth 32.
  static caf::expected<expression> parse(std::string_view text);

  /// Looks up a property by name; returns nullptr if the twin has none.
  using lookup = std::function<const value*(std::string_view name)>;

  bool eval(const lookup& get) const;

  /// The property names the expression reads.
  const std::vector<std::string>& properties() const { return properties_; }
  const std::string& text() const { return text_; }

  struct node;

private:
  std::shared_ptr<const node> root_;
  std::vector<std::string> properties_;
  std::string text_;
};

} // namespace twin::runtime
