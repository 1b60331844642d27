// Real twind processes: kill -9 after acknowledged writes, restart, clean shutdown, the
// order of --stdin lines, a program over the node library with C++ types, and the clear
// failures of bad config, a locked data directory and a busy port.

#include <signal.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const char* sensor_model = R"({
  "@context": "dtmi:dtdl:context;3",
  "@id": "dtmi:test:sensor;1",
  "@type": "Interface",
  "contents": [
    {"@type": "Telemetry", "name": "reading", "schema": "double"},
    {"@type": "Property", "name": "setpoint", "schema": "double", "writable": true}
  ],
  "twin": {"kind": "component",
           "alerts": [{"name": "high", "when": "reading > 1000000", "severity": "warning"}]}
})";

class twind_test : public ::testing::Test {
protected:
  twind_test() {
    std::filesystem::create_directories(dir_.sub("models"));
    std::ofstream{dir_.sub("models/sensor.json")} << sensor_model;
  }

  std::unique_ptr<process> start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{TWIND_PATH, "--stdin", "--data-dir", dir_.sub("data"),
                                  "--models", dir_.sub("models"), "--metrics-port", "0",
                                  "--http-port", "0",
                                  "--bind", "127.0.0.1"};
    auto token = admin_token_args(dir_.path());
    args.insert(args.end(), token.begin(), token.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<process>(args);
  }

  /// Sends one request and waits for its answer (the only one in flight).
  static json call(process& p, const json& req) {
    EXPECT_TRUE(p.write(req.dump() + "\n"));
    auto line = p.read_line(10s);
    if (!line)
      return json{{"ok", false}, {"error", {{"code", "no answer"}}}};
    return json::parse(*line);
  }

  temp_dir dir_;
};

TEST_F(twind_test, kill_9_loses_nothing_that_was_acknowledged) {
  constexpr int twins = 40;
  auto node = start();
  for (int i = 0; i < twins; ++i) {
    auto r = call(*node, {{"op", "put"}, {"id", "t:s" + std::to_string(i)}, {"type", "sensor"}});
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  }
  // Stream telemetry without waiting; each twin's readings rise, so the newest
  // acknowledged reading per twin is a lower bound of what must survive.
  std::map<uint64_t, std::pair<int, int>> sent;  // seq -> (twin, reading)
  uint64_t seq = twins;
  std::string batch;
  for (int round = 1; round <= 150; ++round)
    for (int i = 0; i < twins; ++i) {
      ++seq;
      sent[seq] = {i, round};
      batch += json{{"op", "telemetry"},
                    {"id", "t:s" + std::to_string(i)},
                    {"values", {{"reading", round}}}}
                 .dump()
               + "\n";
    }
  std::thread writer{[&] { node->write(batch); }};
  std::map<int, int> acked;  // twin -> highest acknowledged reading
  size_t answers = 0;
  while (answers < 3000) {
    auto line = node->read_line(10s);
    ASSERT_TRUE(line) << "no answer after " << answers;
    auto a = json::parse(*line);
    ASSERT_TRUE(a["ok"].get<bool>()) << *line;
    auto [twin, reading] = sent.at(a["seq"].get<uint64_t>());
    acked[twin] = std::max(acked[twin], reading);
    ++answers;
  }
  node->signal(SIGKILL);
  ASSERT_EQ(node->wait(10s), 128 + SIGKILL);
  writer.join();
  node.reset();

  auto again = start();
  for (int i = 0; i < twins; ++i) {
    auto r = call(*again, {{"op", "get"}, {"id", "t:s" + std::to_string(i)}});
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
    auto reading = r["twin"]["properties"].value("reading", 0.0);
    EXPECT_GE(reading, acked[i]) << "twin " << i << " lost acknowledged readings";
  }
  again->signal(SIGTERM);
  EXPECT_EQ(again->wait(30s), 0);
}

