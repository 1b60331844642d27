// Remaining useful life against a real twind: a type's model fitted over HTTP on the
// history of its run-to-failure twins, what the twins then show, what is refused, and the
// model kept across a restart; and twinctl's rul commands.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "models_node_test.hpp"
#include "rul_fleet.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* pump_model = R"({
  "@context": "dtmi:dtdl:context;3", "@id": "dtmi:test:pump;1", "@type": "Interface",
  "contents": [{"@type": "Telemetry", "name": "wear", "schema": "double"}],
  "twin": {"kind": "component", "history": ["wear"]}})";

class rul_http_test : public models_node_test {
protected:
  std::map<std::string, std::string> models() const override {
    return {{"engine.json", engine_model}, {"pump.json", pump_model}};
  }

  void engine(const std::string& id, int life, int left = 0) {
    feed_engine(*client_, id, life, left, rng_, t0_);
  }

  http_reply fit(const json& body, const std::string& type = "engine") {
    return client_->call("POST", "/v1/types/" + type + "/rul", body.dump(), json_type);
  }

  int64_t t0_ = now_ms() - 3'600'000;
  std::mt19937_64 rng_{7};
};

std::string message_of(const http_reply& r) {
  return json::parse(r.body, nullptr, false).value("error", json::object()).value("message", "");
}

TEST_F(rul_http_test, a_fit_on_the_fleet_gives_every_twin_its_rul_and_survives_a_restart) {
  EXPECT_EQ(client_->call("GET", "/v1/types/engine/rul").status, 404u);
  for (int i = 0; i < 8; ++i)
    engine("fleet:" + std::to_string(i), 150 + 15 * i);
  auto r = fit({{"twins", {{"prefix", "fleet:"}}}, {"inputs", {"wear", "temp"}}, {"cap_s", 60}});
  ASSERT_EQ(r.status, 201u) << r.body;
  auto m = json::parse(r.body);
  EXPECT_EQ(m["type"], "engine");
  EXPECT_EQ(m["version"], 1);
  EXPECT_EQ(m["inputs"], json({"wear", "temp"}));
  EXPECT_EQ(m["fit"]["twins"], 8);
  EXPECT_EQ(m["fit"]["folds"], 5);
  EXPECT_LT(m["fit"]["cv_rmse_s"].get<double>(), 5);
  EXPECT_EQ(m["twins"], json({{"prefix", "fleet:"}, {"type", "engine"}}));

  // A twin that reports from now on shows its life left, 30 s before its end.
  engine("live:1", 230, 30);
  auto shown = json::parse(client_->call("GET", "/v1/twins/live:1").body)["properties"];
  EXPECT_NEAR(shown["rul_s"].get<double>(), 30, 6) << shown;
  EXPECT_LE(shown["rul_low_s"].get<double>(), shown["rul_s"].get<double>());
  EXPECT_GE(shown["rul_high_s"].get<double>(), shown["rul_s"].get<double>());

  // The model is stored: after a restart GET shows it, and samples are estimated again.
  stop();
  start();
  auto kept = client_->call("GET", "/v1/types/engine/rul");
  ASSERT_EQ(kept.status, 200u) << kept.body;
  EXPECT_EQ(json::parse(kept.body)["version"], 1);
  EXPECT_EQ(json::parse(kept.body)["fit"], m["fit"]);
  engine("live:2", 230, 20);
  shown = json::parse(client_->call("GET", "/v1/twins/live:2").body)["properties"];
  EXPECT_NEAR(shown["rul_s"].get<double>(), 20, 6) << shown;

  // Removed, then fitted again: the versions go on.
  EXPECT_EQ(client_->call("DELETE", "/v1/types/engine/rul").status, 204u);
  EXPECT_EQ(client_->call("GET", "/v1/types/engine/rul").status, 404u);
  EXPECT_EQ(client_->call("DELETE", "/v1/types/engine/rul").status, 404u);
  r = fit({{"twins", {{"prefix", "fleet:"}}}, {"inputs", {"wear", "temp"}}, {"cap_s", 60}});
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(json::parse(r.body)["version"], 2);

  // twinctl fits and shows it too.
  auto twinctl = [&](std::vector<std::string> args) {
    return run_twinctl(port_, args);
  };
  auto fitted = twinctl({"rul", "fit", "engine", "--inputs", "wear,temp", "--prefix", "fleet:",
                         "--cap", "60"});
  ASSERT_EQ(fitted.code, 0) << fitted.err;
  EXPECT_EQ(fitted.out.rfind("TYPE ", 0), 0u) << fitted.out;
  EXPECT_NE(fitted.out.find("engine  3 "), std::string::npos) << fitted.out;
  EXPECT_NE(fitted.out.find("inputs: wear, temp"), std::string::npos) << fitted.out;
  auto as_json = json::parse(twinctl({"--json", "rul", "show", "engine"}).out);
  EXPECT_EQ(as_json["version"], 3);
  EXPECT_EQ(twinctl({"rul", "delete", "engine"}).code, 0);
  EXPECT_EQ(twinctl({"rul", "show", "engine"}).code, 3);
  EXPECT_EQ(twinctl({"rul", "fit", "engine", "--inputs", "vibration"}).code, 5);
}

TEST_F(rul_http_test, bad_fits_get_a_clear_4xx_and_change_nothing) {
  engine("fleet:1", 150);
  engine("fleet:2", 170);
  const json good{{"twins", {{"prefix", "fleet:"}}}, {"inputs", {"wear", "temp"}}};
  auto refused = [&](const json& body, const std::string& type = "engine") {
    auto r = fit(body, type);
    return std::make_pair(r.status, message_of(r));
  };
  auto with = [&](const json& edit) {
    auto b = good;
    b.update(edit);
    return b;
  };
  for (auto [body, type, status, why] : std::vector<std::tuple<json, std::string, unsigned, std::string>>{
         {good, "nothing", 404, "no twin type 'nothing'"},
         {good, "pump", 409, "\"rul\": true"},
         {with({{"twins", {{"prefix", "none:"}}}}), "engine", 400, "run-to-failure twins"},
         {with({{"twins", {{"prefix", "fleet:1"}}}}), "engine", 400, "a fit needs 2 such twins"},
         {with({{"inputs", {"vibration"}}}), "engine", 400, "keeps no history"},
         {with({{"inputs", {"speed"}}}), "engine", 400, "is no property"},
         {with({{"inputs", json::array()}}), "engine", 400, "\"inputs\" must list"},
         {with({{"cap_s", -1}}), "engine", 400, "cap_s"},
         {with({{"folds", 1}}), "engine", 400, "folds"},
         {with({{"twins", {{"type", "nothing"}}}}), "engine", 422, "names no twin type"},
         {with({{"model", "deep"}}), "engine", 400, "model"}}) {
    auto [got, message] = refused(body, type);
    EXPECT_EQ(got, status) << body << " " << message;
    EXPECT_NE(message.find(why), std::string::npos) << body << ": " << message;
  }
  EXPECT_EQ(client_->call("POST", "/v1/types/engine/rul", "{", json_type).status, 400u);
  EXPECT_EQ(client_->call("PUT", "/v1/types/engine/rul", good.dump(), json_type).status, 405u);
  EXPECT_EQ(client_->call("GET", "/v1/types/engine/rul").status, 404u) << "nothing was fitted";
  auto twin = json::parse(client_->call("GET", "/v1/twins/fleet:1").body)["properties"];
  EXPECT_FALSE(twin.contains("rul_s"));
}

} // namespace
} // namespace twin::test
