#include "twin/runtime/expression.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "text_scanner.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::runtime {

enum class op : uint8_t { eq, ne, lt, le, gt, ge };

struct expression::node {
  enum class kind : uint8_t { op_or, op_and, op_not, compare, in, exists } type;
  std::shared_ptr<const node> left;
  std::shared_ptr<const node> right;
  // compare: each side is either a property name or a literal.
  op cmp = op::eq;
  std::string lhs_name;  // compare, in, exists: the property
  std::string rhs_name;
  value lhs;
  value rhs;
  std::vector<value> set;  // in: the values
};

namespace {

constexpr size_t max_text = 4096;
constexpr int max_depth = 32;
constexpr size_t max_set = 256;  // values of one 'in'

/// Whether two values are equal as a comparison takes them: numbers by value, other kinds
/// with their own kind only.
bool same_value(const value& a, const value& b) {
  if (a.is_number() && b.is_number())
    return a.is_int() && b.is_int() ? a.as_int() == b.as_int() : a.as_double() == b.as_double();
  return a == b;
}

using node_ptr = std::shared_ptr<const expression::node>;

class parser : text_scanner {
public:
  explicit parser(std::string_view text) : text_scanner(text, "expression") {}

  caf::expected<node_ptr> run(std::vector<std::string>& props) {
    props_ = &props;
    auto n = parse_or(0);
    if (!n)
      return n.error();
    skip_ws();
    if (pos_ != s_.size())
      return fail("unexpected '" + std::string{s_.substr(pos_, 12)} + "'");
    return n;
  }

private:

  caf::expected<node_ptr> parse_or(int depth) {
    auto left = parse_and(depth);
    if (!left)
      return left;
    while (take("or")) {
      auto right = parse_and(depth);
      if (!right)
        return right;
      left = binary(expression::node::kind::op_or, *left, *right);
    }
    return left;
  }

  caf::expected<node_ptr> parse_and(int depth) {
    auto left = parse_not(depth);
    if (!left)
      return left;
    while (take("and")) {
      auto right = parse_not(depth);
      if (!right)
        return right;
      left = binary(expression::node::kind::op_and, *left, *right);
    }
    return left;
  }

  static node_ptr binary(expression::node::kind k, node_ptr l, node_ptr r) {
    auto n = std::make_shared<expression::node>();
    n->type = k;
    n->left = std::move(l);
    n->right = std::move(r);
    return n;
  }

  caf::expected<node_ptr> parse_not(int depth) {
    if (depth > max_depth)
      return fail("nested deeper than " + std::to_string(max_depth));
    if (take("not")) {
      auto inner = parse_not(depth + 1);
      if (!inner)
        return inner;
      auto n = std::make_shared<expression::node>();
      n->type = expression::node::kind::op_not;
      n->left = *inner;
      return node_ptr{n};
    }
    size_t start = pos_;
    if (take("exists")) {
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == '(')
        return parse_exists();
      pos_ = start;  // a property named so
    }
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '(') {
      ++pos_;
      auto inner = parse_or(depth + 1);
      if (!inner)
        return inner;
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ')')
        return fail("missing ')'");
      ++pos_;
      return inner;
    }
    return parse_compare();
  }

  // An operand is a property name (name set) or a literal.
  caf::error operand(std::string& name, value& lit) {
    skip_ws();
    if (pos_ >= s_.size())
      return fail("expected a property name or a value, found the end");
    char c = s_[pos_];
    if (c == '"' || c == '\'') {
      std::string out;
      ++pos_;
      while (pos_ < s_.size() && s_[pos_] != c) {
        if (s_[pos_] == '\\' && pos_ + 1 < s_.size())
          ++pos_;
        out += s_[pos_++];
      }
      if (pos_ >= s_.size())
        return fail("unterminated string");
      ++pos_;
      lit = value{std::move(out)};
      return {};
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.') {
      auto num = number_text();
      char* end = nullptr;
      bool integral = num.find_first_of(".eE") == std::string::npos;
      if (integral) {
        errno = 0;
        long long v = std::strtoll(num.c_str(), &end, 10);
        if (end == num.c_str() + num.size() && errno == 0) {
          lit = value{static_cast<int64_t>(v)};
          return {};
        }
      }
      double d = std::strtod(num.c_str(), &end);
      if (end != num.c_str() + num.size())
        return fail("'" + num + "' is not a number");
      lit = value{d};
      return {};
    }
    if (ident_start(c)) {
      size_t start = pos_;
      auto word = read_name();
      if (word == "true" || word == "false") {
        lit = value{word == "true"};
        return {};
      }
      if (word == "null") {
        lit = value{};
        return {};
      }
      if (word == "and" || word == "or" || word == "not" || word == "in") {
        pos_ = start;
        return fail("expected a property name or a value, found '" + word + "'");
      }
      if (std::find(props_->begin(), props_->end(), word) == props_->end())
        props_->push_back(word);
      name = std::move(word);
      return {};
    }
    return fail(std::string{"unexpected character '"} + c + "'");
  }

  /// After "exists": "(" property ")".
  caf::expected<node_ptr> parse_exists() {
    auto n = std::make_shared<expression::node>();
    n->type = expression::node::kind::exists;
    if (!expect('('))
      return fail("exists takes a property in parentheses: exists(status)");
    if (auto err = operand(n->lhs_name, n->lhs))
      return err;
    if (n->lhs_name.empty())
      return fail("exists takes a property name");
    if (!expect(')'))
      return fail("missing ')'");
    return node_ptr{n};
  }

  /// After "property in": "(" value ("," value)* ")".
  caf::expected<node_ptr> parse_in(std::shared_ptr<expression::node> n) {
    n->type = expression::node::kind::in;
    if (n->lhs_name.empty())
      return fail("'in' follows a property name");
    if (!expect('('))
      return fail("'in' takes a list of values in parentheses: in (\"a\", \"b\")");
    do {
      std::string name;
      value v;
      if (auto err = operand(name, v))
        return err;
      if (!name.empty())
        return fail("'in' takes values, not the property '" + name + "'");
      if (n->set.size() == max_set)
        return fail("'in' takes at most " + std::to_string(max_set) + " values");
      n->set.push_back(std::move(v));
    } while (expect(','));
    if (!expect(')'))
      return fail("missing ')'");
    return node_ptr{n};
  }

  /// Skips blanks; takes `c` if it comes next.
  bool expect(char c) {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  caf::expected<node_ptr> parse_compare() {
    auto n = std::make_shared<expression::node>();
    n->type = expression::node::kind::compare;
    if (auto err = operand(n->lhs_name, n->lhs))
      return err;
    if (take("in"))
      return parse_in(std::move(n));
    skip_ws();
    auto rest = s_.substr(pos_);
    auto take = [&](std::string_view tok, op o) {
      if (rest.substr(0, tok.size()) == tok) {
        n->cmp = o;
        pos_ += tok.size();
        return true;
      }
      return false;
    };
    if (!(take("==", op::eq) || take("!=", op::ne) || take("<>", op::ne) || take("<=", op::le)
          || take(">=", op::ge) || take("=", op::eq) || take("<", op::lt) || take(">", op::gt)))
      return fail("expected a comparison (=, !=, <, <=, >, >=)");
    if (auto err = operand(n->rhs_name, n->rhs))
      return err;
    if (n->lhs_name.empty() && n->rhs_name.empty())
      return fail("a comparison needs at least one property name");
    return node_ptr{n};
  }

  std::vector<std::string>* props_ = nullptr;
};

