// The HTTP routes with a scripted router: the answers a running node rarely gives.

#include "inline_routes.hpp"
#include "routes.hpp"

#include <algorithm>
#include <optional>

#include <gtest/gtest.h>

#include "twin/runtime/errc.hpp"
#include "test_support.hpp"
#include "twin/runtime/model.hpp"

namespace twin::test {
namespace {

using namespace runtime;
using nlohmann::json;

/// Answers every request with `answer` at once.
class refusing_router : public router {
public:
  explicit refusing_router(caf::error answer) : answer_(std::move(answer)) {}
  void route(const twin_id&, twin_request req) override {
    ++routed;
    fail_request(req, answer_);
  }
  int routed = 0;

private:
  caf::error answer_;
};

/// The answer of `handle` to `method target` on `be` (the routes answer these at once:
/// blocking work runs in the call).
api::response call(const api::backend& be, const std::string& method, const std::string& target,
                   const std::string& body = {}) {
  api::request req;
  req.method = method;
  req.target = target;
  req.content_type = "application/json";
  req.body = body;
  std::optional<api::response> out;
  api::node_info node{"n1", "http://127.0.0.1:8080"};
  auto ctx = inline_context(be, node);
  api::handle(ctx, std::move(req), [&](api::response r) { out = std::move(r); });
  EXPECT_TRUE(out.has_value()) << method << " " << target << " was not answered";
  return out ? *out : api::response{0, {}, {}, {}, nullptr};
}

/// The same on a backend of a router alone.
api::response call(router& rt, bool ready, const std::string& method, const std::string& target,
                   const std::string& body = {}) {
  api::backend be;
  be.rt = &rt;
  be.ready = [ready] {
    return std::vector<api::readiness_check>{{"store", true, "open"},
                                             {"node", ready, ready ? "started" : "starting"}};
  };
  return call(be, method, target, body);
}

std::string code_of(const api::response& r) {
  return r.body.is_object() && r.body.contains("error") ? r.body["error"].value("code", "") : "";
}

TEST(routes, a_node_that_is_not_ready_says_so) {
  refusing_router rt{caf::error{}};
  auto r = call(rt, false, "GET", "/readyz");
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(code_of(r), "not_ready");
  EXPECT_EQ(r.body["error"]["message"], "node: starting");  // what is not ready, only
  EXPECT_EQ(r.body["status"], "not_ready");
  EXPECT_EQ(r.body["checks"]["store"]["ok"], true);
  EXPECT_EQ(r.body["checks"]["node"]["ok"], false);
  auto ok = call(rt, true, "GET", "/readyz");
  EXPECT_EQ(ok.status, 200u);
  EXPECT_EQ(ok.body["status"], "ready");
  EXPECT_EQ(ok.body["checks"]["node"]["detail"], "started");
  EXPECT_EQ(call(rt, false, "GET", "/healthz").status, 200u);
}

TEST(routes, a_stopping_node_answers_503_and_a_failing_store_500) {
  refusing_router stopping{make_error(runtime_errc::shutting_down, "the node is shutting down")};
  auto r = call(stopping, true, "GET", "/v1/twins/t:a");
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(code_of(r), "shutting_down");
  auto batch = call(stopping, true, "POST", "/v1/telemetry",
                    R"([{"twin":"t:a","values":{"x":1}}])");
  EXPECT_EQ(batch.status, 202u);
  EXPECT_EQ(batch.body["rejected"], 1);
  EXPECT_EQ(batch.body["results"][0]["error"]["code"], "shutting_down");
  refusing_router broken{make_error(runtime_errc::store_failure, "disk on fire")};
  r = call(broken, true, "PUT", "/v1/twins/t:a", R"({"type":"gauge"})");
  EXPECT_EQ(r.status, 500u);
  EXPECT_EQ(code_of(r), "store_failure");
}

TEST(routes, parts_that_a_node_lacks_answer_501_without_reaching_a_twin) {
  refusing_router rt{caf::error{}};
  for (auto target : {"/v1/twins", "/v1/twins?type=motor", "/v1/events",
                      "/v1/twins/t:a/history?property=x"}) {
    auto r = call(rt, true, "GET", target);
    EXPECT_EQ(r.status, 501u) << target;
    EXPECT_EQ(code_of(r), "not_implemented") << target;
  }
  EXPECT_EQ(rt.routed, 0);
}

TEST(routes, bad_parameters_of_reads_get_400_before_anything_runs) {
  refusing_router rt{caf::error{}};
  int queries = 0;
  int histories = 0;
  change_feed feed;
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  be.query = [&](const twin_query&) -> caf::expected<query_page> {
    ++queries;
    return query_page{};
  };
  be.history = [&](const history_query&) -> caf::expected<history_page> {
    ++histories;
    return history_page{};
  };
  be.feed = &feed;
  for (auto target :
       {"/v1/twins?kind=gadget", "/v1/twins?limit=0", "/v1/twins?limit=1001",
        "/v1/twins?limit=ten", "/v1/twins?where=temperature%20%3E", "/v1/twins?cursor=xyz",
        "/v1/twins?parent=no-colon", "/v1/twins?type=", "/v1/twins?color=red",
        "/v1/twins?type=a&type=b", "/v1/twins?where=%ZZ", "/v1/twins/t:a/history",
        "/v1/twins/t:a/history?property=x&from=5&to=4", "/v1/twins/t:a/history?property=x&step=0",
        "/v1/twins/t:a/history?property=x&from=yesterday", "/v1/twins/bad/history?property=x",
        "/v1/twins?limit=9999999999999999999", "/v1/twins/t:a/history?property=x&to=1e3",
        "/v1/twins/t:a/history?property=x&from=99999999999999999999999",
        "/v1/events?id=no-colon", "/v1/events?segment=maybe", "/v1/events?color=red"}) {
    auto r = call(be, "GET", target);
    EXPECT_EQ(r.status, 400u) << target << " " << r.body.dump();
    EXPECT_TRUE(code_of(r) == "invalid_argument" || code_of(r) == "invalid_id") << target;
  }
  EXPECT_EQ(queries + histories, 0);
  EXPECT_FALSE(feed.active());
  // Good parameters reach the backend, decoded ("+" and %20 are spaces).
  EXPECT_EQ(call(be, "GET", "/v1/twins?where=a+%3E%201&kind=asset&limit=5").status, 200u);
  EXPECT_EQ(call(be, "GET", "/v1/twins/t:a/history?property=x&from=-5&step=10").status, 200u);
  EXPECT_EQ(call(be, "GET", "/v1/twins/t:a/history?property=x&from=-9223372036854775807")
              .status,
            200u);
  EXPECT_EQ(queries, 1);
  EXPECT_EQ(histories, 2);
  auto events = call(be, "GET", "/v1/events?namespace=t&type=gauge&prefix=t:g");
  EXPECT_EQ(events.status, 200u);
  EXPECT_TRUE(events.stream);
  EXPECT_TRUE(feed.active());
  EXPECT_EQ(call(be, "POST", "/v1/twins").status, 405u);
  EXPECT_EQ(call(be, "DELETE", "/v1/events").status, 405u);
  EXPECT_EQ(rt.routed, 0);
}

TEST(routes, anomalies_are_read_from_their_series_with_iso_or_ms_times) {
  refusing_router rt{caf::error{}};
  std::vector<history_query> asked;
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  be.history = [&](const history_query& q) -> caf::expected<history_page> {
    asked.push_back(q);
    history_page page;
    page.points.push_back(
      {1714564800000,
       value{std::string{R"({"property":"t","value":9.5,"score":1,"expected":[1,2]})"}}});
    page.next_from_ms = 1714564800001;
    return page;
  };
  for (auto target : {"/v1/twins/t:a/anomalies?property=", "/v1/twins/t:a/anomalies?limit=0",
                      "/v1/twins/t:a/anomalies?from=5&to=4", "/v1/twins/t:a/anomalies?step=5",
                      "/v1/twins/t:a/anomalies?from=2024-13-01",
                      "/v1/twins/t:a/anomalies?from=2024-05-01T12:00:00",  // no zone
                      "/v1/twins/t:a/anomalies?to=2024-05-01T25:00:00Z",
                      "/v1/twins/t:a/anomalies?to=2023-02-29",  // not a leap year
                      "/v1/twins/t:a/anomalies?to=2024-04-31",
                      "/v1/twins/t:a/anomalies?to=2024-05-01T-1:00:00Z",
                      "/v1/twins/t:a/anomalies?to=2024-05-01T12:00:00.Z"}) {
    auto r = call(be, "GET", target);
    EXPECT_EQ(r.status, 400u) << target << " " << r.body.dump();
  }
  EXPECT_TRUE(asked.empty());
  EXPECT_EQ(call(be, "PUT", "/v1/twins/t:a/anomalies").status, 405u);

  auto r = call(be, "GET",
                "/v1/twins/t:a/anomalies?property=t&from=2024-05-01T14:00:00.250%2B02:00"
                "&to=2024-05-02&limit=7");
  ASSERT_EQ(r.status, 200u) << r.body.dump();
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].property, "t@anomaly");
  EXPECT_EQ(asked[0].from_ms, 1714564800250);  // 2024-05-01T12:00:00.250Z
  EXPECT_EQ(asked[0].to_ms, 1714608000000);    // 2024-05-02T00:00:00Z
  EXPECT_EQ(asked[0].limit, 7u);
  EXPECT_EQ(r.body["twin"], "t:a");
  ASSERT_EQ(r.body["items"].size(), 1u);
  EXPECT_EQ(r.body["items"][0]["ts"], 1714564800000);
  EXPECT_EQ(r.body["items"][0]["property"], "t");
  EXPECT_EQ(r.body["items"][0]["expected"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(r.body["next_from"], 1714564800001);

  ASSERT_EQ(call(be, "GET", "/v1/twins/t:a/anomalies?from=1000").status, 200u);
  EXPECT_EQ(asked[1].property, "@anomaly");  // every watched property
  EXPECT_EQ(asked[1].from_ms, 1000);
  EXPECT_EQ(asked[1].limit, 100u);
  // History reads take the same times.
  ASSERT_EQ(call(be, "GET", "/v1/twins/t:a/history?property=x&from=2024-05-01Z").status, 400u);
  ASSERT_EQ(call(be, "GET", "/v1/twins/t:a/history?property=x&from=2024-05-01T12:00:00Z").status,
            200u);
  EXPECT_EQ(asked[2].from_ms, 1714564800000);
  ASSERT_EQ(call(be, "GET", "/v1/twins/t:a/history?property=x&from=2024-02-29").status, 200u);
  EXPECT_EQ(asked[3].from_ms, 1709164800000);  // a leap day
}

TEST(routes, reads_beyond_the_queue_get_429_with_a_retry_time) {
  refusing_router rt{caf::error{}};
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  be.query = [](const twin_query&) -> caf::expected<query_page> { return query_page{}; };
  api::node_info node{"n1", "http://127.0.0.1:8080"};
  api::route_context full{be, node, [](std::function<void()>) { return false; }};
  std::optional<api::response> out;
  api::request req;
  req.method = "GET";
  req.target = "/v1/twins?type=gauge";
  api::handle(full, std::move(req), [&](api::response r) { out = std::move(r); });
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, 429u);
  EXPECT_EQ(code_of(*out), "too_many_requests");
  ASSERT_EQ(out->headers.size(), 1u);
  EXPECT_EQ(out->headers[0], (std::pair<std::string, std::string>{"Retry-After", "1"}));
}

TEST(routes, a_command_is_checked_before_it_reaches_the_twin) {
  refusing_router rt{caf::error{}};
  for (auto target : {"/v1/twins/t:a/commands/bad%20name", "/v1/twins/t:a/commands/a/b",
                      "/v1/twins/bad/commands/stop"})
    EXPECT_EQ(call(rt, true, "POST", target).status, 400u) << target;
  EXPECT_EQ(call(rt, true, "POST", "/v1/twins/t:a/commands/stop", "{").status, 400u);
  EXPECT_EQ(call(rt, true, "GET", "/v1/twins/t:a/commands/stop").status, 405u);
  EXPECT_EQ(rt.routed, 0);
  refusing_router missing{make_error(runtime_errc::not_found, "no twin t:a")};
  EXPECT_EQ(call(missing, true, "POST", "/v1/twins/t:a/commands/stop", R"({"fast":true})").status,
            404u);
  EXPECT_EQ(missing.routed, 1);
}

TEST(routes, the_types_show_what_their_models_declare) {
  type_registry types;
  ASSERT_TRUE(load_models(TEST_DATA_DIR "/ontology", types));
  refusing_router rt{caf::error{}};
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  be.types = &types;
  auto list = call(be, "GET", "/v1/types");
  ASSERT_EQ(list.status, 200u) << list.body.dump();
  ASSERT_EQ(list.body["items"].size(), types.size());
  EXPECT_EQ(list.body["items"][4],  // by name: Air_..., Architecture, ArchitectureCapacity, Breaker
            (json{{"name", "Building"}, {"kind", "asset"}, {"dtmi", "dtmi:test:onto:Building;1"},
                  {"displayName", "Building"}}));
  // By name, by DTMI (encoded in the path): every declaration.
  for (auto target : {"/v1/types/Building", "/v1/types/dtmi%3Atest%3Aonto%3ABuilding%3B1"}) {
    auto one = call(be, "GET", target);
    ASSERT_EQ(one.status, 200u) << target << " " << one.body.dump();
    EXPECT_EQ(one.body["name"], "Building");
    EXPECT_EQ(one.body["extends"],
              (json{"dtmi:test:onto:Architecture;1", "dtmi:test:onto:Space;1"}));
    auto props = one.body["properties"];
    auto tags = std::find_if(props.begin(), props.end(),
                             [](const json& p) { return p["name"] == "customTags"; });
    ASSERT_NE(tags, props.end());
    EXPECT_EQ((*tags)["schema"], (json{{"type", "map"}, {"values", "boolean"}}));
    EXPECT_EQ((*tags)["writable"], true);
    auto rels = one.body["relationships"];
    auto part_of = std::find_if(rels.begin(), rels.end(),
                                [](const json& r) { return r["name"] == "isPartOf"; });
    ASSERT_NE(part_of, rels.end());
    EXPECT_EQ((*part_of)["target"], "Space");
    EXPECT_EQ((*part_of)["maxMultiplicity"], 1);
  }
  auto breaker = call(be, "GET", "/v1/types/Breaker").body;
  auto phases = std::find_if(breaker["properties"].begin(), breaker["properties"].end(),
                             [](const json& p) { return p["name"] == "phases"; });
  EXPECT_EQ((*phases)["schema"]["type"], "enum");
  EXPECT_EQ((*phases)["schema"]["values"], (json{{"A", "A"}, {"AB", "AB"}, {"ABC", "ABC"}}));
  auto typo = call(be, "GET", "/v1/types/Bilding");
  EXPECT_EQ(typo.status, 404u);
  EXPECT_EQ(typo.body["error"]["message"], "no twin type 'Bilding' (did you mean 'Building'?)");
  EXPECT_EQ(call(be, "POST", "/v1/types/Building").status, 405u);
  EXPECT_EQ(call(be, "GET", "/v1/types?x=1").status, 400u);
  EXPECT_EQ(rt.routed, 0);
}

TEST(routes, a_query_of_an_unknown_type_or_property_is_refused_with_the_nearest_name) {
  type_registry types;
  add_test_types(types);
  refusing_router rt{caf::error{}};
  int queries = 0;
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  be.types = &types;
  be.query = [&](const twin_query& q) -> caf::expected<query_page> {
    ++queries;
    EXPECT_EQ(q.type.empty() || q.type == "motor", true) << q.type;
    return query_page{};
  };
  auto message = [&](const std::string& target) {
    auto r = call(be, "GET", target);
    EXPECT_EQ(r.status, 400u) << target << " " << r.body.dump();
    return r.body["error"].value("message", "");
  };
  EXPECT_EQ(message("/v1/twins?type=moter"), "unknown twin type 'moter' (did you mean 'motor'?)");
  EXPECT_EQ(message("/v1/twins?type=motor&where=temprature%20%3E%2050"),
            "where: no type 'motor' declares 'temprature' (did you mean 'temperature'?)");
  EXPECT_EQ(message("/v1/twins?kind=system&where=temperature%20%3E%2050"),
            "where: no selected type declares 'temperature'");
  EXPECT_EQ(message("/v1/twins?namespace=Bad%20NS"),
            "namespace must be a twin id's namespace, not 'Bad NS'");
  EXPECT_EQ(queries, 0);
  // A type by its DTMI-less test name, the twin's own fields, and a property some type has.
  for (auto target : {"/v1/twins?type=motor&where=temperature%20%3E%2050",
                      "/v1/twins?where=id%20%3D%20'p%3Am1'%20or%20namespace%20%3D%20'q'",
                      "/v1/twins?where=max_temperature%20%3E%201&prefix=p%3Aline",
                      "/v1/twins?where=exists(temperature)&namespace=p"})
    EXPECT_EQ(call(be, "GET", target).status, 200u) << target;
  EXPECT_EQ(queries, 4);
}

TEST(routes, history_reads_several_properties_at_once) {
  refusing_router rt{caf::error{}};
  std::vector<std::string> read;
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  be.history = [&](const history_query& q) -> caf::expected<history_page> {
    read.push_back(q.property);
    if (q.property == "label")
      return make_error(runtime_errc::unknown_property, "no history of 'label'");
    history_page page;
    page.points.push_back({q.from_ms, value{q.property == "a" ? 1.0 : 2.0}});
    return page;
  };
  auto both = call(be, "GET", "/v1/twins/t:a/history?property=b,a,b&from=2024-05-01");
  ASSERT_EQ(both.status, 200u) << both.body.dump();
  EXPECT_EQ(both.body["twin"], "t:a");
  ASSERT_EQ(both.body["series"].size(), 2u);
  EXPECT_EQ(both.body["series"][0]["property"], "b");
  EXPECT_EQ(both.body["series"][0]["points"][0],
            (json{{"ts", 1714521600000}, {"value", 2.0}}));
  EXPECT_EQ(both.body["series"][1]["property"], "a");
  EXPECT_EQ(read, (std::vector<std::string>{"b", "a"}));
  auto one = call(be, "GET", "/v1/twins/t:a/history?property=a");
  EXPECT_EQ(one.body["property"], "a");
  EXPECT_EQ(one.body["points"].size(), 1u);
  EXPECT_EQ(call(be, "GET", "/v1/twins/t:a/history?property=a,label").status, 422u);
  read.clear();
  std::string many = "/v1/twins/t:a/history?property=p0";
  for (int i = 1; i <= 16; ++i)
    many += ",p" + std::to_string(i);
  for (auto target : {"/v1/twins/t:a/history?property=a,,b", "/v1/twins/t:a/history?property=a,",
                      many.c_str()})
    EXPECT_EQ(call(be, "GET", target).status, 400u) << target;
  EXPECT_TRUE(read.empty());
}

TEST(routes, a_lone_node_shows_itself_as_the_cluster_owning_every_shard) {
  refusing_router rt{caf::error{}};
  auto r = call(rt, true, "GET", "/v1/cluster");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.body["node"], "n1");
  EXPECT_EQ(r.body["shards"], 1024);
  ASSERT_EQ(r.body["members"].size(), 1u);
  EXPECT_EQ(r.body["members"][0]["node"], "n1");
  EXPECT_EQ(r.body["members"][0]["state"], "up");
  EXPECT_EQ(r.body["members"][0]["shards"], 1024);
  EXPECT_EQ(r.body["members"][0]["http"], "http://127.0.0.1:8080");
  EXPECT_EQ(call(rt, false, "GET", "/v1/cluster").body["members"][0]["state"], "starting");
  EXPECT_EQ(call(rt, true, "POST", "/v1/cluster").status, 405u);
  EXPECT_EQ(rt.routed, 0);
}

