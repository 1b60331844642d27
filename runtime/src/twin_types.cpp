// What a twin does about its type: it loads its record with its type (or the stand-in of a
// type no model defines), takes its type's new version, and refuses changes while it has no
// model.

#include "twin_actor.hpp"

namespace twin::runtime::twin_detail {

void refresh_type(twin_state& st) {
  auto generation = st.host->types.generation();
  if (generation == st.type_generation)
    return;
  st.type_generation = generation;
  if (!st.exists || st.rec.type() == nullptr)
    return;
  auto now = st.host->types.find(st.rec.type()->name());
  if (!now || now.get() == st.rec.type())
    return;
  // Values of properties it no longer declares stay, undeclared, until a put replaces them.
  st.rec = live_record{st.rec.to_record(), *now};
  st.forget_samples();  // their layout is the old type's
  compute_derived(st.rec);
}

bool refused_without_type(twin_state& st, twin_request& req) {
  if (!st.exists || !st.rec.type()->stand_in()
      || !(std::holds_alternative<ingest_request>(req) || std::holds_alternative<patch_request>(req)
           || std::holds_alternative<command_request>(req)))
    return false;
  const auto& name = st.rec.type()->name();
  fail_request(req, make_error(runtime_errc::unknown_type,
                               "twin " + st.rec.id.str() + " has type '" + name
                                 + "', which no model of this node defines: load its model "
                                   "(PUT /v1/types/" + name + ") or delete the twin"));
  return true;
}

void load(twin_actor* self) {
  auto& st = self->state;
  st.exists = false;
  live_record none;
  none.id = std::move(st.rec.id);
  st.rec = std::move(none);
  st.forget_samples();
  auto bytes = st.host->store.get(st.rec.id);
  if (!bytes) {
    st.load_error = bytes.error();
    return;
  }
  if (!*bytes)
    return;
  auto rec = decode_record(**bytes);
  if (!rec) {
    st.load_error = rec.error();
    return;
  }
  st.type_generation = st.host->types.generation();
  auto type = st.host->types.find(rec->type);
  // A twin whose type no model defines is kept, to be read and deleted.
  const auto& as = type ? *type : st.host->types.stand_in(rec->type);
  st.rec = live_record{std::move(*rec), as};
  compute_derived(st.rec);  // the type's formulas may have changed since it was stored
  st.exists = true;
  query_children(self);
}

} // namespace twin::runtime::twin_detail
