#include "twin/api/tokens.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <tuple>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hex.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/record.hpp"

namespace twin::api {

using runtime::access_token;
using runtime::make_error;
using runtime::now_ms;
using runtime::runtime_errc;

namespace {


/// SHA-256 of `text`; empty if OpenSSL cannot compute it (then no secret matches, and no
/// token is made). The digest is fetched once and each thread keeps its context: a
/// request's check costs the hash alone (about 0.1 µs), not OpenSSL's lookups.
uint64_t next_instance() {
  static std::atomic<uint64_t> instances{0};
  return ++instances;
}

std::string sha256(std::string_view text) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct context {
    EVP_MD_CTX* p = EVP_MD_CTX_new();
    ~context() { EVP_MD_CTX_free(p); }
  };
  thread_local context ctx;
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  if (md == nullptr || ctx.p == nullptr || EVP_DigestInit_ex(ctx.p, md, nullptr) != 1
      || EVP_DigestUpdate(ctx.p, text.data(), text.size()) != 1
      || EVP_DigestFinal_ex(ctx.p, out.data(), &n) != 1 || n != out.size())
    return {};
  return std::string{reinterpret_cast<const char*>(out.data()), out.size()};
}

/// The key of a token id (16 hex digits) in the registry's map.
uint64_t key_of(std::string_view id) {
  uint64_t k = 0;
  for (char c : id)
    k = (k << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return k;
}

caf::expected<std::string> random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    return make_error(runtime_errc::unavailable, "no random bytes for a token");
  return out;
}

/// Base64url without padding.
std::string base64url(std::string_view bytes) {
  static constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0)
    out += alphabet[(acc << (6 - bits)) & 63];
  return out;
}

/// The text of a new token: a random id and a random secret of 32 bytes.
caf::expected<std::string> new_token_text() {
  auto id = random_bytes(access_token::id_chars / 2);
  auto secret = random_bytes(32);
  if (!id)
    return id.error();
  if (!secret)
    return secret.error();
  return "twn_" + to_hex(*id) + "_" + base64url(*secret);
}

/// Writes `text` to a new file `path` readable by its owner only.
caf::error write_secret_file(const std::string& path, const std::string& text) {
  auto fail = [&](const char* what) {
    return make_error(runtime_errc::invalid_argument,
                      std::string{what} + " " + path + ": " + std::strerror(errno));
  };
  std::error_code ec;
  if (auto dir = std::filesystem::path{path}.parent_path(); !dir.empty())
    std::filesystem::create_directories(dir, ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail("cannot create");
  auto line = text + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    auto err = fail("cannot write");
    ::unlink(path.c_str());  // no half a token for the next start to trip on
    return err;
  }
  return {};
}

} // namespace

token_registry::token_registry(std::unique_ptr<runtime::kv_store> store, warn_fn warn)
  : store_(std::move(store)), warn_(std::move(warn)), instance_(next_instance()) {
}

token_registry::~token_registry() {
  store_.reset();  // no change is delivered once it is gone
}

void token_registry::keep(access_token t) {
  auto id = t.id;
  auto p = std::make_shared<const access_token>(std::move(t));
  std::unique_lock<std::shared_mutex> guard{mu_};
  tokens_[key_of(id)] = std::move(p);
  generation_.fetch_add(1, std::memory_order_release);
}

