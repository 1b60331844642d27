#pragma once

// The check of relationships' targets, which a twin cannot make alone: each target must be
// a twin that exists, of the type its relationship names (or of one that extends it).

#include <functional>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "twin/runtime/model.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/router.hpp"

namespace twin::runtime {

/// Checks the targets of `rels`, the relationships twin `id` is to have, as its type
/// declares them (`type`: the type's name; empty: the type twin `id` has now), asking each
/// target through `rt`, one after the other; then calls `done` with the first refusal
/// (`invalid_argument`, naming the relationship and the target) or none, on a runtime
/// thread. Not checked: a relationship the type does not declare (the twin refuses it), one
/// the model calls external (`externalTargets`), and one to twin `id` itself.
void check_targets(router& rt, const type_registry& types, const twin_id& id, std::string type,
                   std::vector<relationship> rels, std::function<void(caf::error)> done);

/// Whether a twin of type `have` may be the target of `spec`: `spec` targets any type, that
/// type, or one `have` extends.
bool fits(const type_registry& types, const relationship_spec& spec, const std::string& have);

} // namespace twin::runtime
