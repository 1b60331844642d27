// Queries across members: each member answers from the shards it serves, and the member
// asked merges the answers in id order, with a cursor (an id) that holds whatever the
// members are when the next page is asked for.

#include <algorithm>

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <nlohmann/json.hpp>

#include "node_impl.hpp"
#include "twin/runtime/json.hpp"
#include "twin/schema/cluster.capnp.h"

namespace twin::cluster {

using json = nlohmann::json;
using runtime::make_error;
using runtime::runtime_errc;

namespace {

std::string encode_query(const runtime::twin_query& q) {
  json j{{"type", q.type}, {"limit", q.limit}, {"after", q.after.str()}};
  if (q.kind)
    j["kind"] = runtime::to_string(*q.kind);
  if (q.parent)
    j["parent"] = q.parent->str();
  if (q.where)
    j["where"] = q.where->text();
  if (!q.namespaces.empty())
    j["namespaces"] = q.namespaces;
  if (!q.ns.empty())
    j["namespace"] = q.ns;
  if (!q.prefix.empty())
    j["prefix"] = q.prefix;
  if (q.alerting)
    j["alerting"] = runtime::to_string(*q.alerting);
  if (q.related)
    j["related"] = {{"name", q.related->name}, {"target", q.related->target.str()}};
  return j.dump();
}

caf::expected<runtime::twin_query> decode_query(const std::string& text) {
  auto bad = [](const std::string& why) {
    return make_error(runtime_errc::invalid_argument, "a malformed query: " + why);
  };
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return bad("not a JSON object");
  runtime::twin_query q;
  try {
    q.type = j.value("type", "");
    q.limit = j.value("limit", size_t{100});
    if (auto after = j.value("after", ""); !after.empty()) {
      auto id = runtime::twin_id::parse(after);
      if (!id)
        return id.error();
      q.after = *id;
    }
    if (j.contains("kind")) {
      runtime::twin_kind k;
      if (!runtime::from_string(j["kind"].get<std::string>(), k))
        return bad("unknown kind");
      q.kind = k;
    }
    if (j.contains("parent")) {
      auto id = runtime::twin_id::parse(j["parent"].get<std::string>());
      if (!id)
        return id.error();
      q.parent = *id;
    }
    if (j.contains("namespaces")) {
      q.namespaces = j["namespaces"].get<std::vector<std::string>>();
      if (!std::is_sorted(q.namespaces.begin(), q.namespaces.end()))
        return bad("namespaces out of order");
    }
    q.ns = j.value("namespace", "");
    q.prefix = j.value("prefix", "");
    if (j.contains("alerting")) {
      runtime::severity level;
      if (!runtime::from_string(j["alerting"].get<std::string>(), level))
        return bad("unknown severity");
      q.alerting = level;
    }
    if (j.contains("related")) {
      const auto& r = j["related"];
      auto target = runtime::twin_id::parse(r.at("target").get<std::string>());
      if (!target)
        return target.error();
      q.related = runtime::twin_query::relation{r.at("name").get<std::string>(), *target};
    }
    if (j.contains("where")) {
      auto e = runtime::expression::parse(j["where"].get<std::string>());
      if (!e)
        return e.error();
      q.where = std::move(*e);
    }
  } catch (const json::exception& e) {
    return bad(e.what());
  }
  return q;
}

std::string encode_answer(const runtime::query_page& page) {
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<schema::QueryPage>();
  auto records = p.initRecords(static_cast<unsigned>(page.items.size()));
  for (unsigned i = 0; i < records.size(); ++i) {
    auto bytes = runtime::encode(page.items[i]);
    records.set(i, capnp::Data::Reader{reinterpret_cast<const kj::byte*>(bytes.data()),
                                       bytes.size()});
  }
  std::string cursor;
  if (!page.cursor.empty())
    if (auto id = runtime::decode_cursor(page.cursor))
      cursor = id->str();
  p.setCursor(kj::StringPtr{cursor.c_str(), cursor.size()});
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

/// A member's answer: its records, and where it stopped (empty id: it has no more).
struct member_answer {
  std::vector<runtime::twin_record> items;
  twin_id stopped;
};

caf::expected<member_answer> decode_answer(const std::string& bytes) {
  member_answer out;
  caf::error err;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = 64u << 20;
    capnp::PackedMessageReader reader{in, opts};
    auto p = reader.getRoot<schema::QueryPage>();
    for (auto r : p.getRecords()) {
      auto rec = runtime::decode_record({reinterpret_cast<const char*>(r.begin()), r.size()});
      if (!rec) {
        err = rec.error();
        return;
      }
      out.items.push_back(std::move(*rec));
    }
    auto cursor = std::string{p.getCursor().cStr(), p.getCursor().size()};
    if (!cursor.empty())
      out.stopped = runtime::twin_id::trusted(std::move(cursor));
  });
  KJ_IF_MAYBE (e, failure) {
    return make_error(runtime_errc::invalid_argument,
                      std::string{"a malformed answer to a query: "} + e->getDescription().cStr());
  }
  if (err)
    return err;
  return out;
}

std::string encode_history_query(const runtime::history_query& q) {
  return json{{"id", q.id.str()}, {"property", q.property}, {"from", q.from_ms},
              {"to", q.to_ms},    {"step", q.step_ms},        {"limit", q.limit}}
    .dump();
}

caf::expected<runtime::history_query> decode_history_query(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return make_error(runtime_errc::invalid_argument, "a malformed history read");
  runtime::history_query q;
  try {
    auto id = runtime::twin_id::parse(j.at("id").get<std::string>());
    if (!id)
      return id.error();
    q.id = *id;
    q.property = j.at("property").get<std::string>();
    q.from_ms = j.at("from").get<int64_t>();
    q.to_ms = j.at("to").get<int64_t>();
    q.step_ms = j.at("step").get<int64_t>();
    q.limit = j.at("limit").get<size_t>();
  } catch (const json::exception& e) {
    return make_error(runtime_errc::invalid_argument, std::string{"a malformed history read: "}
                                                        + e.what());
  }
  return q;
}

std::string encode_history_page(const runtime::history_page& p) {
  json points = json::array();
  for (const auto& x : p.points)
    points.push_back({x.ts_ms, runtime::to_json(x.v)});
  json buckets = json::array();
  for (const auto& b : p.buckets)
    buckets.push_back({b.ts_ms, b.min, b.max, b.avg, b.count});
  json j{{"points", std::move(points)}, {"buckets", std::move(buckets)}};
  if (p.next_from_ms)
    j["next"] = *p.next_from_ms;
  return j.dump();
}

caf::expected<runtime::history_page> decode_history_page(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  runtime::history_page p;
  try {
    for (const auto& x : j.at("points")) {
      auto v = runtime::value_from_json(x.at(1));
      if (!v)
        return v.error();
      p.points.push_back({x.at(0).get<int64_t>(), std::move(*v)});
    }
    for (const auto& b : j.at("buckets"))
      p.buckets.push_back({b.at(0).get<int64_t>(), b.at(1).get<double>(), b.at(2).get<double>(),
                           b.at(3).get<double>(), b.at(4).get<uint64_t>()});
    if (j.contains("next"))
      p.next_from_ms = j["next"].get<int64_t>();
  } catch (const json::exception& e) {
    return make_error(runtime_errc::invalid_argument, std::string{"a malformed history page: "}
                                                        + e.what());
  }
  return p;
}

} // namespace

