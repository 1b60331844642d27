// Relationships: the checks of their targets on PUT and PATCH (relationships.hpp), GET
// /v1/twins/{id}/relationships (outgoing and incoming), and DELETE's rules for a twin that
// has children or that other twins point at.

#include <algorithm>

#include "route_helpers.hpp"
#include "twin/runtime/await.hpp"
#include "twin/runtime/query.hpp"
#include "twin/runtime/relationships.hpp"

namespace twin::api::route_detail {

namespace {

/// Twins a DELETE with ?cascade=true removes at most, and relationships to one twin that
/// a DELETE with ?detach=true removes at most.
constexpr size_t max_cascade = 10000;

/// How long a step of the work below waits for a twin's answer.
constexpr std::chrono::seconds step_timeout{10};

caf::expected<twin_record> read_twin(router& rt, const twin_id& id) {
  return await_answer<twin_record>(
    [&](auto done) { rt.route(id, get_request{std::move(done)}); }, step_timeout);
}

/// Whether any type of the node declares a relationship: if none does, no twin points at
/// another, and DELETE need not look.
bool any_relationships(const type_registry* types) {
  if (types == nullptr)
    return false;
  auto all = types->types();
  return std::any_of(all.begin(), all.end(),
                     [](const type_ptr& t) { return !t->relationships().empty(); });
}

/// The twins with a relationship to `id` (named `name`; empty: any), as the token of `req`
/// sees them: a page of at most `limit` of them after `after`. Blocks.
caf::expected<query_page> incoming_page(const route_context& ctx, const request& req,
                                        const twin_id& id, const std::string& name,
                                        size_t limit, twin_id after) {
  twin_query q;
  q.related = twin_query::relation{name, id};
  q.limit = limit;
  q.after = std::move(after);
  if (req.token)
    q.namespaces = req.token->namespaces;
  return ctx.be.query(q);
}

/// Every twin with a relationship to `id`, up to `max_cascade`. Blocks.
caf::expected<std::vector<twin_record>> all_incoming(const route_context& ctx,
                                                     const request& req, const twin_id& id) {
  std::vector<twin_record> out;
  twin_id after;
  for (;;) {
    auto page = incoming_page(ctx, req, id, {}, twin_query::max_limit, after);
    if (!page)
      return page.error();
    for (auto& rec : page->items)
      out.push_back(std::move(rec));
    if (out.size() > max_cascade)
      return make_error(runtime_errc::conflict,
                        "more than " + std::to_string(max_cascade) + " twins point at "
                          + id.str());
    if (page->cursor.empty())
      return out;
    auto next = decode_cursor(page->cursor);
    if (!next)
      return next.error();
    after = std::move(*next);
  }
}

/// Removes the relationships of `source` to `target`, with a compare-and-set that is
/// tried again (a few times) when the source changes under it. Blocks.
caf::error unlink(router& rt, const twin_id& source, const twin_id& target) {
  caf::error last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto rec = read_twin(rt, source);
    if (!rec)
      return error_code(rec.error()) == runtime_errc::not_found ? caf::error{} : rec.error();
    auto rels = rec->relationships;
    rels.erase(std::remove_if(rels.begin(), rels.end(),
                              [&](const relationship& r) { return r.target == target; }),
               rels.end());
    if (rels.size() == rec->relationships.size())
      return {};
    auto done = await_answer<uint64_t>(
      [&](auto cb) {
        patch_request p;
        p.relationships = rels;
        p.if_version = rec->version;
        p.source = "api";
        p.done = std::move(cb);
        rt.route(source, std::move(p));
      },
      step_timeout);
    if (done || error_code(done.error()) != runtime_errc::version_conflict)
      return done ? caf::error{} : done.error();
    last = done.error();
  }
  return last;
}

/// Deletes twin `id` (`if_version`, if given) once every relationship to it is removed
/// (`detach`) or if there is none (else `conflict`); its children are detached, or the
/// delete is refused while it has any (`refuse_with_children`). Blocks.
caf::error remove_one(const route_context& ctx, const request& req, const twin_id& id,
                      std::optional<uint64_t> if_version, bool detach,
                      bool refuse_with_children) {
  auto& rt = *ctx.be.rt;
  std::vector<twin_record> incoming;
  if (any_relationships(ctx.be.types) && ctx.be.query) {
    auto found = all_incoming(ctx, req, id);
    if (!found)
      return found.error();
    incoming = std::move(*found);
    incoming.erase(std::remove_if(incoming.begin(), incoming.end(),
                                  [&](const twin_record& r) { return r.id == id; }),
                   incoming.end());  // its relationships to itself go with it
  }
  if (!incoming.empty() && !detach) {
    const auto& first = incoming.front();
    auto rel = std::find_if(first.relationships.begin(), first.relationships.end(),
                            [&](const relationship& r) { return r.target == id; });
    return make_error(runtime_errc::conflict,
                      std::to_string(incoming.size()) + " twin(s) point at " + id.str() + " ("
                        + first.id.str() + " by '" + rel->name
                        + "'): delete with ?detach=true to remove these relationships, or "
                          "?cascade=true");
  }
  auto removed = await_answer<uint64_t>(
    [&](auto done) {
      remove_request r;
      r.if_version = if_version;
      r.refuse_with_children = refuse_with_children;
      r.done = std::move(done);
      r.received = std::chrono::steady_clock::now();
      rt.route(id, std::move(r));
    },
    step_timeout);
  if (!removed)
    return removed.error();
  for (const auto& source : incoming)
    if (auto err = unlink(rt, source.id, id))
      return make_error(error_code(err), id.str() + " is deleted, but its relationship from "
                                           + source.id.str()
                                           + " could not be removed: " + error_message(err));
  return {};
}

/// The `detach` and `cascade` parameters of a DELETE.
struct delete_rule {
  bool detach = false;
  bool cascade = false;
};

caf::expected<delete_rule> delete_rule_of(const request& req) {
  auto p = query_params(req.target, {"detach", "cascade"});
  if (!p)
    return p.error();
  delete_rule rule;
  for (const auto& [key, text] : *p) {
    if (text != "true" && text != "false")
      return bad(key + " must be true or false");
    (key == "detach" ? rule.detach : rule.cascade) = text == "true";
  }
  if (rule.detach && rule.cascade)
    return bad("detach and cascade exclude each other");
  return rule;
}

} // namespace

