// twinbench: throughput, latency and memory of the twin runtime on this machine, each
// printed beside the raw limit measured in the same run.
//
//   (a) raw RocksDB batched puts of records of the twins' size; also the same puts the way
//       the store writes a group commit (key order, insert hint)
//   (b) end-to-end ingest into twins, acknowledged once durable, and its ratio to (a)
//   (c) cold activations (twin loaded from the store) with p50/p99 latency
//   (d) resident memory per active twin holding 4 numeric properties
//   (e) child-to-parent aggregate latency p50/p99, unloaded
//   (f) the cost of metrics: (b) with metrics off and on, in alternating parts
//   (g) the cost of anomaly detection and RUL estimates: (b) into twins that watch all four
//       properties and apply a RUL model of them, and into twins that do neither, in
//       alternating parts

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>
#include <rocksdb/db.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>

#include "twin/runtime/await.hpp"
#include "twin/runtime/metrics.hpp"
#include "twin/runtime/probe.hpp"
#include "twinbench_support.hpp"

namespace {

using namespace twinbench;

// -- (a) ------------------------------------------------------------------------

/// How a raw put loop orders its writes.
enum class raw_order {
  random,  ///< batches of 512 random keys, as a plain client writes
  sorted,  ///< batches of 4096 keys in key order with an insert hint, as the store writes
};

rate_result raw_rocksdb_puts(const std::string& dir, size_t keys, size_t puts,
                             size_t value_size, raw_order order) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  o.write_buffer_size = 64 << 20;
  o.compression = rocksdb::kLZ4Compression;
  if (order == raw_order::sorted)
    o.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewCappedPrefixTransform(0));
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(o, dir, &raw);
  if (!st.ok())
    die(st.ToString());
  std::unique_ptr<rocksdb::DB> db{raw};
  std::mt19937_64 rng{2};
  std::string payload(value_size, 'x');
  for (auto& c : payload)
    c = static_cast<char>(rng());
  rocksdb::WriteOptions wo;  // WAL on, no fsync: the runtime's default durability
  size_t batch = order == raw_order::sorted ? 4096 : 512;
  std::vector<std::string> batch_keys;
  meter m;
  for (size_t done = 0; done < puts;) {
    batch_keys.clear();
    for (size_t i = 0; i < batch && done + i < puts; ++i)
      batch_keys.push_back(sensor_id(rng() % keys).str());
    if (order == raw_order::sorted)
      std::sort(batch_keys.begin(), batch_keys.end());
    rocksdb::WriteBatch wb;
    for (const auto& key : batch_keys) {
      payload[done % value_size] = static_cast<char>(done);
      wb.Put(key, payload);
      ++done;
    }
    st = db->Write(wo, &wb);
    if (!st.ok())
      die(st.ToString());
  }
  return m.rate(puts);
}

// -- (b) ------------------------------------------------------------------------

rate_result ingest(router& rt, size_t twins, size_t updates, uint64_t& failures,
                   const char* prefix = "s") {
  std::mt19937_64 rng{3};
  flight_window w{50000};
  std::atomic<uint64_t> failed{0};
  auto base_ts = now_ms();
  meter m;
  for (size_t i = 0; i < updates; ++i) {
    w.acquire();
    ingest_request req;
    req.values = sample(rng);
    req.ts_ms = base_ts + static_cast<int64_t>(i / twins);
    req.done = [&](caf::expected<uint64_t> v) {
      if (!v)
        failed.fetch_add(1, std::memory_order_relaxed);
      w.release();
    };
    rt.route(bench_id(prefix, rng() % twins), std::move(req));
  }
  w.drain();
  failures = failed.load();
  return m.rate(updates);
}

// -- (f) ------------------------------------------------------------------------

/// A figure measured with something off and on.
struct off_on {
  rate_result off;
  rate_result on;
};

