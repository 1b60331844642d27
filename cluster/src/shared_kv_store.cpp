// The values the members of a cluster share (RUL models, API tokens), kept in etcd.

#include <utility>

#include "etcd.hpp"
#include "membership.hpp"
#include "node_impl.hpp"
#include "twin/cluster/node.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/kv_store.hpp"

namespace twin::cluster {

namespace {

/// Values under `prefix` (`<cluster root><prefix><key>`), written with a transaction that
/// checks what the key held; a member follows the others' by watching the prefix.
class etcd_kv_store : public runtime::kv_store {
public:
  etcd_kv_store(etcd::client& etcd, std::string prefix, etcd::endpoints endpoints)
    : etcd_(etcd), prefix_(std::move(prefix)), endpoints_(std::move(endpoints)) {}

  caf::error follow(change_fn on_change) override {
    auto all = etcd_.get_prefix(prefix_);
    if (!all)
      return all.error();
    auto deliver = [this, on_change](const std::vector<etcd::event>& events) {
      for (const auto& e : events)
        on_change(e.kv.key.substr(prefix_.size()), e.deleted ? std::string{} : e.kv.value);
    };
    watch_ = std::make_unique<etcd::watch>(
      endpoints_, prefix_, all->revision + 1,
      [deliver](std::vector<etcd::event> events, int64_t) { deliver(events); },
      [this, deliver] {  // compacted past the watch: read every value again
        if (auto again = etcd_.get_prefix(prefix_)) {
          std::vector<etcd::event> events;
          for (auto& kv : again->kvs)
            events.push_back(etcd::event{false, std::move(kv)});
          deliver(events);
        }
      });
    return {};
  }

  caf::expected<std::optional<std::string>> get(const std::string& key) override {
    auto r = etcd_.get(prefix_ + key);
    if (!r)
      return r.error();
    if (r->kvs.empty())
      return std::optional<std::string>{};
    return std::optional<std::string>{std::move(r->kvs.front().value)};
  }

  caf::expected<bool> put(const std::string& key, const std::string& bytes,
                          const std::optional<std::string>& expected) override {
    auto full = prefix_ + key;
    auto when =
      expected ? etcd::compare::value_is(full, *expected) : etcd::compare::mod_is(full, 0);
    auto r = etcd_.txn({when}, {etcd::op::put(full, bytes)});
    if (!r)
      return r.error();
    return r->succeeded;
  }

  caf::expected<std::vector<std::pair<std::string, std::string>>> list(size_t limit) override {
    auto all = etcd_.get_prefix(prefix_);
    if (!all)
      return all.error();
    if (all->kvs.size() > limit)
      return runtime::make_error(runtime::runtime_errc::invalid_argument,
                                 "more than " + std::to_string(limit) + " values under "
                                   + prefix_);
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& kv : all->kvs)
      out.emplace_back(kv.key.substr(prefix_.size()), std::move(kv.value));
    return out;
  }

private:
  etcd::client& etcd_;
  std::string prefix_;
  etcd::endpoints endpoints_;
  std::unique_ptr<etcd::watch> watch_;  ///< last: stopped before the rest goes
};

} // namespace

std::unique_ptr<runtime::kv_store> node::shared_kv_store(const std::string& prefix) {
  return std::make_unique<etcd_kv_store>(impl_->members->etcd(),
                                         impl_->members->keys().root + prefix,
                                         impl_->members->options().etcd);
}

} // namespace twin::cluster
