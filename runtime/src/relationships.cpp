#include "twin/runtime/relationships.hpp"

#include <algorithm>
#include <memory>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/messages.hpp"

namespace twin::runtime {

namespace {

std::string_view dtmi_path(std::string_view id) {
  return id.substr(0, id.find(';'));
}

/// One check under way: the relationships left, asked one at a time.
struct target_check : std::enable_shared_from_this<target_check> {
  router& rt;
  const type_registry& types;
  twin_id id;
  type_ptr type;
  std::vector<relationship> rels;
  size_t next = 0;
  std::function<void(caf::error)> done;

  target_check(router& r, const type_registry& t) : rt(r), types(t) {}

  /// Asks the next target that needs it; `done` when none is left.
  void step() {
    for (; next < rels.size(); ++next) {
      const auto& r = rels[next];
      const auto* spec = type->relationship(r.name);
      if (spec == nullptr || spec->external || r.target == id)
        continue;
      rt.route(r.target, get_request{[self = shared_from_this(), spec](
                                       caf::expected<twin_record> target) {
                 self->answered(*spec, target);
               }});
      return;
    }
    done({});
  }

  void answered(const relationship_spec& spec, const caf::expected<twin_record>& target) {
    const auto& r = rels[next];
    if (!target && error_code(target.error()) == runtime_errc::not_found)
      return done(make_error(runtime_errc::invalid_argument,
                             "relationship '" + r.name + "': its target " + r.target.str()
                               + " does not exist"));
    if (!target)
      return done(target.error());
    if (!fits(types, spec, target->type))
      return done(make_error(runtime_errc::invalid_argument,
                             "relationship '" + r.name + "' of type '" + type->name()
                               + "' targets '" + spec.target + "' twins; " + r.target.str()
                               + " is a '" + target->type + "'"));
    ++next;
    step();
  }
};

} // namespace

bool fits(const type_registry& types, const relationship_spec& spec, const std::string& have) {
  if (spec.target.empty() || spec.target == have)
    return true;
  auto want = types.find(spec.target);
  auto t = types.find(have);
  if (!want || !t || want->dtmi().empty())
    return false;
  const auto& ext = t->extends();
  return std::any_of(ext.begin(), ext.end(), [&](const std::string& d) {
    return dtmi_path(d) == dtmi_path(want->dtmi());
  });
}

void check_targets(router& rt, const type_registry& types, const twin_id& id, std::string type,
                   std::vector<relationship> rels, std::function<void(caf::error)> done) {
  if (rels.empty())
    return done({});
  auto c = std::make_shared<target_check>(rt, types);
  c->id = id;
  c->rels = std::move(rels);
  c->done = std::move(done);
  auto start = [c](const std::string& name) {
    c->type = c->types.find(name);
    if (!c->type)
      return c->done({});  // the twin refuses its unknown type itself
    c->step();
  };
  if (!type.empty())
    return start(type);
  rt.route(id, get_request{[c, start](caf::expected<twin_record> rec) {
             if (!rec)
               return c->done(rec.error());
             start(rec->type);
           }});
}

} // namespace twin::runtime
