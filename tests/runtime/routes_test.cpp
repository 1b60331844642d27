// The HTTP routes with a scripted router: the answers a running node rarely gives.

#include "routes.hpp"

#include <optional>

#include <gtest/gtest.h>

#include "twin/runtime/errc.hpp"

namespace twin::test {
namespace {

using namespace runtime;

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

/// The answer of `handle` to `method target` (the routes answer these synchronously).
api::response call(router& rt, bool ready, const std::string& method, const std::string& target,
                   const std::string& body = {}) {
  api::request req;
  req.method = method;
  req.target = target;
  req.content_type = "application/json";
  req.body = body;
  std::optional<api::response> out;
  api::handle(rt, api::node_info{"n1", "http://127.0.0.1:8080"}, [ready] { return ready; },
              std::move(req),
              [&](api::response r) { out = std::move(r); });
  EXPECT_TRUE(out.has_value()) << method << " " << target << " was not answered";
  return out ? *out : api::response{0, {}, {}};
}

std::string code_of(const api::response& r) {
  return r.body.is_object() && r.body.contains("error") ? r.body["error"].value("code", "") : "";
}

TEST(routes, a_node_that_is_not_ready_says_so) {
  refusing_router rt{caf::error{}};
  auto r = call(rt, false, "GET", "/readyz");
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(code_of(r), "not_ready");
  EXPECT_EQ(call(rt, true, "GET", "/readyz").status, 200u);
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

TEST(routes, routes_not_served_yet_answer_501_without_reaching_a_twin) {
  refusing_router rt{caf::error{}};
  for (auto target : {"/v1/twins", "/v1/twins?type=motor", "/v1/events",
                      "/v1/twins/t:a/history"}) {
    auto r = call(rt, true, "GET", target);
    EXPECT_EQ(r.status, 501u) << target;
    EXPECT_EQ(code_of(r), "not_implemented") << target;
  }
  EXPECT_EQ(rt.routed, 0);
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

} // namespace
} // namespace twin::test
