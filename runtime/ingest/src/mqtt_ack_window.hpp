#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

namespace twin::ingest {

/// The messages of one connection that were handed to the application and not yet
/// acknowledged, in the order they arrived: a ring of `capacity` slots. The client's I/O
/// thread adds messages and pops the handled prefix; any thread marks a message handled
/// (`complete`), which wakes the I/O thread once per burst, not once per message.
class mqtt_ack_window {
public:
  enum state : uint8_t { pending = 0, handled = 1, retry = 2 };

  /// `wake` is called (on a completing thread) when the I/O thread should pop.
  mqtt_ack_window(size_t capacity, std::function<void()> wake)
    : capacity_(capacity),
      states_(new std::atomic<uint8_t>[capacity]()),
      seqs_(new std::atomic<uint64_t>[capacity]()),
      ids_(new uint16_t[capacity]()),
      wake_(std::move(wake)) {}

  // -- I/O thread ---------------------------------------------------------------

  bool full() const { return tail_ - head_ >= capacity_; }
  bool empty() const { return tail_ == head_; }
  /// Adds a message (`packet_id` 0: QoS 0, nothing to acknowledge) and returns its
  /// sequence number. Not when full.
  uint64_t add(uint16_t packet_id) {
    auto seq = tail_++;
    ids_[seq % capacity_] = packet_id;
    states_[seq % capacity_].store(pending);
    seqs_[seq % capacity_].store(seq);
    return seq;
  }
  /// Calls `f(packet_id, state)` for each message of the handled prefix, oldest first,
  /// and forgets them; stops after the first one to retry. Clears the wake-up first, so
  /// that a completion that comes meanwhile wakes the thread again.
  template <class F>
  void pop_handled(F&& f) {
    woken_.store(false);
    while (head_ < tail_) {
      auto s = states_[head_ % capacity_].load();
      if (s == pending)
        break;
      f(ids_[head_ % capacity_], static_cast<state>(s));
      ++head_;
      if (s == retry)
        break;
    }
  }

  // -- any thread -----------------------------------------------------------------

  /// A completion of a message already popped (its slot reused) is ignored.
  void complete(uint64_t seq, state s) {
    if (seqs_[seq % capacity_].load() != seq)
      return;
    states_[seq % capacity_].store(s);
    if (!woken_.exchange(true))
      wake_();
  }

private:
  const size_t capacity_;
  std::unique_ptr<std::atomic<uint8_t>[]> states_;
  std::unique_ptr<std::atomic<uint64_t>[]> seqs_;  ///< whose message a slot holds
  std::unique_ptr<uint16_t[]> ids_;
  std::function<void()> wake_;
  std::atomic<bool> woken_{false};
  uint64_t head_ = 0;  ///< the oldest message not popped (I/O thread)
  uint64_t tail_ = 0;  ///< the next message's sequence number (I/O thread)
};

} // namespace twin::ingest
