#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace twin::runtime {

/// A twin's identity: `namespace:name`, with namespace `[a-z0-9][a-z0-9.-]{0,62}` and
/// name `[A-Za-z0-9._~-]{1,200}`. A value type; an empty id means "none" (e.g. no parent).
class twin_id {
public:
  twin_id() = default;

  /// Validates `text`; returns `runtime_errc::invalid_id` with the reason if it is not an id.
  static caf::expected<twin_id> parse(std::string_view text);

  /// Wraps text that is known to be valid (read back from the store or built by the
  /// runtime itself). Never use on user input.
  static twin_id trusted(std::string text) {
    twin_id x;
    x.text_ = std::move(text);
    return x;
  }

  const std::string& str() const noexcept { return text_; }
  bool empty() const noexcept { return text_.empty(); }
  std::string_view ns() const;
  std::string_view name() const;

  friend bool operator==(const twin_id& a, const twin_id& b) { return a.text_ == b.text_; }
  friend bool operator!=(const twin_id& a, const twin_id& b) { return a.text_ != b.text_; }
  friend bool operator<(const twin_id& a, const twin_id& b) { return a.text_ < b.text_; }

private:
  std::string text_;
};

/// Returns an empty string if `ns` is a valid namespace, the reason otherwise.
std::string check_namespace(std::string_view ns);

} // namespace twin::runtime

// Not noexcept on purpose: libstdc++'s unordered containers then cache each key's hash
// code instead of rehashing the id string at every step along a bucket chain.
template <>
struct std::hash<twin::runtime::twin_id> {
  size_t operator()(const twin::runtime::twin_id& x) const {
    return std::hash<std::string>{}(x.str());
  }
};