/// (b) on a warm host in `segments` parts of `per_segment` updates, alternating metrics
/// off and on in the order off, on, on, off, off, on, ... (so that a drift of the machine's
/// speed weighs on both alike). Off: no histograms, nobody scraping. On: the histograms,
/// and the runtime's probe collected into the text format every second (15 times as often
/// as Prometheus' default).
off_on ingest_with_and_without_metrics(host& h, state_store& store, size_t twins,
                                             int segments, size_t per_segment) {
  uint64_t failures = 0;
  ingest(h, twins, twins, failures);  // every twin active before the first segment
  std::atomic<bool> scraping{false};
  std::atomic<bool> done{false};
  size_t scraped = 0;
  std::thread scraper{[&] {
    probe p{h, store};
    metrics::registry r;
    r.add(&p);
    while (!done.load()) {
      if (scraping.load())
        scraped += metrics::to_text(r.collect()).size();
      for (int i = 0; i < 100 && !done.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }};
  double seconds[2] = {0, 0};
  double cpu[2] = {0, 0};
  size_t done_updates[2] = {0, 0};
  for (int k = 0; k < segments; ++k) {
    bool on = ((k + 1) / 2) % 2 == 1;
    h.set_histograms(on);
    scraping = on;
    meter m;
    uint64_t failed = 0;
    ingest(h, twins, per_segment, failed);
    failures += failed;
    seconds[on] += seconds_since(m.t0);
    cpu[on] += cpu_seconds() - m.cpu0;
    done_updates[on] += per_segment;
  }
  done = true;
  scraper.join();
  h.set_histograms(true);
  if (failures > 0)
    die(std::to_string(failures) + " updates failed");
  if (scraped == 0)
    die("no scrape happened");
  off_on c;
  for (int on = 0; on < 2; ++on) {
    auto n = static_cast<double>(done_updates[on]);
    (on ? c.on : c.off) = {n / seconds[on], cpu[on] * 1e6 / n};
  }
  return c;
}

// -- (g) ------------------------------------------------------------------------

/// (b) into `twins` sensors that watch none of their properties for anomalies (off) and as
/// many that watch all four and estimate their RUL (on), in `segments` parts of `per_segment` updates in the order
/// off, on, on, off, ... Each twin first takes `warm` updates untimed, so that its detectors
/// are past their warm-up and score every sample.
off_on ingest_with_and_without_anomalies(host& h, size_t twins, int segments,
                                         size_t per_segment, size_t warm) {
  std::mt19937_64 rng{5};
  create_twins(h, 0, twins, rng, "sensor", "a");
  create_twins(h, 0, twins, rng, "watched_sensor", "w");
  uint64_t failures = 0;
  for (const char* prefix : {"a", "w"}) {
    uint64_t failed = 0;
    ingest(h, twins, twins * warm, failed, prefix);
    failures += failed;
  }
  double seconds[2] = {0, 0};
  double cpu[2] = {0, 0};
  for (int k = 0; k < segments; ++k) {
    bool on = ((k + 1) / 2) % 2 == 1;
    meter m;
    uint64_t failed = 0;
    ingest(h, twins, per_segment, failed, on ? "w" : "a");
    failures += failed;
    seconds[on] += seconds_since(m.t0);
    cpu[on] += cpu_seconds() - m.cpu0;
  }
  if (failures > 0)
    die(std::to_string(failures) + " updates failed");
  off_on c;
  auto n = static_cast<double>(per_segment) * segments / 2;
  for (int on = 0; on < 2; ++on)
    (on ? c.on : c.off) = {n / seconds[on], cpu[on] * 1e6 / n};
  return c;
}

// -- (c) ------------------------------------------------------------------------

struct latency_result {
  double rate = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

latency_result activate(router& rt, size_t first, size_t count, int64_t window) {
  flight_window w{window};
  std::vector<double> lat(count);
  std::atomic<size_t> missing{0};
  auto t0 = clock_type::now();
  for (size_t i = 0; i < count; ++i) {
    w.acquire();
    auto sent = clock_type::now();
    rt.route(sensor_id(first + i), get_request{[&, i, sent](caf::expected<twin_record> r) {
               lat[i] = std::chrono::duration<double, std::milli>(clock_type::now() - sent).count();
               if (!r)
                 missing.fetch_add(1);
               w.release();
             }});
  }
  w.drain();
  latency_result out;
  out.rate = static_cast<double>(count) / seconds_since(t0);
  if (missing > 0)
    die(std::to_string(missing.load()) + " twins were missing on activation");
  out.p50_ms = percentile(lat, 0.50);
  out.p99_ms = percentile(lat, 0.99);
  return out;
}

// -- (e) ------------------------------------------------------------------------

/// Waits for an answer; the benchmark ends if none comes.
template <class T>
T call(const std::function<void(std::function<void(caf::expected<T>)>)>& start) {
  auto r = await_answer<T>(start);
  if (!r)
    die(error_message(r.error()));
  return std::move(*r);
}

void put_twin(router& rt, const std::string& id, const std::string& type,
              const std::string& parent) {
  call<put_result>([&](auto cb) {
    put_request req;
    req.type = type;
    if (!parent.empty())
      req.parent = twin_id::trusted(parent);
    req.done = std::move(cb);
    rt.route(twin_id::trusted(id), std::move(req));
  });
}

/// Time from routing a child's telemetry until `watch` shows the new aggregate.
std::vector<double> aggregate_latency(router& rt, const std::string& watch, int samples) {
  std::vector<double> out;
  for (int s = 0; s < samples; ++s) {
    double temp = 100.0 + s * 0.001;  // a new maximum every time
    auto t0 = clock_type::now();
    ingest_request req;
    req.values = {{"temperature", value{temp}}};
    req.done = [](caf::expected<uint64_t>) {};
    rt.route(twin_id::trusted("bench:agg-child-0"), std::move(req));
    for (;;) {
      auto rec = call<twin_record>([&](auto cb) {
        rt.route(twin_id::trusted(watch), get_request{std::move(cb)});
      });
      auto i = rec.reported.find("max_temperature");
      if (i != rec.reported.end() && i->second == value{temp})
        break;
      if (seconds_since(t0) > 5)
        die("aggregate did not arrive within 5 s");
    }
    out.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"twinbench: twin runtime benchmarks against raw RocksDB"};
  std::string dir = (std::filesystem::temp_directory_path() / "twinbench").string();
  size_t twins = 100'000;
  size_t updates = 2'000'000;
  size_t memory_twins = 1'000'000;
  size_t activations = 100'000;
  int64_t activation_window = 64;
  int threads = 2;
  std::string policy = "sharing";
  int metrics_segments = 16;
  int anomaly_segments = 16;
  size_t anomaly_twins = 10'000;
  app.add_option("--dir", dir, "Scratch directory (wiped)")->capture_default_str();
  app.add_option("--twins", twins, "Twins for (b) and (c)")->capture_default_str();
  app.add_option("--updates", updates, "Updates for (b)")->capture_default_str();
  app.add_option("--memory-twins", memory_twins, "Active twins for (d); 0 skips (d)")
    ->capture_default_str();
  app.add_option("--activations", activations, "Activations for (c)")->capture_default_str();
  app.add_option("--activation-window", activation_window, "Activations in flight for (c)")
    ->capture_default_str();
  app.add_option("--threads", threads, "Actor scheduler threads")->capture_default_str();
  app.add_option("--metrics-parts", metrics_segments,
                 "Parts of (f), each an eighth of --updates, metrics off and on; 0 skips (f)")
    ->capture_default_str();
  app.add_option("--anomaly-parts", anomaly_segments,
                 "Parts of (g), each an eighth of --updates, anomaly detection off and on; "
                 "0 skips (g)")
    ->capture_default_str();
  app.add_option("--anomaly-twins", anomaly_twins,
                 "Twins of each kind in (g), each fed 300 updates before it is timed")
    ->capture_default_str();
  app.add_option("--policy", policy, "Actor scheduler policy: sharing or stealing")
    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  activations = std::min(activations, twins);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto types = bench_types();
  std::printf("twinbench on %u cores; %d scheduler threads, policy %s; scratch %s\n",
              std::thread::hardware_concurrency(), threads, policy.c_str(), dir.c_str());

  auto rsize = record_size();
  auto raw = raw_rocksdb_puts(dir + "/raw", twins, updates, rsize, raw_order::random);
  std::printf("(a) raw RocksDB batched puts, %zu-byte records, WAL on:   %10.0f puts/s"
              "  (%.1f us CPU per put)\n",
              rsize, raw.per_second, raw.cpu_us);
  auto sorted = raw_rocksdb_puts(dir + "/raw-sorted", twins, updates, rsize, raw_order::sorted);
  std::printf("    (the same puts in sorted batches of 4096 with the store's insert hint: "
              "%.0f puts/s)\n",
              sorted.per_second);

  bench_node node{dir + "/twins", 256, threads, policy};
  node.start(types);
  std::mt19937_64 rng{4};
  auto t0 = clock_type::now();
  create_twins(*node.h, 0, twins, rng);
  std::printf("    (setup: %zu twins created in %.1f s)\n", twins, seconds_since(t0));
  uint64_t failures = 0;
  auto rate = ingest(*node.h, twins, updates, failures);
  if (failures > 0)
    die(std::to_string(failures) + " updates failed");
  std::printf("(b) ingest into %zu twins, acked when durable:        %10.0f updates/s"
              "  = %.2f x (a)   [target >= 250000 and >= 0.80 x (a)]\n",
              twins, rate.per_second, rate.per_second / raw.per_second);
  auto& st = node.h->stats();
  std::printf("    (%.1f us CPU per update; store: %.1f records per write batch)\n",
              rate.cpu_us,
              static_cast<double>(st.store_records.load())
                / static_cast<double>(std::max<uint64_t>(1, st.store_writes.load())));

  if (metrics_segments > 0) {
    auto c = ingest_with_and_without_metrics(*node.h, *node.store, twins, metrics_segments,
                                             updates / 8);
    std::printf("(f) ingest with metrics off / on (%d alternating parts): %.0f / %.0f updates/s"
                " = %.1f %% cost   [target < 5 %%]\n",
                metrics_segments, c.off.per_second, c.on.per_second,
                (1 - c.on.per_second / c.off.per_second) * 100);
    std::printf("    (CPU per update off / on: %.2f / %.2f us, %+.1f %%)\n", c.off.cpu_us,
                c.on.cpu_us, (c.on.cpu_us / c.off.cpu_us - 1) * 100);
  }

  if (anomaly_segments > 0) {
    install_rul(*types.find("watched_sensor"));
    auto c = ingest_with_and_without_anomalies(*node.h, anomaly_twins, anomaly_segments,
                                               updates / 8, 300);
    std::printf("(g) ingest into %zu twins with anomaly detection and a RUL model off / on for"
                " all 4 properties (%d alternating parts): %.0f / %.0f updates/s = %.1f %% cost"
                "   [target <= 10 %%]\n",
                anomaly_twins, anomaly_segments, c.off.per_second, c.on.per_second,
                (1 - c.on.per_second / c.off.per_second) * 100);
    std::printf("    (CPU per update off / on: %.2f / %.2f us, %+.1f %%)\n", c.off.cpu_us,
                c.on.cpu_us, (c.on.cpu_us / c.off.cpu_us - 1) * 100);
  }

  node.stop();
  node.start(types);
  auto act = activate(*node.h, 0, activations, activation_window);
  std::printf("(c) cold activations (%lld in flight):                %10.0f /s"
              "  p50 %.3f ms  p99 %.3f ms   [target >= 100000/s, p99 <= 1 ms]\n",
              static_cast<long long>(activation_window), act.rate, act.p50_ms, act.p99_ms);

  // (e) on an otherwise idle node: sensor -> group -> site.
  put_twin(*node.h, "bench:agg-site", "site", "");
  put_twin(*node.h, "bench:agg-group", "group", "bench:agg-site");
  for (int i = 0; i < 4; ++i)
    put_twin(*node.h, "bench:agg-child-" + std::to_string(i), "sensor", "bench:agg-group");
  auto one = aggregate_latency(*node.h, "bench:agg-group", 1000);
  auto two = aggregate_latency(*node.h, "bench:agg-site", 300);
  std::printf("(e) child -> parent aggregate latency, unloaded:      p50 %.3f ms  p99 %.3f ms"
              "   [target p99 <= 10 ms]\n",
              percentile(one, 0.5), percentile(one, 0.99));
  std::printf("    (two levels, child -> grandparent:                p50 %.3f ms  p99 %.3f ms)\n",
              percentile(two, 0.5), percentile(two, 0.99));
  node.close();

  if (memory_twins > 0) {
    // (d): RSS with every twin active minus RSS once they are all passivated (the
    // store's cache is in both; its memtables are flushed before).
    bench_node mem{dir + "/memory", 64, threads, policy};
    host_options opts;
    opts.max_active = memory_twins * 2;
    opts.idle_timeout = std::chrono::hours{24};
    mem.start(types, opts);
    t0 = clock_type::now();
    create_twins(*mem.h, 0, memory_twins, rng);
    auto create_s = seconds_since(t0);
    auto active = mem.h->active_count();
    if (auto err = mem.store->flush())
      die(error_message(err));
    release_free_memory();
    auto with_twins = rss_bytes();
    mem.stop();
    release_free_memory();
    auto without = rss_bytes();
    std::printf("(d) resident memory per active twin (%zu active):  %10.0f bytes"
                "   [target <= 1024]\n",
                active, static_cast<double>(with_twins - without) / static_cast<double>(active));
    std::printf("    (setup: %zu twins created in %.1f s; RSS %.0f MiB active, %.0f MiB after "
                "passivating them)\n",
                memory_twins, create_s, with_twins / 1048576.0, without / 1048576.0);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
