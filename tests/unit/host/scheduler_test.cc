// EPC-aware scheduling (host/scheduler.h): the policy alone (SchedulePlanner: admission by commit,
// pool sizing, FIFO grants, naive's one-enclave-per-stream), the thread-safe EnclaveScheduler as a
// relay broker with real threads, the supervisor's on-demand slots, and the relay with a broker.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "host/metrics.h"
#include "host/net.h"
#include "host/relay.h"
#include "host/scheduler.h"
#include "host/supervisor.h"

namespace tenet::host {
namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

ScheduleOptions epc_aware(uint64_t budget, size_t max_enclaves, uint64_t estimate = 0) {
  ScheduleOptions o;
  o.policy = SchedulePolicy::kEpcAware;
  o.budget_bytes = budget;
  o.max_enclaves = max_enclaves;
  o.commit_estimate_bytes = estimate;
  return o;
}

TEST(SchedulePolicy, ParsesNames) {
  EXPECT_EQ(*parse_schedule_policy("epc-aware"), SchedulePolicy::kEpcAware);
  EXPECT_EQ(*parse_schedule_policy("naive"), SchedulePolicy::kNaive);
  EXPECT_FALSE(parse_schedule_policy("fifo").ok());
  EXPECT_STREQ(schedule_policy_name(SchedulePolicy::kNaive), "naive");
}

TEST(SchedulePlanner, RejectsBadOptions) {
  EXPECT_FALSE(SchedulePlanner::create(epc_aware(0, 4)).ok());
  EXPECT_FALSE(SchedulePlanner::create(epc_aware(93 * MiB, 0)).ok());
  EXPECT_FALSE(SchedulePlanner::create(epc_aware(93 * MiB, 257)).ok());
  auto o = epc_aware(93 * MiB, 4);
  o.bound_bytes = 1;
  EXPECT_FALSE(SchedulePlanner::create(o).ok());
}

TEST(SchedulePlanner, EpcAwareProbesThenSizesThePoolFromTheCommit) {
  auto p = SchedulePlanner::create(epc_aware(93 * MiB, 4)).value();
  EXPECT_EQ(p.resident_limit_bytes(0), 93 * MiB);  // alone until its commit is known
  auto d = p.schedule();
  ASSERT_EQ(d.start, std::vector<size_t>{0});
  EXPECT_TRUE(p.schedule().start.empty());  // one at a time before the first is ready
  p.enclave_ready(0, 30 * MiB);
  EXPECT_EQ(p.target_enclaves(), 3u);  // 93 / 30
  d = p.schedule();
  EXPECT_EQ(d.start, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(p.resident_limit_bytes(1), 31 * MiB);  // bound / pool >= commit
  EXPECT_GE(p.resident_limit_bytes(1), 30 * MiB);
  p.enclave_ready(1, 30 * MiB);
  p.enclave_ready(2, 30 * MiB);
  p.schedule();
  EXPECT_EQ(p.admitted_enclaves(), 3u);
  EXPECT_EQ(p.admitted_commit_bytes(), 90 * MiB);
  EXPECT_FALSE(p.over_bound());
}

TEST(SchedulePlanner, EstimateSizesThePoolButTheFirstStartsAlone) {
  auto p = SchedulePlanner::create(epc_aware(100 * MiB, 8, 20 * MiB)).value();
  EXPECT_EQ(p.target_enclaves(), 5u);
  EXPECT_EQ(p.resident_limit_bytes(0), 20 * MiB);
  EXPECT_EQ(p.schedule().start.size(), 1u);
  p.enclave_ready(0, 0);  // an enclave that reports no commit counts as the estimate
  EXPECT_EQ(p.schedule().start.size(), 4u);
  EXPECT_EQ(p.commit_bytes(), 20 * MiB);
}

TEST(SchedulePlanner, PlannedEnclavesGetTheirShareFromTheStart) {
  auto o = epc_aware(93 * MiB, 4);
  o.enclaves_plan_to_limit = true;
  auto p = SchedulePlanner::create(o).value();
  EXPECT_EQ(p.resident_limit_bytes(0), 93 * MiB / 4 / 4096 * 4096);
  EXPECT_EQ(p.schedule().start, std::vector<size_t>{0});  // still one first (identity)
  p.enclave_ready(0, 20 * MiB);                             // it planned within its share
  EXPECT_EQ(p.schedule().start, (std::vector<size_t>{1, 2, 3}));
  EXPECT_EQ(p.resident_limit_bytes(3), 93 * MiB / 4 / 4096 * 4096);
}

TEST(SchedulePlanner, EpcAwareOneStreamPerEnclaveInFifoOrder) {
  auto p = SchedulePlanner::create(epc_aware(64 * MiB, 4, 30 * MiB)).value();
  p.schedule();
  p.enclave_ready(0, 30 * MiB);
  p.schedule();
  p.enclave_ready(1, 30 * MiB);
  std::vector<uint64_t> tickets;
  for (int i = 0; i < 5; ++i) tickets.push_back(p.enqueue());
  auto d = p.schedule();
  ASSERT_EQ(d.grants.size(), 2u);
  EXPECT_EQ(d.grants[0].ticket, tickets[0]);
  EXPECT_EQ(d.grants[1].ticket, tickets[1]);
  EXPECT_NE(d.grants[0].slot, d.grants[1].slot);
  EXPECT_EQ(p.queue_depth(), 3u);
  EXPECT_TRUE(p.cancel(tickets[3]));  // a client hung up while queued
  EXPECT_FALSE(p.cancel(tickets[0]));  // already granted
  p.finish(d.grants[1].slot);
  d = p.schedule();
  ASSERT_EQ(d.grants.size(), 1u);
  EXPECT_EQ(d.grants[0].ticket, tickets[2]);
  EXPECT_EQ(d.grants[0].slot, 1u);
  p.finish(0);
  d = p.schedule();
  ASSERT_EQ(d.grants.size(), 1u);
  EXPECT_EQ(d.grants[0].ticket, tickets[4]);
  EXPECT_EQ(p.queue_depth(), 0u);
}

TEST(SchedulePlanner, EpcAwareStreamsPerEnclaveSpreadsThenQueues) {
  auto o = epc_aware(64 * MiB, 2, 30 * MiB);
  o.streams_per_enclave = 2;
  auto p = SchedulePlanner::create(o).value();
  p.schedule();
  p.enclave_ready(0, 30 * MiB);
  p.schedule();
  p.enclave_ready(1, 30 * MiB);
  for (int i = 0; i < 5; ++i) p.enqueue();
  auto d = p.schedule();
  ASSERT_EQ(d.grants.size(), 4u);
  EXPECT_EQ(d.grants[0].slot, 0u);
  EXPECT_EQ(d.grants[1].slot, 1u);  // least busy first
  EXPECT_EQ(p.queue_depth(), 1u);
  EXPECT_EQ(p.admitted_commit_bytes(), 60 * MiB);  // streams do not add commit
  o.streams_per_enclave = 0;
  EXPECT_FALSE(SchedulePlanner::create(o).ok());
}

TEST(SchedulePlanner, EpcAwareNeverAdmitsPastTheBound) {
  auto o = epc_aware(200 * MiB, 4, 30 * MiB);
  o.bound_bytes = 70 * MiB;
  auto p = SchedulePlanner::create(o).value();
  p.schedule();
  p.enclave_ready(0, 30 * MiB);
  EXPECT_EQ(p.schedule().start.size(), 1u);  // pool: 70 / 30 = 2
  p.enclave_ready(1, 30 * MiB);
  p.schedule();
  EXPECT_EQ(p.admitted_commit_bytes(), 60 * MiB);
  // An enclave's commit grows (a new batch size compiled): the later one no longer fits.
  p.enclave_commit(1, 45 * MiB);
  p.schedule();
  EXPECT_EQ(p.admitted_enclaves(), 1u);
  EXPECT_LE(p.admitted_commit_bytes(), 70 * MiB);
  EXPECT_EQ(p.target_enclaves(), 1u);
  // Busy or not, a non-admitted enclave is never granted streams.
  p.enqueue();
  p.enqueue();
  auto d = p.schedule();
  ASSERT_EQ(d.grants.size(), 1u);
  EXPECT_EQ(d.grants[0].slot, 0u);
}

TEST(SchedulePlanner, EpcAwareRunsOneEnclaveWhenItsCommitAlonePassesTheBound) {
  auto p = SchedulePlanner::create(epc_aware(93 * MiB, 4)).value();
  p.schedule();
  p.enclave_ready(0, 200 * MiB);
  EXPECT_EQ(p.target_enclaves(), 1u);
  EXPECT_TRUE(p.schedule().start.empty());
  EXPECT_EQ(p.admitted_enclaves(), 1u);
  EXPECT_TRUE(p.over_bound());
  EXPECT_EQ(p.resident_limit_bytes(0), 93 * MiB);
  p.enqueue();
  EXPECT_EQ(p.schedule().grants.size(), 1u);
}

TEST(SchedulePlanner, EpcAwareRestartsAndFailures) {
  auto p = SchedulePlanner::create(epc_aware(100 * MiB, 3, 40 * MiB)).value();
  p.schedule();
  p.enclave_ready(0, 40 * MiB);
  p.schedule();
  p.enclave_ready(1, 40 * MiB);
  p.schedule();
  p.enclave_down(1, /*restarting=*/true);  // crashed: the supervisor restarts it
  p.schedule();
  EXPECT_EQ(p.admitted_enclaves(), 1u);
  EXPECT_EQ(p.starting_slots(), std::vector<size_t>{1});
  p.enclave_down(1, /*restarting=*/false);  // it never got ready again: another slot takes its place
  EXPECT_EQ(p.schedule().start, std::vector<size_t>{2});
}

TEST(SchedulePlanner, NaiveStartsOneEnclavePerConcurrentStream) {
  ScheduleOptions o;
  o.policy = SchedulePolicy::kNaive;
  o.budget_bytes = 93 * MiB;
  o.max_enclaves = 4;
  auto p = SchedulePlanner::create(o).value();
  EXPECT_EQ(p.resident_limit_bytes(0), 93 * MiB / 4 / 4096 * 4096);  // equal shares, no bound
  EXPECT_EQ(p.schedule().start, std::vector<size_t>{0});
  p.enclave_ready(0, 60 * MiB);
  std::vector<uint64_t> t;
  for (int i = 0; i < 6; ++i) t.push_back(p.enqueue());
  auto d = p.schedule();
  ASSERT_EQ(d.grants.size(), 1u);  // the idle enclave
  EXPECT_EQ(d.start, (std::vector<size_t>{1, 2, 3}));  // one per waiting stream, up to max
  EXPECT_TRUE(p.schedule().grants.empty());  // waits for them rather than sharing
  p.enclave_ready(1, 60 * MiB);
  p.enclave_ready(2, 60 * MiB);
  d = p.schedule();
  EXPECT_EQ(d.grants.size(), 2u);
  EXPECT_TRUE(d.start.empty());
  p.enclave_ready(3, 60 * MiB);
  d = p.schedule();  // the new enclave takes one; every slot is busy: the other two share (fewest first)
  ASSERT_EQ(d.grants.size(), 3u);
  EXPECT_EQ(d.grants[0].slot, 3u);
  EXPECT_EQ(p.queue_depth(), 0u);
  EXPECT_EQ(p.admitted_commit_bytes(), 240 * MiB);  // no bound
  EXPECT_EQ(p.active_streams(0), 2);
  EXPECT_EQ(p.active_streams(1), 2);
  EXPECT_EQ(p.active_streams(3), 1);
}

// A stand-in for a scheduler-fed relay: streams from many threads are served in FIFO order,
// never more than one per enclave at a time.
TEST(EnclaveScheduler, BlockingAcquireIsFifoAndExclusive) {
  auto s = EnclaveScheduler::create(epc_aware(64 * MiB, 2, 30 * MiB), 10000, nullptr).value();
  std::vector<size_t> launched;
  s->set_start([&](size_t slot) { launched.push_back(slot); });
  s->kick();
  s->on_event(0, nlohmann::json::parse(R"({"event":"ready","http_port":1000,"grpc_port":1001,"commit_bytes":31457280})"));
  s->on_event(1, nlohmann::json::parse(R"({"event":"ready","http_port":2000,"grpc_port":2001,"commit_bytes":31457280})"));
  EXPECT_EQ(launched, (std::vector<size_t>{0, 1}));
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> inside[2] = {0, 0};
  std::atomic<bool> overlap{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      auto g = s->acquire(i % 2, [] { return false; });
      ASSERT_TRUE(g.has_value());
      EXPECT_EQ(g->second.port, (g->first == 0 ? 1000 : 2000) + i % 2);
      if (inside[g->first]++ != 0) overlap = true;
      {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      inside[g->first]--;
      s->release(g->first);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // arrival order = i
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(overlap.load());
  ASSERT_EQ(order.size(), 6u);
  // Granted in arrival order (two at a time, so neighbours may swap when they record).
  for (size_t i = 0; i < order.size(); ++i) EXPECT_LE(std::abs(order[i] - static_cast<int>(i)), 1);
}

TEST(EnclaveScheduler, WaitEndsWhenTheClientGivesUpAndMetricsMove) {
  auto m = HostMetrics::create("").value();
  auto s = EnclaveScheduler::create(epc_aware(64 * MiB, 1), 60000, m->scheduler_observer("epc-aware", 64 * MiB)).value();
  s->set_start([](size_t) {});
  s->kick();
  s->on_event(0, nlohmann::json::parse(R"({"event":"ready","http_port":1000,"grpc_port":1001,"commit_bytes":1048576})"));
  auto held = s->acquire(0, [] { return false; });
  ASSERT_TRUE(held.has_value());
  std::atomic<bool> give_up{false};
  std::thread waiter([&] { EXPECT_FALSE(s->acquire(0, [&] { return give_up.load(); }).has_value()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_NE(m->scrape().find("tenet_sched_queue_depth{policy=\"epc-aware\"} 1"), std::string::npos) << m->scrape();
  give_up = true;
  waiter.join();
  s->release(held->first);
  // Hostile control lines are ignored; a larger allocated_bytes raises the commit.
  s->on_event(0, nlohmann::json::parse(R"({"event":"ready","http_port":"x"})"));
  s->on_event(0, nlohmann::json::parse(R"({"event":"stats","epc":{"allocated_bytes":-5}})"));
  s->on_event(0, nlohmann::json::parse(R"({"event":"stats","epc":{"allocated_bytes":2097152}})"));
  const std::string text = m->scrape();
  EXPECT_NE(text.find("tenet_sched_queue_depth{policy=\"epc-aware\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_sched_streams_total{outcome=\"gave_up\",policy=\"epc-aware\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_sched_queue_wait_seconds_count{policy=\"epc-aware\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_sched_admitted_commit_bytes{policy=\"epc-aware\"} 2097152"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_sched_bound_bytes{policy=\"epc-aware\"} 67108864"), std::string::npos) << text;
  EXPECT_NE(text.find("tenet_enclave_commit_bytes{instance=\"0\"} 2097152"), std::string::npos) << text;
  EXPECT_EQ(s->describe()["pool"], 1);
}

TEST(HostSupervisor, LaunchesSlotsOnDemandWithPerSlotArguments) {
  auto http = std::make_shared<BackendPool>(3);
  auto grpc = std::make_shared<BackendPool>(3);
  // The stand-in enclave announces its --epc-limit argument as its port ($1 --instance, $2 N, $3 --epc-limit, $4 V).
  const std::string script = "echo \"{\\\"event\\\":\\\"ready\\\",\\\"http_port\\\":$4,\\\"grpc_port\\\":$4}\"; sleep 30";
  SupervisorOptions o;
  o.argv = {"/bin/sh", "-c", script, "fake-enclave"};
  o.count = 0;
  o.slots = 3;
  o.slot_args = [](size_t slot) { return std::vector<std::string>{"--epc-limit", std::to_string(5000 + slot)}; };
  std::mutex mu;
  std::vector<uint64_t> ports;
  auto sup = Supervisor::start(o, http, grpc,
                               [&](size_t, const nlohmann::json& ev) {
                                 std::lock_guard<std::mutex> lock(mu);
                                 ports.push_back(ev["http_port"].get<uint64_t>());
                               },
                               nullptr)
                 .value();
  EXPECT_EQ(http->live_count(), 0u);
  ASSERT_TRUE(sup->launch(2).ok());
  ASSERT_TRUE(sup->launch(2).ok());  // already running: no second process
  ASSERT_TRUE(sup->wait_ready(2, 5000).ok());
  EXPECT_FALSE(sup->launch(3).ok());
  EXPECT_EQ(http->live_count(), 1u);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(ports, std::vector<uint64_t>{5002});
  }
  sup->stop();
  EXPECT_FALSE(sup->launch(0).ok());
}

TEST(HostSupervisor, FailedOnDemandStartIsReportedAndCanBeRetried) {
  SupervisorOptions o;
  o.argv = {"/bin/sh", "-c", "exit 4", "x"};
  o.count = 0;
  o.slots = 1;
  std::atomic<int> failures{0};
  auto sup = Supervisor::start(o, std::make_shared<BackendPool>(1), std::make_shared<BackendPool>(1), nullptr,
                               [&](size_t, int, bool restarting) { failures += !restarting; })
                 .value();
  ASSERT_TRUE(sup->launch(0).ok());
  const tenet::Status s = sup->wait_ready(0, 5000);
  EXPECT_NE(s.message().find("exited before it was ready (exit status 4"), std::string::npos) << s.message();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (failures < 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(sup->launch(0).ok());  // its watcher has ended: a new one starts
  EXPECT_FALSE(sup->wait_ready(0, 5000).ok());
  while (failures < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(failures.load(), 2);
}

// The relay with a broker: a second client waits (queued) while the only enclave is busy, and is
// relayed as soon as the first disconnects.
TEST(HostRelay, BrokerQueuesConnectionsUntilGranted) {
  uint16_t echo_port = 0;
  // A backend that answers 'E' and echoes.
  int lfd = listen_tcp({"127.0.0.1", 0}, 16, &echo_port).value();
  std::thread backend([lfd] {
    for (int i = 0; i < 2; ++i) {
      const int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      (void)!::send(c, "E", 1, MSG_NOSIGNAL);
      char buf[256];
      ssize_t n;
      while ((n = ::recv(c, buf, sizeof(buf), 0)) > 0) (void)!::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      ::close(c);
    }
  });
  auto sched = EnclaveScheduler::create(epc_aware(64 * MiB, 1, MiB), 10000, nullptr).value();
  sched->set_start([](size_t) {});
  sched->kick();
  sched->on_event(0, nlohmann::json{{"event", "ready"}, {"http_port", echo_port}, {"grpc_port", echo_port}, {"commit_bytes", MiB}});
  auto relay = Relay::start({{"127.0.0.1", 0}, "http"}, nullptr, nullptr, sched).value();
  const int a = connect_tcp({"127.0.0.1", relay->port()}, 1000).value();
  char c = 0;
  ASSERT_EQ(::recv(a, &c, 1, 0), 1);
  EXPECT_EQ(c, 'E');
  const int b = connect_tcp({"127.0.0.1", relay->port()}, 1000).value();
  timeval tv{0, 300000};
  ::setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  EXPECT_LT(::recv(b, &c, 1, 0), 0);  // queued: nothing yet
  ::close(a);
  tv = {5, 0};
  ::setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ASSERT_EQ(::recv(b, &c, 1, 0), 1);
  EXPECT_EQ(c, 'E');
  ::close(b);
  relay->stop();
  ::shutdown(lfd, SHUT_RDWR);
  ::close(lfd);
  backend.join();
}

}  // namespace
}  // namespace tenet::host
