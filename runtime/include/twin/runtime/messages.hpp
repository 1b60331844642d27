#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "twin/runtime/record.hpp"
#include "twin/runtime/twin_id.hpp"
#include "twin/runtime/value.hpp"

namespace twin::runtime {

/// Requests that a router delivers to one twin. Each request that has a `done` callback
/// gets exactly one call: after the change is durable (on the store writer's thread), or
/// with the error that rejected it (on the twin's thread; a rejected request changes
/// nothing). Callbacks run on runtime threads: they must be quick and must not block;
/// hand work to another thread or actor.

/// The answer to a change: the twin's version after it.
using version_fn = std::function<void(caf::expected<uint64_t>)>;

/// Device telemetry: reported values at `ts_ms` (0: now). Values older than the stored
/// value of a property are skipped (last writer wins by timestamp). A `ts_ms` further
/// ahead of the node's clock than `host_options::max_clock_skew` is refused
/// (`runtime_errc::future_timestamp`). API writes (put, patch) are ordered by version:
/// they apply whatever timestamps a property holds.
struct ingest_request {
  value_map values;
  int64_t ts_ms = 0;
  std::string source = "telemetry";
  version_fn done;
  /// When the runtime took the request (set by the host's `route`); the update latency
  /// is measured from it.
  std::chrono::steady_clock::time_point received{};
};

/// Create or replace. Replacing keeps children and creation time; `created` in the
/// answer tells which happened.
struct put_result {
  uint64_t version = 0;
  bool created = false;
};
struct put_request {
  std::string type;
  twin_id parent;  ///< empty: none
  value_map properties;
  value_map desired;
  std::vector<relationship> relationships;
  std::optional<uint64_t> if_version;  ///< compare-and-set; 0 means "must not exist"
  std::string source = "api";
  std::function<void(caf::expected<put_result>)> done;
  std::chrono::steady_clock::time_point received{};  ///< as in ingest_request
};

/// JSON merge patch of reported and desired properties (null deletes).
struct patch_request {
  value_map properties;
  value_map desired;
  /// Set: the twin's new parent, which must accept it as a put's parent does; an empty id:
  /// no parent (the twin becomes a root). Not set: the parent stays.
  std::optional<twin_id> parent;
  /// Set: all of the twin's relationships from now on (a merge patch replaces a list).
  std::optional<std::vector<relationship>> relationships;
  std::optional<uint64_t> if_version;
  std::string source = "api";
  version_fn done;
  std::chrono::steady_clock::time_point received{};  ///< as in ingest_request
};

/// Reads the twin as its actor holds it: every acknowledged change, and possibly a
/// change whose write is still under way. `not_found` if it does not exist.
struct get_request {
  std::function<void(caf::expected<twin_record>)> done;
};

/// Deletes the twin; its children are detached (they become roots), not deleted, unless
/// `refuse_with_children` refuses (`conflict`) while it has any.
struct remove_request {
  std::optional<uint64_t> if_version;
  version_fn done;
  std::chrono::steady_clock::time_point received{};  ///< as in ingest_request
  bool refuse_with_children = false;
};

/// A command to the device behind the twin (and the type's command handler).
struct command_request {
  std::string name;
  value args;
  std::function<void(caf::expected<value>)> done;
};

// -- between twins (sent by the runtime itself) --------------------------------

/// A child tells its parent its current state (an upsert into the parent's children).
struct child_update {
  child_state state;
  twin_kind kind = twin_kind::component;
};

/// A child asks to be linked under this twin; fails if the kinds do not allow it.
struct attach_request {
  child_state state;
  twin_kind kind = twin_kind::component;
  std::function<void(caf::error)> done;
};

/// A child leaves this twin (deleted or moved to another parent).
struct detach_notice {
  twin_id child;
};

/// The parent of this twin was deleted: clear the parent link.
struct orphan_notice {
  twin_id parent;
};

/// A parent asks a twin that its record lists as a child for its state (when the parent
/// activates, so that it catches up with changes a crash kept from reaching it). The twin
/// answers with a `child_update` if it is still the parent's child, else with a
/// `detach_notice`.
struct child_query {
  twin_id parent;
};

/// Asks whether `candidate` is this twin or one of its ancestors; walks up the parent
/// chain while the kinds allow it (only twins of the same kind can form a cycle).
struct ancestor_query {
  twin_id candidate;
  twin_kind kind = twin_kind::component;
  std::function<void(bool)> done;
};

using twin_request = std::variant<ingest_request, put_request, patch_request, get_request,
                                  remove_request, command_request, child_update,
                                  attach_request, detach_notice, orphan_notice, ancestor_query,
                                  child_query>;

/// Answers `req` with `err` without delivering it (used when a twin cannot be reached).
void fail_request(twin_request& req, const caf::error& err);

} // namespace twin::runtime
