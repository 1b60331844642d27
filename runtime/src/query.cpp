#include "twin/runtime/query.hpp"

#include <cstring>
#include <algorithm>
#include <deque>

#include "twin/runtime/errc.hpp"

namespace twin::runtime {

namespace {

constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The version byte of a cursor: a later layout can tell its own cursors from these.
constexpr char cursor_v1 = '1';

/// Ids in ascending order from one index key (or from every twin), read in chunks.
class id_source {
public:
  id_source(state_store& store, std::optional<index_kind> index, std::string key, twin_id after)
    : store_(store), index_(index), key_(std::move(key)), after_(std::move(after)) {}

  /// The smallest id not taken yet; nullptr when there is none. Sets `err` on a failure.
  const twin_id* front(caf::error& err) {
    if (buffer_.empty() && !exhausted_) {
      auto ids = index_ ? store_.list(*index_, key_, after_, chunk)
                        : store_.scan_ids(after_, chunk);
      if (!ids) {
        err = ids.error();
        return nullptr;
      }
      exhausted_ = ids->size() < chunk;
      if (!ids->empty())
        after_ = ids->back();
      buffer_.assign(std::make_move_iterator(ids->begin()), std::make_move_iterator(ids->end()));
    }
    return buffer_.empty() ? nullptr : &buffer_.front();
  }

