// Who may call which route: every route and method of the API, with a token of each role in
// and out of its namespaces, and with tokens missing, malformed, unknown, forged, expired and
// revoked, answers as the role and scope say; and every refused call changes nothing.

#include <thread>

#include <gtest/gtest.h>

#include "auth.hpp"
#include "host_fixture.hpp"
#include "inline_routes.hpp"
#include "routes.hpp"
#include "twin/api/audit.hpp"
#include "twin/api/tokens.hpp"
#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/kv_store.hpp"
#include "twin/runtime/query.hpp"

namespace twin::test {
namespace {

using namespace runtime;
using nlohmann::json;


/// One call of the matrix. `{id}` in the target and body is the twin of the namespace under
/// test (`<ns>:m1`), `{ns}` the namespace.
struct call_case {
  std::string method;
  std::string target;
  std::string body;
  permission need;
  unsigned ok;         ///< the status when the token may
  bool scoped = true;  ///< on the namespace's twin: 404 for a token that does not see it
};

const std::vector<call_case>& cases() {
  static const std::vector<call_case> all{
    {"GET", "/v1/twins/{id}", "", permission::read, 200},
    {"GET", "/v1/twins/{id}/history?property=temperature", "", permission::read, 200},
    {"GET", "/v1/twins/{id}/anomalies", "", permission::read, 422},  // motors have none
    {"PATCH", "/v1/twins/{id}", R"({"desired":{"rpm":100}})", permission::control, 200},
    {"PATCH", "/v1/twins/{id}", R"({"properties":{"load":0.5}})", permission::write, 200},
    {"PATCH", "/v1/twins/{id}", R"({"desired":{"rpm":90},"properties":{"load":0.4}})",
     permission::write, 200},
    {"POST", "/v1/twins/{id}/commands/stop", "", permission::control, 202},
    {"PUT", "/v1/twins/{ns}:new", R"({"type":"motor"})", permission::write, 201},
    {"DELETE", "/v1/twins/{ns}:gone", "", permission::write, 204},
    {"POST", "/v1/telemetry", R"([{"twin":"{id}","values":{"temperature":50}}])",
     permission::telemetry, 202},
    {"POST", "/v1/scenarios", R"({"root":"{id}","horizon_s":10,"step_s":1})", permission::read,
     200},
    {"GET", "/v1/twins?type=motor", "", permission::read, 200, false},
    {"GET", "/v1/events?namespace={ns}", "", permission::read, 200, false},
    {"GET", "/v1/cluster", "", permission::read, 200, false},
    {"GET", "/v1/openapi.json", "", permission::read, 200, false},
    {"GET", "/metrics", "", permission::read, 200, false},
    {"GET", "/v1/types/motor/rul", "", permission::read, 501, false},
    {"POST", "/v1/types/motor/rul", R"({"inputs":["temperature"]})", permission::admin, 501,
     false},
    {"DELETE", "/v1/types/motor/rul", "", permission::admin, 501, false},
    {"PUT", "/v1/types/motor", R"({"@id": "dtmi:x:motor;1", "@type": "Interface"})",
     permission::admin, 501, false},
    {"GET", "/v1/twins/{id}/relationships", "", permission::read, 200},
    {"POST", "/v1/cluster/members/node-1/drain", "", permission::admin, 501, false},
    {"GET", "/v1/tokens", "", permission::admin, 200, false},
    {"GET", "/v1/audit", "", permission::admin, 200, false},
    {"POST", "/v1/tokens", R"({"name":"made","role":"reader"})", permission::admin, 201, false},
    {"GET", "/v1/tokens/0000000000000000", "", permission::admin, 404, false},
    {"DELETE", "/v1/tokens/0000000000000000", "", permission::admin, 404, false},
  };
  return all;
}

std::string fill(std::string text, const std::string& ns) {
  for (auto [key, value] : {std::pair<std::string, std::string>{"{id}", ns + ":m1"}, {"{ns}", ns}})
    for (size_t at; (at = text.find(key)) != std::string::npos;)
      text.replace(at, key.size(), value);
  return text;
}

class access_routes_test : public host_test {
protected:
  void SetUp() override {
    start_failing();
    h().set_feed(&feed_);
    tokens_ = std::make_unique<api::token_registry>(
      make_local_kv_store(*store_, h().local_commit(), "tokens/"));
    ASSERT_FALSE(tokens_->load());
    for (auto ns : {"f", "g"}) {
      ASSERT_TRUE(put(h(), std::string{ns} + ":m1", "motor"));
      for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(ingest(h(), std::string{ns} + ":m1", {{"temperature", value{20.0 + i}}}));
    }
    be_.rt = &h();
    be_.ready = [] { return std::vector<api::readiness_check>{}; };
    be_.metrics = [] { return std::string{"twin_up 1\n"}; };
    be_.query = [this](const twin_query& q) { return run_query(*store_, types_, q); };
    be_.history = [this](const history_query& q) { return read_history(*store_, types_, q); };
    be_.feed = &feed_;
    be_.types = &types_;
    be_.tokens = tokens_.get();
    auto log = api::audit_log::open({dir_.sub("audit")});
    ASSERT_TRUE(log) << error_message(log.error());
    audit_ = std::move(*log);
    be_.audit = audit_.get();
  }

