// Devices at a real Mosquitto broker set up as docker/ ships it: TLS, a password file and
// the ACL file of docker/mosquitto/acl with the device accounts `twinctl device credentials`
// adds. twind reads every device's telemetry through its own account; a device may publish
// its own twin's telemetry and read its own desired state, nothing of another twin's.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gauge_model.hpp"
#include "http_client.hpp"
#include "mqtt_node_test.hpp"
#include "process.hpp"
#include "stop_node.hpp"
#include "test_certs.hpp"
#include "test_support.hpp"
#include "twinctl_run.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST(device_access, each_device_uses_its_own_twins_topics_only_over_tls) {
  if (mosquitto_path().empty())
    GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the test did not run";
  temp_dir dir;
  ASSERT_TRUE(make_test_certs(dir.path())) << "openssl cannot make the test certificates";
  const std::string node_password = "node-secret-4711";
  auto passwords = dir.sub("passwords");
  ASSERT_EQ(run_to_end({"/usr/bin/mosquitto_passwd", "-c", "-b", passwords, "twind",
                        node_password})
              .code,
            0);
  std::filesystem::copy_file(std::string{SOURCE_DIR} + "/docker/mosquitto/acl", dir.sub("acl"));

  int broker_port = free_port();
  auto broker = start_mosquitto(dir, broker_port,
                                "allow_anonymous false\npassword_file " + passwords
                                  + "\nacl_file " + dir.sub("acl") + "\ncafile "
                                  + dir.sub("ca.pem") + "\ncertfile " + dir.sub("server.pem")
                                  + "\nkeyfile " + dir.sub("server.key") + "\n");
  int http = free_port();
  auto node = start_gauge_node(
    dir, http,
    {"--metrics-port", "0", "--mqtt-url", "mqtts://127.0.0.1:" + std::to_string(broker_port),
     "--mqtt-ca-file", dir.sub("ca.pem"), "--mqtt-username", "twind", "--mqtt-password",
     node_password, "--mqtt-client-id", "twind-access-test"});
  ASSERT_TRUE(wait_for_200(http, "/readyz", 20s)) << "the node reaches the broker over TLS\n"
                                                  << node->stderr_text() << broker->stderr_text();
  // twinctl makes the devices' accounts from the node's twins of type gauge; the broker
  // reads its files again on SIGHUP.
  http_client api{http};
  for (auto id : {"p:d1", "p:d2"})
    ASSERT_EQ(api.call("PUT", std::string{"/v1/twins/"} + id, R"({"type":"gauge"})", json_type)
                .status,
              201u);
  auto made = run_twinctl(http, {"device", "credentials", "--type", "gauge", "--password-file",
                                 passwords, "--acl-file", dir.sub("acl")});
  ASSERT_EQ(made.code, 0) << made.err;
  std::map<std::string, std::string> secret;  // device user -> password
  std::istringstream lines{made.out};
  for (std::string user, pw; lines >> user >> pw;)
    secret[user] = pw;
  ASSERT_EQ(secret.size(), 2u) << made.out;
  ASSERT_TRUE(secret.count("p/d1") && secret.count("p/d2")) << made.out;
  broker->signal(SIGHUP);
  std::this_thread::sleep_for(500ms);

  auto client = [&](const std::string& tool, const std::string& user, const std::string& pw,
                    std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/" + tool, "-h", "127.0.0.1", "-p",
                                  std::to_string(broker_port), "--cafile", dir.sub("ca.pem"),
                                  "-u", user, "-P", pw, "-V", "mqttv5"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_to_end(argv, {}, 20s);
  };
  auto level_of = [&](const std::string& id) {
    auto t = json::parse(api.call("GET", "/v1/twins/" + id).body);
    return t["properties"].value("level", -1.0);
  };
  // p/d1 publishes p:d1's telemetry, not p:d2's: what it may not publish never arrives.
  client("mosquitto_pub", "p/d1", secret["p/d1"],
         {"-q", "1", "-t", "twins/p:d2/telemetry", "-m", R"({"level": 66})"});
  auto own = client("mosquitto_pub", "p/d1", secret["p/d1"],
                    {"-q", "1", "-t", "twins/p:d1/telemetry", "-m", R"({"level": 11})"});
  ASSERT_EQ(own.code, 0) << own.err;
  ASSERT_TRUE(eventually([&] { return level_of("p:d1") == 11.0; }, 10s));
  EXPECT_EQ(level_of("p:d2"), -1.0) << "p/d1 reported for p:d2";
  // A wrong password is refused.
  EXPECT_NE(client("mosquitto_pub", "p/d1", "wrong",
                   {"-q", "1", "-t", "twins/p:d1/telemetry", "-m", R"({"level": 12})"})
              .code,
            0);
  // A device reads its own desired state; another's, and the fleet's telemetry, it does not.
  ASSERT_EQ(api.call("PATCH", "/v1/twins/p:d1", R"({"desired":{"target":3}})", json_type).status,
            200u);
  ASSERT_EQ(api.call("PATCH", "/v1/twins/p:d2", R"({"desired":{"target":4}})", json_type).status,
            200u);
  auto desired = client("mosquitto_sub", "p/d1", secret["p/d1"],
                        {"-t", "twins/p:d1/desired", "-C", "1", "-W", "5"});
  EXPECT_EQ(desired.code, 0) << desired.err;
  EXPECT_NE(desired.out.find("\"target\""), std::string::npos) << desired.out;
  auto other = client("mosquitto_sub", "p/d1", secret["p/d1"],
                      {"-t", "twins/p:d2/desired", "-C", "1", "-W", "2"});
  EXPECT_EQ(other.out, "") << "p/d1 read p:d2's desired state";
  process fleet{{"/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_port),
                 "--cafile", dir.sub("ca.pem"), "-u", "p/d2", "-P", secret["p/d2"], "-V",
                 "mqttv5", "-t", "twins/+/telemetry", "-C", "1", "-W", "3"}};
  std::this_thread::sleep_for(500ms);  // subscribed, or refused
  ASSERT_EQ(client("mosquitto_pub", "p/d1", secret["p/d1"],
                   {"-q", "1", "-t", "twins/p:d1/telemetry", "-m", R"({"level": 13})"})
              .code,
            0);
  ASSERT_TRUE(eventually([&] { return level_of("p:d1") == 13.0; }, 10s));
  auto heard = fleet.read_line(3s);
  EXPECT_FALSE(heard.has_value()) << "p/d2 read the fleet's telemetry: " << *heard;

  // The node never logs its broker password.
  node->signal(SIGTERM);
  EXPECT_EQ(node->wait(30s), 0);
  EXPECT_EQ(node->stderr_text().find(node_password), std::string::npos);
  broker->signal(SIGTERM);
  broker->wait(10s);
}

} // namespace
} // namespace twin::test