caf::error token_registry::load() {
  auto follow = store_->follow([this](const std::string& id, const std::string& bytes) {
    if (bytes.empty()) {
      std::unique_lock<std::shared_mutex> guard{mu_};
      if (runtime::valid_token_id(id))
        tokens_.erase(key_of(id));
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    auto t = access_token::decode(bytes);
    if (!t || t->id != id) {
      if (warn_)
        warn_("API token " + id + " stored by another node cannot be read");
      return;
    }
    keep(std::move(*t));
  });
  if (follow)
    return follow;
  auto all = store_->list(max_tokens);
  if (!all)
    return all.error();
  for (const auto& [id, bytes] : *all) {
    auto t = access_token::decode(bytes);
    if (!t)
      return t.error();
    keep(std::move(*t));
  }
  return {};
}

caf::error token_registry::put(const access_token& t, const std::optional<std::string>& expected) {
  auto stored = store_->put(t.id, t.encode(), expected);
  if (!stored)
    return stored.error();
  if (!*stored)
    return make_error(runtime_errc::conflict, "token " + t.id + " changed meanwhile; try again");
  keep(t);
  return {};
}

caf::expected<token_registry::issued> token_registry::create(access_token spec,
                                                             const std::string& by) {
  if (auto why = runtime::check_token(spec); !why.empty())
    return make_error(runtime_errc::invalid_argument, why);
  std::lock_guard<std::mutex> writing{write_mu_};
  {
    std::shared_lock<std::shared_mutex> guard{mu_};
    if (tokens_.size() >= max_tokens)
      return make_error(runtime_errc::invalid_argument,
                        "the node holds " + std::to_string(max_tokens)
                          + " tokens already; revoke some first");
  }
  auto text = new_token_text();
  if (!text)
    return text.error();
  auto parts = runtime::parse_token(*text);
  issued out;
  out.token = std::move(spec);
  out.token.id = std::string{parts->id};
  out.token.secret_hash = sha256(parts->secret);
  if (out.token.secret_hash.empty())
    return make_error(runtime_errc::unavailable, "OpenSSL cannot hash a token's secret");
  out.token.created_ms = now_ms();
  out.token.revoked_ms = 0;
  out.token.created_by = by;
  out.text = std::move(*text);
  if (auto err = put(out.token, std::nullopt))
    return err;
  return out;
}

caf::expected<std::string> token_registry::bootstrap(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    bool active_admin = false;
    {
      std::shared_lock<std::shared_mutex> guard{mu_};
      auto now = now_ms();
      for (const auto& [id, t] : tokens_)
        active_admin |= t->role == runtime::role::admin && t->revoked_ms == 0 && !t->expired(now);
    }
    if (active_admin)
      return "an admin token exists: none written to " + path;
    auto text = new_token_text();
    if (!text)
      return text.error();
    if (auto err = write_secret_file(path, *text))
      return err;
  }
  std::ifstream in{path};
  std::string text;
  in >> text;
  auto parts = runtime::parse_token(text);
  if (!parts)
    return make_error(runtime_errc::invalid_argument,
                      "the admin token file " + path + " holds no token (twn_<id>_<secret>)");
  struct stat st {};
  std::string loose;
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    loose = " (it is readable by others: chmod 600 it)";
  std::lock_guard<std::mutex> writing{write_mu_};
  if (auto known = find(std::string{parts->id})) {
    if (known->secret_hash != sha256(parts->secret))
      return make_error(runtime_errc::invalid_argument,
                        "the admin token file " + path
                          + " holds a secret that is not the one of token " + known->id);
    if (known->revoked_ms != 0)
      return "the admin token of " + path + " is revoked" + loose;
    return "admin token: " + path + loose;
  }
  access_token t;
  t.id = std::string{parts->id};
  t.name = "admin";
  t.role = runtime::role::admin;
  t.secret_hash = sha256(parts->secret);
  if (t.secret_hash.empty())
    return make_error(runtime_errc::unavailable, "OpenSSL cannot hash a token's secret");
  t.created_ms = now_ms();
  auto stored = store_->put(t.id, t.encode(), std::nullopt);
  if (!stored)
    return stored.error();
  if (!*stored) {  // another member of the cluster stored it meanwhile, from the same file
    auto bytes = store_->get(t.id);
    if (!bytes)
      return bytes.error();
    auto theirs = access_token::decode(bytes->value_or(std::string{}));
    if (!theirs)
      return theirs.error();
    keep(std::move(*theirs));
    return "admin token: " + path + loose;
  }
  keep(t);
  return "admin token " + t.id + " made; its secret is in " + path + loose
         + " (twinctl --token-file " + path + " ...)";
}