  std::string make(const std::string& name, role r, std::vector<std::string> ns = {},
                   std::vector<std::string> twins = {}, int64_t expires_ms = 0) {
    access_token t;
    t.name = name;
    t.role = r;
    t.namespaces = std::move(ns);
    t.twins = std::move(twins);
    t.expires_ms = expires_ms;
    auto made = tokens_->create(t, "");
    EXPECT_TRUE(made) << error_message(made.error());
    return made ? made->text : std::string{};
  }

  /// The answer of `handle` to a request with `authorization` (blocking work runs in the
  /// call; a stream's subscription is in the answer).
  api::response call(const std::string& method, const std::string& target,
                     const std::string& body, const std::string& authorization,
                     const std::string& origin = {},
                     const std::string& content_type = "application/json") {
    api::request req;
    req.method = method;
    req.target = target;
    req.origin = origin;
    req.content_type = content_type;
    req.body = body;
    req.authorization = authorization;
    req.peer = "127.0.0.1";
    return answer_of(be_, std::move(req), tokens_.get());
  }

  /// What a refused call must leave as it was.
  struct snapshot {
    std::map<std::string, uint64_t> versions;  ///< of twins that exist
    std::map<std::string, size_t> history;
    size_t tokens = 0;
    size_t commands = 0;
    int published = 0;

    bool operator==(const snapshot& o) const {
      return versions == o.versions && history == o.history && tokens == o.tokens
             && commands == o.commands && published == o.published;
    }
  };

  snapshot state() {
    snapshot s;
    for (auto ns : {"f", "g"})
      for (auto name : {"m1", "new", "gone"}) {
        auto id = std::string{ns} + ":" + name;
        if (auto r = get(h(), id))
          s.versions[id] = r->version;
      }
    for (auto ns : {"f", "g"}) {
      history_query q;
      q.id = twin_id::trusted(std::string{ns} + ":m1");
      q.property = "temperature";
      auto page = read_history(*store_, types_, q);
      s.history[q.id.str()] = page ? page->points.size() : 0;
    }
    s.tokens = tokens_->list().size();
    std::lock_guard<std::mutex> guard{gateway_.mtx};
    s.commands = gateway_.commands.size();
    s.published = gateway_.published;
    return s;
  }

  /// The twins each case may create or delete are back as they were before it.
  void reset_twins() {
    for (auto ns : {"f", "g"}) {
      if (get(h(), std::string{ns} + ":new")) {
        ASSERT_TRUE(remove(h(), std::string{ns} + ":new"));
      }
      if (!get(h(), std::string{ns} + ":gone")) {
        ASSERT_TRUE(put(h(), std::string{ns} + ":gone", "motor"));
      }
    }
  }

