// Host runtime tests: the relay against real loopback TCP backends, the backend pool, and the
// supervisor against real child processes that speak the enclave control protocol.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "host/metrics.h"
#include "host/net.h"
#include "host/relay.h"
#include "host/supervisor.h"

namespace tenet::host {
namespace {

// A loopback TCP server that answers every connection with `tag` followed by an echo of what it
// reads, until the peer closes.
class EchoServer {
 public:
  explicit EchoServer(char tag) : tag_(tag) {
    fd_ = listen_tcp({"127.0.0.1", 0}, 64, &port_).value();
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::thread([this, c] {
          (void)!::send(c, &tag_, 1, MSG_NOSIGNAL);
          char buf[4096];
          ssize_t n;
          while ((n = ::recv(c, buf, sizeof(buf), 0)) > 0) (void)!::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
          ::close(c);
        }).detach();
      }
    });
  }
  ~EchoServer() { close_listener(); }
  void close_listener() {
    if (fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
      ::close(fd_);
      fd_ = -1;
    }
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  char tag_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

std::string exchange(uint16_t port, const std::string& msg, size_t expect) {
  const int fd = connect_tcp({"127.0.0.1", port}, 1000).value();
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)!::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  while (got.size() < expect) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return got;
}

TEST(HostNet, ParsesAddresses) {
  EXPECT_EQ(parse_host_port("127.0.0.1:8000")->port, 8000);
  EXPECT_EQ(parse_host_port(":9")->host, "");
  EXPECT_EQ(parse_host_port("[::1]:80")->host, "::1");
  EXPECT_FALSE(parse_host_port("localhost").ok());
  EXPECT_FALSE(parse_host_port("h:70000").ok());
  EXPECT_FALSE(parse_host_port("h:-1").ok());
  EXPECT_FALSE(parse_host_port("h:").ok());
  EXPECT_FALSE(parse_host_port("[::1:80").ok());
}

TEST(HostRelay, SpreadsConnectionsAndRelaysBytes) {
  EchoServer a('A'), b('B');
  auto pool = std::make_shared<BackendPool>(2);
  pool->set_up(0, {"127.0.0.1", a.port()});
  pool->set_up(1, {"127.0.0.1", b.port()});
  auto relay = Relay::start({{"127.0.0.1", 0}, "test"}, pool, nullptr).value();
  // Two concurrent connections land on different backends (fewest connections first).
  const int c1 = connect_tcp({"127.0.0.1", relay->port()}, 1000).value();
  char t1 = 0;
  ASSERT_EQ(::recv(c1, &t1, 1, 0), 1);
  const std::string second = exchange(relay->port(), "hello", 6);
  EXPECT_EQ(second.size(), 6u);
  EXPECT_NE(second[0], t1);
  EXPECT_EQ(second.substr(1), "hello");
  ::close(c1);
  // A large payload goes through intact.
  const std::string big(300000, 'x');
  EXPECT_EQ(exchange(relay->port(), big, big.size() + 1).substr(1), big);
  relay->stop();
}

