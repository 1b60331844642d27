#include "twin/runtime/probe.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "twin/runtime/host.hpp"
#include "twin/runtime/state_store.hpp"
#include "twin/runtime/version.hpp"

namespace twin::runtime {

namespace {

using metrics::family;
using metrics::metric_type;

/// The first number in `path`, 0 if it has none (e.g. "max").
uint64_t read_number(const std::string& path) {
  std::ifstream in{path};
  uint64_t n = 0;
  in >> n;
  return n;
}

/// The smallest memory limit of this process's cgroups (v1 or v2), 0 if none is set.
uint64_t cgroup_memory_limit() {
  std::ifstream in{"/proc/self/cgroup"};
  std::string line;
  uint64_t limit = 0;
  auto consider = [&limit](uint64_t n) {
    if (n > 0 && n < (uint64_t{1} << 62) && (limit == 0 || n < limit))
      limit = n;
  };
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos)
      continue;
    auto controllers = line.substr(a + 1, b - a - 1);
    auto path = line.substr(b + 1);
    if (controllers.empty()) {  // v2: the group's limit and those of the groups above it
      for (;;) {
        consider(read_number("/sys/fs/cgroup" + path + "/memory.max"));
        auto up = path.rfind('/');
        if (up == std::string::npos || path.size() <= 1)
          break;
        path.resize(up == 0 ? 1 : up);
      }
    } else if (controllers == "memory") {
      consider(read_number("/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"));
      consider(read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    }
  }
  return limit;
}

/// Seconds since the epoch at which the machine booted.
double boot_time() {
  std::ifstream in{"/proc/stat"};
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

} // namespace

process_stats read_process_stats() {
  process_stats p;
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::ifstream in{"/proc/self/stat"};
  std::string stat{std::istreambuf_iterator<char>{in}, {}};
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    // After the command's name: state (field 3) ... utime (14), stime (15), threads (20),
    // starttime (22), vsize (23), rss (24).
    std::istringstream fields{stat.substr(close + 2)};
    std::vector<std::string> f{std::istream_iterator<std::string>{fields}, {}};
    auto field = [&f](size_t n) { return n - 3 < f.size() ? std::stod(f[n - 3]) : 0.0; };
    p.cpu_seconds = (field(14) + field(15)) / ticks;
    p.threads = static_cast<uint64_t>(field(20));
    p.start_time_seconds = boot_time() + field(22) / ticks;
    p.virtual_bytes = static_cast<uint64_t>(field(23));
    p.resident_bytes = static_cast<uint64_t>(field(24)) * page;
  }
  auto physical = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * page;
  auto cgroup = cgroup_memory_limit();
  p.memory_limit_bytes = cgroup > 0 ? std::min(cgroup, physical) : physical;
  std::error_code ec;
  for (std::filesystem::directory_iterator it{"/proc/self/fd", ec}, end; !ec && it != end;
       it.increment(ec))
    ++p.open_fds;
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0)
    p.max_fds = files.rlim_cur;
  return p;
}

probe::probe(const host& h, state_store& store) : host_(h), store_(store) {
}

