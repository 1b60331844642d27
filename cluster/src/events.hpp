#pragma once

// The whole cluster's changes at one member, for GET /v1/events: the member's own twins'
// events, and those the other members stream to it. Private to the cluster module.
//
// A member whose clients watch tells every other member the filters they use (`watch`);
// each of those relays the events of its own twins that the filters admit, in the order
// it published them, over the link between them. Before a shard's new owner can publish
// an event of its twins, the old owner has sent every event of the shard to each watcher
// and heard back (`sync`), so each twin's events reach a watcher in version order. What
// cannot keep that promise (a relay that fell behind, a watcher that did not answer, a
// member that went away) marks the watcher's streams lagged: they end, and their clients
// resynchronise.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

#include "transport.hpp"
#include "twin/runtime/change_feed.hpp"

namespace twin::cluster {

class change_streams {
public:
  /// Sends an envelope to a member (false: not connected).
  using send_fn = std::function<bool(const std::string& node, envelope env)>;
  /// Sends an envelope to a member and waits for its answer, at most the given time.
  using ask_fn = std::function<caf::expected<std::string>(const std::string& node, envelope env,
                                                          std::chrono::milliseconds timeout)>;

  change_streams(send_fn send, ask_fn ask);
  ~change_streams();  ///< stops relaying

  /// The cluster's changes, for this member's clients.
  runtime::change_feed& feed() { return feed_; }
  /// The host's feed: this member's own twins' events, relayed to the members that watch
  /// them and published in `feed()`. Before the host publishes.
  void set_local(runtime::change_feed* local);

  // -- this member's clients ------------------------------------------------------------

  /// Tells `peers` what this member's clients watch now, waiting for each answer (at most
  /// `timeout` each); after a client subscribed to `feed()`.
  void watch(const std::vector<std::string>& peers, std::chrono::milliseconds timeout);
  /// Tells the peers that were not told yet, or were told something else, without waiting.
  void refresh(const std::vector<std::string>& peers);
  /// Events relayed by another member: published in `feed()`.
  void on_events(const envelope& env);
  /// A relay to this member fell behind: the streams lag.
  void on_gap(const std::string& from);

  // -- the members that watch this one ----------------------------------------------------

  /// What `from` watches now (none: it stops watching); an error if the filters are
  /// malformed.
  caf::error on_watch(const envelope& env);
  /// Relays every event queued for a watcher, then asks each watcher to confirm it has
  /// them (at most `timeout` each); a watcher that does not confirm is told its streams
  /// lag. Before a shard of this member's gets another owner.
  void sync(std::chrono::milliseconds timeout);

  /// A member went away: the streams that relied on it lag, and its relay goes.
  void on_peer_down(const std::string& node);

  /// The members this one relays events to (a figure).
  size_t watchers() const;

private:
  struct relay {
    std::shared_ptr<runtime::change_feed::subscription> sub;
  };

  void tell(const std::string& peer, const std::vector<runtime::event_filter>& filters,
            std::chrono::milliseconds timeout);
  /// Relays what is queued for every watcher; with `relay_mtx_` held.
  void flush_all();
  /// Relays what is queued for `node`; false if its relay fell behind or a batch could
  /// not go (it is owed a gap).
  bool flush(const std::string& node, relay& r);
  /// Tells the watchers owed a gap, those it can reach now; with `relay_mtx_` held.
  void send_gaps();
  void relay_loop();

  send_fn send_;
  ask_fn ask_;
  runtime::change_feed feed_;
  runtime::change_feed* local_ = nullptr;

  std::mutex watch_mtx_;  ///< serialises telling peers
  std::map<std::string, std::vector<runtime::event_filter>> told_;

  mutable std::mutex relay_mtx_;  ///< serialises relaying: each link's events stay in order
  std::map<std::string, relay> relays_;
  std::set<std::string> owe_gap_;  ///< watchers whose relay went: their streams lag
  std::mutex ready_mtx_;
  std::condition_variable ready_cv_;
  bool ready_ = false;
  bool stopping_ = false;
  std::thread relayer_;
};

} // namespace twin::cluster
