#include "twinbench_support.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "twin/runtime/rul.hpp"

namespace twinbench {

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](timeval t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

long rss_bytes() {
  std::ifstream f{"/proc/self/statm"};
  long pages = 0;
  long resident = 0;
  f >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(p * static_cast<double>(xs.size() - 1));
  return xs[i];
}

// jemalloc's control interface, when the binary is linked with it.
extern "C" int mallctl(const char*, void*, size_t*, void*, size_t) __attribute__((weak));

void release_free_memory() {
  if (mallctl != nullptr)
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096: all arenas
  malloc_trim(0);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "twinbench: %s\n", msg.c_str());
  std::exit(1);
}

twin_id bench_id(const char* prefix, size_t i) {
  return twin_id::trusted("bench:" + std::string{prefix} + std::to_string(i));
}

twin_id sensor_id(size_t i) {
  return bench_id("s", i);
}

value_map sample(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u{0.0, 1.0};
  return {{"temperature", value{20 + 60 * u(rng)}},
          {"rpm", value{1000 + 2000 * u(rng)}},
          {"load", value{u(rng)}},
          {"wear", value{u(rng) * 0.1}}};
}

void create_twins(router& rt, size_t first, size_t last, std::mt19937_64& rng,
                  const char* type, const char* prefix) {
  flight_window w{20000};
  std::atomic<size_t> failed{0};
  for (size_t i = first; i < last; ++i) {
    w.acquire();
    put_request req;
    req.type = type;
    req.properties = sample(rng);
    req.done = [&](caf::expected<put_result> r) {
      if (!r)
        failed.fetch_add(1);
      w.release();
    };
    rt.route(bench_id(prefix, i), std::move(req));
  }
  w.drain();
  if (failed > 0)
    die(std::to_string(failed.load()) + " twins could not be created");
}

type_builder sensor_type(const char* name, bool watched) {
  type_builder sensor{name, twin_kind::component};
  sensor.property("temperature", property_type::real).range(-50, 250);
  sensor.property("rpm", property_type::real).range(0, 10000);
  sensor.property("load", property_type::real).range(0, 1);
  sensor.property("wear", property_type::real).range(0, 1);
  sensor.alert("overheat", "temperature > 90", severity::critical);
  if (watched) {
    for (auto* p : {"temperature", "rpm", "load", "wear"})
      sensor.detect_anomalies(p);
    sensor.learn_rul();
  }
  return sensor;
}

void install_rul(const twin_type& type) {
  const std::vector<std::string> inputs{"temperature", "rpm", "load", "wear"};
  std::mt19937_64 rng{9};
  std::vector<rul_run> runs(8);
  for (auto& r : runs)
    for (int t = 0; t < 100; ++t) {
      auto v = sample(rng);
      r.ts_ms.push_back(t * 1000);
      for (const auto& name : inputs)
        r.values.push_back(v.at(name).as_double());
    }
  auto m = fit_rul(runs, inputs, rul_options{});
  if (!m)
    die(error_message(m.error()));
  m->type = type.name();
  for (const auto& name : inputs)
    m->positions.push_back(type.index_of(name));
  type.set_rul(std::make_shared<const rul_model>(std::move(*m)));
}

type_registry bench_types() {
  type_registry reg;
  auto sensor = sensor_type("sensor", false);
  auto watched = sensor_type("watched_sensor", true);
  type_builder group{"group", twin_kind::asset};
  group.aggregate("max_temperature", aggregate_fn::max, "temperature");
  type_builder site{"site", twin_kind::process};
  site.aggregate("max_temperature", aggregate_fn::max, "max_temperature");
  for (auto* b : {&sensor, &watched, &group, &site}) {
    auto t = b->build();
    if (!t)
      die(error_message(t.error()));
    reg.add(*t);
  }
  return reg;
}

size_t record_size() {
  std::mt19937_64 rng{1};
  twin_record r;
  r.id = sensor_id(123456);
  r.type = "sensor";
  r.reported = sample(rng);
  r.reported["health"] = value{"ok"};
  for (auto& [k, v] : r.reported)
    r.metadata[k] = property_meta{now_ms(), "telemetry"};
  r.version = 42;
  r.created_ms = r.updated_ms = now_ms();
  return encode(r).size();
}

} // namespace twinbench
