#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "twin/runtime/twin_id.hpp"
#include "twin/runtime/value.hpp"

namespace twin::runtime {

/// One durable change of a twin, or a command sent to its device.
struct change_event {
  enum class kind_t : uint8_t { changed, deleted, command };
  kind_t kind = kind_t::changed;
  twin_id id;
  std::string type;
  uint64_t version = 0;  ///< the twin's version after the change
  int64_t ts_ms = 0;     ///< when it became durable
  value_map properties;  ///< changed: the reported and computed properties after it
  value_map desired;     ///< changed: the desired properties after it
  std::string command;   ///< command: its name
  value args;            ///< command: its arguments
};

const char* to_string(change_event::kind_t x);

/// About the bytes of `ev` as JSON text.
size_t approximate_size(const change_event& ev);

/// Which events a subscriber wants; every field set must match (empty: any).
struct event_filter {
  std::string ns;      ///< the id's namespace
  std::string type;
  std::string prefix;  ///< of the whole id, "namespace:name"
  /// The prefix ends where a segment of the id does: the id is the prefix, or goes on with
  /// a character that is not a letter or a digit (`factory:line-1` takes `factory:line-1`
  /// and `factory:line-1-robot-2`, not `factory:line-10`).
  bool segment = false;
  std::string id;      ///< the twin's id, exactly

  bool matches(const twin_id& id, std::string_view type) const;

  bool operator==(const event_filter& o) const {
    return ns == o.ns && type == o.type && prefix == o.prefix && segment == o.segment
           && id == o.id;
  }
  bool operator<(const event_filter& o) const {
    return std::tie(ns, type, prefix, segment, id)
           < std::tie(o.ns, o.type, o.prefix, o.segment, o.id);
  }
};

/// The stream of twin changes that a node publishes, to any number of subscribers.
///
/// Events of one twin are published in version order (by the store writer, once the
/// change is durable). Each subscriber has a queue bounded in events and in bytes (as
/// their JSON text would take, about): publishing never waits for a subscriber, and one
/// that falls further behind is marked lagged and gets no more events (its consumer
/// resynchronises from the API and subscribes again). Thread-safe.
///
/// Each event published here gets a number, one more than the last; with `retain`, the
/// feed keeps the last events, and a subscriber that names the last one it had (`event_id`)
/// gets those after it first. The numbers are of this feed's life: its events' ids carry
/// the feed's incarnation, a random text, so that another feed's (another node's, or this
/// node's before a restart) are not taken for its own.
class change_feed {
public:
  using event_ptr = std::shared_ptr<const change_event>;

  /// An event with its number in this feed.
  struct numbered {
    uint64_t seq = 0;
    event_ptr ev;
  };

  change_feed();

  class subscription {
  public:
    /// Events that any of `filters` admits, at most `capacity` events and `max_bytes`
    /// of them queued.
    subscription(std::vector<event_filter> filters, size_t capacity, size_t max_bytes);

    /// Takes every queued event, in order.
    std::vector<event_ptr> take();
    /// The same, with their numbers.
    std::vector<numbered> take_numbered();
    /// Whether it was asked to resume after an event the feed no longer has (or never
    /// had): events may be missing before its first.
    bool reset() const { return reset_; }
    /// The id of its feed's event `seq` (see `change_feed::event_id`).
    std::string event_id(uint64_t seq) const { return incarnation_ + "." + std::to_string(seq); }
    /// Whether events were dropped because the queue was full.
    bool lagged() const;
    /// Called, on a publishing thread, when the queue stops being empty or the
    /// subscription lags; must be quick. Replaces the previous callback.
    void on_ready(std::function<void()> fn);
    /// From now on, events that any of `filters` admits.
    void set_filters(std::vector<event_filter> filters);
    /// Marks it lagged: it gets no more events.
    void lag();

  private:
    friend class change_feed;
    /// Queues `ev` (of about `bytes`) if the filter admits it; returns the callback to
    /// call (outside locks).
    std::function<void()> offer(const numbered& ev, size_t bytes);
    bool admits(const twin_id& id, std::string_view type) const;

    /// Queues `ev` with `mtx_` held; false if it lags instead.
    bool queue(const numbered& ev, size_t bytes);

    std::vector<event_filter> filters_;  ///< guarded by `mtx_`
    const size_t capacity_;
    const size_t max_bytes_;
    mutable std::mutex mtx_;
    std::vector<numbered> queue_;
    bool reset_ = false;
    std::string incarnation_;  ///< of its feed
    size_t queued_bytes_ = 0;
    bool lagged_ = false;
    bool notified_ = false;  ///< the callback ran since the last `take`
    std::function<void()> ready_;
  };

  /// A new subscriber; it gets the events published after this call, until it is
  /// destroyed (a change committed just before may be durable after it and still missed).
  std::shared_ptr<subscription> subscribe(event_filter filter, size_t capacity = 4096,
                                          size_t max_bytes = 1u << 20);
  /// A subscriber to the events that any of `filters` admits; with `after` (an `event_id`
  /// of this feed), the kept events after that one come first. If the feed does not have
  /// every event after it (too old, or the id of another feed), it starts with the events
  /// published from now on, and `reset()` says so.
  std::shared_ptr<subscription> subscribe_any(std::vector<event_filter> filters,
                                              size_t capacity, size_t max_bytes,
                                              const std::string& after = {});

  /// Keeps the last `events` events published here (and `bytes` of them at most, about),
  /// for subscribers that resume. While it keeps any, every change is published (`wants`
  /// says yes), subscribers or not. Call before publishing starts.
  void retain(size_t events, size_t bytes);
  /// The id of this feed's event `seq`: "<incarnation>.<seq>".
  std::string event_id(uint64_t seq) const;

  /// The distinct filters of the subscribers that are not lagged, in order.
  std::vector<event_filter> filters();
  /// Marks every subscriber lagged (events were lost on their way here).
  void lag_all();
  /// Publishes every event published here in `next` too, after this feed's subscribers;
  /// `wants` and `active` then count `next`'s subscribers. Set before publishing starts.
  void chain(change_feed* next) { next_ = next; }

  /// Whether anyone may listen: publishers skip building events when no one does. Dropped
  /// subscribers are forgotten at the next `wants` or `publish`.
  bool active() const {
    return subscribers_.load(std::memory_order_relaxed) > 0 || keep_events_ > 0
           || (next_ != nullptr && next_->active());
  }

  /// Whether a subscriber wants the events of twin `id` of type `type`: publishers build
  /// an event only then.
  bool wants(const twin_id& id, std::string_view type);

  void publish(const event_ptr& ev);

private:
  /// Publishes `ev`, of about `bytes` as JSON text.
  void publish(const event_ptr& ev, size_t bytes);
  /// Calls `f` on each subscriber still referenced, forgetting the others; with `mtx_` held.
  template <class F>
  void each(F&& f);
  /// The subscribers still referenced.
  std::vector<std::shared_ptr<subscription>> live();

  std::mutex mtx_;
  std::vector<std::weak_ptr<subscription>> subs_;
  std::atomic<size_t> subscribers_{0};
  change_feed* next_ = nullptr;
  const std::string incarnation_;
  uint64_t seq_ = 0;  ///< of the last event published; guarded by `mtx_`
  size_t keep_events_ = 0;
  size_t keep_bytes_ = 0;
  std::deque<std::pair<numbered, size_t>> kept_;  ///< with their bytes; guarded by `mtx_`
  size_t kept_bytes_ = 0;
};

} // namespace twin::runtime
