// The OpenAPI document (docs/openapi.json) against the routes: every route and method the
// server serves is in it, every path and method in it is served, the node serves the file
// itself, and a validator of OpenAPI 3.1 (npm's @seriousme/openapi-schema-validator, which
// scripts/setup installs) finds it valid.

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "host_fixture.hpp"
#include "inline_routes.hpp"
#include "routes.hpp"
#include "twin/api/tokens.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/kv_store.hpp"
#include "twin/runtime/model_catalog.hpp"
#include "twin/runtime/query.hpp"
#include "twin/runtime/rul_catalog.hpp"

namespace twin::test {
namespace {

using namespace runtime;
using nlohmann::json;

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

json document() {
  return json::parse(read_file(std::string{DOCS_DIR} + "/openapi.json"));
}

/// `template` with each parameter given a value.
std::string instance(std::string path) {
  for (auto [name, value] : {std::pair{"{id}", "t:x"}, {"{type}", "motor"}, {"{name}", "stop"},
                             {"{node}", "n1"}})
    if (auto at = path.find(name); at != std::string::npos)
      path.replace(at, std::string{name}.size(), value);
  return path;
}

class openapi_test : public host_test {
protected:
  void SetUp() override {
    start();
    be_.rt = &h();
    be_.ready = [] { return std::vector<api::readiness_check>{}; };
    be_.metrics = [] { return std::string{"twin_up 1\n"}; };
    be_.query = [this](const twin_query& q) { return run_query(*store_, types_, q); };
    be_.history = [this](const history_query& q) { return read_history(*store_, types_, q); };
    be_.feed = &feed_;
    be_.types = &types_;
    // Every part a node has: a part it lacks answers 501 to any method.
    tokens_ = std::make_unique<api::token_registry>(
      make_local_kv_store(*store_, h().local_commit(), "tokens/"));
    ASSERT_FALSE(tokens_->load());
    be_.tokens = tokens_.get();
    access_token admin;
    admin.name = "admin";
    admin.role = role::admin;
    auto made = tokens_->create(admin, "");
    ASSERT_TRUE(made) << error_message(made.error());
    admin_ = made->text;
    rul_ = std::make_unique<rul_catalog>(
      make_local_kv_store(*store_, h().local_commit(), "rul/"), types_);
    ASSERT_TRUE(rul_->load());
    be_.rul = rul_.get();
    models_ = std::make_unique<model_catalog>(
      make_local_kv_store(*store_, h().local_commit(), "models/"), types_, *store_);
    ASSERT_TRUE(models_->load());
    be_.models = models_.get();
  }

  api::response call(const std::string& method, const std::string& target) {
    api::request req;
    req.method = method;
    req.target = target;
    req.content_type = "application/json";
    req.body = method == "GET" || method == "DELETE" ? "" : "{}";
    req.authorization = "Bearer " + admin_;
    req.peer = "127.0.0.1";
    return answer_of(be_, std::move(req), tokens_.get());
  }

  /// Whether the server serves `method` on `path`: anything but 405 and "no route".
  bool served(const std::string& method, const std::string& path) {
    auto r = call(method, path);
    bool no_route = r.status == 404 && r.body.is_object()
                    && r.body["error"].value("message", "").rfind("no route", 0) == 0;
    return r.status != 405 && !no_route;
  }

  change_feed feed_;
  std::unique_ptr<api::token_registry> tokens_;
  std::unique_ptr<rul_catalog> rul_;
  std::unique_ptr<model_catalog> models_;
  std::string admin_;
  api::backend be_;
};

TEST_F(openapi_test, every_route_is_in_the_document_and_every_path_in_it_is_served) {
  auto doc = document();
  EXPECT_EQ(doc["openapi"], "3.1.0");
  std::set<std::pair<std::string, std::string>> documented;
  for (const auto& [path, item] : doc["paths"].items())
    for (const auto& [method, op] : item.items())
      if (method != "parameters") {
        std::string upper;
        for (char c : method)
          upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        documented.emplace(path, upper);
      }
  std::set<std::pair<std::string, std::string>> serving;
  for (const char* route : api::route_templates()) {
    EXPECT_STREQ(api::route_of(instance(route)), route);
    for (const char* method : {"GET", "PUT", "PATCH", "POST", "DELETE"})
      if (served(method, instance(route)))
        serving.emplace(route, method);
  }
  for (const auto& [path, method] : serving)
    EXPECT_TRUE(documented.count({path, method})) << method << " " << path << " is not documented";
  for (const auto& [path, method] : documented)
    EXPECT_TRUE(serving.count({path, method})) << method << " " << path << " is not served";
  EXPECT_GE(serving.size(), 30u);  // the check ran over every route
}

TEST_F(openapi_test, the_node_serves_the_document) {
  auto r = call("GET", "/v1/openapi.json");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(json::parse(r.text), document());
  EXPECT_EQ(call("POST", "/v1/openapi.json").status, 405u);
}

/// The output of `command`, and whether it ran.
std::pair<std::string, bool> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr)
    return {out, false};
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  return {out, ::pclose(p) != -1};
}

TEST(openapi, a_validator_of_openapi_3_1_finds_the_document_valid) {
  std::string validator = std::string{SOURCE_DIR} + "/.tools/openapi/node_modules/.bin/validate-api";
  if (!std::ifstream{validator})
    GTEST_SKIP() << "no " << validator << ": scripts/setup installs it";
  auto [out, ran] = run(validator + " " + DOCS_DIR + "/openapi.json 2>&1");
  ASSERT_TRUE(ran);
  EXPECT_NE(out.find("\"valid\": true"), std::string::npos) << out;
  // The validator tells a wrong document: a response whose description is a number.
  temp_dir dir;
  auto broken = document();
  broken["paths"]["/healthz"]["get"]["responses"]["200"]["description"] = 1;
  std::ofstream{dir.sub("broken.json")} << broken.dump();
  auto [wrong, ran_again] = run(validator + " " + dir.sub("broken.json") + " 2>&1");
  ASSERT_TRUE(ran_again);
  EXPECT_NE(wrong.find("\"valid\": false"), std::string::npos) << wrong;
}

} // namespace
} // namespace twin::test
