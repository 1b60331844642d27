#pragma once

// A real etcd for the cluster's tests: one member on free loopback ports, its data in a
// directory of the test's, started and stopped by the test.

#include <csignal>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

#include "etcd.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace twin::test {

inline std::string etcd_path() {
  for (const char* p : {"/usr/bin/etcd", "/usr/local/bin/etcd"})
    if (std::filesystem::exists(p))
      return p;
  return {};
}

class etcd_server {
public:
  /// Picks free ports; `start` runs it. With `tls_dir` (the files of `make_test_certs`) it
  /// speaks https and asks clients for a certificate its CA signed.
  explicit etcd_server(std::string data_dir, std::string tls_dir = {})
    : dir_(std::move(data_dir)), tls_(std::move(tls_dir)), client_port_(free_port()),
      peer_port_(free_port()) {}
  ~etcd_server() { stop(); }

  /// Starts etcd (again, on the same ports and data) and waits until it serves requests
  /// (it has elected itself leader).
  void start() {
    auto peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> argv{
      etcd_path(), "--name", "test", "--data-dir", dir_, "--listen-client-urls", url(),
      "--advertise-client-urls", url(), "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer, "--initial-cluster", "test=" + peer,
      "--log-level", "error"};
    if (!tls_.empty())
      argv.insert(argv.end(), {"--cert-file", tls_ + "/server.pem", "--key-file",
                               tls_ + "/server.key", "--trusted-ca-file", tls_ + "/ca.pem",
                               "--client-cert-auth"});
    proc_ = std::make_unique<process>(argv);
    ASSERT_TRUE(eventually(
      [&] {
        int fd = connect_loopback(client_port_);
        if (fd >= 0)
          ::close(fd);
        return fd >= 0;
      },
      std::chrono::seconds{20}))
      << proc_->stderr_text();
    cluster::etcd::client probe{where(), std::chrono::seconds{1}};
    ASSERT_TRUE(eventually([&] { return static_cast<bool>(probe.put("/ready", "")); },
                           std::chrono::seconds{20}))
      << proc_->stderr_text();
  }

  /// Stops it the hard way (kill -9), as a crash would.
  void kill() {
    if (proc_) {
      proc_->signal(SIGKILL);
      proc_->wait(std::chrono::seconds{10});
      proc_.reset();
    }
  }

  void stop() {
    if (proc_) {
      proc_->signal(SIGTERM);
      proc_->wait(std::chrono::seconds{10});
      proc_.reset();
    }
  }

  std::string url() const {
    return (tls_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:")
           + std::to_string(client_port_);
  }
  /// Its URL, and with TLS the test CA and the client certificate it signed.
  cluster::etcd::endpoints where() const {
    if (tls_.empty())
      return url();
    return {url(), tls_ + "/ca.pem", tls_ + "/client.pem", tls_ + "/client.key"};
  }
  int port() const { return client_port_; }

private:
  std::string dir_;
  std::string tls_;
  int client_port_;
  int peer_port_;
  std::unique_ptr<process> proc_;
};

/// A test with its own etcd (skipped, and saying so, where etcd is not installed).
class etcd_test_base : public ::testing::Test {
protected:
  void SetUp() override {
    if (etcd_path().empty())
      GTEST_SKIP() << "ETCD IS NOT INSTALLED: run scripts/setup; the etcd tests did not run";
    server_ = std::make_unique<etcd_server>(dir_.sub("etcd"));
    ASSERT_NO_FATAL_FAILURE(server_->start());
  }

  temp_dir dir_;
  std::unique_ptr<etcd_server> server_;
};

} // namespace twin::test