TEST_F(twind_test, sigterm_drains_and_restart_keeps_every_twin) {
  auto node = start();
  ASSERT_TRUE(call(*node, {{"op", "put"}, {"id", "t:a"}, {"type", "sensor"},
                           {"desired", {{"setpoint", 5}}}})["ok"].get<bool>());
  auto v = call(*node, {{"op", "telemetry"}, {"id", "t:a"}, {"values", {{"reading", 7.5}}}});
  ASSERT_TRUE(v["ok"].get<bool>()) << v.dump();
  auto bad = call(*node, {{"op", "telemetry"}, {"id", "t:a"}, {"values", {{"reading", "x"}}}});
  EXPECT_FALSE(bad["ok"].get<bool>());
  EXPECT_EQ(bad["error"]["code"], "type_mismatch");
  auto garbage = call(*node, json("not an object"));
  EXPECT_EQ(garbage["error"]["code"], "invalid_argument");
  node->signal(SIGTERM);
  ASSERT_EQ(node->wait(30s), 0) << node->stderr_text();
  EXPECT_NE(node->stderr_text().find("stopped cleanly"), std::string::npos);

  auto again = start();
  auto r = call(*again, {{"op", "get"}, {"id", "t:a"}});
  ASSERT_TRUE(r["ok"].get<bool>());
  EXPECT_EQ(r["twin"]["properties"]["reading"], 7.5);
  EXPECT_EQ(r["twin"]["delta"]["setpoint"], 5);
  EXPECT_EQ(r["twin"]["version"], 2);
}

TEST_F(twind_test, hostile_requests_get_clear_errors_and_change_nothing) {
  auto node = start();
  ASSERT_TRUE(call(*node, {{"op", "put"}, {"id", "t:a"}, {"type", "sensor"},
                           {"properties", {{"reading", 1.0}}}})["ok"].get<bool>());
  // A line over 1 MiB.
  std::string huge = R"({"op":"telemetry","id":"t:a","values":{"reading":2.0},"pad":")"
                     + std::string(2 << 20, 'x') + "\"}";
  ASSERT_TRUE(node->write(huge + "\n"));
  auto a = json::parse(*node->read_line(10s));
  EXPECT_EQ(a["error"]["code"], "invalid_argument");
  EXPECT_NE(a["error"]["message"].get<std::string>().find("1 MiB"), std::string::npos);
  auto b = call(*node, json::parse(R"({"op":"telemetry","id":"t:a","values":{"reading":3.0}})"));
  ASSERT_TRUE(b["ok"].get<bool>());
  // Nested far deeper than any property value may be.
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ASSERT_TRUE(node->write(R"({"op":"put","id":"t:b","type":"sensor","properties":{"reading":)"
                          + deep + "}}\n"));
  auto c = json::parse(*node->read_line(10s));
  EXPECT_FALSE(c["ok"].get<bool>());
  EXPECT_EQ(c["error"]["code"], "invalid_argument");
  // Wrong types, unknown ids, unknown ops.
  EXPECT_EQ(call(*node, {{"op", "get"}, {"id", "no colon"}})["error"]["code"], "invalid_id");
  EXPECT_EQ(call(*node, {{"op", "fly"}, {"id", "t:a"}})["error"]["code"], "invalid_argument");
  EXPECT_EQ(call(*node, {{"op", "telemetry"}, {"id", "t:a"}, {"values", 5}})["error"]["code"],
            "invalid_argument");
  EXPECT_EQ(call(*node, {{"op", "telemetry"}, {"id", "t:zz"}, {"values", {{"reading", 1}}}})
              ["error"]["code"],
            "not_found");
  auto r = call(*node, {{"op", "get"}, {"id", "t:a"}});
  EXPECT_EQ(r["twin"]["properties"]["reading"], 3.0);
  EXPECT_EQ(r["twin"]["version"], 2);
  EXPECT_EQ(call(*node, {{"op", "get"}, {"id", "t:b"}})["error"]["code"], "not_found");
  node->signal(SIGTERM);
  EXPECT_EQ(node->wait(30s), 0);
}

TEST_F(twind_test, a_locked_data_directory_is_refused) {
  auto first = start();
  ASSERT_TRUE(call(*first, {{"op", "put"}, {"id", "t:a"}, {"type", "sensor"}})["ok"].get<bool>());
  auto second = start();
  auto code = second->wait(30s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1);
  EXPECT_NE(second->stderr_text().find("in use by another process"), std::string::npos)
    << second->stderr_text();
}

