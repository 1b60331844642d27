#include "twin/runtime/change_feed.hpp"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <random>
#include <set>

namespace twin::runtime {

const char* to_string(change_event::kind_t x) {
  switch (x) {
    case change_event::kind_t::changed: return "changed";
    case change_event::kind_t::deleted: return "deleted";
    default: return "command";
  }
}

namespace {

size_t approximate_size(const value& v) {
  switch (v.type()) {
    case value::kind::string:
      return v.as_string().size() + 2;
    case value::kind::list: {
      size_t n = 2;
      for (const auto& x : v.as_list())
        n += approximate_size(x) + 1;
      return n;
    }
    case value::kind::map: {
      size_t n = 2;
      for (const auto& [k, x] : v.as_map())
        n += k.size() + 4 + approximate_size(x);
      return n;
    }
    default:
      return 8;
  }
}

size_t approximate_size(const value_map& m) {
  size_t n = 2;
  for (const auto& [k, x] : m)
    n += k.size() + 4 + approximate_size(x);
  return n;
}

} // namespace

size_t approximate_size(const change_event& ev) {
  return 128 + ev.id.str().size() + ev.type.size() + ev.command.size()
         + approximate_size(ev.properties) + approximate_size(ev.desired)
         + approximate_size(ev.args);
}

bool event_filter::matches(const twin_id& twin, std::string_view twin_type) const {
  const auto& id = twin.str();
  if (!ns.empty() && (id.size() <= ns.size() || id.compare(0, ns.size(), ns) != 0
                      || id[ns.size()] != ':'))
    return false;
  if (!type.empty() && twin_type != type)
    return false;
  if (!this->id.empty() && id != this->id)
    return false;
  if (prefix.empty())
    return true;
  if (id.compare(0, prefix.size(), prefix) != 0)
    return false;
  return !segment || id.size() == prefix.size()
         || !std::isalnum(static_cast<unsigned char>(id[prefix.size()]));
}

change_feed::subscription::subscription(std::vector<event_filter> filters, size_t capacity,
                                        size_t max_bytes)
  : filters_(std::move(filters)),
    capacity_(std::max<size_t>(capacity, 1)),
    max_bytes_(std::max<size_t>(max_bytes, 1)) {}

std::vector<change_feed::numbered> change_feed::subscription::take_numbered() {
  std::lock_guard<std::mutex> guard{mtx_};
  notified_ = false;
  queued_bytes_ = 0;
  return std::exchange(queue_, {});
}

std::vector<change_feed::event_ptr> change_feed::subscription::take() {
  std::vector<event_ptr> out;
  for (auto& n : take_numbered())
    out.push_back(std::move(n.ev));
  return out;
}

bool change_feed::subscription::lagged() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return lagged_;
}

void change_feed::subscription::on_ready(std::function<void()> fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  ready_ = std::move(fn);
  notified_ = false;
}

void change_feed::subscription::set_filters(std::vector<event_filter> filters) {
  std::lock_guard<std::mutex> guard{mtx_};
  filters_ = std::move(filters);
}

void change_feed::subscription::lag() {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (lagged_)
      return;
    lagged_ = true;
    if (!notified_) {
      notified_ = true;
      wake = ready_;
    }
  }
  if (wake)
    wake();
}

bool change_feed::subscription::admits(const twin_id& id, std::string_view type) const {
  return std::any_of(filters_.begin(), filters_.end(),
                     [&](const event_filter& f) { return f.matches(id, type); });
}

bool change_feed::subscription::queue(const numbered& ev, size_t bytes) {
  if (queue_.size() >= capacity_ || (!queue_.empty() && queued_bytes_ + bytes > max_bytes_)) {
    lagged_ = true;
    return false;
  }
  queue_.push_back(ev);
  queued_bytes_ += bytes;
  return true;
}

std::function<void()> change_feed::subscription::offer(const numbered& ev, size_t bytes) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (lagged_ || !admits(ev.ev->id, ev.ev->type))
    return nullptr;
  queue(ev, bytes);
  if (notified_)
    return nullptr;
  notified_ = true;
  return ready_;
}

std::shared_ptr<change_feed::subscription> change_feed::subscribe(event_filter filter,
                                                                  size_t capacity,
                                                                  size_t max_bytes) {
  return subscribe_any({std::move(filter)}, capacity, max_bytes);
}

