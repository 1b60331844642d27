#include "factory.hpp"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <tuple>

#include "twin/runtime/errc.hpp"

namespace twin::factory {

using namespace twin::runtime;

// Generated from models/*.json by CMake.
extern const std::vector<std::pair<std::string, std::string>> embedded_models;

namespace {

/// What a model file cannot declare, written with the SDK: the motor of `motor.json`, plus
/// how many times it started (its rpm went from 0 to more), counted by a telemetry handler
/// that remembers whether it runs.
caf::expected<type_ptr> motor_type(std::string_view model, const std::string& origin) {
  auto b = model_builder(model, origin);
  if (!b)
    return b.error();
  b->property("running", property_type::boolean).describe("rpm above 0 at the last report");
  b->property("starts", property_type::integer).describe("times the rpm rose from 0");
  type_handlers h;
  h.on_telemetry = [](twin_context& ctx, const value_map& values) {
    // The rpm as applied: a sample older than the twin's does not change it.
    auto* rpm = values.count("rpm") > 0 ? ctx.get("rpm") : nullptr;
    if (rpm == nullptr || !rpm->is_number())
      return;
    bool running = rpm->as_double() > 0;
    auto* was = ctx.get("running");
    if (running && (was == nullptr || !was->is_bool() || !was->as_bool())) {
      auto* starts = ctx.get("starts");
      ctx.set("starts", value{(starts != nullptr && starts->is_int() ? starts->as_int() : 0) + 1});
    }
    if (was == nullptr || *was != value{running})
      ctx.set("running", value{running});
  };
  b->handlers(std::move(h));
  return b->build();
}

} // namespace

caf::error register_types(type_registry& reg, const std::string& models_dir) {
  // The model files: {file name, origin, text}.
  std::vector<std::tuple<std::string, std::string, std::string>> files;
  if (models_dir.empty()) {
    for (const auto& [name, text] : embedded_models)
      files.emplace_back(name, "embedded " + name, text);
  } else {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator{models_dir, ec})
      if (e.is_regular_file() && e.path().extension() == ".json") {
        std::ifstream in{e.path()};
        std::stringstream text;
        text << in.rdbuf();
        if (!in)
          return make_error(runtime_errc::invalid_model,
                            "cannot read model file " + e.path().string());
        files.emplace_back(e.path().filename().string(), e.path().string(), text.str());
      }
    if (ec)
      return make_error(runtime_errc::invalid_model,
                        "cannot list model directory " + models_dir + ": " + ec.message());
  }
  // The motor with its C++ additions first; then the others, which name it, as one set.
  std::vector<std::pair<std::string, std::string>> others;
  for (const auto& [name, origin, text] : files) {
    if (name != "motor.json") {
      others.emplace_back(origin, text);
      continue;
    }
    auto motor = motor_type(text, origin);
    if (!motor)
      return motor.error();
    if (auto err = reg.add(*motor))
      return err;
  }
  auto types = parse_models(others, reg);
  if (!types)
    return types.error();
  for (const auto& t : *types)
    if (auto err = reg.add(t))
      return err;
  return reg.check_links();
}

