// A real twind whose data directory is on a small filesystem of its own (a tmpfs the test
// mounts): writes are refused with 507 before the disk is full, /readyz says why, reads go
// on, writes resume once there is room again, and a node started on a full disk serves
// reads instead of aborting. Everything acknowledged is still there at the end.

#include <signal.h>

#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "gauge_node_test.hpp"
#include "mqtt_device.hpp"
#include "mqtt_node_test.hpp"

namespace twin::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

/// A tmpfs of `mb` MiB mounted at `dir`, unmounted at the end.
class small_disk {
public:
  small_disk(std::string dir, int mb) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    mounted_ = run_to_end({"/bin/mount", "-t", "tmpfs", "-o", "size=" + std::to_string(mb) + "m",
                           "tmpfs", dir_})
                 .code == 0;
  }
  ~small_disk() {
    if (mounted_)
      run_to_end({"/bin/umount", "-l", dir_});
  }
  bool mounted() const { return mounted_; }
  bool resize(int mb) {
    return run_to_end({"/bin/mount", "-o", "remount,size=" + std::to_string(mb) + "m", dir_})
             .code
           == 0;
  }
  /// Fills what is left with a file (at most 1 GiB).
  void fill(const std::string& name) {
    std::ofstream f{dir_ + "/" + name, std::ios::binary};
    std::string mib(1 << 20, 'b');
    for (int i = 0; i < 1024 && f.write(mib.data(), mib.size()); ++i)
      f.flush();
  }

private:
  std::string dir_;
  bool mounted_ = false;
};

class disk_full_test : public ::testing::Test {
protected:
  void SetUp() override {
    disk_ = std::make_unique<small_disk>(dir_.sub("disk"), 192);
    if (!disk_->mounted())
      GTEST_SKIP() << "CANNOT MOUNT A TMPFS (the test needs root or CAP_SYS_ADMIN): the full "
                      "disk test did not run";
    port_ = free_port();
    ASSERT_NO_FATAL_FAILURE(start());
  }

  void TearDown() override {
    client_.reset();
    if (node_) {
      node_->signal(SIGTERM);
      node_->wait(30s);
    }
    node_.reset();
  }

  /// twind's arguments beyond the data directory and the reserve.
  virtual std::vector<std::string> extra_args() { return {"--metrics-port", "0"}; }

  void start() {
    auto args = extra_args();
    args.insert(args.end(), {"--data-dir", dir_.sub("disk/data"), "--min-free-mb", "32"});
    node_ = start_gauge_node(dir_, port_, args);
    ASSERT_TRUE(wait_for_200(port_, "/healthz", 20s)) << node_->stderr_text();
    client_ = std::make_unique<http_client>(port_);
  }

  /// A twin with a label of 600 KB that does not compress.
  http_reply put_big(const std::string& id) {
    std::string label(600'000, ' ');
    for (auto& c : label)
      c = static_cast<char>('0' + rng_() % 64);
    labels_[id] = label;
    return client_->call("PUT", "/v1/twins/" + id,
                         json{{"type", "gauge"}, {"properties", {{"label", label}}}}.dump(),
                         json_type);
  }

  /// Every twin acknowledged so far can be read with its label.
  void expect_acknowledged_intact() {
    for (const auto& id : acknowledged_) {
      auto r = client_->call("GET", "/v1/twins/" + id);
      ASSERT_EQ(r.status, 200u) << id;
      EXPECT_EQ(json::parse(r.body)["properties"]["label"], labels_[id]) << id;
    }
  }

  /// PUTs until the disk is full: a PUT is refused, and again a second later (a refusal
  /// can start a flush that makes room). At most 1,000 PUTs; returns the last refusal.
  http_reply fill_until_refused() {
    bool refused_before = false;
    for (int i = 0; i < 1000; ++i) {
      auto id = "t:big" + std::to_string(next_++);
      auto r = put_big(id);
      if (r.status != 201 && (refused_before || r.status != 507))
        return r;
      refused_before = r.status != 201;
      if (refused_before)
        std::this_thread::sleep_for(1200ms);
      else
        acknowledged_.push_back(id);
    }
    return {};
  }

  temp_dir dir_;
  std::unique_ptr<small_disk> disk_;
  int port_ = 0;
  std::unique_ptr<process> node_;
  std::unique_ptr<http_client> client_;
  std::mt19937 rng_{42};
  std::map<std::string, std::string> labels_;
  std::vector<std::string> acknowledged_;
  int next_ = 0;
};

TEST_F(disk_full_test, writes_are_refused_before_the_disk_is_full_and_resume_when_it_has_room) {
  auto refused = fill_until_refused();
  ASSERT_EQ(refused.status, 507u) << refused.body;
  EXPECT_EQ(json::parse(refused.body)["error"]["code"], "insufficient_storage");
  ASSERT_GT(acknowledged_.size(), 10u);
  // Not ready, saying why; alive, and reading.
  auto ready = client_->call("GET", "/readyz");
  EXPECT_EQ(ready.status, 503u);
  EXPECT_NE(json::parse(ready.body)["checks"]["store"]["detail"].get<std::string>().find(
              "disk of"),
            std::string::npos)
    << ready.body;
  EXPECT_EQ(client_->call("GET", "/healthz").status, 200u);
  ASSERT_NO_FATAL_FAILURE(expect_acknowledged_intact());

  // Room again: writes resume by themselves.
  ASSERT_TRUE(disk_->resize(384));
  ASSERT_TRUE(eventually([&] { return put_big("t:after-resize").status == 201; }, 20s));
  acknowledged_.push_back("t:after-resize");
  EXPECT_TRUE(eventually([&] { return client_->call("GET", "/readyz").status == 200; }));

  // Killed, and started again on a disk with no room at all: it serves what it has.
  node_->signal(SIGKILL);
  node_->wait(10s);
  disk_->fill("ballast");
  ASSERT_NO_FATAL_FAILURE(start());
  EXPECT_FALSE(node_->wait(500ms)) << "the node ended: " << node_->stderr_text();
  auto read_only = client_->call("GET", "/readyz");
  EXPECT_EQ(read_only.status, 503u);
  EXPECT_NE(read_only.body.find("reading only"), std::string::npos) << read_only.body;
  ASSERT_NO_FATAL_FAILURE(expect_acknowledged_intact());
  EXPECT_EQ(put_big("t:while-full").status, 507u);

  // Room again: the store opens for writing by itself.
  std::filesystem::remove(dir_.sub("disk/ballast"));
  ASSERT_TRUE(disk_->resize(768));
  ASSERT_TRUE(eventually([&] { return put_big("t:reopened").status == 201; }, 20s))
    << node_->stderr_text();
  acknowledged_.push_back("t:reopened");
  EXPECT_TRUE(eventually([&] { return client_->call("GET", "/readyz").status == 200; }));
  ASSERT_NO_FATAL_FAILURE(expect_acknowledged_intact());
}

/// The same with a broker: QoS 1 telemetry that comes while the disk is full is not
/// acknowledged, and is applied once there is room again.
class disk_full_mqtt_test : public disk_full_test {
protected:
  void SetUp() override {
    if (mosquitto_path().empty())
      GTEST_SKIP() << "MOSQUITTO IS NOT INSTALLED: run scripts/setup; the test did not run";
    broker_port_ = free_port();
    broker_ = start_mosquitto(dir_, broker_port_);
    metrics_port_ = free_port();
    disk_full_test::SetUp();
  }

