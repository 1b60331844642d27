// The motor's declared dynamics, the device simulator and the factory example end to end.

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <gtest/gtest.h>

#include "factory.hpp"
#include "test_support.hpp"
#include "twin/runtime/dynamics.hpp"
#include "twin/runtime/host.hpp"
#include "twin/runtime/scheduler.hpp"

namespace twin::test {
namespace {

/// A motor as its model file declares it, stepped in simulated seconds.
class motor_dynamics : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(factory::register_types(types_));
    motor_ = types_.find("motor");
  }

  /// A motor at `rpm` (asked for too) with `duty` as its load, cold and new.
  dynamics_state motor(double rpm, double duty) const {
    return dynamics_state_of(*motor_,
                             {{"rpm", value{rpm}},
                              {"duty", value{duty}},
                              {"load", value{duty}},
                              {"temperature", value{22.0}},
                              {"wear", value{0.0}}},
                             {{"rpm", value{rpm}}});
  }
  double& at(dynamics_state& s, const char* name) const {
    return s[static_cast<size_t>(motor_->index_of(name))];
  }
  double& desired(dynamics_state& s, const char* name) const {
    return s[motor_->properties().size() + static_cast<size_t>(motor_->index_of(name))];
  }
  void run(dynamics_state& s, int seconds, std::mt19937_64* rng = nullptr) const {
    for (int i = 0; i < seconds; ++i)
      step_dynamics(*motor_, s, 1.0, rng);
  }

  type_registry types_;
  type_ptr motor_;
};

TEST_F(motor_dynamics, temperature_follows_load_with_a_lag) {
  auto s = motor(3000, 0.9);
  double target = 22 + 75 * 0.9;  // the model's level at full speed, new
  run(s, 1);
  EXPECT_GT(at(s, "temperature"), 22);
  EXPECT_LT(at(s, "temperature"), target - 10);  // lags behind
  run(s, 300);
  EXPECT_NEAR(at(s, "temperature"), target, 5.0);
  EXPECT_DOUBLE_EQ(at(s, "power_kw"), 7.5 * at(s, "load") * at(s, "rpm") / 3000);  // derived
  // Unloaded, it cools down towards ambient.
  at(s, "duty") = 0;
  run(s, 300);
  EXPECT_LT(at(s, "load"), 0.01);
  EXPECT_LT(at(s, "temperature"), 22 + 15);
}

TEST_F(motor_dynamics, wear_grows_with_speed_and_heat) {
  auto slow = motor(600, 0.2);
  auto fast = motor(3600, 1.0);
  run(slow, 3600);
  run(fast, 3600);
  EXPECT_GT(at(slow, "wear"), 0.0);
  EXPECT_GT(at(fast, "wear"), 5 * at(slow, "wear"));
}

TEST_F(motor_dynamics, speed_follows_the_desired_rpm_and_noise_only_in_simulation) {
  auto s = motor(0, 0.5);
  desired(s, "rpm") = 1500;
  run(s, 30);
  EXPECT_NEAR(at(s, "rpm"), 1500, 1e-3);
  desired(s, "rpm") = std::nan("");  // none: the speed holds
  run(s, 5);
  EXPECT_NEAR(at(s, "rpm"), 1500, 1e-3);
  // Without a generator the steps are exact; with one the load and the temperature wander
  // by their declared noise, around the same course.
  auto exact = motor(1500, 0.5);
  auto noisy = exact;
  std::mt19937_64 rng{3};
  double sq = 0;
  for (int i = 0; i < 600; ++i) {
    run(exact, 1);
    run(noisy, 1, &rng);
    double d = at(noisy, "temperature") - at(exact, "temperature");
    sq += d * d;
  }
  EXPECT_EQ(at(exact, "rpm"), at(noisy, "rpm"));  // declared without noise
  double rms = std::sqrt(sq / 600);
  EXPECT_GT(rms, 0.05);
  EXPECT_LT(rms, 5.0);
}

class factory_test : public ::testing::Test {
protected:
  factory_test() {
    configure_scheduler(cfg_, 2);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    store_ = make_memory_store();
  }
  ~factory_test() override {
    if (sim_)
      sim_->stop();
    if (host_)
      host_->stop();
    host_.reset();
    sys_.reset();
  }

  static factory::layout layout_of(int lines, int robots_per_line, int motors_per_robot) {
    factory::layout l;
    l.lines = lines;
    l.robots_per_line = robots_per_line;
    l.motors_per_robot = motors_per_robot;
    return l;
  }

