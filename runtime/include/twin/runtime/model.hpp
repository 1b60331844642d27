#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "twin/runtime/anomaly.hpp"
#include "twin/runtime/expression.hpp"
#include "twin/runtime/formula.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/schema.hpp"
#include "twin/runtime/value.hpp"

namespace twin::runtime {

class rul_model;

enum class property_type : uint8_t { boolean, integer, real, string, object, array };
const char* to_string(property_type x);
bool from_string(std::string_view text, property_type& out);

/// One property of a twin type.
struct property_spec {
  std::string name;
  property_type type = property_type::real;
  std::string unit;            ///< free text, e.g. "degC"; default: none
  std::optional<double> min;   ///< inclusive; default: unbounded
  std::optional<double> max;   ///< inclusive; default: unbounded
  bool writable = false;       ///< may be set as desired state; default: no
  bool computed = false;       ///< an aggregate or `health`: read-only for everyone
  bool history = false;        ///< its samples are kept in the twin's history; default: no
  /// Shown while the twin is active but not stored with its record (anomaly scores: the
  /// state they come from is in memory too); default: no
  bool transient = false;
  std::string description;
  /// What its values may be beyond `type`, when the model says more (an Enum's values, an
  /// Object's fields, a Map's or an Array's items, a date or a duration); nullptr: `type`.
  schema_ptr schema;
  std::string semantic_type;  ///< DTDL's, e.g. "Temperature"; default: none
  bool telemetry = false;     ///< declared as Telemetry (else a Property)
};

/// A relationship a twin of the type may have: to twins of `target` (any type when empty),
/// `max` of them at most (none: no limit).
struct relationship_spec {
  std::string name;
  std::string target;  ///< a type's name in the registry; empty: any
  std::optional<uint32_t> max;
  bool writable = true;
  std::string description;
  /// Its targets may be ids of no twin of the runtime: they are not checked (the model's
  /// `externalTargets`).
  bool external = false;
};

enum class aggregate_fn : uint8_t { sum, avg, min, max, count, any, all, worst };
const char* to_string(aggregate_fn x);
bool from_string(std::string_view text, aggregate_fn& out);

/// A property computed over the children: `name = fn(child.source)` over the children
/// (of `child_type` only, when set) that have `source`. `count` counts them; `worst`
/// takes the worst severity of a string property holding "ok" | "warning" | "critical".
struct aggregate_spec {
  std::string name;
  aggregate_fn fn = aggregate_fn::max;
  std::string source;
  std::string child_type;  ///< default: every child
};

/// A property computed from the twin's own properties whenever they change: `name =
/// formula`, over declared, aggregated and other derived properties (numbers and
/// booleans, true being 1). It has no value while an input it reads has none, or while the
/// result is not finite; it takes the time of its newest input.
struct derived_spec {
  std::string name;
  formula expr;
  std::vector<int> inputs;  ///< the positions in `properties()` of `expr.inputs()`
  int position = -1;        ///< its own position in `properties()`
};

/// Anomaly detection on a numeric property: each telemetry sample of `source` is scored by
/// an `anomaly_detector`; the score is the computed property `<source>_anomaly` (its history
/// kept), the alert `anomaly` (warning) is active while any of the twin's properties is
/// anomalous, and the start of each anomaly is recorded in the series `anomaly_series`.
struct anomaly_spec {
  std::string source;
  anomaly_options options;
  int source_position = -1;  ///< of `source` in `properties()`
  int score_position = -1;   ///< of `<source>_anomaly`
};

/// The name of the history series holding the anomalies of property `source`.
inline std::string anomaly_series(const std::string& source) { return source + "@anomaly"; }
/// The name of the alert of anomalies.
inline constexpr const char* anomaly_alert = "anomaly";

/// Where the trend of a numeric property meets a limit: each telemetry sample of `source`
/// updates its `trend_estimator`, and the twin shows `<source>_time_to_limit_s` (seconds
/// until the trend reaches `limit`, rising to it if `upper`, else falling to it; 0 once it
/// is there) with `<source>_time_to_limit_low_s` and `_high_s`, an interval from the
/// trend's uncertainty (no high: it may never get there). None of them has a value while
/// the trend does not approach the limit. Shown, not stored: they come from the samples
/// since the twin was activated.
struct limit_spec {
  std::string source;
  double limit = 0;
  bool upper = true;
  double half_life_s = 600;  ///< of the samples' weight in the trend
  int source_position = -1;
  int eta_position = -1;  ///< of `<source>_time_to_limit_s`; `_low_s` and `_high_s` follow
};

/// How a property evolves in time when the runtime simulates the twin (what-if scenarios,
/// simulated devices): with `lag_s` > 0, a first-order lag toward `expr` with that time
/// constant in seconds; otherwise `expr` is its rate of change per second. `expr` reads the
/// twin's properties, and its desired values as `desired.<name>`; while it is unknown (an
/// input it reads has no value), the property holds. `noise` is the standard deviation of
/// a random walk added per square root of a second, in simulated devices only. See
/// `step_dynamics`.
struct dynamics_spec {
  std::string property;
  formula expr;
  double lag_s = 0;
  double noise = 0;
  int position = -1;        ///< of `property` in `properties()`
  std::vector<int> inputs;  ///< per input of `expr`, its place in a dynamics state
};

/// An alert that is active while `condition` holds over the twin's reported properties.
struct alert_rule {
  std::string name;
  expression condition;
  severity level = severity::warning;
};

/// What a command does besides reaching the device: it sets `desired` on the twin, or,
/// with `child_type`, on each of the twin's children of that type ("*": every child).
struct command_effect {
  value_map desired;
  std::string child_type;  ///< empty: the twin itself
};

struct command_spec {
  std::string name;
  std::string description;
  std::vector<command_effect> effects;  ///< in the order they apply
};

/// What custom handlers may do to the twin they run on. Valid only during the call;
/// used on the twin's own actor, so handlers need no locking.
class twin_context {
public:
  virtual ~twin_context();
  virtual const twin_record& record() const = 0;
  /// Returns the reported value of `name`, nullptr if unset.
  virtual const value* get(std::string_view name) const = 0;
  /// Sets a reported property (validated like telemetry, source "handler").
  virtual caf::error set(std::string_view name, value v) = 0;
  /// Sets a desired property (validated like an API write).
  virtual caf::error set_desired(std::string_view name, value v) = 0;
  /// Calls the type's timer handler once after `delay`.
  virtual void start_timer(std::chrono::milliseconds delay) = 0;
};

/// Custom code of a type. Handlers run on the twin's actor, between the steps of a request,
/// and must not throw: a command handler reports failure through its result, the others
/// leave the state unchanged when they cannot act.
struct type_handlers {
  /// After telemetry was applied; `values` are the accepted ones.
  std::function<void(twin_context&, const value_map& values)> on_telemetry;
  /// A command to the twin; the result is the command's answer.
  std::function<caf::expected<value>(twin_context&, const std::string& name, const value& args)>
    on_command;
  /// After a child's state changed (before the aggregates are recomputed).
  std::function<void(twin_context&, const child_state& child)> on_child_change;
  /// When a timer started with `twin_context::start_timer` fires.
  std::function<void(twin_context&)> on_timer;
};

/// A twin type: immutable once built but for its RUL model (set at run time, atomically),
/// shared by all twins of the type (any thread).
class twin_type {
public:
  /// The type's name: how twins, queries and the API name it (see `type_registry`).
  const std::string& name() const { return name_; }
  /// The model's DTMI with its version ("dtmi:factory:motor;1"); empty for a type made in
  /// C++ without one.
  const std::string& dtmi() const { return dtmi_; }
  /// The DTMIs of the interfaces it extends, nearest first (each once).
  const std::vector<std::string>& extends() const { return extends_; }
  const std::string& display_name() const { return display_name_; }
  twin_kind kind() const { return kind_; }
  /// Whether it only stands in for a type no model of the node defines, for the twins
  /// that have it (see `type_registry::stand_in`): it declares nothing.
  bool stand_in() const { return stand_in_; }
  const std::string& description() const { return description_; }
  /// Declared properties plus the computed ones (aggregates and `health`).
  const std::vector<property_spec>& properties() const { return properties_; }
  const std::vector<aggregate_spec>& aggregates() const { return aggregates_; }
  /// In an order where each comes after the derived properties it reads.
  const std::vector<derived_spec>& derived() const { return derived_; }
  const std::vector<alert_rule>& alerts() const { return alerts_; }
  const std::vector<command_spec>& commands() const { return commands_; }
  const std::vector<anomaly_spec>& anomalies() const { return anomalies_; }
  /// In the order they were declared.
  const std::vector<dynamics_spec>& dynamics() const { return dynamics_; }
  const std::vector<limit_spec>& limits() const { return limits_; }
  const std::vector<relationship_spec>& relationships() const { return relationships_; }
  /// The relationship `name`, nullptr if the type declares none of that name.
  const relationship_spec* relationship(std::string_view name) const;
  const type_handlers& handlers() const { return handlers_; }

