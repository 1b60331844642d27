#pragma once

// A node's audit log: every request that changed something or was refused, kept in a
// RocksDB database of its own for a retention, and read back by time.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

namespace twin::api {

/// One request as the log keeps it: who (token and address), what, and how it ended. Never
/// a secret: no header and no body is kept.
struct audit_entry {
  int64_t ts_ms = 0;
  std::string token_id;    ///< empty: none (refused before a token was known)
  std::string token_name;
  std::string peer;        ///< the client's address
  std::string method;
  std::string path;        ///< without the query
  std::string twin;        ///< the twin of the path, if any
  unsigned status = 0;
  std::string outcome;     ///< "ok", or the error's code
};

struct audit_options {
  std::string path;  ///< the database's directory
  std::chrono::hours retention{24 * 30};
  size_t max_queued = 16384;  ///< entries waiting to be written; more are dropped, counted
  /// Disk space the log never uses: while the disk has less free, entries are dropped and
  /// counted (the twins' store refuses writes there too), and a log opened then is only
  /// read.
  uint64_t min_free_bytes = 0;
};

/// What GET /v1/audit asks for: entries from `from_ms` to `to_ms` (inclusive), oldest
/// first, of one token or twin if given.
struct audit_query {
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;
  std::string token_id;
  std::string twin;
  size_t limit = 100;
  std::string cursor;  ///< where the previous page ended; empty: at `from_ms`
  static constexpr size_t max_limit = 1000;
};

struct audit_page {
  std::vector<audit_entry> items;
  std::string cursor;  ///< of the next page; empty: none
};

/// Thread-safe. `record` never blocks on the disk: a thread of the log writes what is
/// queued (through RocksDB's write-ahead log) every 50 ms, and drops what is older than the
/// retention once a minute.
class audit_log {
public:
  static caf::expected<std::unique_ptr<audit_log>> open(audit_options opts);
  ~audit_log();  ///< writes what is queued, then closes

  void record(audit_entry e);
  /// Reads what was recorded until now (it waits for what is queued to be written).
  caf::expected<audit_page> read(const audit_query& q);
  /// Waits until every entry recorded before the call is written.
  void flush();

  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

private:
  struct db;
  explicit audit_log(audit_options opts);
  void run();
  void trim(int64_t now_ms);
  /// Whether the disk has more free than the reserve.
  bool has_room() const;

  audit_options opts_;
  std::unique_ptr<db> db_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable written_cv_;
  std::deque<audit_entry> queue_;
  uint64_t queued_total_ = 0;   ///< guarded by `mu_`
  uint64_t written_total_ = 0;  ///< guarded by `mu_`: of `queued_total_`, written or dropped
  uint64_t seq_ = 0;            ///< the next key's sequence number; the writer's
  bool writable_ = true;   ///< opened for writing (the disk had room)
  bool stopping_ = false;
  bool flushing_ = false;  ///< someone waits in `flush`: write now
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread writer_;
};

} // namespace twin::api
