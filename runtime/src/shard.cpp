#include "twin/runtime/shard.hpp"

#include <xxhash.h>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

uint64_t id_hash(std::string_view id) {
  return XXH64(id.data(), id.size(), 0);
}

caf::expected<node_id> node_id::parse(std::string_view text) {
  auto fail = [&](const char* why) {
    return make_error(runtime_errc::invalid_argument,
                      "invalid node id '" + std::string{text.substr(0, 80)} + "': " + why);
  };
  if (text.empty())
    return fail("it is empty");
  if (text.size() > 64)
    return fail("it is longer than 64 characters");
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-';
    if (!ok)
      return fail("it may only hold A-Z, a-z, 0-9, '.', '_' and '-'");
  }
  node_id x;
  x.text_ = std::string{text};
  return x;
}

} // namespace twin::runtime