  void pop() { buffer_.pop_front(); }

private:
  static constexpr size_t chunk = 256;
  state_store& store_;
  std::optional<index_kind> index_;
  std::string key_;
  twin_id after_;
  std::deque<twin_id> buffer_;
  bool exhausted_ = false;
};

/// Whether twins of `t` may have a relationship named `name` (empty: any).
bool declares(const twin_type& t, const std::string& name) {
  return name.empty() ? !t.relationships().empty() : t.relationship(name) != nullptr;
}

/// The sources of a query's candidates: one index key, the types of a kind or with the
/// relationship, or all.
std::vector<id_source> sources_of(state_store& store, const type_registry& types,
                                  const twin_query& q) {
  std::vector<id_source> out;
  if (q.parent)
    out.emplace_back(store, index_kind::by_parent, q.parent->str(), q.after);
  else if (!q.type.empty())
    out.emplace_back(store, index_kind::by_type, q.type, q.after);
  else if (q.kind) {
    for (const auto& name : types.names())
      if (auto t = types.find(name); t && t->kind() == *q.kind)
        out.emplace_back(store, index_kind::by_type, name, q.after);
  } else if (q.related) {  // no source at all if no type has such relationships
    for (const auto& name : types.names())
      if (auto t = types.find(name); t && declares(*t, q.related->name))
        out.emplace_back(store, index_kind::by_type, name, q.after);
  } else {
    out.emplace_back(store, std::nullopt, std::string{}, q.after);
  }
  return out;
}

} // namespace

bool own_field(std::string_view name) {
  return name == "id" || name == "namespace" || name == "type" || name == "kind"
         || name == "parent";
}

namespace {

bool matches(const twin_query& q, const twin_record& rec) {
  if (!q.type.empty() && rec.type != q.type)
    return false;
  if (q.kind && rec.kind != *q.kind)
    return false;
  if (q.parent && rec.parent != *q.parent)
    return false;
  if (q.related
      && std::none_of(rec.relationships.begin(), rec.relationships.end(),
                      [&r = *q.related](const relationship& x) {
                        return x.target == r.target && (r.name.empty() || x.name == r.name);
                      }))
    return false;
  if (q.alerting
      && std::none_of(rec.alerts.begin(), rec.alerts.end(),
                      [&](const alert_state& a) { return a.level >= *q.alerting; }))
    return false;
  if (!q.where)
    return true;
  value own;  // one of the twin's own fields, as the condition reads it
  return q.where->eval([&rec, &own](std::string_view name) -> const value* {
    if (auto it = rec.reported.find(name); it != rec.reported.end())
      return &it->second;
    if (name == "id")  // the twin's own fields (own_field)
      own = value{rec.id.str()};
    else if (name == "namespace")
      own = value{std::string{rec.id.ns()}};
    else if (name == "type")
      own = value{rec.type};
    else if (name == "kind")
      own = value{std::string{to_string(rec.kind)}};
    else if (name == "parent" && !rec.parent.empty())
      own = value{rec.parent.str()};
    else
      return nullptr;
    return &own;
  });
}

} // namespace

caf::expected<query_page> run_query(state_store& store, const type_registry& types,
                                    const twin_query& q) {
  if (q.limit == 0 || q.limit > twin_query::max_limit)
    return make_error(runtime_errc::invalid_argument,
                      "limit must be 1 to " + std::to_string(twin_query::max_limit));
  auto sources = sources_of(store, types, q);
  query_page page;
  caf::error err;
  twin_id last;
  for (size_t examined = 0; examined < twin_query::max_examined; ++examined) {
    // The next candidate is the smallest id of all sources (they hold disjoint sets).
    id_source* next = nullptr;
    for (auto& s : sources) {
      auto* id = s.front(err);
      if (err)
        return err;
      if (id != nullptr && (next == nullptr || *id < *next->front(err)))
        next = &s;
    }
    if (next == nullptr)
      return page;  // every source is exhausted: no cursor
    auto id = *next->front(err);
    next->pop();
    if (id == last)
      continue;  // in two sources: its type changed between two reads of the indexes
    last = std::move(id);
    if (q.accept && !q.accept(last))
      continue;
    if (!q.namespaces.empty()
        && !std::binary_search(q.namespaces.begin(), q.namespaces.end(), last.ns()))
      continue;
    if ((!q.ns.empty() && last.ns() != q.ns)
        || (!q.prefix.empty() && last.str().compare(0, q.prefix.size(), q.prefix) != 0))
      continue;
    auto bytes = store.get(last);
    if (!bytes)
      return bytes.error();
    if (!*bytes)
      continue;  // deleted since the index was read
    auto rec = decode_record(**bytes);
    if (!rec)
      return rec.error();
    if (!matches(q, *rec))
      continue;
    page.items.push_back(std::move(*rec));
    if (page.items.size() == q.limit)
      break;
  }
  page.cursor = encode_cursor(last);
  return page;
}

namespace {

constexpr std::string_view anomaly_suffix = "@anomaly";

bool is_anomaly_series(std::string_view name) {
  return name.size() >= anomaly_suffix.size()
         && name.substr(name.size() - anomaly_suffix.size()) == anomaly_suffix;
}

/// The records of one anomaly series, or of all (`@anomaly`) merged by time.
caf::expected<history_page> read_anomaly_series(state_store& store, const twin_type& type,
                                                const history_query& q) {
  if (q.step_ms > 0)
    return make_error(runtime_errc::invalid_argument, "anomalies are read without a step");
  std::vector<std::string> series;
  auto source = q.property.substr(0, q.property.size() - anomaly_suffix.size());
  for (const auto& a : type.anomalies())
    if (source.empty() || a.source == source)
      series.push_back(anomaly_series(a.source));
  if (series.empty())
    return make_error(runtime_errc::unknown_property,
                      source.empty() ? "type '" + type.name() + "' watches no property for anomalies"
                                     : "type '" + type.name() + "' does not watch '" + source
                                         + "' for anomalies");
  std::vector<history_point> all;
  for (const auto& name : series) {
    auto samples = store.history(q.id, name, q.from_ms, q.to_ms, q.limit + 1);
    if (!samples)
      return samples.error();
    for (auto& [ts, raw] : *samples) {
      auto v = decode_sample(raw);
      if (!v)
        return v.error();
      all.push_back({ts, std::move(*v)});
    }
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const history_point& a, const history_point& b) { return a.ts_ms < b.ts_ms; });
  history_page page;
  if (all.size() > q.limit) {
    // The next page starts at the first record left out. A time that straddles the cut
    // goes to the next page whole, or, if it fills the page, stays on it whole.
    auto cut = q.limit;
    auto t = all[cut].ts_ms;
    if (all[cut - 1].ts_ms == t) {
      auto back = cut;
      while (back > 0 && all[back - 1].ts_ms == t)
        --back;
      if (back > 0)
        cut = back;
      else
        while (cut < all.size() && all[cut].ts_ms == t)
          ++cut;
    }
    if (cut < all.size())
      page.next_from_ms = all[cut].ts_ms;
    all.resize(cut);
  }
  page.points = std::move(all);
  return page;
}

} // namespace