caf::expected<runtime::history_page> node::impl::history(const runtime::history_query& q) {
  auto shard = runtime::shard_of(q.id, shard_count);
  auto owner = table->get(shard);
  if (owner.owner == me) {
    if (!host.serves(shard) || !local_history)
      return make_error(runtime_errc::unavailable, "this member does not serve the shard of "
                                                     + q.id.str() + " now; try again");
    return local_history(q);
  }
  if (owner.owner.empty())
    return make_error(runtime_errc::unavailable,
                      "the shard of " + q.id.str() + " has no owner now; try again");
  envelope env;
  env.kind = envelope::history;
  env.shard = shard.value();
  env.bytes = encode_history_query(q);
  auto bytes = ask(owner.owner, std::move(env), std::chrono::seconds{10});
  if (!bytes)
    return bytes.error();
  return decode_history_page(*bytes);
}

caf::expected<runtime::query_page> node::impl::query_here(runtime::twin_query q) {
  if (!local_query)
    return make_error(runtime_errc::unavailable, "this member runs no queries");
  q.accept = [this](const twin_id& id) {
    return host.serves(runtime::shard_of(id, shard_count));
  };
  return local_query(q);
}

caf::expected<runtime::query_page> node::impl::query(const runtime::twin_query& q) {
  // Every shard must be served by a member that answers: a page without a shard's twins
  // would look whole.
  std::set<std::string> live;
  for (const auto& m : members->members())
    live.insert(m.id.str());
  size_t gaps = 0;
  for (const auto& e : table->all())
    gaps += e.owner.empty() || live.count(e.owner) == 0 || !e.moving_to.empty() ? 1 : 0;
  if (gaps > 0)
    return make_error(runtime_errc::unavailable,
                      std::to_string(gaps) + " shards are moving or served by no member now; "
                                             "try again");
  std::vector<member_answer> answers;
  auto mine = query_here(q);
  if (!mine)
    return mine.error();
  answers.push_back({std::move(mine->items), {}});
  if (!mine->cursor.empty())
    if (auto id = runtime::decode_cursor(mine->cursor))
      answers.back().stopped = *id;
  auto text = encode_query(q);
  for (const auto& m : members->members()) {
    if (m.id.str() == me)
      continue;
    envelope env;
    env.kind = envelope::query;
    env.bytes = text;
    auto bytes = ask(m.id.str(), std::move(env), std::chrono::seconds{10});
    if (!bytes)  // a partial answer would look whole: say so instead
      return make_error(runtime_errc::unavailable,
                        "member " + m.id.str()
                          + " did not answer the query: " + runtime::error_message(bytes.error()));
    auto a = decode_answer(*bytes);
    if (!a)
      return a.error();
    answers.push_back(std::move(*a));
  }
  // Merged up to where the first member stopped, so that the next page misses none of
  // its candidates.
  std::optional<twin_id> bound;
  for (const auto& a : answers)
    if (!a.stopped.empty() && (!bound || a.stopped < *bound))
      bound = a.stopped;
  runtime::query_page page;
  for (auto& a : answers)
    for (auto& r : a.items)
      if (!bound || !(*bound < r.id))
        page.items.push_back(std::move(r));
  std::sort(page.items.begin(), page.items.end(),
            [](const runtime::twin_record& a, const runtime::twin_record& b) { return a.id < b.id; });
  if (page.items.size() > q.limit) {
    page.items.resize(q.limit);
    page.cursor = runtime::encode_cursor(page.items.back().id);
  } else if (bound) {
    page.cursor = runtime::encode_cursor(*bound);
  }
  return page;
}