  std::vector<std::string> extra_args() override {
    return {"--metrics-port", std::to_string(metrics_port_), "--mqtt-url",
            "tcp://127.0.0.1:" + std::to_string(broker_port_), "--mqtt-client-id", "twind-disk"};
  }

  double deferred() {
    return metric_value(metrics_port_,
                        R"(twin_ingest_messages_total{source="mqtt",result="deferred"})");
  }

  int broker_port_ = 0;
  int metrics_port_ = 0;
  std::unique_ptr<process> broker_;
};

TEST_F(disk_full_mqtt_test, qos1_telemetry_on_a_full_disk_waits_in_the_broker_until_there_is_room) {
  ASSERT_EQ(client_->call("PUT", "/v1/twins/t:g", json{{"type", "gauge"}}.dump(), json_type)
              .status,
            201u);
  ASSERT_EQ(fill_until_refused().status, 507u);
  disk_->fill("ballast");  // no room at all: the telemetry cannot get in
  device d{broker_port_};
  ASSERT_TRUE(d.publish("twins/t:g/telemetry", R"({"level": 77})"));
  ASSERT_TRUE(eventually([&] { return deferred() >= 1; })) << node_->stderr_text();
  EXPECT_EQ(json::parse(client_->call("GET", "/v1/twins/t:g").body)["properties"].count("level"),
            0u);
  // Room again: the broker sends it once more, and this time it is applied.
  std::filesystem::remove(dir_.sub("disk/ballast"));
  ASSERT_TRUE(disk_->resize(384));
  EXPECT_TRUE(eventually([&] {
    auto twin = json::parse(client_->call("GET", "/v1/twins/t:g").body);
    return twin["properties"].value("level", 0.0) == 77.0;
  }, 40s)) << node_->stderr_text();
}

TEST(store_limit, writes_beyond_the_store_limit_are_refused_and_reads_go_on) {
  temp_dir dir;
  int port = free_port();
  auto node = start_gauge_node(dir, port, {"--metrics-port", "0", "--max-disk-mb", "24"});
  ASSERT_TRUE(wait_for_200(port, "/readyz", 20s)) << node->stderr_text();
  http_client c{port};
  std::string label(500'000, 'z');
  http_reply refused;
  int taken = 0;
  for (int i = 0; i < 200 && refused.status == 0; ++i) {
    label[0] = static_cast<char>('a' + i % 26);
    auto r = c.call("PUT", "/v1/twins/t:z" + std::to_string(i),
                    json{{"type", "gauge"}, {"properties", {{"label", label}}}}.dump(), json_type);
    if (r.status == 201)
      ++taken;
    else
      refused = r;
  }
  ASSERT_EQ(refused.status, 507u) << refused.body;
  EXPECT_NE(refused.body.find("limit of 24 MiB"), std::string::npos) << refused.body;
  EXPECT_GT(taken, 10);
  EXPECT_LT(taken, 40);  // about 18 MB of labels: three quarters of the limit
  EXPECT_EQ(c.call("GET", "/v1/twins/t:z0").status, 200u);
  node->signal(SIGTERM);
  EXPECT_EQ(node->wait(30s), 0) << node->stderr_text();
}

} // namespace
} // namespace twin::test
