// Parents and relationships through the HTTP routes, on a running host: PATCH of `parent`
// and `relationships`, the checks of a relationship's target, the lists of a twin's
// relationships both ways, queries by relationship, and what DELETE does with a twin that
// has children or that other twins point at.


#include <gtest/gtest.h>

#include "host_fixture.hpp"
#include "inline_routes.hpp"
#include "routes.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/query.hpp"

namespace twin::test {
namespace {

using namespace runtime;
using nlohmann::json;

/// Spaces and rooms (a Room is a Space), and sensors located in a space, whose vendor is
/// an id outside the runtime.
constexpr const char* models = R"([
  {"@id": "dtmi:t:Space;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"},
  {"@id": "dtmi:t:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
   "extends": "dtmi:t:Space;1"},
  {"@id": "dtmi:t:Sensor;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
   "contents": [
     {"@type": "Relationship", "name": "locatedIn", "target": "dtmi:t:Space;1",
      "maxMultiplicity": 1},
     {"@type": "Relationship", "name": "vendor"}],
   "twin": {"externalTargets": ["vendor"]}}
])";

class relationships_test : public host_test {
protected:
  void SetUp() override {
    auto parsed = parse_models({{"test.json", models}}, types_);
    ASSERT_TRUE(parsed) << error_message(parsed.error());
    for (auto& t : *parsed)
      ASSERT_FALSE(types_.add(t));
    start();
    be_.rt = &h();
    be_.ready = [] { return std::vector<api::readiness_check>{}; };
    be_.query = [this](const twin_query& q) { return run_query(*store_, types_, q); };
    be_.types = &types_;
  }

  api::response call(const std::string& method, const std::string& target,
                     const std::string& body = {}) {
    api::request req;
    req.method = method;
    req.target = target;
    req.content_type = "application/json";
    req.body = body;
    auto r = answer_of(be_, std::move(req));
    if (!r.text.empty())
      r.body = json::parse(r.text);
    return r;
  }

  /// The twin as GET shows it.
  json twin(const std::string& id) { return call("GET", "/v1/twins/" + id).body; }

  std::string error(const api::response& r) {
    return r.body.is_object() && r.body.contains("error")
             ? r.body["error"].value("message", "")
             : "";
  }

  /// The ids of a query's page.
  std::vector<std::string> ids(const std::string& query) {
    auto r = call("GET", "/v1/twins?" + query);
    EXPECT_EQ(r.status, 200u) << query << ": " << error(r);
    std::vector<std::string> out;
    for (const auto& item : r.body["items"])
      out.push_back(item["id"]);
    return out;
  }

  api::backend be_;
};

using strings = std::vector<std::string>;

TEST_F(relationships_test, a_target_must_exist_and_have_the_type_the_model_names) {
  auto missing = call("PUT", "/v1/twins/t:s1",
                      R"({"type":"Sensor","relationships":[{"name":"locatedIn","target":"t:r1"}]})");
  EXPECT_EQ(missing.status, 400u);
  EXPECT_EQ(error(missing), "relationship 'locatedIn': its target t:r1 does not exist");
  EXPECT_EQ(call("GET", "/v1/twins/t:s1").status, 404u);  // nothing was made
  ASSERT_EQ(call("PUT", "/v1/twins/t:r1", R"({"type":"Room"})").status, 201u);
  // A Room extends Space: it fits; the vendor is outside the runtime, and is not checked.
  auto ok = call("PUT", "/v1/twins/t:s1",
                 R"({"type":"Sensor","relationships":[{"name":"locatedIn","target":"t:r1"},
                                                       {"name":"vendor","target":"v:acme"}]})");
  EXPECT_EQ(ok.status, 201u) << error(ok);
  auto wrong = call("PUT", "/v1/twins/t:s2",
                    R"({"type":"Sensor","relationships":[{"name":"locatedIn","target":"t:s1"}]})");
  EXPECT_EQ(wrong.status, 400u);
  EXPECT_EQ(error(wrong), "relationship 'locatedIn' of type 'Sensor' targets 'Space' twins; "
                          "t:s1 is a 'Sensor'");
  auto patched = call("PATCH", "/v1/twins/t:s1",
                      R"({"relationships":[{"name":"locatedIn","target":"t:s1x"}]})");
  EXPECT_EQ(patched.status, 400u);
  EXPECT_EQ(twin("t:s1")["relationships"].size(), 2u);  // unchanged
}