TEST_F(twind_test, bad_config_is_refused_with_a_clear_message) {
  std::ofstream{dir_.sub("bad.toml")} << "data-dir = \"x\"\ncolour = \"blue\"\n";
  auto node = start({"--config", dir_.sub("bad.toml")});
  ASSERT_EQ(node->wait(30s), 1);
  EXPECT_NE(node->stderr_text().find("unknown option \"colour\""), std::string::npos)
    << node->stderr_text();

  std::ofstream{dir_.sub("typo.toml")} << "max-active = \"many\"\n";
  auto typo = start({"--config", dir_.sub("typo.toml")});
  ASSERT_EQ(typo->wait(30s), 1);
  EXPECT_NE(typo->stderr_text().find("max-active"), std::string::npos) << typo->stderr_text();

  // A list only where the option takes several values, and then of strings.
  std::ofstream{dir_.sub("lists.toml")} << "max-active = [1, 2]\n";
  auto lists = start({"--config", dir_.sub("lists.toml")});
  ASSERT_EQ(lists->wait(30s), 1);
  EXPECT_NE(lists->stderr_text().find("\"max-active\" must be a string"), std::string::npos)
    << lists->stderr_text();
  std::ofstream{dir_.sub("origins.toml")} << "cors-origins = [\"https://a.example\", 3]\n";
  auto origins = start({"--config", dir_.sub("origins.toml")});
  ASSERT_EQ(origins->wait(30s), 1);
  EXPECT_NE(origins->stderr_text().find("must be a list of strings"), std::string::npos)
    << origins->stderr_text();

  std::ofstream{dir_.sub("broken.toml")} << "data-dir = \n";
  auto broken = start({"--config", dir_.sub("broken.toml")});
  ASSERT_EQ(broken->wait(30s), 1);
  EXPECT_NE(broken->stderr_text().find("broken.toml"), std::string::npos);

  auto no_models = start({"--models", dir_.sub("nowhere")});
  ASSERT_EQ(no_models->wait(30s), 1);
  EXPECT_NE(no_models->stderr_text().find("does not exist"), std::string::npos)
    << no_models->stderr_text();

  auto no_config = start({"--config", dir_.sub("missing.toml")});
  ASSERT_EQ(no_config->wait(30s), 1);
  EXPECT_NE(no_config->stderr_text().find("config file " + dir_.sub("missing.toml")
                                          + " does not exist"),
            std::string::npos)
    << no_config->stderr_text();
  EXPECT_EQ(no_config->stderr_text().find("line 0"), std::string::npos);

  auto flag = start({"--max-active", "-5"});
  auto code = flag->wait(30s);
  ASSERT_TRUE(code);
  EXPECT_NE(*code, 0);
}

TEST(twind_docs, every_option_is_in_the_configuration_reference) {
  auto help = run_to_end({TWIND_PATH, "--help"});
  ASSERT_EQ(help.code, 0);
  std::ifstream in{std::string{SOURCE_DIR} + "/docs/configuration.md"};
  std::stringstream doc;
  doc << in.rdbuf();
  size_t options = 0;
  std::istringstream lines{help.out};
  for (std::string line; std::getline(lines, line);) {
    auto at = line.find("--");
    if (line.rfind("  ", 0) != 0 || at == std::string::npos || at > 5)
      continue;
    auto name = line.substr(at, line.find_first_of(" =", at) - at);
    if (name == "--help" || name == "--version")
      continue;
    ++options;
    EXPECT_NE(doc.str().find("| `" + name + "` |"), std::string::npos)
      << name << " is not in docs/configuration.md";
  }
  EXPECT_GT(options, 60u);
}

TEST_F(twind_test, config_file_values_apply_and_the_command_line_wins) {
  auto port = free_port();
  std::ofstream{dir_.sub("node.toml")} << "metrics-port = 1\nlog-level = \"debug\"\n";
  // The file's metrics-port (1, privileged/unusable) is overridden by the flag.
  auto node = start({"--config", dir_.sub("node.toml"), "--metrics-port", std::to_string(port)});
  ASSERT_TRUE(call(*node, {{"op", "put"}, {"id", "t:a"}, {"type", "sensor"}})["ok"].get<bool>());
  EXPECT_NE(node->stderr_text().find(":" + std::to_string(port) + "/metrics"), std::string::npos)
    << node->stderr_text();
  node->signal(SIGTERM);
  EXPECT_EQ(node->wait(30s), 0);
}