namespace {

/// A twin to create: id, type, parent, properties, desired values.
using twin_spec = std::tuple<twin_id, std::string, twin_id, value_map, value_map>;

/// Creates `twins` in parallel; existing ones are kept.
caf::expected<size_t> create_all(router& rt, std::vector<twin_spec> twins) {
  std::atomic<size_t> created{0};
  std::atomic<size_t> pending{twins.size()};
  std::promise<void> all_done;
  auto done_future = all_done.get_future();
  std::mutex err_mtx;
  caf::error first_error;
  if (twins.empty())
    return size_t{0};
  for (auto& [id, type, parent, props, desired] : twins) {
    put_request req;
    req.type = type;
    req.parent = parent;
    req.properties = std::move(props);
    req.desired = std::move(desired);
    req.if_version = 0;  // create only: a restart keeps the existing state
    req.done = [&](caf::expected<put_result> r) {
      if (r) {
        created.fetch_add(1);
      } else if (error_code(r.error()) != runtime_errc::version_conflict) {
        std::lock_guard<std::mutex> guard{err_mtx};
        if (!first_error)
          first_error = r.error();
      }
      if (pending.fetch_sub(1) == 1)
        all_done.set_value();
    };
    rt.route(id, std::move(req));
  }
  if (done_future.wait_for(std::chrono::seconds{120}) != std::future_status::ready)
    return make_error(runtime_errc::timeout, "creating the plant took longer than 120 s");
  if (first_error)
    return first_error;
  return created.load();
}

/// The name of motor `mi` of robot `ri` of line `li` (each from 1).
std::string motor_name(int li, int ri, int mi) {
  return "motor-" + std::to_string(li) + "-" + std::to_string(ri) + "-" + std::to_string(mi);
}

/// A motor of the plant as its device starts: how it runs, and the speed it is asked for.
struct motor_start {
  std::string name;
  value_map reported;
  value_map desired;
};

/// The plant's motors, the same each time. Most run comfortably; a few are driven hard and
/// overheat, some run warm.
std::vector<motor_start> motor_starts(const layout& l) {
  std::mt19937_64 rng{7};
  std::uniform_real_distribution<double> unit{0.0, 1.0};
  std::vector<motor_start> out;
  for (int li = 1; li <= l.lines; ++li)
    for (int ri = 1; ri <= l.robots_per_line; ++ri)
      for (int mi = 1; mi <= l.motors_per_robot; ++mi) {
        double r = unit(rng);
        double duty = r < 0.03 ? 0.95 : r < 0.10 ? 0.8 : 0.3 + 0.3 * unit(rng);
        double rpm = r < 0.03 ? 3600 : r < 0.10 ? 3000 : std::round(1200 + 600 * unit(rng));
        double wear = 0.5 * unit(rng) * unit(rng);
        double temperature = 22 + 5 * unit(rng);
        out.push_back({motor_name(li, ri, mi),
                       {{"duty", value{duty}},
                        {"load", value{duty}},
                        {"rpm", value{rpm}},
                        {"wear", value{wear}},
                        {"temperature", value{temperature}}},
                       {{"rpm", value{rpm}}}});
      }
  return out;
}

} // namespace

caf::expected<size_t> build_plant(router& rt, const layout& l, const type_registry& types,
                                  actors::device_simulator* sim) {
  auto make_id = [&](const std::string& name) { return twin_id::parse(l.ns + ":" + name); };
  auto plant = make_id("plant");
  if (!plant)
    return plant.error();
  std::vector<twin_spec> level;
  level.emplace_back(*plant, "plant", twin_id{}, value_map{{"site", value{"demo"}}}, value_map{});
  size_t created = 0;
  auto flush = [&]() -> caf::error {
    auto n = create_all(rt, std::move(level));
    level.clear();
    if (!n)
      return n.error();
    created += *n;
    return {};
  };
  if (auto err = flush())
    return err;
  for (int li = 1; li <= l.lines; ++li)
    level.emplace_back(*make_id("line-" + std::to_string(li)), "line", *plant,
                       value_map{{"product", value{"P" + std::to_string(li)}}}, value_map{});
  if (auto err = flush())
    return err;
  for (int li = 1; li <= l.lines; ++li)
    for (int ri = 1; ri <= l.robots_per_line; ++ri)
      level.emplace_back(*make_id("robot-" + std::to_string(li) + "-" + std::to_string(ri)),
                         "robot", *make_id("line-" + std::to_string(li)),
                         value_map{{"model", value{ri % 2 == 0 ? "KR-60" : "IRB-6700"}}},
                         value_map{});
  if (auto err = flush())
    return err;
  // A motor's twin asks for the speed its device starts at.
  auto motors = motor_starts(l);
  size_t m = 0;
  for (int li = 1; li <= l.lines; ++li)
    for (int ri = 1; ri <= l.robots_per_line; ++ri)
      for (int mi = 1; mi <= l.motors_per_robot; ++mi, ++m)
        level.emplace_back(*make_id(motors[m].name), "motor",
                           *make_id("robot-" + std::to_string(li) + "-" + std::to_string(ri)),
                           value_map{}, motors[m].desired);
  if (auto err = flush())
    return err;
  if (sim != nullptr)
    if (auto err = add_motors(l, types, *sim))
      return err;
  return created;
}

caf::error add_motors(const layout& l, const type_registry& types,
                      actors::device_simulator& sim) {
  auto motor = types.find("motor");
  if (!motor)
    return make_error(runtime_errc::unknown_type, "no motor type to simulate");
  for (auto& m : motor_starts(l)) {
    auto id = twin_id::parse(l.ns + ":" + m.name);
    if (!id)
      return id.error();
    sim.add_device(*id, motor, m.reported, m.desired);
  }
  return {};
}

} // namespace twin::factory