void with_targets_checked(const route_context& ctx, const twin_id& id, std::string type,
                          std::vector<relationship> rels, bool conditional, respond_fn respond,
                          std::function<void(respond_fn)> then) {
  if (rels.empty() || ctx.be.types == nullptr)
    return then(std::move(respond));
  check_targets(*ctx.be.rt, *ctx.be.types, id, std::move(type), std::move(rels),
                [conditional, respond = std::move(respond),
                 then = std::move(then)](caf::error err) mutable {
                  if (err)
                    return respond(error_of(err, conditional));
                  then(std::move(respond));
                });
}

void get_relationships(const route_context& ctx, const twin_id& id, const request& req,
                       respond_fn respond) {
  auto p = query_params(req.target, {"incoming", "name", "limit", "cursor"});
  if (!p)
    return respond(error_of(p.error()));
  std::string name;
  bool incoming = false;
  size_t limit = 100;
  twin_id after;
  for (const auto& [key, text] : *p) {
    if (key == "name") {
      name = text;
    } else if (key == "incoming") {
      if (text != "true" && text != "false")
        return respond(error_of(bad("incoming must be true or false")));
      incoming = text == "true";
    } else if (key == "limit") {
      auto n = int_param(key, text, 1, twin_query::max_limit);
      if (!n)
        return respond(error_of(n.error()));
      limit = static_cast<size_t>(*n);
    } else {
      auto at = decode_cursor(text);
      if (!at)
        return respond(error_of(at.error()));
      after = std::move(*at);
    }
  }
  if (!incoming) {
    if (p->count("limit") || p->count("cursor"))
      return respond(error_of(bad("limit and cursor page incoming relationships only")));
    ctx.be.rt->route(id, get_request{[id, name, respond = std::move(respond)](
                                       caf::expected<twin_record> rec) {
      if (!rec)
        return respond(error_of(rec.error()));
      auto items = json::array();
      for (const auto& r : rec->relationships)
        if (name.empty() || r.name == name)
          items.push_back({{"name", r.name}, {"target", r.target.str()}});
      respond(json_response(200, {{"twin", id.str()}, {"relationships", std::move(items)}}));
    }});
    return;
  }
  if (!ctx.be.query)
    return respond(error_response(501, "not_implemented", "this node serves no queries"));
  answer_blocking(ctx, std::move(respond), [&ctx, req, id, name, limit, after] {
    auto page = incoming_page(ctx, req, id, name, limit, after);
    if (!page)
      return error_of(page.error());
    auto items = json::array();
    for (const auto& rec : page->items)
      for (const auto& r : rec.relationships)
        if (r.target == id && (name.empty() || r.name == name))
          items.push_back({{"name", r.name}, {"source", rec.id.str()}});
    return json_response(200, {{"twin", id.str()},
                               {"incoming", std::move(items)},
                               {"cursor", page->cursor.empty() ? json{} : json(page->cursor)}});
  });
}

