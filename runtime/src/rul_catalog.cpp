#include "twin/runtime/rul_catalog.hpp"

#include <future>

#include "twin/runtime/commit_point.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

namespace {

const shard_id home{0};

std::string key_of(const std::string& type) {
  return "rul/" + type;
}

} // namespace

rul_catalog::rul_catalog(state_store& store, commit_point& writer, const type_registry& types)
  : store_(store), writer_(writer), types_(types) {
}

caf::error rul_catalog::resolve(const twin_type& type, rul_model& m) {
  m.positions.clear();
  for (const auto& name : m.inputs) {
    auto fail = [&](const std::string& why) {
      return make_error(runtime_errc::invalid_argument,
                        "input '" + name + "' of type '" + type.name() + "' " + why);
    };
    int at = type.index_of(name);
    if (at < 0)
      return fail("is no property");
    const auto& p = type.properties()[static_cast<size_t>(at)];
    if (p.computed || (p.type != property_type::real && p.type != property_type::integer))
      return fail("is not a declared number");
    if (!p.history)
      return fail("keeps no history to learn from (add it to the type's \"history\")");
    for (int seen : m.positions)
      if (seen == at)
        return fail("is named twice");
    m.positions.push_back(at);
  }
  return {};
}

caf::expected<std::vector<std::string>> rul_catalog::load() {
  std::vector<std::string> skipped;
  std::lock_guard<std::mutex> guard{mu_};
  for (const auto& name : types_.names()) {
    auto type = types_.find(name);
    if (!type->learns_rul())
      continue;
    auto bytes = store_.get_meta(home, key_of(name));
    if (!bytes)
      return bytes.error();
    if (!*bytes)
      continue;
    auto m = rul_model::decode(**bytes);
    if (!m)
      return m.error();
    if (m->retired)
      continue;
    if (auto err = resolve(*type, *m)) {
      skipped.push_back(name + ": " + error_message(err));
      continue;
    }
    type->set_rul(std::make_shared<const rul_model>(std::move(*m)));
  }
  return skipped;
}

caf::expected<uint64_t> rul_catalog::next_version(const std::string& type) {
  auto bytes = store_.get_meta(home, key_of(type));
  if (!bytes)
    return bytes.error();
  if (!*bytes)
    return uint64_t{1};
  auto m = rul_model::decode(**bytes);
  if (!m)
    return m.error();
  return m->version + 1;
}

caf::error rul_catalog::store(const rul_model& m) {
  store_batch b;
  b.meta_puts.push_back({home, key_of(m.type), m.encode()});
  // The writer orders batches by owner: the type's models have one of their own.
  auto owner = twin_id::trusted("rul:" + m.type);
  std::promise<caf::error> written;
  writer_.submit(owner, std::move(b), {}, [&](caf::error err) { written.set_value(std::move(err)); });
  auto err = written.get_future().get();
  if (err) {  // the writer holds the owner's failure until a reset
    std::promise<void> reset;
    writer_.reset(owner, [&](caf::error) { reset.set_value(); });
    reset.get_future().wait();
  }
  return err;
}

caf::expected<std::shared_ptr<const rul_model>> rul_catalog::install(rul_model m) {
  auto type = types_.find(m.type);
  if (!type || !type->learns_rul())
    return make_error(runtime_errc::invalid_argument,
                      "type '" + m.type + "' does not learn a remaining useful life");
  std::lock_guard<std::mutex> guard{mu_};
  auto version = next_version(m.type);
  if (!version)
    return version.error();
  m.version = *version;
  m.fitted_ms = now_ms();
  m.retired = false;
  if (auto err = store(m))
    return err;
  auto installed = std::make_shared<const rul_model>(std::move(m));
  type->set_rul(installed);
  return installed;
}

caf::expected<bool> rul_catalog::remove(const std::string& type_name) {
  auto type = types_.find(type_name);
  std::lock_guard<std::mutex> guard{mu_};
  auto current = type ? type->rul() : nullptr;
  if (!current)
    return false;
  rul_model tombstone;
  tombstone.type = type_name;
  tombstone.version = current->version;
  tombstone.retired = true;
  if (auto err = store(tombstone))
    return err;
  type->set_rul(nullptr);
  return true;
}

} // namespace twin::runtime