/// The status line of GET `path` at `address:port` (loopback addresses), empty if nothing
/// answers there.
std::string status_line(const char* address, int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address, &addr.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    auto req = "GET " + path + " HTTP/1.1\r\nHost: " + address + "\r\n" + bearer
               + "Connection: close\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[256];
      auto n = read(fd, buf, sizeof buf);
      out.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
      out = out.substr(0, out.find('\r'));
    }
  }
  close(fd);
  return out;
}

TEST_F(twind_test, the_metrics_port_listens_apart_from_the_api) {
  int api = free_port();
  int metrics = free_port();
  auto node = start({"--bind", "127.0.0.1", "--metrics-bind", "127.0.0.2", "--http-port",
                     std::to_string(api), "--metrics-port", std::to_string(metrics)});
  ASSERT_TRUE(call(*node, {{"op", "put"}, {"id", "t:a"}, {"type", "sensor"}})["ok"].get<bool>());
  EXPECT_EQ(status_line("127.0.0.2", metrics, "/metrics"), "HTTP/1.1 200 OK");
  EXPECT_EQ(status_line("127.0.0.1", api, "/v1/twins/t:a"), "HTTP/1.1 200 OK");
  // The address the log gives answers.
  auto logged = "HTTP API on http://127.0.0.1:" + std::to_string(api) + "/v1/twins";
  EXPECT_NE(node->stderr_text().find(logged), std::string::npos) << node->stderr_text();
  EXPECT_EQ(status_line("127.0.0.1", api, "/v1/twins"), "HTTP/1.1 200 OK");
  EXPECT_EQ(status_line("127.0.0.2", api, "/v1/twins/t:a"), "") << "no API where the metrics are";
  EXPECT_EQ(status_line("127.0.0.1", metrics, "/metrics"), "") << "no metrics where the API is";
  node->signal(SIGTERM);
  EXPECT_EQ(node->wait(30s), 0);
}

TEST_F(twind_test, a_busy_port_is_refused) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  auto port = ntohs(addr.sin_port);
  auto node = start({"--metrics-port", std::to_string(port)});
  auto code = node->wait(30s);
  ASSERT_EQ(code, 1);
  EXPECT_NE(node->stderr_text().find("metrics port (--metrics-port): cannot listen on 127.0.0.1:"
                                     + std::to_string(port)),
            std::string::npos)
    << node->stderr_text();
  EXPECT_NE(node->stderr_text().find("in use"), std::string::npos) << node->stderr_text();
  auto api = start({"--http-port", std::to_string(port)});
  ASSERT_EQ(api->wait(30s), 1);
  close(fd);
  EXPECT_NE(api->stderr_text().find("HTTP API (--http-port): cannot listen"), std::string::npos)
    << api->stderr_text();
}

/// Lines that build a line, a robot under it and a motor under that, report the motor's
/// rpm and read it back, for each of `chains` lines (`rpm` from 1).
std::string plant_script(int chains) {
  std::string out;
  for (int i = 1; i <= chains; ++i) {
    auto n = std::to_string(i);
    out += json{{"op", "put"}, {"id", "p:line-" + n}, {"type", "line"}}.dump() + "\n";
    out += json{{"op", "put"}, {"id", "p:robot-" + n}, {"type", "robot"}, {"parent", "p:line-" + n}}
             .dump()
           + "\n";
    out += json{{"op", "put"}, {"id", "p:motor-" + n}, {"type", "motor"}, {"parent", "p:robot-" + n}}
             .dump()
           + "\n";
    out += json{{"op", "telemetry"}, {"id", "p:motor-" + n}, {"values", {{"rpm", 0}}}}.dump() + "\n";
    out += json{{"op", "telemetry"}, {"id", "p:motor-" + n}, {"values", {{"rpm", i}}}}.dump() + "\n";
    out += json{{"op", "get"}, {"id", "p:motor-" + n}}.dump() + "\n";
  }
  return out;
}

