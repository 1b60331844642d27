#include "twin/api/audit.hpp"

#include <sys/statvfs.h>

#include <filesystem>

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/io.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "hex.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/thread_name.hpp"
#include "twin/schema/twin.capnp.h"

namespace twin::api {

using runtime::make_error;
using runtime::now_ms;
using runtime::runtime_errc;

namespace {

constexpr auto write_every = std::chrono::milliseconds{50};
constexpr size_t write_at = 1024;  ///< queued entries that wake the writer at once
constexpr auto trim_every = std::chrono::minutes{1};
constexpr size_t max_examined = 100000;  ///< entries a read looks at, at most


/// 16 bytes, big-endian: the time (negative ones as 0), then the sequence number.
std::string key_of(int64_t ts_ms, uint64_t seq) {
  std::string out(16, '\0');
  auto ts = static_cast<uint64_t>(std::max<int64_t>(ts_ms, 0));
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(ts >> (56 - 8 * i));
    out[8 + i] = static_cast<char>(seq >> (56 - 8 * i));
  }
  return out;
}

uint64_t seq_of(const rocksdb::Slice& key) {
  uint64_t seq = 0;
  for (size_t i = 8; i < 16 && i < key.size(); ++i)
    seq = (seq << 8) | static_cast<unsigned char>(key[i]);
  return seq;
}

kj::StringPtr text(const std::string& s) {
  return kj::StringPtr{s.c_str(), s.size()};
}

std::string encode(const audit_entry& e) {
  capnp::MallocMessageBuilder msg;
  auto r = msg.initRoot<schema::AuditEntry>();
  r.setTsMs(e.ts_ms);
  r.setTokenId(text(e.token_id));
  r.setTokenName(text(e.token_name));
  r.setPeer(text(e.peer));
  r.setMethod(text(e.method));
  r.setPath(text(e.path));
  r.setTwin(text(e.twin));
  r.setStatus(static_cast<uint16_t>(e.status));
  r.setOutcome(text(e.outcome));
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

std::optional<audit_entry> decode(const rocksdb::Slice& bytes) {
  audit_entry e;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::PackedMessageReader reader{in};
    auto r = reader.getRoot<schema::AuditEntry>();
    e.ts_ms = r.getTsMs();
    e.token_id = r.getTokenId().cStr();
    e.token_name = r.getTokenName().cStr();
    e.peer = r.getPeer().cStr();
    e.method = r.getMethod().cStr();
    e.path = r.getPath().cStr();
    e.twin = r.getTwin().cStr();
    e.status = r.getStatus();
    e.outcome = r.getOutcome().cStr();
  });
  if (failure != nullptr)
    return std::nullopt;
  return e;
}

} // namespace

struct audit_log::db {
  std::unique_ptr<rocksdb::DB> handle;
};

audit_log::audit_log(audit_options opts) : opts_(std::move(opts)), db_(std::make_unique<db>()) {
}

caf::expected<std::unique_ptr<audit_log>> audit_log::open(audit_options opts) {
  std::unique_ptr<audit_log> log{new audit_log(std::move(opts))};
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = 64;
  o.write_buffer_size = 4u << 20;
  o.keep_log_file_num = 2;
  rocksdb::DB* raw = nullptr;
  log->writable_ = log->has_room();
  std::error_code ec;
  if (!log->writable_ && !std::filesystem::exists(log->opts_.path + "/CURRENT", ec)) {
    // Nothing to read, no room to write: every entry is dropped, and counted.
    log->writer_ = std::thread{[p = log.get()] { p->run(); }};
    return log;
  }
  auto s = log->writable_ ? rocksdb::DB::Open(o, log->opts_.path, &raw)
                          : rocksdb::DB::OpenForReadOnly(o, log->opts_.path, &raw);
  if (!s.ok())
    return make_error(runtime_errc::store_failure,
                      "cannot open the audit log at " + log->opts_.path + ": " + s.ToString());
  log->db_->handle.reset(raw);
  std::unique_ptr<rocksdb::Iterator> it{raw->NewIterator(rocksdb::ReadOptions{})};
  it->SeekToLast();
  if (it->Valid())
    log->seq_ = seq_of(it->key()) + 1;
  if (log->writable_)
    log->trim(now_ms());
  log->writer_ = std::thread{[p = log.get()] { p->run(); }};
  return log;
}

audit_log::~audit_log() {
  {
    std::lock_guard<std::mutex> guard{mu_};
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable())
    writer_.join();
}

