#pragma once

// A child process with pipes to its stdin, stdout and stderr, for tests that run real
// twind processes.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace twin::test {

class process {
public:
  /// Starts `argv[0]` with the arguments; throws if it cannot.
  explicit process(std::vector<std::string> argv);
  ~process();  ///< kills the process if it still runs

  process(const process&) = delete;
  process& operator=(const process&) = delete;

  /// Writes `text` to the child's stdin.
  bool write(const std::string& text);
  void close_stdin();

  /// Reads one line from stdout, waiting at most `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);

  /// Everything written to stderr so far (drained without blocking).
  const std::string& stderr_text();

  /// Waits for the exit; returns the exit code, 128+signal, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);

  void signal(int sig);
  pid_t pid() const { return pid_; }

private:
  void drain_stderr();

  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string out_buf_;
  std::string err_buf_;
  std::optional<int> status_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago: below the range the kernel hands to
/// outgoing connections, and not chosen by another test process of the run.
int free_port();

/// A socket connected to 127.0.0.1:`port` whose reads give up after 10 s; -1 if none.
/// `rcvbuf` > 0: its receive buffer is that small (a slow reader).
int connect_loopback(int port, int rcvbuf = 0);

/// What a process that ran to its end said.
struct run_result {
  int code = -1;  ///< the exit code; -1 if it did not end in time
  std::string out;
  std::string err;
};

/// Runs `argv` with `input` on its stdin to its end, waiting at most `timeout` for each
/// line and for the exit.
run_result run_to_end(std::vector<std::string> argv, const std::string& input = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// What `promtool check metrics` (Prometheus' linter) says of a /metrics answer: "" for
/// no problems; nullopt if promtool is not installed.
std::optional<std::string> promtool_problems(const std::string& exposition);

} // namespace twin::test
