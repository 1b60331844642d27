// Parsing requests and building answers, for every route.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include "route_helpers.hpp"
#include "twin/runtime/await.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/query.hpp"

namespace twin::api::route_detail {

unsigned status_of(runtime_errc code) {
  switch (code) {
    case runtime_errc::invalid_id:
    case runtime_errc::invalid_argument:
    case runtime_errc::invalid_model:
      return 400;
    case runtime_errc::not_found:
      return 404;
    case runtime_errc::version_conflict:  // only conditional requests meet one
      return 412;
    case runtime_errc::conflict:
      return 409;
    case runtime_errc::unknown_type:
    case runtime_errc::unknown_property:
    case runtime_errc::type_mismatch:
    case runtime_errc::out_of_range:
    case runtime_errc::read_only:
    case runtime_errc::invalid_parent:
    case runtime_errc::future_timestamp:
      return 422;
    case runtime_errc::shutting_down:
    case runtime_errc::timeout:
    case runtime_errc::unavailable:
    case runtime_errc::not_owner:
      return 503;
    case runtime_errc::insufficient_storage:
      return 507;
    default:
      return 500;
  }
}

response method_not_allowed(const std::string& allow) {
  auto res = error_response(405, "method_not_allowed", "this resource allows " + allow);
  res.headers.emplace_back("Allow", allow);
  return res;
}

caf::error no_such_twin(const twin_id& id, bool history) {
  return make_error(runtime_errc::not_found,
                    history ? "no twin " + id.str() : "twin " + id.str() + " does not exist");
}

response error_of(const caf::error& err, bool conditional) {
  auto code = error_code(err);
  auto status = status_of(code);
  if (conditional && code == runtime_errc::not_found)
    status = 412;
  return response{status, {}, {{"error", to_json(err)}}, {}, nullptr};
}

response json_response(unsigned status, json body) {
  return response{status, {}, std::move(body), {}, nullptr};
}

std::string etag(uint64_t version) {
  return "\"" + std::to_string(version) + "\"";
}

caf::error bad(std::string why) {
  return make_error(runtime_errc::invalid_argument, std::move(why));
}

caf::expected<std::string> percent_decode(std::string_view s, bool form) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += form && s[i] == '+' ? ' ' : s[i];
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9')
        return c - '0';
      if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
      if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
      return -1;
    };
    int hi = i + 2 < s.size() ? hex(s[i + 1]) : -1;
    int lo = i + 2 < s.size() ? hex(s[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return bad("malformed %-escape in the request target");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool has_media_type(const request& req, std::initializer_list<std::string_view> accepted) {
  std::string_view type = req.content_type;
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ')
    type.remove_suffix(1);
  for (auto a : accepted)
    if (type.size() == a.size()
        && std::equal(type.begin(), type.end(), a.begin(),
                      [](unsigned char x, unsigned char y) {
                        return std::tolower(x) == std::tolower(y);
                      }))
      return true;
  return false;
}

caf::error check_fields(const json& obj, std::initializer_list<std::string_view> fields) {
  for (const auto& [key, v] : obj.items())
    if (std::find(fields.begin(), fields.end(), key) == fields.end())
      return bad("unknown field \"" + key + "\"");
  return {};
}

caf::expected<json> parse_body(const request& req, int depth) {
  return parse_json(req.body, "the body", depth);
}

caf::expected<json> object_body(const request& req,
                                std::initializer_list<std::string_view> fields) {
  auto doc = parse_body(req, max_document_depth);
  if (!doc)
    return doc;
  if (!doc->is_object())
    return bad("the body must be a JSON object");
  if (auto err = check_fields(*doc, fields))
    return err;
  return doc;
}



caf::expected<precondition> if_match(const request& req) {
  const auto& v = req.if_match;
  if (v.empty())
    return precondition{};
  if (v == "*")
    return precondition{true, std::nullopt};
  auto fail = bad("If-Match must be * or one ETag of this API, such as \"7\" (with the quotes)");
  if (v.size() < 3 || v.front() != '"' || v.back() != '"')
    return fail;
  uint64_t n = 0;
  for (size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9' || n > (UINT64_MAX - 9) / 10)
      return fail;
    n = n * 10 + static_cast<uint64_t>(v[i] - '0');
  }
  return precondition{true, n};
}


caf::expected<params> query_params(std::string_view target,
                                   std::initializer_list<std::string_view> known) {
  params out;
  auto q = target.find('?');
  if (q == std::string_view::npos)
    return out;
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto pair = rest.substr(0, rest.find('&'));
    rest.remove_prefix(std::min(rest.size(), pair.size() + 1));
    if (pair.empty())
      continue;
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    if (!key)
      return key.error();
    auto val = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!val)
      return val.error();
    if (std::find(known.begin(), known.end(), *key) == known.end())
      return bad("unknown parameter \"" + *key + "\"");
    if (out.count(*key) > 0)
      return bad("parameter \"" + *key + "\" is given twice");
    out.emplace(std::move(*key), std::move(*val));
  }
  return out;
}

caf::expected<int64_t> int_param(const std::string& key, const std::string& text, int64_t lo,
                                 int64_t hi) {
  auto fail = [&] {
    return bad(key + " must be an integer from " + std::to_string(lo) + " to "
               + std::to_string(hi));
  };
  int64_t n = 0;
  auto end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc{} || ptr != end || n < lo || n > hi)
    return fail();
  return n;
}

caf::expected<int64_t> time_param(const std::string& key, const std::string& text) {
  if (auto t = parse_time(text))
    return *t;
  return bad(key + " must be ms since the epoch or an ISO 8601 time such as "
                   "2024-05-01T12:00:00Z, not '" + text + "'");
}

caf::expected<twin_id> id_in_path(std::string_view path, size_t end) {
  constexpr std::string_view twins = "/v1/twins/";
  auto text = percent_decode(path.substr(twins.size(), end - twins.size()));
  if (!text)
    return text.error();
  return twin_id::parse(*text);
}

/// The root's record, as the twin has it now, and those below it, as stored (every
/// acknowledged change): read by parent, level by level. Only the twins that `token` sees
/// (nullptr: every twin); `invalid_argument` saying `why` if there are more than `max`.
caf::expected<std::vector<twin_record>> read_subtree(const backend& be, const access_token* token,
                                                     const twin_id& root, size_t max,
                                                     const std::string& why) {
  if (token && !token->sees(root))
    return no_such_twin(root);
  auto top = await_answer<twin_record>(
    [&](auto done) { be.rt->route(root, get_request{std::move(done)}); });
  if (!top)
    return top.error();
  std::vector<twin_record> out{std::move(*top)};
  for (size_t k = 0; k < out.size(); ++k) {
    if (out[k].children.empty())
      continue;
    twin_query q;
    q.parent = out[k].id;
    q.limit = twin_query::max_limit;
    if (token)
      q.namespaces = token->namespaces;
    for (;;) {
      auto page = be.query(q);
      if (!page)
        return page.error();
      for (auto& r : page->items)
        out.push_back(std::move(r));
      if (out.size() > max)
        return bad("the subtree of " + root.str() + " has more than " + std::to_string(max)
                   + " twins: " + why);
      if (page->cursor.empty())
        break;
      auto after = decode_cursor(page->cursor);
      if (!after)
        return after.error();
      q.after = std::move(*after);
    }
  }
  return out;
}

} // namespace twin::api::route_detail
