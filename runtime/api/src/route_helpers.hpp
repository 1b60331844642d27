#pragma once

// What the files of the routes share: the helpers that parse requests and build answers
// (routes_common.cpp), and the handlers of each group of routes (routes_twins.cpp: one
// twin and telemetry; routes_reads.cpp: readiness, queries, history, commands and events),
// which `handle` (routes.cpp) dispatches to. Private to runtime/api.

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "routes.hpp"
#include "twin/runtime/errc.hpp"

namespace twin::api::route_detail {

using namespace twin::runtime;
using nlohmann::json;

/// What If-Match asks for: nothing (absent), any version (`*`: the twin must exist) or
/// one version (one strong ETag of this API, `"<version>"`).
struct precondition {
  bool given = false;
  std::optional<uint64_t> version;
};

using params = std::map<std::string, std::string, std::less<>>;

unsigned status_of(runtime_errc code);

/// The answer to a runtime error. For a conditional request (If-Match), no twin at all
/// is a failed precondition too.
response error_of(const caf::error& err, bool conditional = false);

response json_response(unsigned status, json body);

/// 405, naming the methods that `allow` lists ("GET, POST").
response method_not_allowed(const std::string& allow);

std::string etag(uint64_t version);

caf::error bad(std::string why);

/// Decodes %XX escapes of a path segment, or of a query parameter (`form`: where "+"
/// is a space too).
caf::expected<std::string> percent_decode(std::string_view s, bool form = false);

/// Whether the request's media type is one of `accepted` (parameters such as charset
/// are ignored).
bool has_media_type(const request& req, std::initializer_list<std::string_view> accepted);

/// An error naming the first key of the object `obj` that is not one of `fields`.
caf::error check_fields(const json& obj, std::initializer_list<std::string_view> fields);

/// The body as JSON, nesting at most `depth` levels.
caf::expected<json> parse_body(const request& req, int depth);

/// The body as a JSON object whose keys are all in `fields`.
caf::expected<json> object_body(const request& req,
                                std::initializer_list<std::string_view> fields);

caf::expected<precondition> if_match(const request& req);

/// The parameters of the query string of `target`, decoded; `invalid_argument` for a
/// malformed or repeated one, or one that is not in `known`.
caf::expected<params> query_params(std::string_view target,
                                   std::initializer_list<std::string_view> known);

/// The integer of parameter `key`, from `lo` to `hi`.
caf::expected<int64_t> int_param(const std::string& key, const std::string& text, int64_t lo,
                                 int64_t hi);

/// The time of parameter `key` in ms since the epoch: an integer of ms, or an ISO 8601
/// date and time in UTC or with an offset (`2024-05-01T12:00:00Z`,
/// `2024-05-01T14:00:00.250+02:00`; a date alone is its midnight UTC).
caf::expected<int64_t> time_param(const std::string& key, const std::string& text);

/// The twin id of a path "/v1/twins/{id}..." that ends at `end` (a position in `path`).
caf::expected<twin_id> id_in_path(std::string_view path, size_t end = std::string_view::npos);

/// Whether twin `id` exists for the request's token: every twin does when authentication
/// is off.
inline bool visible(const request& req, const twin_id& id) {
  return !req.token || req.token->sees(id);
}

/// The root's record, as the twin has it now, and those below it, as stored (every
/// acknowledged change), each before its children: read by parent, level by level. Only
/// the twins that `token` sees (nullptr: every twin); `invalid_argument` saying `why` if
/// there are more than `max`. Blocks.
caf::expected<std::vector<twin_record>> read_subtree(const backend& be, const access_token* token,
                                                     const twin_id& root, size_t max,
                                                     const std::string& why);

/// The error of a twin that does not exist, as the runtime gives it (`history`: as its
/// history reads give it), for one the request's token does not see.
caf::error no_such_twin(const twin_id& id, bool history = false);

// -- one twin and telemetry (routes_twins.cpp) ----------------------------------------

/// GET: the twin, with `"type_missing": true` if no model of the node defines its type.
void get_twin(const route_context& ctx, const twin_id& id, respond_fn respond);

/// PUT: the twin as the body gives it, all of it.
void put_twin(const route_context& ctx, const twin_id& id, const request& req,
              respond_fn respond);

/// PATCH: a merge patch of `properties`, `desired`, `parent` (null: none) and
/// `relationships` (a list replaces the twin's; null: none).
void patch_twin(const route_context& ctx, const twin_id& id, const request& req,
                respond_fn respond);

// -- relationships (routes_relationships.cpp) --------------------------------------------

/// Calls `then` once each target of `rels`, the relationships of twin `id` of type `type`
/// (empty: the type twin `id` has), exists and has the type its relationship names
/// (`check_targets`); answers the refusal otherwise (`conditional`: as a request with
/// If-Match, to which no twin at all is a failed precondition).
void with_targets_checked(const route_context& ctx, const twin_id& id, std::string type,
                          std::vector<relationship> rels, bool conditional, respond_fn respond,
                          std::function<void(respond_fn)> then);

/// GET /v1/twins/{id}/relationships: the twin's relationships (`name=`: of one name), or
/// with `incoming=true` the relationships of other twins to it, a page at a time.
void get_relationships(const route_context& ctx, const twin_id& id, const request& req,
                       respond_fn respond);

/// DELETE /v1/twins/{id}: refused (409) while the twin has children or twins point at it,
/// unless `detach=true` (its children become roots, the relationships to it are removed)
/// or `cascade=true` (its descendants are deleted too, and the relationships to any).
void delete_twin(const route_context& ctx, const twin_id& id, const request& req,
                 respond_fn respond);

/// POST /v1/telemetry: items `{"twin": id, "ts": ms?, "values": {...}}`. Each item is
/// routed on its own; the answer (202) comes once every accepted item is durable, with a
/// result per item in the order of the request, so one bad item does not sink the batch.
void post_telemetry(const route_context& ctx, const request& req, respond_fn respond);

// -- readiness, queries, history, commands, events (routes_reads.cpp) -------------------

/// GET /readyz: 200 when every check is ok, else 503 naming what is not. Each check is
/// shown either way.
response readiness(const std::vector<readiness_check>& checks);

/// Answers with what `work` returns, run off the I/O threads: 500 if it throws, 429 at
/// once if too much such work is queued already.
void answer_blocking(const route_context& ctx, respond_fn respond,
                     std::function<response()> work);

/// GET /v1/twins: a page of the twins that match, with the cursor of the next page.
void query_twins(const route_context& ctx, const request& req, respond_fn respond);

/// GET /v1/alerts?severity=&namespace=&prefix=&type=&limit=&cursor=: the active alerts of
/// the twins (at least warning), a page of twins at a time, by ascending id.
void list_alerts(const route_context& ctx, const request& req, respond_fn respond);

/// GET /v1/twins/{id}/history: samples of one property, or their buckets with `step`.
void get_history(const route_context& ctx, const twin_id& id, const request& req,
                 respond_fn respond);

/// GET /v1/twins/{id}/anomalies: the anomalies recorded, of one property or of all, by
/// time, with `next_from` when more follow.
void get_anomalies(const route_context& ctx, const twin_id& id, const request& req,
                   respond_fn respond);

/// POST /v1/twins/{id}/commands/{name}: the body (optional) holds the arguments. 202
/// once the twin took the command and sent it to the device, with its handler's result.
void post_command(router& rt, const twin_id& id, std::string name, const request& req,
                  respond_fn respond);

/// POST /v1/scenarios: the root's subtree, read now, run forward in virtual time with the
/// body's changes (`run_scenario`); answers the watched series, the alerts raised and
/// cleared, and the final state. Runs like a query (429 when too many wait).
void post_scenario(const route_context& ctx, const request& req, respond_fn respond);

/// POST /v1/scenarios/optimize: the set-points (`vary`) that make the objective best within
/// the constraints (`optimize_scenario`), and the scenario they give.
void post_optimize(const route_context& ctx, const request& req, respond_fn respond);

/// GET /v1/types and /v1/types/{type} (routes_types.cpp): the twin types, and what one
/// declares.
void handle_types(const route_context& ctx, std::string_view path, const request& req,
                  respond_fn respond);

/// /v1/types/{type}/rul (routes_rul.cpp): POST fits the type's RUL model on the history of
/// its run-to-failure twins and installs it; GET shows it; DELETE removes it.
void handle_rul(const route_context& ctx, const std::string& type, const request& req,
                respond_fn respond);

/// /v1/tokens and /v1/tokens/{id} (routes_access.cpp): POST makes a token and shows its
/// secret, once; GET lists them or shows one; DELETE revokes one.
void handle_tokens(const route_context& ctx, std::string_view path, const request& req,
                   respond_fn respond);

/// GET /v1/audit (routes_access.cpp): a page of the audit log, oldest first, with
/// `from`, `to`, `token`, `twin`, `limit` and `cursor`.
void read_audit(const route_context& ctx, const request& req, respond_fn respond);

/// GET /v1/events: a stream of the changes that match the filters.
void stream_events(const route_context& ctx, const request& req, respond_fn respond);

} // namespace twin::api::route_detail