TEST(routes, pages_of_other_sites_and_hosts_not_allowed_are_refused_before_anything_runs) {
  refusing_router rt{make_error(runtime_errc::not_found, "no twin t:a")};
  api::backend be;
  be.rt = &rt;
  be.ready = [] { return std::vector<api::readiness_check>{}; };
  const std::vector<std::string> origins{"https://ops.example"};
  const std::vector<std::string> hosts{"twins.example", "127.0.0.1:8080"};
  api::node_info node{"n1", "http://127.0.0.1:8080"};
  auto ctx = inline_context(be, node);
  ctx.cors_origins = &origins;
  ctx.allowed_hosts = &hosts;
  auto send = [&](const std::string& method, const std::string& target,
                  const std::string& origin, const std::string& host,
                  const std::string& type = "application/json") {
    api::request req;
    req.method = method;
    req.target = target;
    req.content_type = type;
    req.origin = origin;
    req.host = host;
    std::optional<api::response> out;
    api::handle(ctx, std::move(req), [&](api::response r) { out = std::move(r); });
    EXPECT_TRUE(out) << method << " " << target;
    return out.value_or(api::response{0, {}, {}, {}, nullptr});
  };
  auto header = [](const api::response& r, const std::string& name) {
    for (const auto& [k, v] : r.headers)
      if (k == name)
        return v;
    return std::string{};
  };
  const std::string stop = "/v1/twins/t:a/commands/stop";
  // A page of another site, through a name that resolves to the node (DNS rebinding).
  auto r = send("POST", stop, "http://evil", "evil", "text/plain");
  EXPECT_EQ(r.status, 403u);
  EXPECT_EQ(code_of(r), "forbidden_host");
  r = send("POST", stop, "http://evil", "twins.example:8443");  // any port of a named host
  EXPECT_EQ(r.status, 403u);
  EXPECT_EQ(code_of(r), "forbidden_origin");
  EXPECT_EQ(send("OPTIONS", stop, "http://evil", "twins.example").status, 403u);
  EXPECT_EQ(send("GET", "/v1/twins/t:a", "", "127.0.0.1:9999").status, 403u);  // not that port
  // Without a page (no Origin), a command still needs a JSON type: a form cannot send it.
  EXPECT_EQ(send("POST", stop, "", "twins.example", "text/plain").status, 415u);
  EXPECT_EQ(send("POST", stop, "", "twins.example", "").status, 415u);
  EXPECT_EQ(rt.routed, 0);
  // An allowed page: its preflight is answered, its requests go through with CORS headers.
  auto pre = send("OPTIONS", stop, "https://ops.example", "twins.example");
  EXPECT_EQ(pre.status, 204u);
  EXPECT_EQ(header(pre, "Access-Control-Allow-Origin"), "https://ops.example");
  EXPECT_NE(header(pre, "Access-Control-Allow-Headers").find("Content-Type"), std::string::npos);
  auto got = send("GET", "/v1/twins/t:a", "https://ops.example", "127.0.0.1:8080");
  EXPECT_EQ(got.status, 404u);  // reached the twin, which does not exist
  EXPECT_EQ(header(got, "Access-Control-Allow-Origin"), "https://ops.example");
  EXPECT_EQ(header(got, "Vary"), "Origin");
  EXPECT_EQ(rt.routed, 1);
}

} // namespace
} // namespace twin::test