namespace {

/// A random text that names one feed's life.
std::string random_incarnation() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> any;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(any(rd)));
  return text;
}

} // namespace

change_feed::change_feed() : incarnation_(random_incarnation()) {}

std::string change_feed::event_id(uint64_t seq) const {
  return incarnation_ + "." + std::to_string(seq);
}


void change_feed::retain(size_t events, size_t bytes) {
  std::lock_guard<std::mutex> guard{mtx_};
  keep_events_ = events;
  keep_bytes_ = bytes;
}

std::shared_ptr<change_feed::subscription>
change_feed::subscribe_any(std::vector<event_filter> filters, size_t capacity, size_t max_bytes,
                           const std::string& after) {
  auto sub = std::make_shared<subscription>(std::move(filters), capacity, max_bytes);
  sub->incarnation_ = incarnation_;
  std::lock_guard<std::mutex> guard{mtx_};
  if (!after.empty()) {
    // Resumes if this feed has every event after `after`: those kept, then what comes.
    auto dot = after.rfind('.');
    uint64_t last = 0;
    bool ours = dot != std::string::npos && after.compare(0, dot, incarnation_) == 0
                && std::sscanf(after.c_str() + dot + 1, "%" SCNu64, &last) == 1 && last <= seq_;
    uint64_t first_kept = kept_.empty() ? seq_ + 1 : kept_.front().first.seq;
    if (!ours || last + 1 < first_kept) {
      sub->reset_ = true;
    } else {
      std::lock_guard<std::mutex> sub_guard{sub->mtx_};
      for (const auto& [ev, bytes] : kept_)
        if (ev.seq > last && sub->admits(ev.ev->id, ev.ev->type) && !sub->queue(ev, bytes))
          break;
    }
  }
  subs_.push_back(sub);
  each([](const std::shared_ptr<subscription>&) {});
  return sub;
}

template <class F>
void change_feed::each(F&& f) {
  for (auto it = subs_.begin(); it != subs_.end();) {
    if (auto sub = it->lock()) {
      f(sub);
      ++it;
    } else {
      it = subs_.erase(it);
    }
  }
  subscribers_.store(subs_.size(), std::memory_order_relaxed);
}

std::vector<std::shared_ptr<change_feed::subscription>> change_feed::live() {
  std::vector<std::shared_ptr<subscription>> out;
  std::lock_guard<std::mutex> guard{mtx_};
  each([&](const std::shared_ptr<subscription>& sub) { out.push_back(sub); });
  return out;
}

std::vector<event_filter> change_feed::filters() {
  std::set<event_filter> all;
  for (const auto& sub : live()) {
    std::lock_guard<std::mutex> guard{sub->mtx_};
    if (!sub->lagged_)
      all.insert(sub->filters_.begin(), sub->filters_.end());
  }
  return {all.begin(), all.end()};
}

void change_feed::lag_all() {
  for (const auto& sub : live())
    sub->lag();
}

bool change_feed::wants(const twin_id& id, std::string_view type) {
  bool wanted = keep_events_ > 0;  // what it keeps is every change
  {
    std::lock_guard<std::mutex> guard{mtx_};
    each([&](const std::shared_ptr<subscription>& sub) {
      if (wanted)
        return;
      std::lock_guard<std::mutex> sub_guard{sub->mtx_};
      wanted = !sub->lagged_ && sub->admits(id, type);
    });
  }
  return wanted || (next_ != nullptr && next_->wants(id, type));
}

void change_feed::publish(const event_ptr& ev) {
  publish(ev, approximate_size(*ev));
}

void change_feed::publish(const event_ptr& ev, size_t bytes) {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    numbered n{++seq_, ev};
    each([&](const std::shared_ptr<subscription>& sub) {
      if (auto fn = sub->offer(n, bytes))
        wake.push_back(std::move(fn));
    });
    if (keep_events_ > 0) {
      kept_.emplace_back(std::move(n), bytes);
      kept_bytes_ += bytes;
      while (kept_.size() > keep_events_ || (kept_.size() > 1 && kept_bytes_ > keep_bytes_)) {
        kept_bytes_ -= kept_.front().second;
        kept_.pop_front();
      }
    }
  }
  for (auto& fn : wake)
    fn();
  if (next_ != nullptr)
    next_->publish(ev, bytes);
}

} // namespace twin::runtime
