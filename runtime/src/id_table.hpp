#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "twin/runtime/shard.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// A hash table from twin id to `T` for the activation directory, where a lookup of one
/// of many twins misses the cache at every step. Open addressing with linear probing:
/// a slot holds the id's hash and its node, so a lookup reads one slot and the node it
/// finds (std::unordered_map reads the bucket, the node before the chain, then the node).
/// Nodes never move: a value's address stays valid until it is erased. Erasing shifts
/// the following slots back instead of leaving tombstones. Not thread-safe.
template <class T>
class id_table {
public:
  /// An entry; it stays where it is until it is erased.
  struct node {
    twin_id id;
    T value;
  };

  id_table() = default;
  id_table(const id_table&) = delete;
  id_table& operator=(const id_table&) = delete;
  ~id_table() { clear(); }

  /// The id's stable hash, the one its shard is taken from (`shard_of`).
  static uint64_t hash(const twin_id& id) { return id_hash(id.str()); }

  size_t size() const { return size_; }

  /// The value of `id` (whose hash is `h`), or nullptr.
  T* find(const twin_id& id, uint64_t h) {
    if (slots_.empty())
      return nullptr;
    for (size_t i = home(h);; i = next(i)) {
      const auto& s = slots_[i];
      if (s.n == nullptr)
        return nullptr;
      if (s.hash == h && s.n->id == id)
        return &s.n->value;
    }
  }

  /// The value of `id`, inserted value-initialized if it was not there; and whether it
  /// was inserted.
  std::pair<T*, bool> try_emplace(const twin_id& id, uint64_t h) {
    if ((size_ + 1) * 4 > slots_.size() * 3)  // at most three quarters full
      grow();
    size_t i = home(h);
    for (; slots_[i].n != nullptr; i = next(i))
      if (slots_[i].hash == h && slots_[i].n->id == id)
        return {&slots_[i].n->value, false};
    slots_[i] = slot{h, new node{id, T{}}};
    ++size_;
    return {&slots_[i].n->value, true};
  }

  /// Removes `id` if it is there.
  void erase(const twin_id& id, uint64_t h) {
    if (slots_.empty())
      return;
    size_t i = home(h);
    for (;; i = next(i)) {
      if (slots_[i].n == nullptr)
        return;
      if (slots_[i].hash == h && slots_[i].n->id == id)
        break;
    }
    delete slots_[i].n;
    --size_;
    // Shift back every later slot of the run that may not stay behind the new hole.
    for (size_t j = next(i); slots_[j].n != nullptr; j = next(j)) {
      size_t k = home(slots_[j].hash);
      bool reachable = i <= j ? (i < k && k <= j) : (i < k || k <= j);
      if (!reachable) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = slot{};
  }

  /// Calls `f(id, value)` for every entry; `f` must not insert or erase.
  template <class F>
  void for_each(F&& f) {
    for (auto& s : slots_)
      if (s.n != nullptr)
        f(s.n->id, s.n->value);
  }

  /// The first entry (in slot order) for which `pred(id, value)` holds, or nullptr.
  template <class Pred>
  node* find_if(Pred&& pred) {
    for (auto& s : slots_)
      if (s.n != nullptr && pred(s.n->id, s.n->value))
        return s.n;
    return nullptr;
  }

  /// The number of slots, and the entry in slot `i` (nullptr if it is free): for
  /// sampling entries at random.
  size_t slot_count() const { return slots_.size(); }
  node* slot_at(size_t i) { return slots_[i].n; }

  /// Erases every entry and frees the slots.
  void clear() {
    for (auto& s : slots_)
      delete s.n;
    slots_.clear();
    size_ = 0;
  }

private:
  struct slot {
    uint64_t hash = 0;
    node* n = nullptr;
  };

  /// Fibonacci hashing: the top bits of the product spread any bits of the hash.
  size_t home(uint64_t h) const {
    return static_cast<size_t>((h * 0x9e3779b97f4a7c15ull) >> shift_);
  }
  size_t next(size_t i) const { return (i + 1) & (slots_.size() - 1); }

  void grow() {
    std::vector<slot> bigger(slots_.empty() ? 16 : slots_.size() * 2);  // may throw: first
    bigger.swap(slots_);
    shift_ = 64;
    for (size_t x = slots_.size(); x > 1; x >>= 1)
      --shift_;
    for (auto& s : bigger)  // now the old slots
      if (s.n != nullptr) {
        size_t i = home(s.hash);
        while (slots_[i].n != nullptr)
          i = next(i);
        slots_[i] = s;
      }
  }

  std::vector<slot> slots_;  ///< a power of two in size
  unsigned shift_ = 64;
  size_t size_ = 0;
};

} // namespace twin::runtime