  /// Whether the type's twins show a remaining useful life learned from the fleet: the
  /// computed `rul_s`, `rul_low_s` and `rul_high_s`, from position `rul_position()` on,
  /// once a model is installed (`set_rul`). Shown, not stored.
  bool learns_rul() const { return rul_position_ >= 0; }
  int rul_position() const { return rul_position_; }
  /// The type's RUL model, nullptr if none. Any thread.
  std::shared_ptr<const rul_model> rul() const { return std::atomic_load(&rul_.model); }
  /// How many times a model was installed or removed: a twin that holds the model of this
  /// generation need not read `rul()` again (which costs a lock). Any thread.
  uint64_t rul_generation() const { return rul_.generation.load(std::memory_order_acquire); }
  /// Installs `model` (nullptr: removes the model), for the samples that follow. Any
  /// thread.
  void set_rul(std::shared_ptr<const rul_model> model) const {
    std::atomic_store(&rul_.model, std::move(model));
    rul_.generation.fetch_add(1, std::memory_order_acq_rel);
  }

  /// Returns the property `name`, nullptr if the type has none.
  const property_spec* property(std::string_view name) const;
  /// Returns the position of property `name` in `properties()`, -1 if the type has none.
  int index_of(std::string_view name) const;
  /// Returns the command `name`, nullptr if the type has none.
  const command_spec* command(std::string_view name) const;
  bool has_command(std::string_view name) const;
  /// The positions in `properties()` of the properties whose history is kept with each
  /// change (anomaly scores, which have a history too, write theirs as they change).
  const std::vector<int>& history_properties() const { return history_; }

