#include "twin/runtime/rul_catalog.hpp"

#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/record.hpp"

namespace twin::runtime {

rul_catalog::rul_catalog(std::unique_ptr<kv_store> store, const type_registry& types,
                         warn_fn warn)
  : store_(std::move(store)), types_(types), warn_(std::move(warn)) {
}

rul_catalog::~rul_catalog() {
  store_.reset();  // no change is delivered once it is gone
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

caf::error rul_catalog::apply(const std::string& type_name, const std::string& bytes) {
  auto type = types_.find(type_name);
  if (!type || !type->learns_rul())
    return make_error(runtime_errc::invalid_argument,
                      "type '" + type_name + "' does not learn a remaining useful life here");
  if (bytes.empty()) {
    type->set_rul(nullptr);
    return {};
  }
  auto m = rul_model::decode(bytes);
  if (!m)
    return m.error();
  if (m->retired) {
    type->set_rul(nullptr);
    return {};
  }
  if (auto err = resolve(*type, *m))
    return err;
  type->set_rul(std::make_shared<const rul_model>(std::move(*m)));
  return {};
}

caf::expected<std::vector<std::string>> rul_catalog::load() {
  auto follow = store_->follow([this](const std::string& type, const std::string& bytes) {
    std::lock_guard<std::mutex> guard{mu_};
    if (auto err = apply(type, bytes); err && warn_)
      warn_("the RUL model of type " + type + " stored by another node is not installed: "
            + error_message(err));
  });
  if (follow)
    return follow;
  std::vector<std::string> skipped;
  std::lock_guard<std::mutex> guard{mu_};
  for (const auto& name : types_.names()) {
    if (!types_.find(name)->learns_rul())
      continue;
    auto bytes = store_->get(name);
    if (!bytes)
      return bytes.error();
    if (!*bytes)
      continue;
    if (auto err = apply(name, **bytes)) {
      if (error_code(err) == runtime_errc::store_corrupt)
        return err;
      skipped.push_back(name + ": " + error_message(err));
    }
  }
  return skipped;
}

caf::error rul_catalog::reinstall(const std::string& type) {
  std::lock_guard<std::mutex> guard{mu_};
  auto t = types_.find(type);
  if (!t || !t->learns_rul())
    return {};
  auto bytes = store_->get(type);
  if (!bytes)
    return bytes.error();
  return *bytes ? apply(type, **bytes) : caf::error{};
}

caf::error rul_catalog::store_next(rul_model& m) {
  auto before = store_->get(m.type);
  if (!before)
    return before.error();
  m.version = 1;
  if (*before) {
    auto last = rul_model::decode(**before);
    if (!last)
      return last.error();
    m.version = last->version + (m.retired ? 0 : 1);  // a removal keeps the last version
  }
  auto stored = store_->put(m.type, m.encode(), *before);
  if (!stored)
    return stored.error();
  if (!*stored)
    return make_error(runtime_errc::conflict, "the RUL model of type '" + m.type
                                                + "' was changed meanwhile by another node");
  return {};
}

caf::expected<std::shared_ptr<const rul_model>> rul_catalog::install(rul_model m) {
  auto type = types_.find(m.type);
  if (!type || !type->learns_rul())
    return make_error(runtime_errc::invalid_argument,
                      "type '" + m.type + "' does not learn a remaining useful life");
  std::lock_guard<std::mutex> guard{mu_};
  m.fitted_ms = now_ms();
  m.retired = false;
  if (auto err = store_next(m))
    return err;
  auto installed = std::make_shared<const rul_model>(std::move(m));
  type->set_rul(installed);
  return installed;
}

caf::expected<bool> rul_catalog::remove(const std::string& type_name) {
  auto type = types_.find(type_name);
  std::lock_guard<std::mutex> guard{mu_};
  if (!type || !type->rul())
    return false;
  rul_model tombstone;
  tombstone.type = type_name;
  tombstone.retired = true;
  if (auto err = store_next(tombstone))
    return err;
  type->set_rul(nullptr);
  return true;
}

} // namespace twin::runtime
