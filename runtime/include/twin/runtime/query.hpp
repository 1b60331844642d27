#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/expression.hpp"
#include "twin/runtime/model.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/state_store.hpp"

namespace twin::runtime {

/// A query over the stored twins. The filters combine with "and". Candidates come from a
/// secondary index: the parent's children if `parent` is set, else the twins of `type`,
/// else the twins of every type of `kind`, else (with `related`) the twins of every type
/// that declares the relationship; only a query without any of these scans every twin.
/// `where` is then evaluated on each candidate's properties.
struct twin_query {
  /// A relationship to one twin: named `name` (empty: any name) to `target`.
  struct relation {
    std::string name;
    twin_id target;
  };

  std::string type;                ///< a type's name; empty: any
  std::optional<twin_kind> kind;
  std::optional<twin_id> parent;
  std::string ns;                  ///< only twins of this namespace; empty: any
  std::string prefix;              ///< only twins whose id starts so; empty: any
  /// Only twins with an active alert of at least this severity; none: any twin.
  std::optional<severity> alerting;
  /// Only twins with this relationship: the twins that point at a twin.
  std::optional<relation> related;
  /// Over the twin's properties and its own fields: `id`, `namespace`, `type`, `kind` and
  /// `parent` (strings), which a property of the same name hides.
  std::optional<expression> where;
  size_t limit = 100;              ///< items per page, 1 to `max_limit`
  twin_id after;                   ///< continue after this id (from a cursor); empty: start
  /// The namespaces whose twins it may return, sorted (those a token sees); empty: any.
  std::vector<std::string> namespaces;
  /// Candidates it rejects are skipped before they are read (a cluster member: those of
  /// the shards it does not serve). None: every candidate.
  std::function<bool(const twin_id&)> accept;

  static constexpr size_t max_limit = 1000;
  /// Candidates read per page at most: a selective `where` returns a short page (with a
  /// cursor to go on) rather than read the whole store in one request.
  static constexpr size_t max_examined = 10000;
};

/// Whether a condition of a query reads `name` as one of the twin's own fields (`id`,
/// `namespace`, `type`, `kind`, `parent`) when the twin has no property of that name.
bool own_field(std::string_view name);

/// One page of a query's answer, in ascending id order.
struct query_page {
  std::vector<twin_record> items;
  /// The cursor of the next page; empty when the query has no more twins.
  std::string cursor;
};

/// Runs `q` on the durable state of `store` (every acknowledged change). Blocks on the
/// store: call it from a thread that may block. `store_failure` or `store_corrupt` on
/// errors of the store.
caf::expected<query_page> run_query(state_store& store, const type_registry& types,
                                    const twin_query& q);

/// A range of one property's history: the samples with `from` <= time <= `to`, or with
/// `step`, their numbers downsampled to one bucket per `step` milliseconds (aligned to
/// multiples of `step` since the epoch).
struct history_query {
  twin_id id;
  std::string property;
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;
  int64_t step_ms = 0;  ///< 0: every sample
  size_t limit = 1000;  ///< samples or buckets per page, 1 to `max_limit`

  static constexpr size_t max_limit = 10000;
  /// Samples read per page at most: a page of few wide buckets may end early (with
  /// `next_from_ms`), rather than read a long series in one request.
  static constexpr size_t max_read = 200000;
};

struct history_point {
  int64_t ts_ms = 0;
  value v;
};

/// The samples of one step.
struct history_bucket {
  int64_t ts_ms = 0;  ///< where the step starts
  double min = 0;
  double max = 0;
  double avg = 0;
  uint64_t count = 0;
};

/// One page of history, by ascending time: `points` without a step, `buckets` with one.
struct history_page {
  std::vector<history_point> points;
  std::vector<history_bucket> buckets;
  /// Where the next page starts (its `from_ms`); nullopt when the range is done.
  std::optional<int64_t> next_from_ms;
};

/// Reads `q` from `store`. `not_found` if the twin does not exist, `unknown_property` if
/// its type keeps no history of the property, `type_mismatch` for a step over a property
/// that is not a number. Blocks on the store.
caf::expected<history_page> read_history(state_store& store, const type_registry& types,
                                         const history_query& q);

/// The opaque cursor that continues after `id`, and back; `invalid_argument` if `text`
/// is no cursor of this API.
std::string encode_cursor(const twin_id& id);
caf::expected<twin_id> decode_cursor(std::string_view text);

} // namespace twin::runtime