  /// Starts a node with the factory types and a fast simulator (2 simulated seconds per
  /// 20 ms report, so motors heat up quickly) and builds a plant of `l`'s size.
  void start_plant(const factory::layout& l) {
    ASSERT_FALSE(factory::register_types(types_));
    host_ = std::make_unique<host>(*sys_, *store_, types_);
    actors::device_simulator::options so;
    so.period = std::chrono::milliseconds{20};
    so.time_scale = 100.0;
    sim_ = std::make_unique<actors::device_simulator>(*host_, so);
    host_->set_gateway(sim_.get());
    ASSERT_FALSE(host_->start());
    auto created = factory::build_plant(*host_, l, types_, sim_.get());
    ASSERT_TRUE(created) << error_message(created.error());
    EXPECT_EQ(*created, l.twins());
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<state_store> store_;
  type_registry types_;
  std::unique_ptr<host> host_;
  std::unique_ptr<actors::device_simulator> sim_;
};

TEST_F(factory_test, types_come_from_the_embedded_model_files_and_the_motor_adds_cpp) {
  ASSERT_FALSE(factory::register_types(types_));
  EXPECT_EQ(types_.names(), (std::vector<std::string>{"line", "motor", "plant", "robot"}));
  auto motor = types_.find("motor");
  EXPECT_EQ(motor->kind(), twin_kind::component);
  EXPECT_TRUE(motor->property("rpm")->writable);
  EXPECT_TRUE(motor->has_command("stop"));
  EXPECT_EQ(types_.find("robot")->kind(), twin_kind::asset);
  EXPECT_EQ(types_.find("line")->kind(), twin_kind::system);
  EXPECT_EQ(types_.find("plant")->kind(), twin_kind::process);
  EXPECT_TRUE(types_.find("robot")->property("max_temperature")->computed);
  EXPECT_TRUE(motor->property("power_kw")->computed);           // the file's formula
  EXPECT_NE(motor->property("starts"), nullptr);                // the C++ addition
  EXPECT_TRUE(static_cast<bool>(motor->handlers().on_telemetry));
  // The files on disk are the same as the embedded ones.
  type_registry from_disk;
  ASSERT_FALSE(factory::register_types(from_disk, FACTORY_MODELS_DIR));
  EXPECT_EQ(from_disk.names(), types_.names());
  // Alone, the model files give all four types, the motor without its C++ addition.
  type_registry files_only;
  auto n = load_models(FACTORY_MODELS_DIR, files_only);
  ASSERT_TRUE(n) << error_message(n.error());
  EXPECT_EQ(files_only.names(), types_.names());
  EXPECT_EQ(files_only.find("motor")->property("starts"), nullptr);
  EXPECT_TRUE(files_only.find("motor")->property("power_kw")->computed);
}

TEST_F(factory_test, the_plant_comes_alive_and_alerts_roll_up) {
  auto l = layout_of(2, 10, 4);
  ASSERT_NO_FATAL_FAILURE(start_plant(l));
  EXPECT_EQ(host_->counts().twins, static_cast<int64_t>(l.twins()));
  // Building again creates nothing and keeps the state.
  EXPECT_EQ(*factory::build_plant(*host_, l, types_, nullptr), 0u);
  EXPECT_EQ(get(*host_, "factory:robot-1-1")->children.size(), 4u);
  sim_->start();
  ASSERT_TRUE(eventually([&] { return prop(*host_, "factory:plant", "max_temperature").is_number(); }));
  ASSERT_TRUE(eventually([&] { return host_->counts().alerts_critical > 0; }, std::chrono::seconds{20}))
    << "no motor overheated";
  ASSERT_TRUE(eventually([&] { return prop(*host_, "factory:plant", "health") == value{"critical"}; }));
  auto m = get(*host_, "factory:motor-1-1-1");
  ASSERT_TRUE(m);
  for (auto p : {"temperature", "rpm", "load", "wear", "duty", "power_kw"})
    EXPECT_TRUE(m->reported.count(p)) << p;
  EXPECT_EQ(m->metadata.at("temperature").source, "simulator");
  EXPECT_EQ(m->reported.count("starts"), 1u);  // counted by the twin, not reported
  // The twin asks for the speed its device runs at: no delta.
  EXPECT_TRUE(m->desired.count("rpm"));
  EXPECT_TRUE(eventually([&] { return delta(*get(*host_, "factory:motor-1-1-1")).empty(); }));
  EXPECT_GT(sim_->counters().acked.load(), 0u);
  EXPECT_EQ(sim_->counters().failed.load(), 0u);
}

TEST_F(factory_test, stop_command_brings_the_simulated_motor_to_rest) {
  ASSERT_NO_FATAL_FAILURE(start_plant(layout_of(1, 1, 2)));
  sim_->start();
  ASSERT_TRUE(eventually([&] { return prop(*host_, "factory:motor-1-1-1", "rpm").is_number(); }));
  // The C++ handler counted the start; the model file's formula gives the power.
  EXPECT_EQ(prop(*host_, "factory:motor-1-1-1", "starts"), value{int64_t{1}});
  EXPECT_EQ(prop(*host_, "factory:motor-1-1-1", "running"), value{true});
  EXPECT_TRUE(eventually([&] { return prop(*host_, "factory:motor-1-1-1", "power_kw").is_number(); }));
  auto answer = command(*host_, "factory:motor-1-1-1", "stop");
  ASSERT_TRUE(answer) << error_message(answer.error());
  EXPECT_EQ(get(*host_, "factory:motor-1-1-1")->desired.at("rpm"), value{0.0});
  // The device hears the command, slows down and reports 0: the delta clears.
  ASSERT_TRUE(eventually([&] { return prop(*host_, "factory:motor-1-1-1", "rpm") == value{0.0}; }));
  ASSERT_TRUE(eventually([&] { return delta(*get(*host_, "factory:motor-1-1-1")).empty(); }));
  EXPECT_EQ(prop(*host_, "factory:motor-1-1-1", "running"), value{false});
  // Desired rpm set through the API reaches the simulated device the same way: it starts
  // again.
  ASSERT_TRUE(patch(*host_, "factory:motor-1-1-1", {}, {{"rpm", value{2222.0}}}));
  ASSERT_TRUE(eventually([&] { return prop(*host_, "factory:motor-1-1-1", "rpm") == value{2222.0}; }));
  EXPECT_EQ(prop(*host_, "factory:motor-1-1-1", "starts"), value{int64_t{2}});
}

} // namespace
} // namespace twin::test
