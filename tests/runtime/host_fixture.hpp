#pragma once

// The fixture of the host's tests: a host on a RocksDB store in a temporary directory (or
// on an in-memory store whose writes can be made to fail), with the test types and a
// gateway that records what the runtime sends to devices.

#include <atomic>
#include <future>
#include <limits>
#include <mutex>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/scheduler.hpp"

namespace twin::test {

/// Records what the runtime sends to devices.
class recording_gateway : public device_gateway {
public:
  void publish_desired(const twin_id& id, const value_map& delta) override {
    std::lock_guard<std::mutex> guard{mtx};
    deltas[id.str()] = delta;
    ++published;
  }
  void send_command(const twin_id& id, const std::string& name, const value&) override {
    std::lock_guard<std::mutex> guard{mtx};
    commands.push_back(id.str() + "/" + name);
  }
  value_map delta_of(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    return deltas[id];
  }
  std::mutex mtx;
  std::map<std::string, value_map> deltas;
  std::vector<std::string> commands;
  int published = 0;
};

class host_test : public ::testing::Test {
protected:
  host_test() {
    configure_scheduler(cfg_, 2);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    add_test_types(types_);
  }

  ~host_test() override {
    stop();
    sys_.reset();
  }

  void start(host_options opts = {}) {
    if (!store_) {
      rocksdb_options o;
      o.path = dir_.sub("db");
      o.block_cache_bytes = 8 << 20;
      o.shard_count = shard_count_;
      auto s = open_rocksdb_store(o);
      ASSERT_TRUE(s) << error_message(s.error());
      store_ = std::move(*s);
    }
    host_ = std::make_unique<host>(*sys_, *store_, types_, opts);
    host_->set_gateway(&gateway_);
    if (twin_router_ != nullptr)
      host_->set_router(twin_router_);
    ASSERT_FALSE(host_->start());
  }

  /// Starts on an in-memory store whose writes can be made to fail.
  failing_store* start_failing() {
    auto flaky = std::make_unique<failing_store>(make_memory_store());
    auto* fs = flaky.get();
    store_ = std::move(flaky);
    start();
    return fs;
  }

  void stop() {
    if (host_) {
      EXPECT_FALSE(host_->stop());
      host_.reset();
    }
  }

  /// Stops the host, closes the store and opens both again.
  void restart(host_options opts = {}) {
    stop();
    store_.reset();
    start(opts);
  }

  host& h() { return *host_; }

  void build_plant() {
    ASSERT_TRUE(put(h(), "f:plant", "plant"));
    ASSERT_TRUE(put(h(), "f:line1", "line", "f:plant"));
    ASSERT_TRUE(put(h(), "f:line2", "line", "f:plant"));
    ASSERT_TRUE(put(h(), "f:robot1", "robot", "f:line1"));
    ASSERT_TRUE(put(h(), "f:robot2", "robot", "f:line2"));
    for (auto m : {"f:m1", "f:m2"})
      ASSERT_TRUE(put(h(), m, "motor", "f:robot1", {{"temperature", value{20.0}}}));
    ASSERT_TRUE(put(h(), "f:m3", "motor", "f:robot2", {{"temperature", value{30.0}}}));
  }

  router* twin_router_ = nullptr;  ///< how twins reach each other; none: the host
  uint32_t shard_count_ = default_shard_count;  ///< of the RocksDB store
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  temp_dir dir_;
  type_registry types_;
  std::unique_ptr<state_store> store_;
  recording_gateway gateway_;
  std::unique_ptr<host> host_;
};

} // namespace twin::test