  /// Checks values written as reported state (telemetry, API): every name is a declared,
  /// non-computed property and every value has its type and lies in its range. Null
  /// deletes. Returns the first problem (`unknown_property`, `read_only`,
  /// `type_mismatch`, `out_of_range`).
  caf::error check_reported(const value_map& values) const;
  /// The same for desired state; additionally every property must be writable.
  caf::error check_desired(const value_map& values) const;
  /// Checks a twin's relationships: each name is one the type declares (`unknown_property`
  /// naming the nearest), no name has more targets than its `max` (`out_of_range`), and no
  /// relationship is given twice (`invalid_argument`). Their targets are checked apart.
  caf::error check_relationships(const std::vector<runtime::relationship>& rels) const;
  /// Checks one value against its spec (shared by both checks and handlers).
  caf::error check_value(const property_spec& spec, const value& v) const;

private:
  friend class type_builder;
  std::string name_;
  std::string dtmi_;
  std::vector<std::string> extends_;
  std::string display_name_;
  twin_kind kind_ = twin_kind::component;
  std::string description_;
  std::vector<relationship_spec> relationships_;
  std::vector<property_spec> properties_;
  std::vector<aggregate_spec> aggregates_;
  std::vector<derived_spec> derived_;
  std::vector<alert_rule> alerts_;
  std::vector<command_spec> commands_;
  std::vector<anomaly_spec> anomalies_;
  std::vector<dynamics_spec> dynamics_;
  std::vector<limit_spec> limits_;
  std::vector<int> history_;
  type_handlers handlers_;
  int rul_position_ = -1;
  bool stand_in_ = false;
  /// The type's RUL model, read and set atomically, and its generation.
  struct rul_slot {
    std::shared_ptr<const rul_model> model;
    std::atomic<uint64_t> generation{0};

    rul_slot() = default;
    rul_slot(const rul_slot& other)
      : model(std::atomic_load(&other.model)), generation(other.generation.load()) {}
    rul_slot& operator=(const rul_slot& other) {
      std::atomic_store(&model, std::atomic_load(&other.model));
      generation.store(other.generation.load());
      return *this;
    }
  };
  mutable rul_slot rul_;
};

using type_ptr = std::shared_ptr<const twin_type>;

/// Builds a twin type in C++ code:
///
///     type_builder b{"motor", twin_kind::component};
///     b.property("temperature", property_type::real).unit("degC").range(-50, 250);
///     b.property("rpm", property_type::real).range(0, 6000).writable();
///     b.command("stop");
///     b.alert("overheat", "temperature > 90", severity::critical);
///     auto motor = b.build();
///
/// `unit`, `range`, `writable` and `describe` apply to the last property added.
/// Not thread-safe; build once at start-up.
class type_builder {
public:
  type_builder(std::string name, twin_kind kind);

