#pragma once

// Runs twinctl against a twind of the tests on 127.0.0.1, with the tests' admin token.

#include <chrono>
#include <string>
#include <vector>

#include "http_client.hpp"
#include "process.hpp"

namespace twin::test {

/// The arguments of twinctl that reach the node at `port` with `token` (empty: none).
inline std::vector<std::string> twinctl_argv(int port, const std::vector<std::string>& args,
                                             const std::string& token = test_admin_token) {
  std::vector<std::string> argv{TWINCTL_PATH, "--server",
                                "http://127.0.0.1:" + std::to_string(port)};
  if (!token.empty()) {
    argv.push_back("--token");
    argv.push_back(token);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

/// Runs twinctl with `args` to its end (20 s at most).
inline run_result run_twinctl(int port, const std::vector<std::string>& args,
                              const std::string& token = test_admin_token) {
  return run_to_end(twinctl_argv(port, args, token), {}, std::chrono::seconds{20});
}

} // namespace twin::test
