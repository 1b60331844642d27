// libFuzzer target: the Authorization header and the token in it, from untrusted bytes, and
// a stored token's bytes. Whatever the input, a header gives a token or none; a token that
// parses has a 16-digit lowercase hex id and a 43-character base64url secret, and is the
// whole of what it parsed from; stored bytes decode or give an error, and a token that
// decodes encodes to bytes that decode to the same token.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "twin/runtime/access.hpp"

namespace {

using namespace twin::runtime;

bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
         || c == '_';
}

void check_token_text(std::string_view text) {
  auto parts = parse_token(text);
  if (!parts)
    return;
  if (parts->id.size() != access_token::id_chars
      || parts->secret.size() != access_token::secret_chars
      || text.size() != 4 + parts->id.size() + 1 + parts->secret.size())
    std::abort();
  for (char c : parts->id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      std::abort();
  for (char c : parts->secret)
    if (!is_base64url(c))
      std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes{reinterpret_cast<const char*>(data), size};
  check_token_text(bytes);
  if (auto token = bearer_token(bytes)) {
    // What the header carries lies inside it, with no space in it.
    if (token->empty() || token->find(' ') != std::string_view::npos
        || token->data() < bytes.data() || token->data() + token->size() > bytes.data() + size)
      std::abort();
    check_token_text(*token);
  }
  auto stored = access_token::decode(bytes);
  if (!stored)
    return 0;
  auto copy = *stored;
  (void)check_token(copy);  // any record: a reason or none, never a failure
  auto again = access_token::decode(stored->encode());
  if (!again || again->id != stored->id || again->name != stored->name
      || again->role != stored->role || again->namespaces != stored->namespaces
      || again->twins != stored->twins || again->secret_hash != stored->secret_hash
      || again->created_ms != stored->created_ms || again->expires_ms != stored->expires_ms
      || again->revoked_ms != stored->revoked_ms || again->created_by != stored->created_by)
    std::abort();
  bool sees = stored->sees(twin_id::trusted("a:b"));
  (void)sees;
  return 0;
}
