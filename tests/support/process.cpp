#include "process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

namespace twin::test {

process::process(std::vector<std::string> argv) {
  // Writing to a child that died must fail with EPIPE, not kill the test.
  ::signal(SIGPIPE, SIG_IGN);
  int in[2];
  int out[2];
  int err[2];
  if (pipe(in) != 0 || pipe(out) != 0 || pipe(err) != 0)
    throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0)
    throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]})
      close(fd);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  fcntl(err_, F_SETFL, O_NONBLOCK);
}

process::~process() {
  if (!status_) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds{10});
  }
  for (int fd : {in_, out_, err_})
    if (fd >= 0)
      close(fd);
}

bool process::write(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(in_, text.data() + done, text.size() - done);
    if (n <= 0)
      return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void process::close_stdin() {
  if (in_ >= 0)
    close(in_);
  in_ = -1;
}

std::optional<std::string> process::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto nl = out_buf_.find('\n');
    if (nl != std::string::npos) {
      auto line = out_buf_.substr(0, nl);
      out_buf_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return std::nullopt;
    pollfd pfd{out_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      continue;
    char buf[65536];
    auto n = ::read(out_, buf, sizeof(buf));
    if (n <= 0)
      return std::nullopt;
    out_buf_.append(buf, static_cast<size_t>(n));
  }
}

void process::drain_stderr() {
  char buf[65536];
  for (;;) {
    auto n = ::read(err_, buf, sizeof(buf));
    if (n <= 0)
      return;
    err_buf_.append(buf, static_cast<size_t>(n));
  }
}

const std::string& process::stderr_text() {
  drain_stderr();
  return err_buf_;
}

std::optional<int> process::wait(std::chrono::milliseconds timeout) {
  if (status_)
    return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    drain_stderr();
    int st = 0;
    auto r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      drain_stderr();
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

void process::signal(int sig) {
  if (pid_ > 0 && !status_)
    ::kill(pid_, sig);
}

namespace {

bool can_bind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int kernel_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// The lowest port the kernel hands out to outgoing connections.
int ephemeral_low() {
  std::ifstream in{"/proc/sys/net/ipv4/ip_local_port_range"};
  int low = 0;
  return in >> low ? low : 0;
}

/// The next port of [`lowest`, `end`) after the last one any test process took: the
/// processes of a test run share it through a file they lock in turn, so that two tests
/// that run at once never choose the same port (a port chosen is free only until its
/// server binds it, which long tests that restart members do minutes later).
int next_shared_port(int lowest, int end) {
  int fd = ::open("/tmp/twin-test-next-port", O_RDWR | O_CREAT, 0666);
  if (fd < 0)
    return 0;
  ::flock(fd, LOCK_EX);
  char text[16] = {};
  auto n = ::pread(fd, text, sizeof(text) - 1, 0);
  int port = n > 0 ? std::atoi(text) : 0;
  port = port < lowest || port >= end - 1 ? lowest : port + 1;
  auto out = std::to_string(port);
  bool kept = ::ftruncate(fd, 0) == 0
              && ::pwrite(fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size());
  ::flock(fd, LOCK_UN);
  ::close(fd);
  return kept ? port : 0;
}

} // namespace

// Below the kernel's ephemeral range: a port from it can be taken by any outgoing
// connection before the server binds it.
int free_port() {
  constexpr int lowest = 10000;
  int end = ephemeral_low();
  if (end - lowest < 1000)
    return kernel_port();
  for (int attempt = 0; attempt < 100; ++attempt) {
    int port = next_shared_port(lowest, end);
    if (port == 0)
      break;
    if (can_bind(port))
      return port;
  }
  return kernel_port();
}

run_result run_to_end(std::vector<std::string> argv, const std::string& input,
                      std::chrono::milliseconds timeout) {
  process p{std::move(argv)};
  if (!input.empty())
    p.write(input);
  p.close_stdin();
  run_result r;
  while (auto line = p.read_line(timeout))
    r.out += *line + "\n";
  r.code = p.wait(timeout).value_or(-1);
  r.err = p.stderr_text();
  return r;
}

std::optional<std::string> promtool_problems(const std::string& exposition) {
  const char* promtool = "/usr/bin/promtool";
  if (::access(promtool, X_OK) != 0)
    return std::nullopt;
  auto r = run_to_end({promtool, "check", "metrics"}, exposition);
  if (r.code == 0 && r.out.empty() && r.err.empty())
    return std::string{};
  return "exit " + std::to_string(r.code) + ": " + r.out + r.err;
}

/// A socket connected to 127.0.0.1:`port` whose reads give up after 10 s; -1 if none.
int connect_loopback(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  timeval limit{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  if (rcvbuf > 0)  // before connecting: the window is agreed on then
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

} // namespace twin::test