caf::expected<history_page> read_history(state_store& store, const type_registry& types,
                                         const history_query& q) {
  if (q.limit == 0 || q.limit > history_query::max_limit)
    return make_error(runtime_errc::invalid_argument,
                      "limit must be 1 to " + std::to_string(history_query::max_limit));
  auto bytes = store.get(q.id);
  if (!bytes)
    return bytes.error();
  if (!*bytes)
    return make_error(runtime_errc::not_found, "no twin " + q.id.str());
  auto rec = decode_record(**bytes);
  if (!rec)
    return rec.error();
  auto type = types.find(rec->type);
  if (type && is_anomaly_series(q.property))
    return read_anomaly_series(store, *type, q);
  const auto* spec = type ? type->property(q.property) : nullptr;
  if (spec == nullptr || !spec->history)
    return make_error(runtime_errc::unknown_property,
                      "type '" + rec->type + "' keeps no history of '" + q.property + "'");
  bool numeric = spec->type == property_type::real || spec->type == property_type::integer;
  if (q.step_ms > 0 && !numeric)
    return make_error(runtime_errc::type_mismatch,
                      "'" + q.property + "' is not a number: its history has no steps");
  history_page page;
  // Samples are read in chunks; a bucket is complete once a sample of a later step comes.
  constexpr size_t chunk = 4096;
  auto step_of = [&](int64_t ts) {
    auto b = ts / q.step_ms * q.step_ms;
    return b > ts ? b - q.step_ms : b;  // floor for times before the epoch
  };
  int64_t from = q.from_ms;
  size_t read = 0;
  while (from <= q.to_ms) {
    auto samples = store.history(q.id, q.property, from, q.to_ms, chunk);
    if (!samples)
      return samples.error();
    for (const auto& [ts, raw] : *samples) {
      if (++read > history_query::max_read) {
        // The page ends before the open bucket, which the next page reads whole; a bucket
        // of more samples than a page reads is split at this sample.
        if (page.buckets.size() > 1 && page.buckets.back().ts_ms == step_of(ts)) {
          page.next_from_ms = page.buckets.back().ts_ms;
          page.buckets.pop_back();
        } else {
          page.next_from_ms = ts;
        }
        return page;
      }
      auto v = decode_sample(raw);
      if (!v)
        return v.error();
      if (q.step_ms <= 0) {
        if (page.points.size() == q.limit) {
          page.next_from_ms = ts;
          return page;
        }
        page.points.push_back({ts, std::move(*v)});
        continue;
      }
      if (!v->is_number())
        continue;  // written while the property had another type
      auto start = step_of(ts);
      auto x = v->as_double();
      if (page.buckets.empty() || page.buckets.back().ts_ms != start) {
        if (page.buckets.size() == q.limit) {
          page.next_from_ms = start;
          return page;
        }
        page.buckets.push_back({start, x, x, 0, 0});
      }
      auto& b = page.buckets.back();
      b.min = std::min(b.min, x);
      b.max = std::max(b.max, x);
      b.avg += (x - b.avg) / static_cast<double>(++b.count);
    }
    if (samples->size() < chunk || samples->back().first == INT64_MAX)
      break;
    from = samples->back().first + 1;
  }
  return page;
}

std::string encode_cursor(const twin_id& id) {
  std::string in = cursor_v1 + id.str();
  std::string out;
  uint32_t bits = 0;
  int n = 0;
  for (unsigned char c : in) {
    bits = (bits << 8) | c;
    n += 8;
    while (n >= 6) {
      n -= 6;
      out += b64[(bits >> n) & 63];
    }
  }
  if (n > 0)
    out += b64[(bits << (6 - n)) & 63];
  return out;
}

caf::expected<twin_id> decode_cursor(std::string_view text) {
  auto fail = [] {
    return make_error(runtime_errc::invalid_argument,
                      "the cursor is not one that this API returned");
  };
  std::string raw;
  uint32_t bits = 0;
  int n = 0;
  for (char c : text) {
    const char* p = c == '\0' ? nullptr : std::strchr(b64, c);
    if (p == nullptr)
      return fail();
    bits = (bits << 6) | static_cast<uint32_t>(p - b64);
    n += 6;
    if (n >= 8) {
      n -= 8;
      raw += static_cast<char>((bits >> n) & 0xff);
    }
  }
  if (raw.size() < 2 || raw[0] != cursor_v1)
    return fail();
  auto id = twin_id::parse(std::string_view{raw}.substr(1));
  if (!id)
    return fail();
  return id;
}

} // namespace twin::runtime