std::vector<access_token> token_registry::list() const {
  std::vector<access_token> out;
  {
    std::shared_lock<std::shared_mutex> guard{mu_};
    out.reserve(tokens_.size());
    for (const auto& [id, t] : tokens_)
      out.push_back(*t);
  }
  std::sort(out.begin(), out.end(), [](const access_token& a, const access_token& b) {
    return std::tie(a.created_ms, a.id) < std::tie(b.created_ms, b.id);
  });
  return out;
}

std::shared_ptr<const access_token> token_registry::find(const std::string& id) const {
  std::shared_lock<std::shared_mutex> guard{mu_};
  if (!runtime::valid_token_id(id))
    return nullptr;
  auto it = tokens_.find(key_of(id));
  return it == tokens_.end() ? nullptr : it->second;
}

caf::expected<bool> token_registry::revoke(const std::string& id) {
  std::lock_guard<std::mutex> writing{write_mu_};
  auto bytes = store_->get(id);
  if (!bytes)
    return bytes.error();
  if (!*bytes)
    return false;
  auto t = access_token::decode(**bytes);
  if (!t)
    return t.error();
  if (t->revoked_ms != 0) {
    keep(std::move(*t));
    return true;
  }
  t->revoked_ms = now_ms();
  if (auto err = put(*t, *bytes))
    return err;
  return true;
}

token_registry::verified token_registry::verdict_of(std::shared_ptr<const access_token> t,
                                                     int64_t now) {
  if (t->revoked_ms != 0)
    return {token_verdict::revoked, std::move(t)};
  if (t->expired(now))
    return {token_verdict::expired, std::move(t)};
  return {token_verdict::ok, std::move(t)};
}

std::shared_ptr<const access_token> token_registry::lookup(uint64_t key,
                                                           std::string_view secret) const {
  std::shared_ptr<const access_token> t;
  {
    std::shared_lock<std::shared_mutex> guard{mu_};
    auto it = tokens_.find(key);
    if (it == tokens_.end())
      return nullptr;
    t = it->second;
  }
  auto hash = sha256(secret);
  if (hash.size() != t->secret_hash.size()
      || CRYPTO_memcmp(hash.data(), t->secret_hash.data(), hash.size()) != 0)
    return nullptr;
  return t;
}

token_registry::verified token_registry::verify(std::string_view text, int64_t now) const {
  // The texts this thread verified, by id: one that matches, of this registry and with no
  // change since, is its token, and needs no parse either. (The generation is read before
  // the lookup: a change meanwhile is seen next time.)
  struct verified_text {
    uint64_t instance = 0, key = 0, generation = 0;
    std::string text;
    std::shared_ptr<const access_token> token;  ///< this thread's copy
  };
  thread_local std::array<verified_text, 64> seen;
  constexpr size_t id_at = runtime::token_prefix.size();
  auto generation = generation_.load(std::memory_order_acquire);
  if (text.size() > id_at + access_token::id_chars) {
    auto key = key_of(text.substr(id_at, access_token::id_chars));  // checked by the match
    const auto& slot = seen[key % seen.size()];
    if (slot.instance == instance_ && slot.key == key && slot.generation == generation
        && slot.text.size() == text.size()
        && CRYPTO_memcmp(slot.text.data(), text.data(), text.size()) == 0)
      return verdict_of(slot.token, now);
  }
  auto parts = runtime::parse_token(text);
  if (!parts)
    return {token_verdict::malformed, nullptr};
  auto key = key_of(parts->id);
  auto t = lookup(key, parts->secret);
  if (!t)
    return {token_verdict::unknown, nullptr};
  seen[key % seen.size()] = {instance_, key, generation, std::string{text},
                             std::make_shared<access_token>(*t)};
  return verdict_of(seen[key % seen.size()].token, now);
}

} // namespace twin::api