void audit_log::record(audit_entry e) {
  if (e.ts_ms == 0)
    e.ts_ms = now_ms();
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard{mu_};
    ++queued_total_;
    if (queue_.size() >= opts_.max_queued) {
      ++written_total_;  // settled: it will never be written
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(std::move(e));
    wake = queue_.size() >= write_at;
  }
  if (wake)
    wake_.notify_one();
}

void audit_log::flush() {
  std::unique_lock<std::mutex> lock{mu_};
  auto target = queued_total_;
  flushing_ = true;
  wake_.notify_one();
  written_cv_.wait(lock, [&] { return written_total_ >= target; });
}

void audit_log::run() {
  runtime::name_thread("twin.audit");
  auto last_trim = std::chrono::steady_clock::now();  // and as it opened
  for (;;) {
    std::deque<audit_entry> batch;
    bool stop = false;
    {
      std::unique_lock<std::mutex> lock{mu_};
      wake_.wait_for(lock, write_every,
                     [&] { return stopping_ || flushing_ || queue_.size() >= write_at; });
      flushing_ = false;
      batch.swap(queue_);
      stop = stopping_;
    }
    if (!batch.empty() && !(writable_ && has_room())) {
      dropped_.fetch_add(batch.size(), std::memory_order_relaxed);
    } else if (!batch.empty()) {
      rocksdb::WriteBatch wb;
      for (const auto& e : batch)
        wb.Put(key_of(e.ts_ms, seq_++), encode(e));
      auto s = db_->handle->Write(rocksdb::WriteOptions{}, &wb);
      if (s.ok())
        written_.fetch_add(batch.size(), std::memory_order_relaxed);
      else
        dropped_.fetch_add(batch.size(), std::memory_order_relaxed);
    }
    {
      std::lock_guard<std::mutex> guard{mu_};
      written_total_ += batch.size();
    }
    written_cv_.notify_all();
    if (writable_ && std::chrono::steady_clock::now() - last_trim >= trim_every) {
      trim(now_ms());
      last_trim = std::chrono::steady_clock::now();
    }
    if (stop) {
      std::lock_guard<std::mutex> guard{mu_};
      if (queue_.empty())
        return;
    }
  }
}

bool audit_log::has_room() const {
  if (opts_.min_free_bytes == 0)
    return true;
  // The log's directory, or the one it is made in.
  auto dir = std::filesystem::path{opts_.path};
  std::error_code ec;
  while (!dir.empty() && !std::filesystem::exists(dir, ec))
    dir = dir.parent_path();
  struct statvfs st {};
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &st) != 0)
    return true;  // cannot tell: the writes say
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize >= opts_.min_free_bytes;
}

void audit_log::trim(int64_t now) {
  auto cutoff = now - std::chrono::duration_cast<std::chrono::milliseconds>(opts_.retention).count();
  if (cutoff <= 0)
    return;
  db_->handle->DeleteRange(rocksdb::WriteOptions{}, db_->handle->DefaultColumnFamily(),
                           key_of(0, 0), key_of(cutoff, 0));
}

caf::expected<audit_page> audit_log::read(const audit_query& q) {
  flush();  // what was recorded before is read
  if (!db_->handle)
    return audit_page{};
  if (q.limit == 0 || q.limit > audit_query::max_limit)
    return make_error(runtime_errc::invalid_argument,
                      "limit must be 1 to " + std::to_string(audit_query::max_limit));
  std::string start = key_of(q.from_ms, 0);
  if (!q.cursor.empty()) {
    auto at = from_hex(q.cursor);
    if (!at || at->size() != 16)
      return make_error(runtime_errc::invalid_argument, "cursor is not one this node gave");
    start = *at;
  }
  auto end = key_of(q.to_ms == INT64_MAX ? q.to_ms : q.to_ms + 1, 0);
  audit_page page;
  std::unique_ptr<rocksdb::Iterator> it{db_->handle->NewIterator(rocksdb::ReadOptions{})};
  size_t examined = 0;
  for (it->Seek(start); it->Valid() && it->key().compare(end) < 0; it->Next()) {
    if (page.items.size() == q.limit || ++examined > max_examined) {
      page.cursor = to_hex(it->key().ToString());
      break;
    }
    auto e = decode(it->value());
    if (!e)
      return make_error(runtime_errc::store_corrupt, "an entry of the audit log cannot be read");
    if ((!q.token_id.empty() && e->token_id != q.token_id) || (!q.twin.empty() && e->twin != q.twin))
      continue;
    page.items.push_back(std::move(*e));
  }
  if (!it->status().ok())
    return make_error(runtime_errc::store_failure,
                      "the audit log cannot be read: " + it->status().ToString());
  return page;
}

} // namespace twin::api
