#include "twin/node/node.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <spdlog/spdlog.h>

#include "api_setup.hpp"
#include "line_requests.hpp"
#include "logging.hpp"
#include "node_process.hpp"
#include "twin/node/options.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/version.hpp"

namespace twin::node {

namespace {

using runtime::error_message;

int fail(const std::string& msg) {
  spdlog::error("{}", msg);
  return 1;
}

/// Reads request lines from stdin until its end or `stop`; at the end of input, waits for
/// the answers and raises SIGUSR1, which stops the node.
void read_stdin(line_requests& lr, const std::atomic<bool>& stop) {
  std::string buf;
  uint64_t seq = 0;
  char chunk[65536];
  bool too_long = false;
  while (!stop.load()) {
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    int r = poll(&pfd, 1, 200);
    if (r <= 0)
      continue;
    auto n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n <= 0)
      break;
    for (ssize_t i = 0; i < n; ++i) {
      char c = chunk[i];
      if (c != '\n') {
        if (buf.size() <= line_requests::max_line)
          buf += c;
        else
          too_long = true;
        continue;
      }
      ++seq;
      if (too_long)
        buf.assign(line_requests::max_line + 1, ' ');
      if (!buf.empty())
        lr.handle(buf, seq);
      buf.clear();
      too_long = false;
    }
  }
  if (stop.load())
    return;
  bool answered = lr.drain(std::chrono::seconds{30});
  spdlog::info("end of input: {} request lines, {} failed{}", seq, lr.failed(),
               answered ? "" : ", some unanswered after 30 s");
  kill(getpid(), SIGUSR1);
}

} // namespace

int run(int argc, char** argv, const extensions& ext) {
  CLI::App app{ext.name + ": a node of the twin runtime (version " + std::string{runtime::version} + ")"};
  app.set_version_flag("--version", ext.name + " " + runtime::version);
  options o;
  add_options(app, o);
  if (ext.add_options)
    ext.add_options(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  setup_logging(o.log_format);
  if (!o.config.empty()) {
    if (auto msg = apply_config_file(app, o.config); !msg.empty())
      return fail(msg);
    setup_logging(o.log_format);
  }
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (auto why = check_access_options(o); !why.empty())
    return fail(why);

  // Signals are taken by the main thread only (sigwait below): SIGINT and SIGTERM stop the
  // node, SIGUSR1 says that standard input has ended.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  node_process node{o, ext, app.get_option("--shards")->count() > 0};
  if (auto err = node.start())
    return fail(error_message(err));

  std::atomic<bool> stop_stdin{false};
  std::unique_ptr<line_requests> lines;
  std::thread stdin_thread;
  if (o.stdin_requests) {
    lines = std::make_unique<line_requests>(node.front(), node.types(), stdout);
    stdin_thread = std::thread{[&] { read_stdin(*lines, stop_stdin); }};
  }
  spdlog::info("ready");
  int sig = 0;
  while (sig != SIGINT && sig != SIGTERM && sig != SIGUSR1)
    sig = sigwaitinfo(&signals, nullptr);
  if (sig != SIGUSR1)
    spdlog::info("{} received: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  else
    spdlog::info("shutting down");

  // The inputs, then the services, last started first.
  stop_stdin = true;
  if (stdin_thread.joinable())
    stdin_thread.join();
  if (auto err = node.stop())
    return fail("shutdown: " + error_message(err));
  spdlog::info("stopped cleanly");
  return sig == SIGUSR1 && lines->failed() > 0 ? 3 : 0;
}

} // namespace twin::node
