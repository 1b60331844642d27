// twinctl: the command line of the twin runtime, over a node's HTTP API.
//
//   twinctl get plant1:motor-7
//   twinctl put plant1:motor-7 --type motor --parent plant1:robot-2 --properties '{"rpm": 1200}'
//   twinctl patch plant1:motor-7 --desired '{"rpm": 1500}' --if-match 3
//   twinctl telemetry send plant1:motor-7 '{"temperature": 71.5}'
//   twinctl get plant1:motor-7 --json | jq .properties
//   twinctl command plant1:robot-2 stop
//   twinctl patch plant1:motor-7 --parent plant1:robot-3
//   twinctl relate plant1:motor-7 feeds plant1:pump-1
//   twinctl relationships plant1:pump-1 --incoming
//   twinctl delete plant1:robot-3 --cascade
//   twinctl scenario compare slow.json fast.json
//   twinctl rul fit engine --inputs s2,s3,s4 --prefix fleet:
//   twinctl token create dashboards --role reader --namespaces plant1
//
// Exit codes: 0 done; 1 usage; 2 no answer from the node (unreachable, or --timeout);
// 3 no such twin (404); 4 a version conflict or failed precondition (409, 412); 5 a
// refused request (another 4xx); 6 the node failed or does not serve the call (5xx); 7 no
// valid token (401) or a role too weak (403). The token comes from --token, TWIN_TOKEN,
// --token-file, TWIN_TOKEN_FILE or the config file (~/.config/twinctl/config.toml).
// `events` follows the node's server-sent events: one line per event (`--json`: one
// JSON object per line) until --count events, or exit code 6 if the stream fell behind
// and the node ended it, 2 if the node went away.

#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "access.hpp"
#include "client.hpp"
#include "devices.hpp"
#include "relationships.hpp"
#include "scenarios.hpp"
#include "twins.hpp"

int main(int argc, char** argv) {
  using namespace twinctl;
  CLI::App app{"twinctl: the twins of a node, over its HTTP API"};
  app.set_version_flag("--version", std::string{"twinctl "} + TWIN_VERSION);
  app.require_subcommand(1);
  // The options of twinctl itself (--json, --server, ...) go before or after the command.
  app.fallthrough();
  credentials creds;
  creds.add_to(app);
  bool as_json = false;
  int timeout_s = 30;
  app.add_option("--timeout", timeout_s, "Seconds to wait for the node")
    ->capture_default_str()
    ->check(CLI::Range(1, 3600));
  app.add_flag("--json", as_json, "Print the node's JSON answer as it is");

  twin_commands twins;
  twins.add_to(app);
  std::vector<std::string> scenario_files;
  auto* scenario = app.add_subcommand("scenario", "What-if scenarios on a copy of a subtree");
  scenario->require_subcommand(1);
  auto* scenario_run = scenario->add_subcommand(
    "run", "Run the scenario of a JSON file (the body of POST /v1/scenarios)");
  scenario_run->add_option("file", scenario_files, "The scenario")->required();
  auto* scenario_compare =
    scenario->add_subcommand("compare", "Run several scenarios and show them side by side");
  scenario_compare->add_option("files", scenario_files, "The scenarios")->required();
  auto* scenario_optimize = scenario->add_subcommand(
    "optimize", "Find the best set-points of a JSON file (the body of POST /v1/scenarios/optimize)");
  scenario_optimize->add_option("file", scenario_files, "The optimisation")->required();
  token_commands tokens;
  tokens.add_to(app);
  audit_command audit;
  audit.add_to(app);
  device_commands devices;
  devices.add_to(app);
  relationship_commands relationships;
  relationships.add_to(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? ok : usage;
  }
  if (auto why = creds.resolve(app); !why.empty()) {
    std::cerr << "twinctl: " << why << '\n';
    return usage;
  }
  server_address addr;
  if (!parse_server(creds.server, addr)) {
    std::cerr << "twinctl: --server must be http://host:port or https://host:port, not "
              << creds.server << '\n';
    return usage;
  }
  addr.ca_file = creds.ca_file;
  addr.cert_file = creds.cert_file;
  addr.key_file = creds.key_file;
  std::chrono::seconds timeout{timeout_s};
  if (twins.parsed())
    return twins.run(addr, creds.token, timeout, as_json);
  client c{addr, creds.token, timeout};
  if (devices.parsed())
    return devices.run(c);
  if (relationships.parsed())
    return relationships.run(c, as_json);
  if (tokens.parsed())
    return tokens.run(c, as_json);
  if (audit.parsed())
    return audit.run(c, as_json);
  if (scenario_files.size() != 1 && !scenario_compare->parsed()) {
    std::cerr << "twinctl: scenario run and optimize take one file\n";
    return usage;
  }
  if (scenario_optimize->parsed())
    return run_optimization(c, scenario_files[0], as_json);
  return run_scenarios(c, scenario_files, scenario_compare->parsed(), as_json);
}