  change_feed feed_;
  std::unique_ptr<api::token_registry> tokens_;
  std::unique_ptr<api::audit_log> audit_;
  api::backend be_;
};

TEST_F(access_routes_test, every_route_answers_each_token_as_its_role_and_scope_say) {
  struct caller {
    std::string label;
    std::string authorization;
    std::optional<role> r;  ///< none: no valid token (401)
    std::vector<std::string> sees;
  };
  std::vector<caller> callers;
  for (auto r : {role::reader, role::operator_, role::writer, role::device})
    callers.push_back({std::string{to_string(r)} + " of f",
                       "Bearer " + (r == role::device ? make("dev", r, {}, {"f:m1"})
                                                      : make(to_string(r), r, {"f"})),
                       r, {"f"}});
  callers.push_back({"admin", "Bearer " + make("root", role::admin), role::admin, {"f", "g"}});
  callers.push_back({"writer of every namespace", "Bearer " + make("all", role::writer),
                     role::writer, {"f", "g"}});
  auto expiring = make("soon", role::admin, {}, {}, now_ms() + 50);
  auto revoked = make("gone", role::admin);
  ASSERT_TRUE(tokens_->revoke(revoked.substr(4, 16)));
  auto forged = revoked;
  forged[30] = forged[30] == 'a' ? 'b' : 'a';
  callers.push_back({"no token", "", std::nullopt, {}});
  callers.push_back({"another scheme", "Basic YWRtaW46YWRtaW4=", std::nullopt, {}});
  callers.push_back({"malformed", "Bearer twn_nonsense", std::nullopt, {}});
  callers.push_back({"unknown", "Bearer twn_0123456789abcdef_" + std::string(43, 'z'),
                     std::nullopt, {}});
  callers.push_back({"forged", "Bearer " + forged, std::nullopt, {}});
  callers.push_back({"revoked", "Bearer " + revoked, std::nullopt, {}});
  std::this_thread::sleep_for(std::chrono::milliseconds{60});
  callers.push_back({"expired", "Bearer " + expiring, std::nullopt, {}});

  size_t checked = 0;
  for (const auto& c : callers)
    for (const auto& k : cases())
      for (std::string ns : {"f", "g"}) {
        reset_twins();
        auto before = state();
        auto target = fill(k.target, ns);
        auto what = c.label + ": " + k.method + " " + target;
        audit_->flush();
        auto recorded = audit_->written();
        auto called_ms = now_ms();
        auto res = call(k.method, target, fill(k.body, ns), c.authorization);
        bool sees = std::find(c.sees.begin(), c.sees.end(), ns) != c.sees.end();
        unsigned want = k.ok;
        if (!c.r)
          want = 401;
        else if (!grants(*c.r, k.need))
          want = 403;
        else if (k.scoped && !sees && target != "/v1/telemetry")  // per item, below
          want = 404;
        EXPECT_EQ(res.status, want) << what << " " << res.body.dump();
        bool refused = want == 401 || want == 403 || want == 404;
        if (want >= 400) {
          EXPECT_TRUE(res.body.is_object() && res.body.contains("error")) << what;
        }
        if (want == 401) {
          auto h = std::find_if(res.headers.begin(), res.headers.end(),
                                [](const auto& x) { return x.first == "WWW-Authenticate"; });
          EXPECT_TRUE(h != res.headers.end() && h->second.rfind("Bearer", 0) == 0) << what;
        }
        if (target == "/v1/telemetry" && res.status == 202) {
          auto item = res.body["results"][0];
          EXPECT_EQ(item["ok"], sees) << what << " " << res.body.dump();
          if (!sees) {
            EXPECT_EQ(item["status"], 404) << what;
            refused = true;
          }
        }
        if (k.target == "/v1/twins?type=motor" && res.status == 200) {
          std::set<std::string> seen;
          auto page = json::parse(res.text);
          for (const auto& t : page["items"])
            seen.insert(t["id"].get<std::string>().substr(0, 1));
          EXPECT_EQ(seen, std::set<std::string>(c.sees.begin(), c.sees.end())) << what;
        }
        if (res.stream)
          res.stream->on_ready(nullptr);
        if (refused) {
          EXPECT_TRUE(state() == before) << what << ": a refused call changed something";
        }
        // Each change and each refusal is in the audit log, with who, what and how it ended;
        // a read that was answered is not.
        audit_->flush();
        bool audited = k.method != "GET" || res.status == 401 || res.status == 403;
        ASSERT_EQ(audit_->written() - recorded, audited ? 1u : 0u) << what;
        if (audited) {
          api::audit_query q;
          q.from_ms = called_ms;
          q.limit = api::audit_query::max_limit;
          auto page = audit_->read(q);
          ASSERT_TRUE(page && !page->items.empty()) << what;
          const auto& e = page->items.back();
          EXPECT_EQ(e.status, res.status) << what;
          EXPECT_EQ(e.method, k.method) << what;
          EXPECT_EQ(e.path, target.substr(0, target.find('?'))) << what;
          EXPECT_EQ(e.peer, "127.0.0.1") << what;
          EXPECT_EQ(e.token_id.empty(), !c.r) << what;
          if (k.target.rfind("/v1/twins/", 0) == 0) {
            EXPECT_EQ(e.twin, fill(k.target.substr(10, k.target.find('/', 10) - 10), ns)) << what;
          }
          EXPECT_EQ(e.outcome == "ok", res.status < 400) << what << " " << e.outcome;
        }
        ++checked;
      }
  EXPECT_EQ(checked, callers.size() * cases().size() * 2);
}

TEST_F(access_routes_test, an_event_stream_has_the_events_of_its_tokens_namespaces_only) {
  auto reader = "Bearer " + make("watcher", role::reader, {"f"});
  auto all = call("GET", "/v1/events", "", reader);
  auto other = call("GET", "/v1/events?namespace=g", "", reader);
  ASSERT_EQ(all.status, 200u);
  ASSERT_TRUE(all.stream && other.stream);
  ASSERT_TRUE(patch(h(), "g:m1", {{"load", value{0.1}}}));
  ASSERT_TRUE(patch(h(), "f:m1", {{"load", value{0.2}}}));
  std::vector<std::string> ids;
  ASSERT_TRUE(eventually([&] {
    for (auto& ev : all.stream->take())
      ids.push_back(ev->id.str());
    return !ids.empty();
  }));
  for (auto& ev : all.stream->take())
    ids.push_back(ev->id.str());
  EXPECT_EQ(ids, std::vector<std::string>{"f:m1"});
  EXPECT_TRUE(other.stream->take().empty());
}

TEST_F(access_routes_test, a_web_page_with_an_admins_token_at_hand_changes_nothing) {
  // The attacks of a page that a user opens: a bodyless command as text/plain from another
  // origin, a PATCH of the desired state, a delete; the browser would add the user's token.
  auto admin = "Bearer " + make("root", role::admin);
  reset_twins();
  auto before = state();
  struct attack {
    std::string method, target, body, content_type;
    unsigned status;
  };
  for (const auto& a : std::vector<attack>{
         {"POST", "/v1/twins/f:m1/commands/stop", "", "text/plain", 403},
         {"PATCH", "/v1/twins/f:m1", R"({"desired":{"rpm":6000}})", "application/json", 403},
         {"DELETE", "/v1/twins/f:gone", "", "", 403},
         {"POST", "/v1/tokens", R"({"name":"evil","role":"admin"})", "application/json", 403}}) {
    auto res = call(a.method, a.target, a.body, admin, "http://evil.example", a.content_type);
    EXPECT_EQ(res.status, a.status) << a.method << " " << a.target;
    EXPECT_EQ(res.body["error"]["code"], "forbidden_origin") << a.method << " " << a.target;
  }
  // Without an Origin (not a page), a command must still say it is JSON.
  auto plain = call("POST", "/v1/twins/f:m1/commands/stop", "", admin, {}, "text/plain");
  EXPECT_EQ(plain.status, 415u);
  EXPECT_TRUE(state() == before) << "a page's request changed something";
  api::audit_query q;
  q.limit = api::audit_query::max_limit;
  auto page = audit_->read(q);
  ASSERT_TRUE(page);
  EXPECT_EQ(std::count_if(page->items.begin(), page->items.end(),
                          [](const api::audit_entry& e) { return e.outcome == "forbidden_origin"; }),
            4);
}

TEST_F(access_routes_test, a_twin_cannot_be_linked_to_one_its_token_does_not_see) {
  auto writer = "Bearer " + make("line f", role::writer, {"f"});
  reset_twins();
  auto before = state();
  auto child = call("PUT", "/v1/twins/f:new", R"({"type":"motor","parent":"g:m1"})", writer);
  EXPECT_EQ(child.status, 422u) << child.body.dump();
  EXPECT_EQ(child.body["error"]["code"], "invalid_parent");
  auto linked = call("PUT", "/v1/twins/f:new",
                     R"({"type":"motor","relationships":[{"name":"feeds","target":"g:m1"}]})",
                     writer);
  EXPECT_EQ(linked.status, 404u) << linked.body.dump();
  EXPECT_TRUE(state() == before) << "a link out of the namespace changed something";
  // The same answers as for twins that do not exist at all.
  auto nowhere = call("PUT", "/v1/twins/f:new", R"({"type":"motor","parent":"f:nothing"})",
                      writer);
  EXPECT_EQ(nowhere.status, 422u);
  EXPECT_EQ(nowhere.body["error"]["code"], "invalid_parent");
  // An OPTIONS that is no browser's preflight needs a token like any request.
  EXPECT_EQ(call("OPTIONS", "/v1/types/motor/rul", "", "").status, 401u);
}

TEST(failure_throttle, an_address_that_keeps_failing_waits_longer_each_time_and_others_do_not) {
  api::failure_throttle t{5};
  auto now = api::failure_throttle::clock::now();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(t.wait_s("10.0.0.1", now), 0);
    t.failed("10.0.0.1", now);
  }
  EXPECT_EQ(t.wait_s("10.0.0.1", now), 0);
  t.failed("10.0.0.1", now);  // the 5th
  EXPECT_EQ(t.wait_s("10.0.0.1", now), 1);
  EXPECT_EQ(t.wait_s("10.0.0.2", now), 0);
  t.failed("10.0.0.1", now);
  EXPECT_EQ(t.wait_s("10.0.0.1", now), 2);
  for (int i = 0; i < 10; ++i)
    t.failed("10.0.0.1", now);
  EXPECT_EQ(t.wait_s("10.0.0.1", now), 60);
  EXPECT_EQ(t.wait_s("10.0.0.1", now + std::chrono::seconds{61}), 0);
  t.succeeded("10.0.0.1");
  t.failed("10.0.0.1", now);
  EXPECT_EQ(t.wait_s("10.0.0.1", now), 0);  // a success forgot the failures
  api::failure_throttle never{0};
  for (int i = 0; i < 100; ++i)
    never.failed("10.0.0.1", now);
  EXPECT_EQ(never.wait_s("10.0.0.1", now), 0);
}

TEST(failure_throttle, past_its_bound_of_addresses_it_still_remembers_the_newest) {
  api::failure_throttle t{1};
  auto now = api::failure_throttle::clock::now();
  for (size_t i = 0; i < api::failure_throttle::max_addresses + 100; ++i)
    t.failed("a" + std::to_string(i), now);
  EXPECT_GT(t.wait_s("a" + std::to_string(api::failure_throttle::max_addresses + 99), now), 0);
}

} // namespace
} // namespace twin::test