void node::impl::query_loop() {
  for (;;) {
    envelope env;
    {
      std::unique_lock<std::mutex> guard{handoff_mtx};
      query_cv.wait(guard, [&] { return stopping.load() || !queries.empty(); });
      if (stopping.load())
        return;
      env = std::move(queries.front());
      queries.pop_front();
    }
    if (env.kind == envelope::copy || env.kind == envelope::catch_up) {
      on_copy_request(std::move(env));
      continue;
    }
    if (env.kind == envelope::snapshot) {
      if (replicas)
        on_snapshot(env);
      else
        answer(env, envelope::page,
               make_error(runtime_errc::conflict, "this cluster keeps one copy of a shard"));
      continue;
    }
    caf::expected<std::string> bytes = std::string{};
    if (env.kind == envelope::history) {
      auto q = decode_history_query(env.bytes);
      auto page = q ? history(*q) : caf::expected<runtime::history_page>{q.error()};
      bytes = page ? caf::expected<std::string>{encode_history_page(*page)} : page.error();
    } else {
      auto q = decode_query(env.bytes);
      auto page = q ? query_here(std::move(*q)) : caf::expected<runtime::query_page>{q.error()};
      bytes = page ? caf::expected<std::string>{encode_answer(*page)} : page.error();
    }
    answer(env, envelope::answer, std::move(bytes));
  }
}

} // namespace twin::cluster
