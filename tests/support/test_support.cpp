#include "test_support.hpp"

#include <cstdlib>

namespace twin::test {

temp_dir::temp_dir() {
  auto base = std::filesystem::temp_directory_path() / "twin-test-XXXXXX";
  std::string tmpl = base.string();
  if (mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

twin_id id(const std::string& text) {
  auto x = twin_id::parse(text);
  if (!x)
    throw std::runtime_error("bad test id " + text);
  return *x;
}

caf::expected<put_result> put(router& r, const std::string& tid, const std::string& type,
                              const std::string& parent, value_map props, value_map desired,
                              std::optional<uint64_t> if_version) {
  return await_answer<put_result>([&](auto cb) {
    put_request req;
    req.type = type;
    if (!parent.empty())
      req.parent = id(parent);
    req.properties = std::move(props);
    req.desired = std::move(desired);
    req.if_version = if_version;
    req.done = std::move(cb);
    r.route(id(tid), std::move(req));
  });
}

caf::expected<twin_record> get(router& r, const std::string& tid) {
  return await_answer<twin_record>([&](auto cb) { r.route(id(tid), get_request{std::move(cb)}); });
}

caf::expected<uint64_t> ingest(router& r, const std::string& tid, value_map values,
                               int64_t ts_ms) {
  return await_answer<uint64_t>([&](auto cb) {
    ingest_request req;
    req.values = std::move(values);
    req.ts_ms = ts_ms;
    req.done = std::move(cb);
    r.route(id(tid), std::move(req));
  });
}

caf::expected<uint64_t> patch(router& r, const std::string& tid, value_map props,
                              value_map desired, std::optional<uint64_t> if_version) {
  return await_answer<uint64_t>([&](auto cb) {
    patch_request req;
    req.properties = std::move(props);
    req.desired = std::move(desired);
    req.if_version = if_version;
    req.done = std::move(cb);
    r.route(id(tid), std::move(req));
  });
}

caf::expected<uint64_t> remove(router& r, const std::string& tid,
                               std::optional<uint64_t> if_version) {
  return await_answer<uint64_t>([&](auto cb) {
    r.route(id(tid), remove_request{if_version, std::move(cb)});
  });
}

caf::expected<value> command(router& r, const std::string& tid, const std::string& name,
                             value args) {
  return await_answer<value>([&](auto cb) {
    r.route(id(tid), command_request{name, std::move(args), std::move(cb)});
  });
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  return true;
}

value prop(router& r, const std::string& tid, const std::string& name) {
  auto rec = get(r, tid);
  if (!rec)
    return value{};
  auto i = rec->reported.find(name);
  return i == rec->reported.end() ? value{} : i->second;
}

} // namespace twin::test

namespace twin::test {

void add_test_types(type_registry& reg) {
  auto must = [&](caf::expected<type_ptr> t) {
    if (!t)
      throw std::runtime_error(error_message(t.error()));
    if (auto err = reg.add(*t))
      throw std::runtime_error(error_message(err));
  };
  type_builder motor{"motor", twin_kind::component};
  motor.property("temperature", property_type::real).unit("degC").range(-50, 250);
  motor.property("rpm", property_type::real).range(0, 6000).writable();
  motor.property("load", property_type::real).range(0, 1);
  motor.property("mode", property_type::string).writable();
  motor.property("count", property_type::integer);
  motor.command("stop");
  motor.relationship({"feeds", "", {}, true, "what the motor drives"});
  motor.relationship({"mountedOn", "robot", 1, true, ""});
  motor.keep_history("temperature").keep_history("mode");
  motor.alert("warm", "temperature > 70", severity::warning);
  motor.alert("overheat", "temperature > 90", severity::critical);
  must(motor.build());
  type_builder robot{"robot", twin_kind::asset};
  robot.aggregate("max_temperature", aggregate_fn::max, "temperature");
  robot.aggregate("motors", aggregate_fn::count, "");
  robot.aggregate("avg_load", aggregate_fn::avg, "load");
  robot.keep_history("max_temperature");
  must(robot.build());
  type_builder line{"line", twin_kind::system};
  line.aggregate("max_temperature", aggregate_fn::max, "max_temperature");
  must(line.build());
  type_builder plant{"plant", twin_kind::process};
  plant.aggregate("max_temperature", aggregate_fn::max, "max_temperature");
  must(plant.build());
}

} // namespace twin::test
