#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace twin::runtime {

class value;
using value_list = std::vector<value>;
using value_map = std::map<std::string, value, std::less<>>;

/// A property value: null, bool, int, double, string, list or map. A value type: lists
/// and maps are immutable once made and shared between copies.
class value {
public:
  enum class kind : uint8_t { null, boolean, integer, real, string, list, map };

  value() = default;
  value(std::nullptr_t) {}
  value(bool x) : data_(x) {}
  value(int x) : data_(int64_t{x}) {}
  value(int64_t x) : data_(x) {}
  value(double x) : data_(x) {}
  value(const char* x) : data_(std::string{x}) {}
  value(std::string x) : data_(std::move(x)) {}
  value(value_list x) : data_(std::make_shared<const value_list>(std::move(x))) {}
  value(value_map x) : data_(std::make_shared<const value_map>(std::move(x))) {}

  kind type() const noexcept { return static_cast<kind>(data_.index()); }
  bool is_null() const noexcept { return type() == kind::null; }
  bool is_bool() const noexcept { return type() == kind::boolean; }
  bool is_int() const noexcept { return type() == kind::integer; }
  bool is_double() const noexcept { return type() == kind::real; }
  bool is_number() const noexcept { return is_int() || is_double(); }
  bool is_string() const noexcept { return type() == kind::string; }
  bool is_list() const noexcept { return type() == kind::list; }
  bool is_map() const noexcept { return type() == kind::map; }

  /// Accessors; the caller checks the kind first (a wrong kind is undefined).
  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  /// Returns ints and doubles as double.
  double as_double() const {
    return is_int() ? static_cast<double>(std::get<int64_t>(data_)) : std::get<double>(data_);
  }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const value_list& as_list() const { return *std::get<list_ptr>(data_); }
  const value_map& as_map() const { return *std::get<map_ptr>(data_); }

  /// Equality by value; an int and a double are equal when numerically equal.
  friend bool operator==(const value& a, const value& b);
  friend bool operator!=(const value& a, const value& b) { return !(a == b); }

private:
  using list_ptr = std::shared_ptr<const value_list>;
  using map_ptr = std::shared_ptr<const value_map>;
  std::variant<std::monostate, bool, int64_t, double, std::string, list_ptr, map_ptr> data_;
};

/// Returns "null", "bool", "int", "double", "string", "list" or "map".
const char* to_string(value::kind x);

/// Returns a compact JSON rendering, for messages and logs.
std::string to_string(const value& x);

} // namespace twin::runtime