template <class T>
bool compare(op o, const T& a, const T& b) {
  switch (o) {
    case op::eq: return a == b;
    case op::ne: return !(a == b);
    case op::lt: return a < b;
    case op::le: return a <= b;
    case op::gt: return a > b;
    case op::ge: return a >= b;
  }
  return false;
}

bool eval_node(const expression::node& n, const expression::lookup& get) {
  using k = expression::node::kind;
  switch (n.type) {
    case k::op_or: return eval_node(*n.left, get) || eval_node(*n.right, get);
    case k::op_and: return eval_node(*n.left, get) && eval_node(*n.right, get);
    case k::op_not: return !eval_node(*n.left, get);
    case k::exists: return get(n.lhs_name) != nullptr;
    case k::in: {
      const value* a = get(n.lhs_name);
      return a != nullptr && std::any_of(n.set.begin(), n.set.end(),
                                         [&](const value& x) { return same_value(*a, x); });
    }
    case k::compare: {
      const value* a = n.lhs_name.empty() ? &n.lhs : get(n.lhs_name);
      const value* b = n.rhs_name.empty() ? &n.rhs : get(n.rhs_name);
      if (a == nullptr || b == nullptr)
        return false;
      if (a->is_number() && b->is_number()) {
        if (a->is_int() && b->is_int())
          return compare(n.cmp, a->as_int(), b->as_int());
        return compare(n.cmp, a->as_double(), b->as_double());
      }
      if (a->is_string() && b->is_string())
        return compare(n.cmp, a->as_string(), b->as_string());
      if (a->is_bool() && b->is_bool())
        return compare(n.cmp, a->as_bool(), b->as_bool());
      if (a->is_null() || b->is_null()) {
        bool same = a->is_null() && b->is_null();
        return n.cmp == op::eq ? same : n.cmp == op::ne ? !same : false;
      }
      return false;
    }
  }
  return false;
}

} // namespace

caf::expected<expression> expression::parse(std::string_view text) {
  if (text.size() > max_text)
    return make_error(runtime_errc::invalid_argument,
                      "expression longer than " + std::to_string(max_text) + " characters");
  expression out;
  parser p{text};
  auto root = p.run(out.properties_);
  if (!root)
    return root.error();
  out.root_ = std::move(*root);
  out.text_ = std::string{text};
  return out;
}

bool expression::eval(const lookup& get) const {
  return root_ != nullptr && eval_node(*root_, get);
}

} // namespace twin::runtime
