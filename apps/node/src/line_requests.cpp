#include "line_requests.hpp"

#include <algorithm>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/relationships.hpp"

namespace twin::node {

using namespace twin::runtime;
using nlohmann::json;

namespace {

json error_json(uint64_t seq, const caf::error& err) {
  return {{"seq", seq}, {"ok", false}, {"error", to_json(err)}};
}

caf::error bad(const std::string& why) {
  return make_error(runtime_errc::invalid_argument, why);
}

using reply_fn = std::function<void(std::string, bool)>;

/// The answer of a change: its version, or its error.
std::function<void(caf::expected<uint64_t>)> on_version(uint64_t seq, reply_fn reply) {
  return [seq, reply = std::move(reply)](caf::expected<uint64_t> v) {
    if (v)
      reply(json{{"seq", seq}, {"ok", true}, {"version", *v}}.dump(), true);
    else
      reply(error_json(seq, v.error()).dump(), false);
  };
}

} // namespace

line_requests::line_requests(router& rt, const type_registry& types, std::FILE* out)
  : rt_(rt), types_(types), out_(out) {
}

uint64_t line_requests::pending() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return pending_;
}

void line_requests::answer(const std::string& text, bool ok) {
  if (!ok)
    failed_.fetch_add(1);
  std::lock_guard<std::mutex> guard{out_mtx_};
  std::fputs(text.c_str(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

bool line_requests::drain(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock{mtx_};
  return changed_.wait_for(lock, limit, [this] { return pending_ == 0; });
}

void line_requests::handle(const std::string& line, uint64_t seq) {
  auto parsed = parse(line, seq);
  if (!parsed)
    return answer(error_json(seq, parsed.error()).dump(), false);
  auto* j = new job{std::move(*parsed)};
  bool ready = true;
  {
    std::unique_lock<std::mutex> lock{mtx_};
    changed_.wait(lock, [this] { return pending_ < max_pending; });
    ++pending_;
    for (const auto& key : j->keys) {
      auto& q = queues_[key];
      if (!q.empty())
        ++j->blocked;
      q.push_back(j);
    }
    ready = j->blocked == 0;
  }
  if (ready)
    start(j);
}

void line_requests::start(job* j) {
  // A line answered at once (an error) starts the next ones from inside its own send: they
  // wait in this thread's list, so that a long run of them does not grow the stack.
  thread_local std::vector<job*>* runnable = nullptr;
  if (runnable != nullptr)
    return runnable->push_back(j);
  std::vector<job*> list{j};
  runnable = &list;
  while (!list.empty()) {
    auto* next = list.back();
    list.pop_back();
    next->send([this, next](std::string text, bool ok) { finish(next, text, ok); });
  }
  runnable = nullptr;
}

void line_requests::finish(job* j, const std::string& text, bool ok) {
  answer(text, ok);
  std::vector<job*> unblocked;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& key : j->keys) {
      auto q = queues_.find(key);
      q->second.pop_front();  // j: only the line at the front of all its queues runs
      if (q->second.empty()) {
        queues_.erase(q);
      } else if (--q->second.front()->blocked == 0) {
        unblocked.push_back(q->second.front());
      }
    }
    --pending_;
  }
  changed_.notify_all();
  delete j;
  for (auto* next : unblocked)
    start(next);
}

namespace {

/// Adds the targets of `rels` to `keys`: a relationship waits for its target's earlier lines.
void add_targets(std::vector<std::string>& keys, const std::vector<relationship>& rels) {
  for (const auto& r : rels)
    if (std::find(keys.begin(), keys.end(), r.target.str()) == keys.end())
      keys.push_back(r.target.str());
}

} // namespace

void line_requests::route_checked(const twin_id& target, std::string type,
                                  std::vector<relationship> rels, twin_request req,
                                  std::function<void(const caf::error&)> refuse) {
  check_targets(rt_, types_, target, std::move(type), std::move(rels),
                [this, target, req = std::move(req),
                 refuse = std::move(refuse)](caf::error err) mutable {
                  if (err)
                    return refuse(err);
                  rt_.route(target, std::move(req));
                });
}

caf::expected<line_requests::job> line_requests::parse(const std::string& line, uint64_t seq) {
  if (line.size() > max_line)
    return bad("request line longer than 1 MiB");
  auto parsed = parse_json(line, "the request");
  if (!parsed)
    return parsed.error();
  auto& doc = *parsed;
  if (!doc.is_object())
    return bad("the request must be a JSON object");
  auto str = [&](const char* key) -> std::string {
    auto i = doc.find(key);
    return i != doc.end() && i->is_string() ? i->get<std::string>() : std::string{};
  };
  auto op = str("op");
  auto id = twin_id::parse(str("id"));
  if (!id)
    return id.error();
  std::optional<uint64_t> if_version;
  if (auto i = doc.find("if_version"); i != doc.end()) {
    if (!i->is_number_unsigned())
      return bad("\"if_version\" must be a non-negative integer");
    if_version = i->get<uint64_t>();
  }
  job j;
  j.seq = seq;
  j.keys.push_back(id->str());
  auto& rt = rt_;
  auto target = *id;
  if (op == "telemetry") {
    auto values = map_field(doc, "values");
    if (!values)
      return values.error();
    ingest_request req;
    req.values = std::move(*values);
    if (auto ts = doc.find("ts"); ts != doc.end()) {
      auto t = ts_from_json(*ts);
      if (!t)
        return t.error();
      req.ts_ms = *t;
    }
    req.source = "stdin";
    j.send = [&rt, target, seq, req = std::move(req)](reply_fn reply) mutable {
      req.done = on_version(seq, std::move(reply));
      rt.route(target, std::move(req));
    };
  } else if (op == "put") {
    put_request req;
    req.type = str("type");
    if (req.type.empty())
      return bad("\"type\" is required");
    if (auto p = str("parent"); !p.empty()) {
      auto parent = twin_id::parse(p);
      if (!parent)
        return parent.error();
      req.parent = *parent;
      if (parent->str() != id->str())
        j.keys.push_back(parent->str());
    }
    auto state = state_fields(doc);
    if (!state)
      return state.error();
    auto rels = relationships_field(doc);
    if (!rels)
      return rels.error();
    add_targets(j.keys, *rels);
    req.properties = std::move(state->properties);
    req.desired = std::move(state->desired);
    req.relationships = std::move(*rels);
    req.if_version = if_version;
    req.source = "stdin";
    j.send = [this, target, seq, req = std::move(req)](reply_fn reply) mutable {
      req.done = [seq, reply](caf::expected<put_result> r) {
        if (r)
          reply(json{{"seq", seq}, {"ok", true}, {"version", r->version}, {"created", r->created}}
                  .dump(),
                true);
        else
          reply(error_json(seq, r.error()).dump(), false);
      };
      auto type = req.type;
      auto rels = req.relationships;
      route_checked(target, std::move(type), std::move(rels), std::move(req),
                    [seq, reply](const caf::error& err) {
                      reply(error_json(seq, err).dump(), false);
                    });
    };
  } else if (op == "patch") {
    patch_request req;
    auto state = state_fields(doc);
    if (!state)
      return state.error();
    req.properties = std::move(state->properties);
    req.desired = std::move(state->desired);
    if (auto p = doc.find("parent"); p != doc.end()) {  // null: none
      auto parent = p->is_null() ? caf::expected<twin_id>{twin_id{}}
                                 : twin_id::parse(p->is_string() ? p->get<std::string>() : "");
      if (!parent)
        return parent.error();
      if (!parent->empty() && parent->str() != id->str())
        j.keys.push_back(parent->str());
      req.parent = std::move(*parent);
    }
    if (doc.contains("relationships")) {
      auto rels = relationships_field(doc);
      if (!rels)
        return rels.error();
      add_targets(j.keys, *rels);
      req.relationships = std::move(*rels);
    }
    req.if_version = if_version;
    req.source = "stdin";
    j.send = [this, target, seq, req = std::move(req)](reply_fn reply) mutable {
      req.done = on_version(seq, reply);
      auto rels = req.relationships.value_or(std::vector<relationship>{});
      route_checked(target, {}, std::move(rels), std::move(req),
                    [seq, reply](const caf::error& err) {
                      reply(error_json(seq, err).dump(), false);
                    });
    };
  } else if (op == "get") {
    j.send = [&rt, target, seq](reply_fn reply) {
      rt.route(target, get_request{[seq, reply = std::move(reply)](caf::expected<twin_record> r) {
                 if (r)
                   reply(json{{"seq", seq}, {"ok", true}, {"twin", to_json(*r)}}.dump(), true);
                 else
                   reply(error_json(seq, r.error()).dump(), false);
               }});
    };
  } else if (op == "delete") {
    j.send = [&rt, target, seq, if_version](reply_fn reply) {
      rt.route(target, remove_request{if_version, on_version(seq, std::move(reply))});
    };
  } else {
    return bad("\"op\" must be put, telemetry, patch, get or delete");
  }
  return j;
}

} // namespace twin::node
