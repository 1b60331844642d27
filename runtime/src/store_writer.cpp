#include "store_writer.hpp"

#include "durable_counts.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::runtime {

commit_point::~commit_point() = default;

store_writer::store_writer(state_store& store, host_stats& stats)
  : store_(store), stats_(stats), counts_(store.shard_count()) {
}

store_writer::~store_writer() {
  stop();
}

caf::error store_writer::load_counts() {
  std::vector<host_counts> loaded(counts_.size());
  host_counts total;
  for (uint32_t s = 0; s < loaded.size(); ++s) {
    auto v = store_.get_meta(shard_id{s}, counts_key);
    if (!v)
      return v.error();
    if (!*v)
      continue;
    auto c = decode_counts(**v);
    if (!c)
      return make_error(runtime_errc::store_corrupt,
                        "the stored counts of shard " + std::to_string(s) + " are malformed");
    loaded[s] = *c;
    total += *c;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  counts_ = std::move(loaded);
  total_ = total;
  return {};
}

caf::error store_writer::load_counts(shard_id shard) {
  auto v = store_.get_meta(shard, counts_key);
  if (!v)
    return v.error();
  host_counts c;
  if (*v) {
    auto decoded = decode_counts(**v);
    if (!decoded)
      return make_error(runtime_errc::store_corrupt, "the stored counts of shard "
                                                       + std::to_string(shard.value())
                                                       + " are malformed");
    c = *decoded;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  total_ -= counts_[shard.value()];
  total_ += c;
  counts_[shard.value()] = c;
  return {};
}

void store_writer::start() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (running_)
    return;
  running_ = true;
  stopping_ = false;
  thread_ = std::thread{[this] {
    name_thread("twin.store");
    run();
  }};
}

void store_writer::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable())
    thread_.join();
}

void store_writer::submit(const twin_id& owner, store_batch batch, host_counts delta,
                          done_fn done) {
  enqueue(item{owner, std::move(batch), delta, std::move(done)});
}

void store_writer::reset(const twin_id& owner, done_fn done) {
  enqueue(item{owner, store_batch{}, host_counts{}, std::move(done), true});
}

void store_writer::enqueue(item&& x) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (running_) {
      queue_.push_back(std::move(x));
      cv_.notify_one();
      return;
    }
  }
  x.done(make_error(runtime_errc::shutting_down, "the store writer is stopped"));
}

host_counts store_writer::counts(shard_id shard) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return shard.value() < counts_.size() ? counts_[shard.value()] : host_counts{};
}

host_counts store_writer::counts() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return total_;
}

void store_writer::run() {
  std::vector<item> work;
  std::vector<store_batch> batches;
  std::vector<bool> refused;
  std::vector<bool> wrote;  // the item had a change in the store batch
  std::unordered_map<uint32_t, host_counts> next;  // the counts of shards this write moves
  auto shards = static_cast<uint32_t>(counts_.size());
  for (;;) {
    next.clear();
    {
      std::unique_lock<std::mutex> guard{mtx_};
      cv_.wait(guard, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) {
        running_ = false;  // stopping, and nothing left to write
        return;
      }
      work.swap(queue_);
    }
    // One store write for all, applied item by item in submission order; batches of an
    // owner whose earlier write failed are refused until its reset.
    batches.clear();
    refused.assign(work.size(), false);
    wrote.assign(work.size(), false);
    size_t records = 0;
    for (size_t i = 0; i < work.size(); ++i) {
      auto& w = work[i];
      if (w.reset) {
        failed_.erase(w.owner);
        continue;
      }
      if (!failed_.empty() && failed_.count(w.owner) > 0) {
        refused[i] = true;
        continue;
      }
      records += w.batch.puts.size() + w.batch.deletes.size();
      if (!w.batch.empty()) {  // barriers carry nothing to write
        batches.push_back(std::move(w.batch));
        wrote[i] = true;
      }
      if (!w.delta.empty()) {
        auto shard = shard_of(w.owner, shards).value();
        auto [it, fresh] = next.try_emplace(shard);
        if (fresh)
          it->second = counts_[shard];  // only this thread changes them
        it->second += w.delta;
      }
    }
    if (!next.empty()) {
      batches.emplace_back();
      for (const auto& [shard, c] : next)
        batches.back().meta_puts.push_back({shard_id{shard}, counts_key, encode_counts(c)});
    }
    bool anything = !batches.empty();
    caf::error err;
    if (anything) {
      bool timed = stats_.histograms.load(std::memory_order_relaxed);
      auto t0 = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      err = store_.write_all(batches.data(), batches.size());
      durable_at_ = timed ? std::chrono::steady_clock::now() : t0;
      if (timed) {
        stats_.write_duration.observe(std::chrono::duration<double>(durable_at_ - t0).count());
        stats_.write_records.observe(static_cast<double>(records));
      }
    }
    if (err)
      stats_.store_errors.fetch_add(1, std::memory_order_relaxed);
    if (!err && anything) {
      stats_.store_writes.fetch_add(1, std::memory_order_relaxed);
      stats_.store_records.fetch_add(records, std::memory_order_relaxed);
      if (!next.empty()) {
        std::lock_guard<std::mutex> guard{mtx_};
        for (const auto& [shard, c] : next) {
          total_ -= counts_[shard];
          total_ += c;
          counts_[shard] = c;
        }
      }
    }
    if (err)  // owners whose changes were lost; a barrier alone loses nothing
      for (size_t i = 0; i < work.size(); ++i)
        if (wrote[i])
          failed_.insert(work[i].owner);
    for (size_t i = 0; i < work.size(); ++i) {
      if (refused[i])
        work[i].done(make_error(runtime_errc::store_failure,
                                "an earlier write of " + work[i].owner.str() + " failed"));
      else
        work[i].done(work[i].reset ? caf::error{} : err);
    }
    work.clear();
  }
}

} // namespace twin::runtime
