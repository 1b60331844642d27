#pragma once

// The record of an active twin, as its actor keeps it. Internal to the runtime.

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "twin/runtime/model.hpp"
#include "twin/runtime/record.hpp"

namespace twin::runtime {

/// Returns a stable pointer to an equal string in a process-wide table. For metadata
/// sources, which are a small set ("telemetry", "api", "handler", "computed", ...).
const std::string* intern_source(std::string_view source);

/// A twin's record in its actor: what `twin_record` holds, in less memory. Each
/// property of the twin's type has a slot that holds the reported value with its
/// metadata; what most twins do not have (children, relationships, desired state,
/// alerts, stored properties that the type no longer declares) sits behind one pointer,
/// allocated while in use. A twin with four numeric properties takes about 300 bytes
/// here, and 1.4 KB as a `twin_record`.
class live_record {
public:
  /// A reported property; a null value means "not set".
  struct property {
    value v;
    int64_t updated_ms = 0;
    const std::string* source = nullptr;  ///< interned; nullptr: no metadata
  };

  live_record() = default;
  /// A record of type `type` (which outlives it), taking over a stored record.
  live_record(twin_record&& rec, const twin_type& type);

  live_record(const live_record& other);
  live_record& operator=(const live_record& other);
  live_record(live_record&&) noexcept = default;
  live_record& operator=(live_record&&) noexcept = default;

  twin_id id;
  twin_id parent;  ///< empty: none
  twin_kind kind = twin_kind::component;
  uint64_t version = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;

  /// The twin's type; nullptr until it has one.
  const twin_type* type() const { return type_; }
  /// Sets the type of a record that has none yet (no-op if it is the same type).
  void set_type(const twin_type& type);

  /// Returns the reported property `name`, nullptr if it is not set.
  const property* find(std::string_view name) const;
  /// Returns the slot of `name`, set or not, nullptr if the type does not declare it.
  property* declared(std::string_view name) const;
  /// Returns the reported property at position `i` of the type's properties, nullptr if
  /// it is not set.
  const property* at(size_t i) const { return slots_[i].v.is_null() ? nullptr : &slots_[i]; }
  /// The slot of the property at position `i` of the type's properties, set or not.
  property& slot(size_t i) { return slots_[i]; }
  /// Returns the reported value of `name`, nullptr if it is not set.
  const value* get(std::string_view name) const {
    auto* p = find(name);
    return p == nullptr ? nullptr : &p->v;
  }
  /// Sets a reported property (a null value erases it).
  void set(std::string_view name, value v, int64_t updated_ms, const std::string* source);
  /// Erases a reported property; returns whether it was set.
  bool erase(std::string_view name);
  /// Erases every reported property that is not computed.
  void erase_uncomputed();
  /// Calls `f(name, property)` for each reported property that is set.
  template <class F>
  void for_each(F&& f) const;

  const value_map& desired() const { return rare_ ? rare_->desired : empty().desired; }
  const std::vector<child_state>& children() const {
    return rare_ ? rare_->children : empty().children;
  }
  const std::vector<relationship>& relationships() const {
    return rare_ ? rare_->relationships : empty().relationships;
  }
  const std::vector<alert_state>& alerts() const { return rare_ ? rare_->alerts : empty().alerts; }

  /// Mutable access; allocates the rare part. Call `trim` when done.
  value_map& mutable_desired() { return rare().desired; }
  std::vector<child_state>& mutable_children() { return rare().children; }
  std::vector<relationship>& mutable_relationships() { return rare().relationships; }
  std::vector<alert_state>& mutable_alerts() { return rare().alerts; }
  /// Frees the rare part if it holds nothing.
  void trim();

  /// The desired keys whose reported value differs (or is missing).
  value_map delta() const;

  /// The record as a `twin_record` (a copy).
  twin_record to_record() const;
  /// Encodes the record: `decode_record` of it equals `to_record()` without the transient
  /// properties (the bytes may differ from `encode(to_record())` in the order of reported
  /// properties and sources).
  std::string encode() const;

private:
  struct rare_part {
    value_map desired;
    std::vector<child_state> children;
    std::vector<relationship> relationships;
    std::vector<alert_state> alerts;
    /// Stored properties that the type does not declare (any more).
    std::map<std::string, property, std::less<>> undeclared;

    bool empty() const {
      return desired.empty() && children.empty() && relationships.empty() && alerts.empty()
             && undeclared.empty();
    }
  };

  static const rare_part& empty();
  rare_part& rare() {
    if (!rare_)
      rare_ = std::make_unique<rare_part>();
    return *rare_;
  }

  const twin_type* type_ = nullptr;
  std::unique_ptr<property[]> slots_;  ///< one per property of the type
  std::unique_ptr<rare_part> rare_;
};

template <class F>
void live_record::for_each(F&& f) const {
  if (type_ != nullptr) {
    const auto& specs = type_->properties();
    for (size_t i = 0; i < specs.size(); ++i)
      if (!slots_[i].v.is_null())
        f(specs[i].name, slots_[i]);
  }
  if (rare_)
    for (const auto& [name, p] : rare_->undeclared)
      f(name, p);
}

} // namespace twin::runtime