void delete_twin(const route_context& ctx, const twin_id& id, const request& req,
                 respond_fn respond) {
  auto pre = if_match(req);
  if (!pre)
    return respond(error_of(pre.error()));
  auto rule = delete_rule_of(req);
  if (!rule)
    return respond(error_of(rule.error()));
  auto answer = [conditional = pre->given](caf::error err) {
    return err ? error_of(err, conditional) : response{204, {}, {}, {}, nullptr};
  };
  if (!rule->cascade && !any_relationships(ctx.be.types)) {  // no one points at it
    remove_request remove;
    remove.if_version = pre->version;
    remove.refuse_with_children = !rule->detach;
    remove.received = std::chrono::steady_clock::now();
    remove.done = [respond = std::move(respond), answer](caf::expected<uint64_t> v) {
      respond(answer(v ? caf::error{} : v.error()));
    };
    return ctx.be.rt->route(id, std::move(remove));
  }
  if (rule->cascade && !ctx.be.query)
    return respond(error_response(501, "not_implemented", "this node serves no queries"));
  answer_blocking(ctx, std::move(respond), [&ctx, req, id, version = pre->version,
                                            rule = *rule, answer] {
    if (!rule.cascade)
      return answer(remove_one(ctx, req, id, version, rule.detach, !rule.detach));
    // The twin's version is checked first; then its descendants go, leaves first, and the
    // twin last: a cascade cut short leaves a smaller subtree, which it can delete again.
    auto all = read_subtree(ctx.be, req.token.get(), id, max_cascade, "delete it in parts");
    if (!all)
      return answer(all.error());
    if (version && all->front().version != *version)
      return answer(make_error(runtime_errc::version_conflict,
                               "twin " + id.str() + " has version "
                                 + std::to_string(all->front().version)));
    for (size_t i = all->size(); i-- > 0;) {
      auto err = remove_one(ctx, req, (*all)[i].id, i == 0 ? version : std::nullopt, true, false);
      if (err && (i == 0 || error_code(err) != runtime_errc::not_found))
        return answer(i == 0 ? err
                             : make_error(error_code(err),
                                          "deleted " + std::to_string(all->size() - 1 - i) + " of "
                                            + std::to_string(all->size())
                                            + " twins, the leaves first: " + error_message(err)));
    }
    return answer({});
  });
}

} // namespace twin::api::route_detail
