#include "twin/runtime/kv_store.hpp"

#include <future>
#include <mutex>

#include "twin/runtime/commit_point.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

kv_store::~kv_store() = default;

caf::error kv_store::follow(change_fn) {
  return {};
}

namespace {

class local_kv_store : public kv_store {
public:
  local_kv_store(state_store& store, commit_point& writer, std::string prefix)
    : store_(store), writer_(writer), prefix_(std::move(prefix)) {}

  caf::expected<std::optional<std::string>> get(const std::string& key) override {
    return store_.get_meta(home, prefix_ + key);
  }

  caf::expected<bool> put(const std::string& key, const std::string& bytes,
                          const std::optional<std::string>& expected) override {
    std::lock_guard<std::mutex> guard{mu_};
    auto now = get(key);
    if (!now)
      return now.error();
    if (*now != expected)
      return false;
    store_batch b;
    b.meta_puts.push_back({home, prefix_ + key, bytes});
    // The writer orders batches by owner: each key is one of its own.
    auto owner = twin_id::trusted(prefix_ + key);
    std::promise<caf::error> written;
    writer_.submit(owner, std::move(b), {},
                   [&](caf::error err) { written.set_value(std::move(err)); });
    auto err = written.get_future().get();
    if (err) {  // the writer holds the owner's failure until a reset
      std::promise<void> reset;
      writer_.reset(owner, [&](caf::error) { reset.set_value(); });
      reset.get_future().wait();
      return err;
    }
    return true;
  }

  caf::expected<std::vector<std::pair<std::string, std::string>>> list(size_t limit) override {
    auto all = store_.scan_meta(home, prefix_, limit + 1);
    if (!all)
      return all.error();
    if (all->size() > limit)
      return make_error(runtime_errc::invalid_argument,
                        "more than " + std::to_string(limit) + " values under " + prefix_);
    for (auto& kv : *all)
      kv.first.erase(0, prefix_.size());
    return all;
  }

private:
  static constexpr shard_id home{0};

  state_store& store_;
  commit_point& writer_;
  std::string prefix_;
  std::mutex mu_;
};

} // namespace

std::unique_ptr<kv_store> make_local_kv_store(state_store& store, commit_point& writer,
                                              std::string prefix) {
  return std::make_unique<local_kv_store>(store, writer, std::move(prefix));
}

} // namespace twin::runtime
