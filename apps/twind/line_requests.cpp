#include "line_requests.hpp"

#include "twin/runtime/errc.hpp"
#include "twin/runtime/json.hpp"

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

} // namespace

line_requests::line_requests(router& rt, std::FILE* out) : rt_(rt), out_(out) {
}

void line_requests::answer(const std::string& text) {
  std::lock_guard<std::mutex> guard{out_mtx_};
  std::fputs(text.c_str(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

void line_requests::handle(const std::string& line, uint64_t seq) {
  pending_.fetch_add(1);
  auto fail = [&](const caf::error& err) {
    answer(error_json(seq, err).dump());
    pending_.fetch_sub(1);
  };
  if (line.size() > max_line)
    return fail(bad("request line longer than 1 MiB"));
  if (nests_deeper_than(line, max_document_depth))
    return fail(bad("the request nests deeper than " + std::to_string(max_document_depth) + " levels"));
  auto doc = json::parse(line, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return fail(bad("not a JSON object"));
  auto str = [&](const char* key) -> std::string {
    auto i = doc.find(key);
    return i != doc.end() && i->is_string() ? i->get<std::string>() : std::string{};
  };
  auto op = str("op");
  auto id = twin_id::parse(str("id"));
  if (!id)
    return fail(id.error());
  std::optional<uint64_t> if_version;
  if (auto i = doc.find("if_version"); i != doc.end()) {
    if (!i->is_number_unsigned())
      return fail(bad("\"if_version\" must be a non-negative integer"));
    if_version = i->get<uint64_t>();
  }
  auto on_version = [this, seq](caf::expected<uint64_t> v) {
    if (v)
      answer(json{{"seq", seq}, {"ok", true}, {"version", *v}}.dump());
    else
      answer(error_json(seq, v.error()).dump());
    pending_.fetch_sub(1);
  };
  if (op == "telemetry") {
    auto values = map_field(doc, "values");
    if (!values)
      return fail(values.error());
    ingest_request req;
    req.values = std::move(*values);
    if (auto ts = doc.find("ts"); ts != doc.end()) {
      auto t = ts_from_json(*ts);
      if (!t)
        return fail(t.error());
      req.ts_ms = *t;
    }
    req.source = "stdin";
    req.done = on_version;
    rt_.route(*id, std::move(req));
  } else if (op == "put") {
    put_request req;
    req.type = str("type");
    if (req.type.empty())
      return fail(bad("\"type\" is required"));
    if (auto p = str("parent"); !p.empty()) {
      auto parent = twin_id::parse(p);
      if (!parent)
        return fail(parent.error());
      req.parent = *parent;
    }
    auto state = state_fields(doc);
    if (!state)
      return fail(state.error());
    req.properties = std::move(state->properties);
    req.desired = std::move(state->desired);
    req.if_version = if_version;
    req.source = "stdin";
    req.done = [this, seq](caf::expected<put_result> r) {
      if (r)
        answer(json{{"seq", seq}, {"ok", true}, {"version", r->version}, {"created", r->created}}
                 .dump());
      else
        answer(error_json(seq, r.error()).dump());
      pending_.fetch_sub(1);
    };
    rt_.route(*id, std::move(req));
  } else if (op == "patch") {
    patch_request req;
    auto state = state_fields(doc);
    if (!state)
      return fail(state.error());
    req.properties = std::move(state->properties);
    req.desired = std::move(state->desired);
    req.if_version = if_version;
    req.source = "stdin";
    req.done = on_version;
    rt_.route(*id, std::move(req));
  } else if (op == "get") {
    rt_.route(*id, get_request{[this, seq](caf::expected<twin_record> r) {
                if (r)
                  answer(json{{"seq", seq}, {"ok", true}, {"twin", to_json(*r)}}.dump());
                else
                  answer(error_json(seq, r.error()).dump());
                pending_.fetch_sub(1);
              }});
  } else if (op == "delete") {
    rt_.route(*id, remove_request{if_version, on_version});
  } else {
    return fail(bad("\"op\" must be put, telemetry, patch, get or delete"));
  }
}

} // namespace twin::node
