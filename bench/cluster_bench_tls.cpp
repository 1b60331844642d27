// cluster_bench's part (g): what TLS between members (--peer-cert, --peer-key, --peer-ca)
// costs, on the two paths that cross between them: updates that member 0 forwards to the
// owner (one copy of each shard, through the cluster port), and updates of the twins member
// 0 leads that it copies to a follower (two copies, through the replication link). A plain
// and a TLS cluster run side by side, their phases alternating, so that a drift of the
// machine weighs on both alike: CPU of the members per update, and throughput. [reported]

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "cluster_harness.hpp"
#include "test_certs.hpp"

namespace twin::bench {
namespace {

using namespace std::chrono_literals;

/// Two members of `c`, and 1,000 twins `owner` owns made through member 0.
std::vector<std::string> two_members(cluster& c, uint32_t copies, const std::string& owner) {
  c.start(0);
  c.start(1);
  if (!c.balanced(2, 30s) || (copies > 1 && !c.replicated(30s)))
    throw std::runtime_error("(g): the members did not share the shards");
  auto twins = ids_owned_by(c.owners(), owner, 1000);
  if (twins.size() < 1000 || send_all(c.members()[0].http, puts(twins), "PUT", 8) != 1000)
    throw std::runtime_error("(g): the twins were not made");
  return twins;
}

} // namespace

void bench_peer_tls(const std::string& dir, size_t updates, int clients) {
  auto certs = dir + "/g-certs";
  std::filesystem::create_directories(certs);
  if (!test::make_test_certs(certs))
    throw std::runtime_error("(g): openssl cannot make the certificates");
  const std::vector<std::string> tls{"--peer-cert", certs + "/server.pem", "--peer-key",
                                     certs + "/server.key", "--peer-ca", certs + "/ca.pem"};
  struct path {
    const char* what;
    uint32_t copies;
    const char* owner;  ///< of the twins updated through member 0
  };
  for (const auto& p : {path{"forwarded to their owner (R = 1)", 1, "node-1"},
                        path{"copied to a follower (R = 2)", 2, "node-0"}}) {
    auto args = [&](bool with_tls) {
      std::vector<std::string> a{"--replication-factor", std::to_string(p.copies)};
      if (with_tls)
        a.insert(a.end(), tls.begin(), tls.end());
      return a;
    };
    auto name = std::to_string(p.copies);
    cluster plain{dir + "/g-plain-" + name, 64, args(false)};
    cluster secure{dir + "/g-tls-" + name, 64, args(true)};
    std::vector<std::string> twins[2] = {two_members(plain, p.copies, p.owner),
                                         two_members(secure, p.copies, p.owner)};
    cluster* clusters[2] = {&plain, &secure};
    double cpu_us[2] = {}, rate[2] = {};
    constexpr int rounds = 2;
    for (int round = 0; round < rounds; ++round)
      for (int k : {round % 2, 1 - round % 2}) {
        auto& c = *clusters[k];
        auto patches = patches_of(twins[k], updates);
        auto cpu0 = c.cpu();
        auto t0 = clock_type::now();
        auto ok = send_all(c.members()[0].http, patches, "PATCH", clients);
        auto secs = seconds_since(t0);
        auto used = c.cpu() - cpu0;
        if (ok != updates)
          throw std::runtime_error("(g): updates failed");
        cpu_us[k] += used / static_cast<double>(ok) * 1e6 / rounds;
        rate[k] += static_cast<double>(ok) / secs / rounds;
      }
    std::printf("(g) updates %s, %zu x %d rounds, %d clients:\n", p.what, updates, rounds,
                clients);
    std::printf("    plain: %6.1f us of CPU a update (%6.0f updates/s)\n", cpu_us[0], rate[0]);
    std::printf("    TLS:   %6.1f us of CPU a update (%6.0f updates/s): %+.0f %% CPU, %+.0f %% "
                "updates/s   [reported]\n",
                cpu_us[1], rate[1], (cpu_us[1] / cpu_us[0] - 1) * 100,
                (rate[1] / rate[0] - 1) * 100);
  }
}

} // namespace twin::bench
