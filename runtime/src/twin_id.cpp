#include "twin/runtime/twin_id.hpp"

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

namespace {

bool ns_char(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
    return true;
  return !first && (c == '.' || c == '-');
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
         || c == '_' || c == '~' || c == '-';
}

} // namespace

std::string check_namespace(std::string_view ns) {
  if (ns.empty())
    return "the namespace is empty";
  if (ns.size() > 63)
    return "the namespace is longer than 63 characters";
  for (size_t i = 0; i < ns.size(); ++i)
    if (!ns_char(ns[i], i == 0))
      return "the namespace may only hold a-z, 0-9, '.' and '-' and must start with a-z or 0-9";
  return {};
}

caf::expected<twin_id> twin_id::parse(std::string_view text) {
  auto fail = [&](const std::string& why) {
    std::string shown{text.substr(0, 80)};
    if (text.size() > 80)
      shown += "...";
    return make_error(runtime_errc::invalid_id,
                      "invalid twin id '" + shown + "': " + why
                        + " (expected namespace:name, e.g. factory:motor-1)");
  };
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return fail("no ':' between namespace and name");
  if (auto why = check_namespace(text.substr(0, colon)); !why.empty())
    return fail(why);
  auto name = text.substr(colon + 1);
  if (name.empty())
    return fail("the name is empty");
  if (name.size() > 200)
    return fail("the name is longer than 200 characters");
  for (char c : name)
    if (!name_char(c))
      return fail("the name may only hold A-Z, a-z, 0-9, '.', '_', '~' and '-'");
  return trusted(std::string{text});
}

std::string_view twin_id::ns() const {
  std::string_view s{text_};
  return s.substr(0, s.find(':'));
}

std::string_view twin_id::name() const {
  std::string_view s{text_};
  auto colon = s.find(':');
  return colon == std::string_view::npos ? std::string_view{} : s.substr(colon + 1);
}

} // namespace twin::runtime
