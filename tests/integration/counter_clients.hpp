#pragma once

// Clients that increment counters with compare-and-set through cluster members, and the
// check that every acknowledged increment, and no other, is in the counters.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "cluster_fixture.hpp"

namespace twin::test {

/// Clients that increment counters `c:n0`... with compare-and-set (If-Match) through the
/// members `pick` names, each reading and writing through one member. An answer that cannot
/// say whether the write was applied (its member died before answering) is counted apart:
/// the counter may hold it or not.
class counter_clients {
public:
  counter_clients(int counters, std::vector<int> ports, std::function<int(std::mt19937&)> pick)
    : counters_(counters), ports_(std::move(ports)), pick_(std::move(pick)) {}
  ~counter_clients() { stop(); }

  void start(int clients) {
    for (int w = 0; w < clients; ++w)
      threads_.emplace_back([this, w] { run(w + 1); });
  }

  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

  int acked() { return total(acked_); }

  /// The acknowledged increments of each counter.
  std::map<int, int> acked_each() {
    std::lock_guard<std::mutex> guard{mtx_};
    return acked_;
  }

  /// Checks each counter through `at`: it holds every acknowledged increment, and none
  /// that nobody made.
  void check(http_client& at) {
    std::lock_guard<std::mutex> guard{mtx_};
    for (int c = 0; c < counters_; ++c) {
      auto r = at.call("GET", "/v1/twins/c:n" + std::to_string(c));
      ASSERT_EQ(r.status, 200u) << r.body;
      auto count = nlohmann::json::parse(r.body)["properties"]["count"].get<int>();
      EXPECT_GE(count, acked_[c]) << "counter " << c << " lost acknowledged increments";
      EXPECT_LE(count, acked_[c] + unknown_[c]) << "counter " << c << " has increments nobody made";
    }
  }

  int unknown() { return total(unknown_); }
  int refused() const { return refused_.load(); }

private:
  int total(const std::map<int, int>& per_counter) {
    std::lock_guard<std::mutex> guard{mtx_};
    int n = 0;
    for (const auto& [c, k] : per_counter)
      n += k;
    return n;
  }

  void run(int seed) {
    std::mt19937 rng(seed);
    std::map<int, std::unique_ptr<http_client>> clients;
    while (!stop_) {
      int m = pick_(rng);
      if (m < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
        continue;
      }
      auto& c = clients[m];
      if (!c)
        c = std::make_unique<http_client>(ports_[m]);
      int n = static_cast<int>(rng() % counters_);
      auto path = "/v1/twins/c:n" + std::to_string(n);
      auto read = c->call("GET", path);
      if (read.status != 200)
        continue;
      auto twin = nlohmann::json::parse(read.body);
      auto count = twin["properties"]["count"].get<int>();
      auto r = c->call(
        "PATCH", path, nlohmann::json{{"properties", {{"count", count + 1}}}}.dump(),
        {{"Content-Type", "application/merge-patch+json"},
         {"If-Match", "\"" + std::to_string(twin["version"].get<int>()) + "\""}});
      std::lock_guard<std::mutex> guard{mtx_};
      if (r.status == 200)
        ++acked_[n];
      else if (r.status == 0 || nlohmann::json::parse(r.body, nullptr, false).value("error", nlohmann::json::object())
                                    .value("code", "") == "timeout")
        ++unknown_[n];  // its member died, or its copies did not all answer in time
      else
        ++refused_;
    }
  }

  const int counters_;
  const std::vector<int> ports_;
  const std::function<int(std::mt19937&)> pick_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mtx_;
  std::map<int, int> acked_, unknown_;
  std::atomic<int> refused_{0};
};

} // namespace twin::test
