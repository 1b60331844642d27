#pragma once

// Helpers shared by the tests: temporary directories and blocking calls into a router.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include <caf/expected.hpp>

#include "twin/runtime/await.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/router.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::test {

/// The headers of a request with a JSON body.
inline const std::map<std::string, std::string> json_type{{"Content-Type", "application/json"}};

using namespace twin::runtime;

/// A fresh directory under the system temp dir, removed with everything in it.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

private:
  std::string path_;
};


twin_id id(const std::string& text);

caf::expected<put_result> put(router& r, const std::string& id, const std::string& type,
                              const std::string& parent = {}, value_map props = {},
                              value_map desired = {}, std::optional<uint64_t> if_version = {});
caf::expected<twin_record> get(router& r, const std::string& id);
caf::expected<uint64_t> ingest(router& r, const std::string& id, value_map values,
                               int64_t ts_ms = 0);
caf::expected<uint64_t> patch(router& r, const std::string& id, value_map props,
                              value_map desired = {}, std::optional<uint64_t> if_version = {});
caf::expected<uint64_t> remove(router& r, const std::string& id,
                               std::optional<uint64_t> if_version = {});
caf::expected<value> command(router& r, const std::string& id, const std::string& name,
                             value args = {});

/// Polls `pred` every 2 ms until it holds or `timeout` passes; returns its last result.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds{10});

/// A property of a twin, or null.
value prop(router& r, const std::string& id, const std::string& name);

} // namespace twin::test

namespace twin::test {

/// Registers motor < robot < line < plant, a small version of the factory types:
/// motor: temperature (-50..250), rpm (0..6000, writable), load (0..1), mode (string,
/// writable); alerts warm (> 70, warning) and overheat (> 90, critical); command stop;
/// the history of temperature and mode. robot/line/plant: max_temperature = max of the
/// children's temperature or max_temperature (its history kept for robot); robot also
/// motors = count.
void add_test_types(type_registry& reg);

} // namespace twin::test

namespace twin::test {

/// A store that fails writes on demand, in front of a real one.
class failing_store : public state_store {
public:
  explicit failing_store(std::unique_ptr<state_store> inner) : inner_(std::move(inner)) {}

  /// The next write fails and changes nothing. With `hold`, it waits inside the store
  /// until `release` (so that more writes queue up behind it).
  void fail_next_write(bool hold = false) {
    std::lock_guard<std::mutex> guard{mtx_};
    fail_ = true;
    hold_ = hold;
    held_ = false;
  }
  /// The next write waits inside the store until `release`; it fails only if it was told
  /// to before it came in.
  void hold_next_write() {
    std::lock_guard<std::mutex> guard{mtx_};
    hold_ = true;
    held_ = false;
  }
  /// Waits until a held write is inside the store.
  bool wait_held(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, timeout, [&] { return held_; });
  }
  void release() {
    std::lock_guard<std::mutex> guard{mtx_};
    hold_ = false;
    cv_.notify_all();
  }

  caf::error write_all(const store_batch* batches, size_t n) override {
    {
      std::unique_lock<std::mutex> guard{mtx_};
      bool fail = std::exchange(fail_, false);
      if (hold_ && !held_) {
        held_ = true;
        cv_.notify_all();
        cv_.wait_for(guard, std::chrono::seconds{10}, [&] { return !hold_; });
      }
      if (fail)
        return make_error(runtime_errc::store_failure, "injected write failure");
    }
    return inner_->write_all(batches, n);
  }
  caf::expected<std::optional<std::string>> get(const twin_id& id) override {
    return inner_->get(id);
  }
  caf::expected<std::vector<twin_id>> list(index_kind index, const std::string& key,
                                           const twin_id& after, size_t limit) override {
    return inner_->list(index, key, after, limit);
  }
  caf::expected<std::vector<std::string>> index_keys(index_kind index, size_t limit) override {
    return inner_->index_keys(index, limit);
  }
  caf::expected<std::vector<twin_id>> scan_ids(const twin_id& after, size_t limit) override {
    return inner_->scan_ids(after, limit);
  }
  caf::expected<std::vector<runtime::history_sample>>
  history(const twin_id& id, const std::string& property, int64_t from, int64_t to,
          size_t limit) override {
    return inner_->history(id, property, from, to, limit);
  }
  caf::expected<std::vector<runtime::history_sample>>
  latest_history(const twin_id& id, const std::string& property, int64_t before,
                 size_t limit) override {
    return inner_->latest_history(id, property, before, limit);
  }
  caf::expected<std::optional<std::string>> get_meta(runtime::shard_id shard,
                                                     const std::string& key) override {
    return inner_->get_meta(shard, key);
  }
  caf::expected<std::vector<std::pair<std::string, std::string>>>
  scan_meta(runtime::shard_id shard, const std::string& prefix, size_t limit) override {
    return inner_->scan_meta(shard, prefix, limit);
  }
  caf::expected<std::optional<std::string>> get_position(runtime::shard_id shard,
                                                         const std::string& key) override {
    return inner_->get_position(shard, key);
  }
  uint32_t shard_count() const override { return inner_->shard_count(); }
  caf::expected<runtime::shard_page> read_shard(runtime::shard_id shard, const std::string& cursor,
                                                size_t max_bytes) override {
    return inner_->read_shard(shard, cursor, max_bytes);
  }
  caf::error drop_shard(runtime::shard_id shard) override { return inner_->drop_shard(shard); }
  uint64_t approximate_count() override { return inner_->approximate_count(); }
  runtime::store_stats stats() override { return inner_->stats(); }
  std::string write_failure() override { return inner_->write_failure(); }
  caf::error flush() override { return inner_->flush(); }

private:
  std::unique_ptr<state_store> inner_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool fail_ = false;
  bool hold_ = false;
  bool held_ = false;
};

} // namespace twin::test