  type_builder& description(std::string text);
  /// The model's DTMI with its version, and those of the interfaces it extends.
  type_builder& dtmi(std::string id, std::vector<std::string> extends = {});
  type_builder& display_name(std::string text);
  /// The type stands in for one no model defines (see `type_registry::stand_in`).
  type_builder& stand_in();
  type_builder& property(std::string name, property_type type);
  /// What the last property's values may be beyond its type (see `property_spec::schema`).
  type_builder& schema(schema_ptr s);
  type_builder& semantic_type(std::string name);
  /// The last property is Telemetry.
  type_builder& telemetry();
  type_builder& unit(std::string unit);
  type_builder& range(std::optional<double> min, std::optional<double> max);
  type_builder& writable(bool yes = true);
  type_builder& describe(std::string text);
  type_builder& command(std::string name, std::string description = {});
  /// Command `command` sets `desired` on the twin, or with `child_type` on each of its
  /// children of that type ("*": every child). Checked by `build`: the command exists, and
  /// the twin's own desired values are writable properties of the type.
  type_builder& command_effect(std::string command, value_map desired,
                               std::string child_type = {});
  type_builder& aggregate(std::string name, aggregate_fn fn, std::string source,
                          std::string child_type = {});
  /// A derived property, `name = formula` (parsed by `build`), with an optional unit.
  type_builder& derive(std::string name, std::string formula, std::string unit = {});
  /// `condition` is parsed by `build`.
  type_builder& alert(std::string name, std::string condition, severity level);
  type_builder& handlers(type_handlers h);
  /// A relationship the twins may have; checked by `build` (a valid, new name).
  type_builder& relationship(relationship_spec r);
  /// Keeps the history of property `name` (declared or an aggregate; not an object).
  type_builder& keep_history(std::string name);
  /// Scores every sample of the declared numeric property `source` for anomalies (see
  /// `anomaly_spec`); checked by `build`.
  type_builder& detect_anomalies(std::string source, anomaly_options options = {});
  /// How the declared number `property` evolves in simulation (see `dynamics_spec`):
  /// `lag_s` > 0, a lag toward `expr`; 0, `expr` is its rate per second. Checked by `build`.
  type_builder& dynamics(std::string property, std::string expr, double lag_s = 0,
                         double noise = 0);
  /// Projects when the declared number `source` reaches `limit` (see `limit_spec`).
  type_builder& time_to_limit(std::string source, double limit, bool upper,
                              double half_life_s = 600);
  /// The same, the limit taken from `from`: "max" or "min" (the property's range), or the
  /// name of an alert whose condition is `source > x` (or >=, <, <=).
  type_builder& time_to_limit(std::string source, std::string from, double half_life_s = 600);
  /// The type's twins show a remaining useful life learned from the fleet (see
  /// `twin_type::learns_rul`).
  type_builder& learn_rul();

  /// Checks the definition (valid names, no duplicates, conditions and formulas parse
  /// and read known properties, derived properties do not read each other in a circle,
  /// ranges ordered) and returns the type, or `invalid_model`.
  caf::expected<type_ptr> build();

private:
  /// Checks the commands' effects and gives them to their commands.
  caf::error add_command_effects();
  /// Adds the derived properties' specs (after the declared ones and the aggregates).
  caf::error add_derived_properties();
  /// Resolves the derived properties' inputs, once every property is known, and orders
  /// them so that each comes after those it reads.
  caf::error resolve_derived();
  /// Checks the anomaly detections and adds their score properties.
  caf::error add_anomaly_scores();
  /// Parses and checks the dynamics, once every property is known.
  caf::error resolve_dynamics();
  /// Resolves the limits and adds the properties of their projections.
  caf::error add_limit_projections();
  /// Adds the properties of the remaining useful life, if the type learns it.
  caf::error add_rul_properties();

  /// The property `what` applies to; nullptr (and an error for `build`) if none yet.
  property_spec* last_property(const char* what);