TEST_F(relationships_test, patch_moves_the_parent_and_replaces_relationships_and_nothing_else) {
  for (auto [id, type] : {std::pair{"f:r1", "robot"}, {"f:r2", "robot"}, {"f:m1", "motor"}})
    ASSERT_TRUE(put(h(), id, type));
  ASSERT_TRUE(ingest(h(), "f:m1", {{"temperature", value{40.0}}}));
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m1", R"({"desired":{"rpm":900}})").status, 200u);
  auto before = twin("f:m1");

  auto moved = call("PATCH", "/v1/twins/f:m1", R"({"parent":"f:r1"})");
  ASSERT_EQ(moved.status, 200u) << error(moved);
  auto after = twin("f:m1");
  EXPECT_EQ(after["parent"], "f:r1");
  EXPECT_EQ(after["properties"], before["properties"]);  // values and their times
  EXPECT_EQ(after["desired"], before["desired"]);
  EXPECT_EQ(ids("parent=f:r1"), strings{"f:m1"});
  EXPECT_TRUE(eventually([&] {  // the parent rolls it up (its aggregates follow their change)
    return prop(h(), "f:r1", "max_temperature") == value{40.0};
  }));

  ASSERT_EQ(call("PATCH", "/v1/twins/f:m1", R"({"parent":"f:r2"})").status, 200u);
  EXPECT_EQ(ids("parent=f:r2"), strings{"f:m1"});
  EXPECT_TRUE(eventually([&] { return ids("parent=f:r1").empty(); }));
  EXPECT_TRUE(eventually([&] { return get(h(), "f:r1")->children.empty(); }));

  // Refusals change nothing.
  auto version = twin("f:m1")["version"];
  auto nowhere = call("PATCH", "/v1/twins/f:m1", R"({"parent":"f:nowhere"})");
  EXPECT_EQ(nowhere.status, 422u);
  EXPECT_EQ(error(nowhere), "parent f:nowhere does not exist");
  auto upward = call("PATCH", "/v1/twins/f:r2", R"({"parent":"f:m1"})");  // an asset under a component
  EXPECT_EQ(upward.status, 422u);
  EXPECT_NE(error(upward).find("cannot be a child of f:m1"), std::string::npos) << error(upward);
  EXPECT_EQ(twin("f:m1")["version"], version);
  EXPECT_EQ(twin("f:m1")["parent"], "f:r2");
  EXPECT_TRUE(twin("f:r2")["parent"].is_null());

  // A list replaces the twin's relationships; null removes them; the parent stays.
  auto related = call("PATCH", "/v1/twins/f:m1",
                      R"({"relationships":[{"name":"feeds","target":"f:r1"},
                                           {"name":"mountedOn","target":"f:r2"}]})");
  ASSERT_EQ(related.status, 200u) << error(related);
  EXPECT_EQ(twin("f:m1")["relationships"].size(), 2u);
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m1",
                 R"({"relationships":[{"name":"feeds","target":"f:r2"}]})").status, 200u);
  EXPECT_EQ(twin("f:m1")["relationships"],
            json::parse(R"([{"name":"feeds","target":"f:r2"}])"));
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m1", R"({"relationships":null})").status, 200u);
  EXPECT_TRUE(twin("f:m1")["relationships"].empty());
  EXPECT_EQ(twin("f:m1")["parent"], "f:r2");

  ASSERT_EQ(call("PATCH", "/v1/twins/f:m1", R"({"parent":null})").status, 200u);
  EXPECT_TRUE(twin("f:m1")["parent"].is_null());
  EXPECT_TRUE(eventually([&] { return get(h(), "f:r2")->children.empty(); }));
  EXPECT_EQ(twin("f:m1")["properties"], before["properties"]);
}

TEST_F(relationships_test, relationships_are_listed_both_ways_and_found_by_queries) {
  ASSERT_EQ(call("PUT", "/v1/twins/t:r1", R"({"type":"Room"})").status, 201u);
  ASSERT_EQ(call("PUT", "/v1/twins/t:r2", R"({"type":"Room"})").status, 201u);
  for (auto s : {"t:s1", "t:s2"})
    ASSERT_EQ(call("PUT", std::string{"/v1/twins/"} + s,
                   R"({"type":"Sensor","relationships":[{"name":"locatedIn","target":"t:r1"},
                                                        {"name":"vendor","target":"t:r1"}]})")
                .status,
              201u);
  ASSERT_EQ(call("PUT", "/v1/twins/t:s3",
                 R"({"type":"Sensor","relationships":[{"name":"locatedIn","target":"t:r2"}]})")
              .status,
            201u);

  auto out = call("GET", "/v1/twins/t:s1/relationships");
  ASSERT_EQ(out.status, 200u);
  EXPECT_EQ(out.body, json::parse(R"({"twin":"t:s1","relationships":[
    {"name":"locatedIn","target":"t:r1"},{"name":"vendor","target":"t:r1"}]})"));
  auto one = call("GET", "/v1/twins/t:s1/relationships?name=vendor");
  EXPECT_EQ(one.body["relationships"].size(), 1u);

  auto in = call("GET", "/v1/twins/t:r1/relationships?incoming=true");
  ASSERT_EQ(in.status, 200u) << error(in);
  EXPECT_EQ(in.body["incoming"], json::parse(R"([
    {"name":"locatedIn","source":"t:s1"},{"name":"vendor","source":"t:s1"},
    {"name":"locatedIn","source":"t:s2"},{"name":"vendor","source":"t:s2"}])"));
  EXPECT_TRUE(in.body["cursor"].is_null());
  auto paged = call("GET", "/v1/twins/t:r1/relationships?incoming=true&name=locatedIn&limit=1");
  ASSERT_EQ(paged.body["incoming"].size(), 1u);
  ASSERT_TRUE(paged.body["cursor"].is_string());
  auto rest = call("GET", "/v1/twins/t:r1/relationships?incoming=true&name=locatedIn&limit=1&cursor="
                            + paged.body["cursor"].get<std::string>());
  EXPECT_EQ(rest.body["incoming"], json::parse(R"([{"name":"locatedIn","source":"t:s2"}])"));

  EXPECT_EQ(ids("related=locatedIn:t:r1"), (strings{"t:s1", "t:s2"}));
  EXPECT_EQ(ids("related=*:t:r2"), strings{"t:s3"});
  EXPECT_EQ(ids("related=locatedIn:t:r2&where=id%20=%20%22t:s1%22"), strings{});
  auto typo = call("GET", "/v1/twins?related=locatedin:t:r1");
  EXPECT_EQ(typo.status, 400u);
  EXPECT_EQ(error(typo), "related: no type declares a relationship 'locatedin' (did you mean "
                         "'locatedIn'?)");
  EXPECT_EQ(call("GET", "/v1/twins?related=t:r1").status, 400u);  // no name
  EXPECT_EQ(call("GET", "/v1/twins/t:s1/relationships?incoming=maybe").status, 400u);
}