void probe::collect(std::vector<family>& out) const {
  auto counter = [&out](const char* name, const char* help, double v) {
    out.push_back(metrics::single(name, help, metric_type::counter, v));
  };
  auto gauge = [&out](const char* name, const char* help, double v) {
    out.push_back(metrics::single(name, help, metric_type::gauge, v));
  };
  auto histogram = [&out](const char* name, const char* help, const metrics::histogram& h) {
    out.push_back(family{name, help, metric_type::histogram, {{{}, 0, h.snapshot()}}});
  };
  auto labelled = [&out](const char* name, const char* help, metric_type type) -> family& {
    out.push_back(family{name, help, type, {}});
    return out.back();
  };
  auto n = [](auto v) { return static_cast<double>(v); };

  // Twins and requests.
  const auto& s = host_.stats();
  auto c = host_.counts();
  gauge("twin_twins_active", "Twins active in memory (one actor each).", n(host_.active_count()));
  gauge("twin_twins_stored", "Twins stored on this node.", n(c.twins));
  counter("twin_activations_total", "Twin activations (record loaded).", n(s.activations.load()));
  counter("twin_passivations_total", "Twin passivations.", n(s.passivations.load()));
  auto& messages = labelled("twin_messages_total", "Requests routed to twins, by kind.",
                            metric_type::counter);
  for (const auto& m : host_.message_counts())
    messages.samples.push_back({{{"kind", m.kind}}, n(m.count), {}});
  counter("twin_updates_total", "Accepted changes made durable.", n(s.updates.load()));
  histogram("twin_update_latency_seconds",
            "Time from a change's request reaching the runtime to the change being durable.",
            s.update_latency);
  counter("twin_requests_rejected_total", "Requests rejected by validation.",
          n(s.rejected.load()));
  auto& alerts = labelled("twin_alerts_active", "Active alerts of twins, by severity.",
                          metric_type::gauge);
  alerts.samples.push_back({{{"severity", "warning"}}, n(c.alerts_warning), {}});
  alerts.samples.push_back({{{"severity", "critical"}}, n(c.alerts_critical), {}});

  // The store writer (group commit).
  counter("twin_store_write_batches_total", "Group commits written to the store.",
          n(s.store_writes.load()));
  counter("twin_store_records_written_total", "Twin records written or deleted in the store.",
          n(s.store_records.load()));
  counter("twin_store_write_errors_total", "Group commits the store failed to write.",
          n(s.store_errors.load()));
  histogram("twin_store_write_batch_records", "Twin records per group commit.", s.write_records);
  histogram("twin_store_write_duration_seconds", "Time one group commit took to be durable.",
            s.write_duration);

  // The store's own figures.
  auto st = store_.stats();
  auto per_part = [&](const char* name, const char* help, uint64_t store_part_stats::*field) {
    auto& f = labelled(name, help, metric_type::gauge);
    for (const auto& p : st.parts)
      f.samples.push_back({{{"column_family", p.name}}, n(p.*field), {}});
  };
  per_part("twin_store_keys", "Keys in the store (estimated), by column family.",
           &store_part_stats::keys);
  per_part("twin_store_memtable_bytes", "Bytes in the store's memtables, by column family.",
           &store_part_stats::memtable_bytes);
  per_part("twin_store_sst_bytes", "Bytes of the store's table files, by column family.",
           &store_part_stats::sst_bytes);
  per_part("twin_store_pending_compaction_bytes",
           "Bytes compaction has yet to rewrite (estimated), by column family.",
           &store_part_stats::pending_compaction_bytes);
  gauge("twin_store_running_compactions", "Compactions running.", n(st.running_compactions));
  gauge("twin_store_running_flushes", "Memtable flushes running.", n(st.running_flushes));
  gauge("twin_store_block_cache_bytes", "Bytes in the store's block cache.",
        n(st.block_cache_bytes));
  gauge("twin_store_write_stopped", "1 while the store stops writes until compaction catches up.",
        st.write_stopped ? 1 : 0);
  gauge("twin_store_delayed_write_rate_bytes_per_second",
        "The rate writes are held to while the store slows them down; 0 when it does not.",
        n(st.delayed_write_rate));
  auto& stalls = labelled("twin_store_write_stalls_total",
                          "Times the store slowed down or stopped writes (since it opened).",
                          metric_type::counter);
  stalls.samples.push_back({{{"kind", "slowdown"}}, n(st.stalls_slowdown), {}});
  stalls.samples.push_back({{{"kind", "stop"}}, n(st.stalls_stop), {}});
  counter("twin_store_background_errors_total",
          "Flushes or compactions that failed (since the store opened).",
          n(st.background_errors));
  gauge("twin_store_writable",
        "1 while the store takes writes; 0 while it refuses them (its disk is short of space, "
        "or a flush or compaction failed; /readyz says why).",
        store_.write_failure().empty() ? 1 : 0);
  gauge("twin_store_disk_free_bytes", "Bytes free on the filesystem of the store's files.",
        n(st.disk_free_bytes));
  gauge("twin_store_disk_reserve_bytes",
        "Bytes of that free space that writes never use (--min-free-mb).",
        n(st.disk_reserve_bytes));

  // The build and the process.
  auto& build = labelled("twin_build_info", "Build of this node; the value is always 1.",
                         metric_type::gauge);
  build.samples.push_back({{{"version", version}}, 1, {}});
  auto p = read_process_stats();
  counter("process_cpu_seconds_total", "CPU time of the process, user and system.",
          p.cpu_seconds);
  gauge("process_resident_memory_bytes", "Resident memory of the process.",
        n(p.resident_bytes));
  gauge("process_virtual_memory_bytes", "Virtual memory of the process.",
        n(p.virtual_bytes));
  gauge("twin_memory_limit_bytes",
        "Memory the process may use: its cgroup's limit, else the machine's memory.",
        n(p.memory_limit_bytes));
  gauge("process_open_fds", "Open file descriptors.", n(p.open_fds));
  gauge("process_max_fds", "The limit of open file descriptors.", n(p.max_fds));
  gauge("process_threads", "Threads of the process.", n(p.threads));
  gauge("process_start_time_seconds", "When the process started, since the epoch.",
        p.start_time_seconds);
}

} // namespace twin::runtime