  twin_type type_;
  std::vector<std::pair<std::string, std::string>> alert_texts_;
  struct derived_text {
    std::string name, formula, unit;
  };
  std::vector<derived_text> derived_texts_;
  std::vector<severity> alert_levels_;
  std::vector<std::string> history_names_;
  std::vector<std::pair<std::string, runtime::command_effect>> effects_;
  struct dynamics_text {
    std::string property, expr;
    double lag_s, noise;
  };
  std::vector<dynamics_text> dynamics_texts_;
  struct limit_text {
    std::string source, from;  ///< `from` empty: `limit` and `upper` as given
    double limit;
    bool upper;
    double half_life_s;
  };
  std::vector<limit_text> limit_texts_;
  bool learns_rul_ = false;
  caf::error error_;
};

/// The known twin types of a node. A type is found by its name, by its DTMI (with or
/// without the version), or by the last segment of its DTMI when only one type has it.
/// Thread-safe: types are added and upgraded while twins and queries read them.
class type_registry {
public:
  type_registry() = default;
  /// Takes `other`'s types (while nothing else uses `other`).
  type_registry(type_registry&& other) noexcept;

  /// Adds `type`; returns `invalid_model` if a type of that name or DTMI exists.
  caf::error add(type_ptr type);
  /// Upgrades the type of `type`'s name to `type`: a model of the same DTMI with a higher
  /// version (or, for a type made in C++, none), of the same kind. `invalid_model` saying
  /// why otherwise. The type it replaces stays valid as long as the registry (twins may
  /// still hold it): each twin takes the new one at its next message (`generation`).
  caf::error replace(type_ptr type);
  /// Whether `replace(type)` would take it: `invalid_model` saying why not.
  caf::error can_replace(const twin_type& type) const;
  /// Returns the type, nullptr if there is none.
  type_ptr find(std::string_view name) const;
  /// The stand-in of type `name`, which no model defines, for the twins that have it (one
  /// per name, valid as long as the registry).
  const twin_type& stand_in(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Every type, by name.
  std::vector<type_ptr> types() const;
  size_t size() const;
  /// Rises with each type added or upgraded.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  /// Checks that what the types name of other types (the child types of aggregates and
  /// command effects, the targets of relationships) are types here, by their names.
  caf::error check_links() const;
  /// Keeps the model document `text` that types here came from (named `origin`: the
  /// document of the same origin before it goes), for models loaded later to extend.
  void add_source(std::string origin, std::string text);
  /// The documents kept, by origin.
  std::vector<std::pair<std::string, std::string>> sources() const;

private:
  type_ptr find_locked(std::string_view name) const;
  caf::error check_replace_locked(const twin_type& type) const;
  void index_locked(const type_ptr& type);

  mutable std::shared_mutex mu_;
  std::atomic<uint64_t> generation_{0};
  std::vector<type_ptr> replaced_;  ///< kept: twins may still hold them
  mutable std::map<std::string, type_ptr, std::less<>> stand_ins_;
  std::map<std::string, std::string> sources_;  ///< model documents, by origin
  std::map<std::string, type_ptr, std::less<>> types_;
  std::map<std::string, type_ptr, std::less<>> by_dtmi_;  ///< without the version
  std::map<std::string, std::vector<type_ptr>, std::less<>> by_short_name_;
};

/// Parses the text of a model file (one Interface); `origin` names it in error messages.
/// The types it names (child types, relationship targets) are not checked: see
/// `type_registry::check_links`.
caf::expected<type_ptr> parse_model(std::string_view text, const std::string& origin);

/// The types of model documents (each `{origin, text}`: one Interface or an array of them),
/// which may extend one another and name one another and the types of `known`, and extend
/// the interfaces of `known`'s sources (which are not built again). Each
/// type's name is its "twin" extension's "name", else the last segment of its DTMI, unless
/// another model or a known type has that name: then its DTMI without the version.
caf::expected<std::vector<type_ptr>>
parse_models(const std::vector<std::pair<std::string, std::string>>& texts,
             const type_registry& known);

/// The builder of a model file's type, not built yet: C++ code may add to what the file
/// declares (properties, handlers) before `build`, which checks the whole.
caf::expected<type_builder> model_builder(std::string_view text, const std::string& origin);

/// Reads one model file (JSON, a DTDL v2 or v3 Interface with a "twin" extension for kind,
/// aggregates, derived properties, command effects, alerts, anomaly detection and history;
/// see docs/models.md). Returns `invalid_model` with the file and the reason on error.
caf::expected<type_ptr> load_model_file(const std::string& path);

/// Reads every *.json file under the directory `path` (sub-directories too), or the one
/// model file `path`, into `registry` (see `parse_models`). Returns the number of types
/// loaded, or the first error, which names the file, the element and the reason.
caf::expected<size_t> load_models(const std::string& path, type_registry& registry);

} // namespace twin::runtime