TEST_F(relationships_test, delete_says_what_to_do_with_children_and_relationships_to_the_twin) {
  for (auto [id, type] : {std::pair{"f:l1", "line"}, {"f:r1", "robot"}, {"f:m1", "motor"},
                          {"f:m2", "motor"}, {"f:m3", "motor"}})
    ASSERT_TRUE(put(h(), id, type));
  ASSERT_EQ(call("PATCH", "/v1/twins/f:r1", R"({"parent":"f:l1"})").status, 200u);
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m1", R"({"parent":"f:r1"})").status, 200u);
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m2",
                 R"({"relationships":[{"name":"feeds","target":"f:m3"}]})").status, 200u);

  auto parent = call("DELETE", "/v1/twins/f:r1");
  EXPECT_EQ(parent.status, 409u);
  EXPECT_EQ(error(parent), "twin f:r1 has 1 children (f:m1): delete with ?detach=true to make "
                           "them roots, or ?cascade=true to delete them");
  auto pointed = call("DELETE", "/v1/twins/f:m3");
  EXPECT_EQ(pointed.status, 409u);
  EXPECT_EQ(error(pointed), "1 twin(s) point at f:m3 (f:m2 by 'feeds'): delete with "
                            "?detach=true to remove these relationships, or ?cascade=true");
  EXPECT_EQ(call("DELETE", "/v1/twins/f:m3?detach=true&cascade=true").status, 400u);
  EXPECT_EQ(call("DELETE", "/v1/twins/f:m3?detach=yes").status, 400u);
  EXPECT_EQ(twin("f:m2")["relationships"].size(), 1u);  // refusals changed nothing
  EXPECT_EQ(twin("f:m1")["parent"], "f:r1");

  EXPECT_EQ(call("DELETE", "/v1/twins/f:m3?detach=true").status, 204u);
  EXPECT_EQ(call("GET", "/v1/twins/f:m3").status, 404u);
  EXPECT_TRUE(twin("f:m2")["relationships"].empty());

  // Cascade: the robot and its motor go, the line stays without its child.
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m2",
                 R"({"relationships":[{"name":"feeds","target":"f:m1"}]})").status, 200u);
  auto stale = call("DELETE", "/v1/twins/f:r1?cascade=true", "");
  EXPECT_EQ(stale.status, 204u) << error(stale);
  EXPECT_EQ(call("GET", "/v1/twins/f:r1").status, 404u);
  EXPECT_EQ(call("GET", "/v1/twins/f:m1").status, 404u);
  EXPECT_TRUE(twin("f:m2")["relationships"].empty());
  EXPECT_TRUE(eventually([&] { return get(h(), "f:l1")->children.empty(); }));

  // A twin's relationship to itself goes with it.
  ASSERT_TRUE(put(h(), "f:m9", "motor"));
  ASSERT_EQ(call("PATCH", "/v1/twins/f:m9",
                 R"({"relationships":[{"name":"feeds","target":"f:m9"}]})").status, 200u);
  EXPECT_EQ(call("DELETE", "/v1/twins/f:m9").status, 204u);

  // Detach: the children stay, as roots.
  ASSERT_TRUE(put(h(), "f:r2", "robot", "f:l1"));
  auto detached = call("DELETE", "/v1/twins/f:l1?detach=true");
  EXPECT_EQ(detached.status, 204u) << error(detached);
  EXPECT_TRUE(eventually([&] { return twin("f:r2")["parent"].is_null(); }));
}

} // namespace
} // namespace twin::test