TEST(HostRelay, NoLiveEnclaveClosesAtOnce) {
  auto pool = std::make_shared<BackendPool>(1);
  auto relay = Relay::start({{"127.0.0.1", 0}, "test"}, pool, nullptr).value();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(exchange(relay->port(), "x", 1), "");  // closed, not hung
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(HostRelay, DeadBackendIsSkipped) {
  EchoServer a('A');
  auto pool = std::make_shared<BackendPool>(2);
  uint16_t dead_port = 0;
  const int dead = listen_tcp({"127.0.0.1", 0}, 1, &dead_port).value();
  ::close(dead);  // nothing listens there any more
  pool->set_up(0, {"127.0.0.1", dead_port});
  pool->set_up(1, {"127.0.0.1", a.port()});
  auto relay = Relay::start({{"127.0.0.1", 0}, "test"}, pool, nullptr).value();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(exchange(relay->port(), "ok", 3), "Aok");
}

TEST(HostRelay, StopClosesOpenConnections) {
  EchoServer a('A');
  auto pool = std::make_shared<BackendPool>(1);
  pool->set_up(0, {"127.0.0.1", a.port()});
  auto relay = Relay::start({{"127.0.0.1", 0}, "test"}, pool, nullptr).value();
  const int c = connect_tcp({"127.0.0.1", relay->port()}, 1000).value();
  char t = 0;
  ASSERT_EQ(::recv(c, &t, 1, 0), 1);
  relay->stop();
  EXPECT_LE(::recv(c, &t, 1, 0), 0);
  ::close(c);
}

TEST(HostSupervisor, StartsRestartsAndStops) {
  EchoServer a('A');
  auto http = std::make_shared<BackendPool>(2);
  auto grpc = std::make_shared<BackendPool>(2);
  std::atomic<int> exits{0}, readies{0};
  // A stand-in enclave: announces ports, then instance 1 exits after a moment (a crash).
  const std::string script = "echo '{\"event\":\"ready\",\"http_port\":" + std::to_string(a.port()) +
                             ",\"grpc_port\":" + std::to_string(a.port()) +
                             "}'; echo 'not json'; if [ \"$2\" = 1 ]; then sleep 0.2; exit 3; fi; sleep 30";
  SupervisorOptions o;
  o.argv = {"/bin/sh", "-c", script, "fake-enclave"};
  o.count = 2;
  o.restart_backoff_ms = 50;
  auto sup = Supervisor::start(o, http, grpc, [&](size_t, const nlohmann::json& ev) { readies += ev["event"] == "ready"; },
                               [&](size_t slot, int, bool restarting) { exits += slot == 1 && restarting; })
                 .value();
  EXPECT_EQ(http->live_count(), 2u);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (exits < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(exits.load(), 2);   // crashed and was restarted at least once
  EXPECT_GE(readies.load(), 3);
  sup->stop();
  for (int pid : sup->pids()) EXPECT_EQ(pid, 0);
  EXPECT_EQ(http->live_count(), 0u);
}

TEST(HostSupervisor, EnclaveThatNeverGetsReadyFails) {
  SupervisorOptions o;
  o.argv = {"/bin/sh", "-c", "sleep 30", "x"};
  o.ready_timeout_ms = 500;
  auto sup = Supervisor::start(o, std::make_shared<BackendPool>(1), std::make_shared<BackendPool>(1), nullptr, nullptr);
  ASSERT_FALSE(sup.ok());
  EXPECT_NE(sup.status().message().find("did not become ready"), std::string::npos);
  // A malformed ready line (port 0) is a broken enclave: killed, and reported.
  o.argv = {"/bin/sh", "-c", "echo '{\"event\":\"ready\",\"http_port\":0}'; sleep 30", "x"};
  sup = Supervisor::start(o, std::make_shared<BackendPool>(1), std::make_shared<BackendPool>(1), nullptr, nullptr);
  ASSERT_FALSE(sup.ok());
  EXPECT_NE(sup.status().message().find("exited before it was ready (signal 9"), std::string::npos) << sup.status().message();
}

TEST(HostSupervisor, EnclaveThatExitsBeforeReadyFailsFast) {
  SupervisorOptions o;
  o.argv = {"/bin/sh", "-c", "echo 'tenet enclave: wrong model key' >&2; exit 1", "x"};
  const auto t0 = std::chrono::steady_clock::now();
  auto sup = Supervisor::start(o, std::make_shared<BackendPool>(1), std::make_shared<BackendPool>(1), nullptr, nullptr);
  ASSERT_FALSE(sup.ok());
  EXPECT_NE(sup.status().message().find("exited before it was ready (exit status 1"), std::string::npos)
      << sup.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(HostMetrics, CountsConnectionsAndEnclaveStats) {
  auto m = HostMetrics::create("").value();
  auto obs = m->relay_observer("http");
  obs->on_accept();
  obs->on_close(0.5);
  obs->on_reject("no enclave available");
  m->apply_enclave_stats(0, nlohmann::json::parse(R"({"event":"stats","models":{"r18":{"success":5,"fail":1,"compute_us":2000000}}})"));
  m->apply_enclave_stats(0, nlohmann::json::parse(R"({"event":"stats","models":{"r18":{"success":7,"fail":1}}})"));
  m->apply_enclave_stats(0, nlohmann::json::parse(R"({"event":"stats","models":[1,2]})"));  // ignored
  const std::string text = m->scrape();
  EXPECT_NE(text.find("tenet_relay_connections_total{protocol=\"http\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_model_requests_total{model=\"r18\",outcome=\"success\"} 7"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_model_compute_seconds_total{model=\"r18\"} 2"), std::string::npos) << text;
}

}  // namespace
}  // namespace tenet::host
