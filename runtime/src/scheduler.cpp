#include "twin/runtime/scheduler.hpp"

#include <sched.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/detail/thread_safe_actor_clock.hpp>
#include <caf/execution_unit.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

namespace twin::runtime {

namespace {

/// Messages an actor handles before its worker moves on to other actors (CAF's default
/// is no limit): a busy twin must not hold up the others of its worker's batch.
constexpr size_t messages_per_turn = 100;

/// Work sharing without CAF's per-job costs: its `sharing` policy allocates a list node
/// for every scheduled actor, signals the condition variable on every enqueue and takes
/// the lock for every job, and its workers cast every job to find its actor id for
/// logging. Here the queue is a deque, a sleeping worker is woken only when there is one,
/// and a worker takes its share of the queued jobs at once.
///
/// Workers run as SCHED_BATCH: a worker that a request wakes does not preempt the thread
/// that sent it (a gateway, the store writer) but runs on a free core or at the next
/// scheduling tick. On a node with few cores, ingest otherwise switches threads for
/// nearly every request.
class sharing_coordinator final : public caf::scheduler::abstract_coordinator {
public:
  explicit sharing_coordinator(caf::actor_system& sys) : abstract_coordinator(sys) {}

  void enqueue(caf::resumable* job) override { push(job); }

  caf::actor_clock& clock() noexcept override { return clock_; }

protected:
  void start() override {
    for (size_t i = 0; i < num_workers(); ++i)
      workers_.push_back(std::make_unique<worker>(*this));
    for (auto& w : workers_)
      w->thread = std::thread{[this, w = w.get()] {
        caf::detail::set_thread_name("caf.worker");
#ifdef SCHED_BATCH
        sched_param none{};
        sched_setscheduler(0, SCHED_BATCH, &none);  // best effort: works as well without
#endif
        system().thread_started();
        w->run();
        system().thread_terminates();
      }};
    timer_ = std::thread{[this] {
      caf::detail::set_thread_name("caf.clock");
      system().thread_started();
      clock_.run_dispatch_loop();
      system().thread_terminates();
    }};
    abstract_coordinator::start();
  }

  /// The actor system calls this once its actors are done. Workers finish the jobs they
  /// hold; jobs still queued, and any scheduled from now on, are released at once.
  void stop() override {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_)
      w->thread.join();
    stop_actors();  // the printer, which runs on a thread of its own
    clock_.cancel_dispatch_loop();
    timer_.join();
    std::deque<caf::resumable*> left;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      closed_ = true;
      left.swap(queue_);
    }
    for (auto* job : left)
      cleanup_and_release(job);
  }

private:
  /// Starts loading a job's first cache lines (which hold its vtable pointer and, for a
  /// twin, its inbox) while another job runs: with many twins, they are rarely cached.
  static void prefetch(const caf::resumable* job) {
    auto* p = reinterpret_cast<const char*>(job);
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
  }

  struct worker final : caf::execution_unit {
    explicit worker(sharing_coordinator& parent)
      : caf::execution_unit(&parent.system()), parent(parent) {}

    void exec_later(caf::resumable* job) override { parent.push(job); }

    void run() {
      std::vector<caf::resumable*> jobs;
      while (parent.take(jobs)) {
        for (size_t i = 0; i < jobs.size(); ++i) {
          auto* job = jobs[i];
          if (i + 1 < jobs.size())
            prefetch(jobs[i + 1]);
          switch (job->resume(this, parent.max_throughput())) {
            case caf::resumable::resume_later:
              parent.push(job);  // it keeps its reference
              break;
            case caf::resumable::done:
            case caf::resumable::awaiting_message:
              intrusive_ptr_release(job);
              break;
            case caf::resumable::shutdown_execution_unit:
              break;  // only CAF's own coordinators send such jobs
          }
        }
        jobs.clear();
      }
    }

    sharing_coordinator& parent;
    std::thread thread;
  };

  void push(caf::resumable* job) {
    bool wake;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (closed_) {
        guard.unlock();
        cleanup_and_release(job);
        return;
      }
      queue_.push_back(job);
      wake = sleepers_ > 0;
    }
    if (wake)
      cv_.notify_one();
  }

  /// Waits for jobs and moves this worker's share of them (at most `max_batch`) into
  /// `out`, oldest first; false once the scheduler stops.
  bool take(std::vector<caf::resumable*>& out) {
    constexpr size_t max_batch = 32;
    std::unique_lock<std::mutex> guard{mtx_};
    for (;;) {
      if (stopping_)
        return false;
      if (!queue_.empty())
        break;
      ++sleepers_;
      cv_.wait(guard);
      --sleepers_;
    }
    auto n = std::min(max_batch, std::max<size_t>(1, queue_.size() / workers_.size()));
    out.assign(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    return true;
  }

  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<caf::resumable*> queue_;
  size_t sleepers_ = 0;
  bool stopping_ = false;  ///< workers leave
  bool closed_ = false;    ///< workers are gone: jobs are released, not queued
  caf::detail::thread_safe_actor_clock clock_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::thread timer_;
};

} // namespace

bool configure_scheduler(caf::actor_system_config& cfg, int threads, const std::string& policy) {
  if (policy != "sharing" && policy != "stealing")
    return false;
  auto cores = std::max(1u, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", threads > 0 ? threads : static_cast<int>(cores));
  cfg.set("scheduler.max-throughput", messages_per_turn);
  cfg.set("logger.console", caf::atom("none"));
  if (policy == "sharing")
    cfg.module_factories.push_back([](caf::actor_system& sys) -> caf::actor_system::module* {
      return new sharing_coordinator(sys);
    });
  else
    cfg.set("scheduler.policy", caf::atom("stealing"));
  return true;
}

} // namespace twin::runtime
