// The RUL models the members of a cluster share, kept in etcd.

#include <utility>

#include "etcd.hpp"
#include "membership.hpp"
#include "node_impl.hpp"
#include "twin/cluster/node.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/rul_catalog.hpp"

namespace twin::cluster {

namespace {

/// Models under `prefix` (`<cluster root>rul/<type>`), written with a transaction that
/// checks what the key held; a member follows the others' by watching the prefix.
class etcd_rul_store : public runtime::rul_store {
public:
  etcd_rul_store(etcd::client& etcd, std::string prefix, std::string endpoints)
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
      [this, deliver] {  // compacted past the watch: read every model again
        if (auto again = etcd_.get_prefix(prefix_)) {
          std::vector<etcd::event> events;
          for (auto& kv : again->kvs)
            events.push_back(etcd::event{false, std::move(kv)});
          deliver(events);
        }
      });
    return {};
  }

  caf::expected<std::optional<std::string>> get(const std::string& type) override {
    auto r = etcd_.get(prefix_ + type);
    if (!r)
      return r.error();
    if (r->kvs.empty())
      return std::optional<std::string>{};
    return std::optional<std::string>{std::move(r->kvs.front().value)};
  }

  caf::expected<bool> put(const std::string& type, const std::string& bytes,
                          const std::optional<std::string>& expected) override {
    auto key = prefix_ + type;
    auto when = expected ? etcd::compare::value_is(key, *expected) : etcd::compare::mod_is(key, 0);
    auto r = etcd_.txn({when}, {etcd::op::put(key, bytes)});
    if (!r)
      return r.error();
    return r->succeeded;
  }

private:
  etcd::client& etcd_;
  std::string prefix_;
  std::string endpoints_;
  std::unique_ptr<etcd::watch> watch_;  ///< last: stopped before the rest goes
};

} // namespace

std::unique_ptr<runtime::rul_store> node::shared_rul_store() {
  return std::make_unique<etcd_rul_store>(impl_->members->etcd(),
                                          impl_->members->keys().root + "rul/", impl_->opts.etcd);
}

} // namespace twin::cluster
