#include "twin/runtime/access.hpp"

#include <algorithm>

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/io.h>

#include "capnp_values.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/schema/twin.capnp.h"

namespace twin::runtime {

namespace {

using capn::str;
using capn::text;

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
         || c == '_';
}

bool contains(const std::vector<std::string>& sorted, std::string_view x) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), x,
                             [](const std::string& a, std::string_view b) { return a < b; });
  return it != sorted.end() && *it == x;
}

void sort_unique(std::vector<std::string>& xs) {
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
}

} // namespace

const char* to_string(role r) {
  switch (r) {
    case role::reader: return "reader";
    case role::operator_: return "operator";
    case role::writer: return "writer";
    case role::admin: return "admin";
    case role::device: return "device";
  }
  return "?";
}

bool from_string(std::string_view text, role& out) {
  for (auto r : {role::reader, role::operator_, role::writer, role::admin, role::device})
    if (text == to_string(r)) {
      out = r;
      return true;
    }
  return false;
}

const char* to_string(permission p) {
  switch (p) {
    case permission::read: return "read";
    case permission::control: return "control";
    case permission::write: return "write";
    case permission::telemetry: return "telemetry";
    case permission::admin: return "admin";
  }
  return "?";
}

bool grants(role r, permission p) {
  switch (r) {
    case role::device: return p == permission::telemetry;
    case role::admin: return true;
    case role::writer: return p != permission::admin;
    case role::operator_: return p == permission::read || p == permission::control;
    case role::reader: return p == permission::read;
  }
  return false;
}

bool access_token::sees(const twin_id& id) const {
  if (role == runtime::role::device)
    return contains(twins, id.str());
  return namespaces.empty() || contains(namespaces, id.ns());
}

std::string access_token::encode() const {
  capnp::MallocMessageBuilder msg;
  auto r = msg.initRoot<schema::AccessToken>();
  r.setId(text(id));
  r.setName(text(name));
  r.setRole(to_string(role));
  auto ns = r.initNamespaces(static_cast<unsigned>(namespaces.size()));
  for (unsigned i = 0; i < namespaces.size(); ++i)
    ns.set(i, text(namespaces[i]));
  auto own = r.initTwins(static_cast<unsigned>(twins.size()));
  for (unsigned i = 0; i < twins.size(); ++i)
    own.set(i, text(twins[i]));
  r.setSecretHash(capnp::Data::Reader{reinterpret_cast<const kj::byte*>(secret_hash.data()),
                                      secret_hash.size()});
  r.setCreatedMs(created_ms);
  r.setExpiresMs(expires_ms);
  r.setRevokedMs(revoked_ms);
  r.setCreatedBy(text(created_by));
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

caf::expected<access_token> access_token::decode(std::string_view bytes) {
  access_token t;
  bool known_role = false;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::PackedMessageReader reader{in};
    auto r = reader.getRoot<schema::AccessToken>();
    t.id = str(r.getId());
    t.name = str(r.getName());
    known_role = from_string(str(r.getRole()), t.role);
    for (auto ns : r.getNamespaces())
      t.namespaces.push_back(str(ns));
    for (auto id : r.getTwins())
      t.twins.push_back(str(id));
    auto hash = r.getSecretHash();
    t.secret_hash.assign(reinterpret_cast<const char*>(hash.begin()), hash.size());
    t.created_ms = r.getCreatedMs();
    t.expires_ms = r.getExpiresMs();
    t.revoked_ms = r.getRevokedMs();
    t.created_by = str(r.getCreatedBy());
  });
  if (failure != nullptr || !known_role || t.secret_hash.size() != 32
      || !valid_token_id(t.id)
      || !std::is_sorted(t.namespaces.begin(), t.namespaces.end())
      || !std::is_sorted(t.twins.begin(), t.twins.end()))
    return make_error(runtime_errc::store_corrupt, "a stored API token cannot be read");
  return t;
}

bool valid_token_id(std::string_view id) {
  return id.size() == access_token::id_chars && std::all_of(id.begin(), id.end(), is_hex);
}

std::optional<token_text> parse_token(std::string_view text) {
  constexpr size_t size = token_prefix.size() + access_token::id_chars + 1
                          + access_token::secret_chars;
  if (text.size() != size || text.substr(0, token_prefix.size()) != token_prefix)
    return std::nullopt;
  auto id = text.substr(token_prefix.size(), access_token::id_chars);
  auto secret = text.substr(token_prefix.size() + access_token::id_chars + 1);
  if (text[token_prefix.size() + access_token::id_chars] != '_' || !valid_token_id(id)
      || !std::all_of(secret.begin(), secret.end(), is_base64url))
    return std::nullopt;
  return token_text{id, secret};
}

std::optional<std::string_view> bearer_token(std::string_view header) {
  constexpr std::string_view scheme = "bearer";
  if (header.size() <= scheme.size() || header[scheme.size()] != ' ')
    return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i)
    if ((header[i] | 0x20) != scheme[i])
      return std::nullopt;
  auto rest = header.substr(scheme.size());
  auto start = rest.find_first_not_of(' ');
  if (start == std::string_view::npos)
    return std::nullopt;
  rest = rest.substr(start);
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  while (!rest.empty() && blank(rest.back()))
    rest.remove_suffix(1);
  // (A loop: find_first_of tries each character against the set, some 30 instructions each.)
  if (rest.empty() || std::any_of(rest.begin(), rest.end(), blank))
    return std::nullopt;
  return rest;
}

std::string check_token(access_token& t) {
  if (t.name.empty() || t.name.size() > access_token::max_name)
    return "name must be 1 to " + std::to_string(access_token::max_name) + " characters";
  if (std::any_of(t.name.begin(), t.name.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    return "name must hold no control characters";
  sort_unique(t.namespaces);
  sort_unique(t.twins);
  if (t.namespaces.size() > access_token::max_namespaces)
    return "a token has at most " + std::to_string(access_token::max_namespaces)
           + " namespaces";
  for (const auto& ns : t.namespaces)
    if (auto why = check_namespace(ns); !why.empty())
      return "namespace '" + ns + "': " + why;
  if (t.role == role::admin && !t.namespaces.empty())
    return "an admin token covers every namespace: give it none";
  if (t.role != role::device) {
    if (!t.twins.empty())
      return "only a device token has twins of its own";
    return {};
  }
  if (!t.namespaces.empty())
    return "a device token has twins, not namespaces";
  if (t.twins.empty() || t.twins.size() > access_token::max_twins)
    return "a device token has 1 to " + std::to_string(access_token::max_twins) + " twins";
  for (const auto& id : t.twins)
    if (auto parsed = twin_id::parse(id); !parsed)
      return "twin '" + id + "' is not a twin id";
  return {};
}

} // namespace twin::runtime
