#include "events.hpp"

#include <nlohmann/json.hpp>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"
#include "twin/runtime/wire.hpp"

namespace twin::cluster {

using json = nlohmann::json;
using runtime::change_feed;
using runtime::event_filter;

namespace {

/// Distinct filters a watcher sends at most; with more, it watches everything.
constexpr size_t max_filters = 256;
/// What a relay may fall behind by before its watcher is told its streams lag.
constexpr size_t relay_capacity = 65'536;
constexpr size_t relay_bytes = 16u << 20;
/// Events in one envelope, at most.
constexpr size_t batch = 512;

std::string encode_filters(const std::vector<event_filter>& filters) {
  auto out = json::array();
  if (filters.size() > max_filters)
    return json::array({json::object()}).dump();
  for (const auto& f : filters) {
    json x{{"namespace", f.ns}, {"type", f.type}, {"prefix", f.prefix}};
    if (f.segment)  // only when set: a member of an earlier version reads the rest
      x["segment"] = true;
    if (!f.id.empty())
      x["id"] = f.id;
    out.push_back(std::move(x));
  }
  return out.dump();
}

caf::expected<std::vector<event_filter>> decode_filters(const std::string& text) {
  auto bad = [] {
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               "malformed event filters");
  };
  auto j = json::parse(text, nullptr, false);
  if (!j.is_array() || j.size() > max_filters)
    return bad();
  std::vector<event_filter> out;
  for (const auto& f : j) {
    if (!f.is_object())
      return bad();
    event_filter x;
    if (auto segment = f.find("segment"); segment != f.end()) {
      if (!segment->is_boolean())
        return bad();
      x.segment = segment->get<bool>();
    }
    for (auto [key, field] : {std::pair{"namespace", &x.ns}, {"type", &x.type},
                              {"prefix", &x.prefix}, {"id", &x.id}}) {
      auto i = f.find(key);
      if (i == f.end())
        continue;
      if (!i->is_string())
        return bad();
      *field = i->get<std::string>();
    }
    out.push_back(std::move(x));
  }
  return out;
}

} // namespace

change_streams::change_streams(send_fn send, ask_fn ask)
  : send_(std::move(send)), ask_(std::move(ask)) {
  relayer_ = std::thread{[this] {
    runtime::name_thread("twin.events");
    relay_loop();
  }};
}

change_streams::~change_streams() {
  if (local_ != nullptr)
    local_->chain(nullptr);
  {
    std::lock_guard<std::mutex> guard{ready_mtx_};
    stopping_ = true;
  }
  ready_cv_.notify_all();
  relayer_.join();
}

void change_streams::set_local(change_feed* local) {
  local_ = local;
  local->chain(&feed_);
}

// -- this member's clients ----------------------------------------------------------------

void change_streams::tell(const std::string& peer, const std::vector<event_filter>& filters,
                          std::chrono::milliseconds timeout) {
  envelope env;
  env.kind = envelope::watch;
  env.bytes = encode_filters(filters);
  bool told = timeout.count() > 0 ? static_cast<bool>(ask_(peer, std::move(env), timeout))
                                  : send_(peer, std::move(env));
  if (!told)
    return;  // told again at the next refresh
  if (filters.empty())
    told_.erase(peer);
  else
    told_[peer] = filters;
}

void change_streams::watch(const std::vector<std::string>& peers,
                           std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> guard{watch_mtx_};
  auto filters = feed_.filters();
  for (const auto& peer : peers) {
    auto i = told_.find(peer);
    if (i == told_.end() ? !filters.empty() : i->second != filters)
      tell(peer, filters, timeout);
  }
}

void change_streams::refresh(const std::vector<std::string>& peers) {
  watch(peers, std::chrono::milliseconds{0});
}

void change_streams::on_events(const envelope& env) {
  auto events = runtime::decode_events(env.bytes);
  if (!events) {  // a defect of the sender: what it meant to relay is lost
    feed_.lag_all();
    return;
  }
  for (const auto& ev : *events)
    feed_.publish(ev);
}