TEST_F(twind_test, stdin_lines_apply_in_order_per_twin_and_after_their_parents) {
  constexpr int chains = 40;
  // twind-factory: twind with the factory's types, the motor's with a C++ handler.
  process node{{FACTORY_PATH, "--stdin", "--data-dir", dir_.sub("plant"), "--metrics-port", "0",
                "--http-port", "0"}};
  ASSERT_TRUE(node.write(plant_script(chains)));
  node.close_stdin();
  std::map<uint64_t, json> answers;
  for (int i = 0; i < chains * 6; ++i) {
    auto line = node.read_line(30s);
    ASSERT_TRUE(line) << "no answer after " << answers.size() << ": " << node.stderr_text();
    auto a = json::parse(*line);
    answers[a["seq"].get<uint64_t>()] = a;
  }
  ASSERT_EQ(answers.size(), size_t{chains * 6});
  for (const auto& [seq, a] : answers)
    EXPECT_TRUE(a["ok"].get<bool>()) << seq << ": " << a.dump();
  for (int i = 1; i <= chains; ++i) {
    const auto& twin = answers[uint64_t(i) * 6]["twin"];
    EXPECT_EQ(twin["parent"], "p:robot-" + std::to_string(i));
    EXPECT_EQ(twin["properties"]["rpm"], i) << "the last rpm, applied last";
    EXPECT_EQ(twin["properties"]["starts"], 1) << "the C++ handler counted the start";
  }
  EXPECT_EQ(node.wait(30s), 0) << node.stderr_text();
  EXPECT_NE(node.stderr_text().find("end of input: 240 request lines, 0 failed"),
            std::string::npos)
    << node.stderr_text();
  EXPECT_EQ(node.stderr_text().find("SIGTERM"), std::string::npos) << node.stderr_text();
}

TEST_F(twind_test, stdin_puts_take_relationships_after_their_targets_lines) {
  process node{{FACTORY_PATH, "--stdin", "--data-dir", dir_.sub("rels"), "--metrics-port", "0",
                "--http-port", "0"}};
  std::string script;
  for (auto line : {R"({"op":"put","id":"p:line-1","type":"line"})",
                    R"({"op":"put","id":"p:robot-1","type":"robot","parent":"p:line-1"})",
                    R"({"op":"put","id":"p:line-1","type":"line","relationships":[{"name":"contains","target":"p:robot-1"}]})",
                    R"({"op":"get","id":"p:line-1"})",
                    R"({"op":"put","id":"p:line-2","type":"line","relationships":[{"name":"holds","target":"p:robot-1"}]})"})
    script += std::string{line} + "\n";
  ASSERT_TRUE(node.write(script));
  node.close_stdin();
  std::map<uint64_t, json> answers;
  for (int i = 0; i < 5; ++i) {
    auto a = json::parse(node.read_line(10s).value_or("{\"seq\": 0}"));
    answers[a["seq"].get<uint64_t>()] = a;
  }
  EXPECT_TRUE(answers[3].value("ok", false)) << answers[3];
  EXPECT_EQ(answers[4]["twin"]["relationships"],
            (json{{{"name", "contains"}, {"target", "p:robot-1"}}}))
    << answers[4];
  EXPECT_EQ(answers[5]["error"]["message"],
            "type 'line' declares no relationship 'holds' (known: contains)")
    << answers[5];
  EXPECT_EQ(node.wait(30s), 3);
}

TEST_F(twind_test, stdin_says_when_its_input_ends_and_exits_3_when_a_line_failed) {
  auto node = start();
  ASSERT_TRUE(node->write(json{{"op", "put"}, {"id", "t:a"}, {"type", "sensor"}}.dump() + "\n"
                          + json{{"op", "put"}, {"id", "t:b"}, {"type", "sensr"}}.dump() + "\n"
                          + "{\"op\": \"get\", \"id\": }\n"));
  node->close_stdin();
  std::map<int, json> answers;  // lines of different twins answer in any order
  for (int i = 0; i < 3; ++i) {
    auto a = json::parse(node->read_line(10s).value_or("{\"seq\": 0}"));
    answers[a["seq"].get<int>()] = a;
  }
  EXPECT_TRUE(answers[1].value("ok", false)) << answers[1].dump();
  EXPECT_EQ(answers[2]["error"]["message"], "unknown twin type 'sensr' (did you mean 'sensor'?)");
  EXPECT_EQ(answers[3]["error"].value("message", "").rfind(
              "the request is not valid JSON: at line 1, column 21", 0),
            0u)
    << answers[3].dump();
  EXPECT_EQ(node->wait(30s), 3);
  EXPECT_NE(node->stderr_text().find("end of input: 3 request lines, 2 failed"),
            std::string::npos)
    << node->stderr_text();
}