void change_streams::on_gap(const std::string& from) {
  {
    std::lock_guard<std::mutex> guard{watch_mtx_};
    told_.erase(from);  // its relay is gone: tell it again
  }
  feed_.lag_all();
}

// -- the members that watch this one --------------------------------------------------------

caf::error change_streams::on_watch(const envelope& env) {
  auto filters = decode_filters(env.bytes);
  if (!filters)
    return filters.error();
  std::lock_guard<std::mutex> guard{relay_mtx_};
  auto i = relays_.find(env.from);
  if (filters->empty()) {
    if (i != relays_.end()) {
      flush(i->first, i->second);
      relays_.erase(i);
    }
    return {};
  }
  if (i != relays_.end()) {
    i->second.sub->set_filters(std::move(*filters));
    return {};
  }
  if (local_ == nullptr)
    return runtime::make_error(runtime::runtime_errc::unavailable, "this member has no events");
  relay r{local_->subscribe_any(std::move(*filters), relay_capacity, relay_bytes)};
  r.sub->on_ready([this] {
    {
      std::lock_guard<std::mutex> ready{ready_mtx_};
      ready_ = true;
    }
    ready_cv_.notify_one();
  });
  relays_.emplace(env.from, std::move(r));
  return {};
}

bool change_streams::flush(const std::string& node, relay& r) {
  bool lagged = r.sub->lagged();  // before taking: a lagged queue gets no more events
  auto events = r.sub->take();
  for (size_t at = 0; at < events.size(); at += batch) {
    std::vector<change_feed::event_ptr> part(
      events.begin() + static_cast<std::ptrdiff_t>(at),
      events.begin() + static_cast<std::ptrdiff_t>(std::min(events.size(), at + batch)));
    envelope env;
    env.kind = envelope::events;
    env.bytes = runtime::encode_events(part);
    if (!send_(node, std::move(env))) {
      owe_gap_.insert(node);
      return false;
    }
  }
  if (!lagged)
    return true;
  owe_gap_.insert(node);
  return false;
}

void change_streams::send_gaps() {
  for (auto i = owe_gap_.begin(); i != owe_gap_.end();) {
    envelope gap;
    gap.kind = envelope::gap;
    i = send_(*i, std::move(gap)) ? owe_gap_.erase(i) : std::next(i);
  }
}

void change_streams::flush_all() {
  for (auto i = relays_.begin(); i != relays_.end();)
    i = flush(i->first, i->second) ? std::next(i) : relays_.erase(i);
  send_gaps();
}

void change_streams::relay_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{ready_mtx_};
      // Awake now and then to tell what it owes (a gap that could not go at once).
      ready_cv_.wait_for(guard, std::chrono::milliseconds{250},
                         [&] { return ready_ || stopping_; });
      if (stopping_)
        return;
      ready_ = false;
    }
    std::lock_guard<std::mutex> guard{relay_mtx_};
    flush_all();
  }
}

void change_streams::sync(std::chrono::milliseconds timeout) {
  std::vector<std::string> watchers;
  {
    std::lock_guard<std::mutex> guard{relay_mtx_};
    flush_all();
    for (const auto& [node, r] : relays_)
      watchers.push_back(node);
  }
  for (const auto& node : watchers) {
    envelope env;
    env.kind = envelope::sync;
    if (ask_(node, std::move(env), timeout))
      continue;
    std::lock_guard<std::mutex> guard{relay_mtx_};
    if (relays_.erase(node) > 0) {
      owe_gap_.insert(node);
      send_gaps();
    }
  }
}

void change_streams::on_peer_down(const std::string& node) {
  {
    std::lock_guard<std::mutex> guard{relay_mtx_};
    relays_.erase(node);
    owe_gap_.erase(node);  // it sees this member go away, and its streams lag
  }
  bool watched = false;
  {
    std::lock_guard<std::mutex> guard{watch_mtx_};
    watched = told_.erase(node) > 0;
  }
  if (watched)
    feed_.lag_all();
}

size_t change_streams::watchers() const {
  std::lock_guard<std::mutex> guard{relay_mtx_};
  return relays_.size();
}

} // namespace twin::cluster