TEST_F(twind_test, stdin_checks_relationship_targets_and_patches_parents) {
  process node{{TWIND_PATH, "--stdin", "--data-dir", dir_.sub("links"), "--models",
                std::string{SOURCE_DIR} + "/examples/factory/models", "--metrics-port", "0",
                "--http-port", "0"}};
  auto contains = [](const std::string& target) {
    return json::array({{{"name", "contains"}, {"target", target}}});
  };
  std::string lines;
  for (const auto& line :
       {json{{"op", "put"}, {"id", "p:l1"}, {"type", "line"}},
        json{{"op", "put"}, {"id", "p:r1"}, {"type", "robot"}},
        json{{"op", "put"}, {"id", "p:l2"}, {"type", "line"}, {"relationships", contains("p:none")}},
        json{{"op", "put"}, {"id", "p:l3"}, {"type", "line"}, {"relationships", contains("p:r1")}},
        json{{"op", "put"}, {"id", "p:l4"}, {"type", "line"}, {"relationships", contains("p:l1")}},
        json{{"op", "patch"}, {"id", "p:r1"}, {"parent", "p:l1"}},
        json{{"op", "get"}, {"id", "p:r1"}}})
    lines += line.dump() + "\n";
  ASSERT_TRUE(node.write(lines));
  node.close_stdin();
  std::map<int, json> answers;
  for (int i = 0; i < 7; ++i) {
    auto a = json::parse(node.read_line(10s).value_or("{\"seq\": 0}"));
    answers[a["seq"].get<int>()] = a;
  }
  EXPECT_EQ(answers[3]["error"]["message"], "relationship 'contains': its target p:none does not exist");
  EXPECT_TRUE(answers[4].value("ok", false)) << answers[4].dump();
  EXPECT_EQ(answers[5]["error"]["message"],
            "relationship 'contains' of type 'line' targets 'robot' twins; p:l1 is a 'line'");
  EXPECT_TRUE(answers[6].value("ok", false)) << answers[6].dump();
  EXPECT_EQ(answers[7]["twin"]["parent"], "p:l1") << answers[7].dump();
  EXPECT_EQ(node.wait(30s), 3);  // two lines failed
}

TEST_F(twind_test, cpp_types_ship_in_a_program_over_the_node_library_and_twind_has_none) {
  // twind links no example: the factory's model files give it their types, without the
  // motor's C++ handler.
  process plain{{TWIND_PATH, "--stdin", "--data-dir", dir_.sub("plain"), "--models",
                 std::string{SOURCE_DIR} + "/examples/factory/models/motor.json",
                 "--metrics-port", "0", "--http-port", "0"}};
  auto put = json{{"op", "put"}, {"id", "p:m"}, {"type", "motor"}}.dump() + "\n";
  ASSERT_TRUE(plain.write(put));
  EXPECT_TRUE(json::parse(plain.read_line(10s).value_or("{}")).value("ok", false));
  ASSERT_TRUE(plain.write(json{{"op", "telemetry"}, {"id", "p:m"}, {"values", {{"starts", 1}}}}
                            .dump()
                          + "\n"));
  auto refused = json::parse(plain.read_line(10s).value_or("{}"));
  EXPECT_EQ(refused["error"]["code"], "unknown_property") << refused.dump();
  plain.close_stdin();
  EXPECT_EQ(plain.wait(30s), 3);
  EXPECT_NE(plain.stderr_text().find("1 twin types (motor)"), std::string::npos)
    << plain.stderr_text();

  process none{{TWIND_PATH, "--stdin", "--data-dir", dir_.sub("none"), "--metrics-port", "0",
                "--http-port", "0"}};
  none.close_stdin();
  EXPECT_EQ(none.wait(30s), 0);
  EXPECT_NE(none.stderr_text().find("warning no twin types: give --models"), std::string::npos)
    << none.stderr_text();

  process version{{FACTORY_PATH, "--version"}};
  EXPECT_EQ(version.wait(10s), 0);
  EXPECT_EQ(version.read_line(1s).value_or("").rfind("twind-factory ", 0), 0u);
}

} // namespace
} // namespace twin::test
