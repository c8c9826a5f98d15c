// Attacks on evicted pages (tamper, replay) stop the enclave cleanly; real segfaults still crash;
// budget exhaustion by other enclaves stops the enclave with its own status.
#include <sys/wait.h>

#include <csignal>
#include <thread>
#include <vector>

#include "epc/measure.h"
#include "epc_test_util.h"

namespace tenet::epc {
namespace {

using testing::check_page;
using testing::fill_page;
using testing::kMiB;
using testing::make_heap;
using testing::private_host;

class EpcIntegrity : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Writes 8 pages, evicts them all; returns the heap and the base.
struct EvictedHeap {
  std::shared_ptr<HostEpc> host;
  std::unique_ptr<EnclaveHeap> heap;
  uint8_t* base = nullptr;
};
EvictedHeap evicted_heap(const char* name) {
  EvictedHeap e;
  e.host = private_host(4 * kMiB);
  e.heap = make_heap(e.host, 4 * kMiB, 0, name);
  auto p = e.heap->allocate(8 * kPageBytes);
  e.base = static_cast<uint8_t*>(*p);
  for (uint64_t i = 0; i < 8; ++i) fill_page(e.base, i, 7);
  (void)e.heap->evict(e.base, 8 * kPageBytes);
  return e;
}

TEST_F(EpcIntegrity, UntouchedEvictedPagesLoadCorrectly) {
  EvictedHeap e = evicted_heap("ok");
  for (uint64_t i = 0; i < 8; ++i) EXPECT_EQ(check_page(e.base, i, 7), -1);
  EXPECT_EQ(e.heap->counters().loads, 8u);
}

TEST_F(EpcIntegrity, CiphertextIsNotPlaintext) {
  EvictedHeap e = evicted_heap("ct");
  const auto u = e.heap->untrusted_page(3);
  uint64_t word = 0;
  std::memcpy(&word, u.ciphertext.data(), 8);
  EXPECT_NE(word, testing::pattern(3, 0, 7));
}

TEST_F(EpcIntegrity, TamperedCiphertextStopsTheEnclave) {
  EXPECT_EXIT(
      {
        EvictedHeap e = evicted_heap("victim");
        e.heap->untrusted_page(3).ciphertext[1000] ^= 0x01;
        volatile uint8_t x = e.base[3 * kPageBytes + 5];  // ELDU of page 3
        (void)x;
        std::fprintf(stderr, "tampered data was used\n");
        std::exit(0);
      },
      ::testing::ExitedWithCode(kEpcIntegrityExitStatus),
      "enclave 'victim': integrity check failed loading page 3 \\(heap offset 0x3000, ELDU\\): ciphertext or tag "
      "was tampered with");
}

TEST_F(EpcIntegrity, TamperedTagStopsTheEnclave) {
  EXPECT_EXIT(
      {
        EvictedHeap e = evicted_heap("victim");
        e.heap->untrusted_page(6).tag[0] ^= 0x80;
        e.base[6 * kPageBytes] = 1;  // a write faults in the same way
        std::exit(0);
      },
      ::testing::ExitedWithCode(kEpcIntegrityExitStatus), "page 6 .*tampered with \\(AES-GCM authentication failed");
}

TEST_F(EpcIntegrity, SwappedPagesAreDetected) {
  // Ciphertext of page 2 moved to page 5's slot: the page index is bound in the IV and AAD.
  EXPECT_EXIT(
      {
        EvictedHeap e = evicted_heap("victim");
        auto a = e.heap->untrusted_page(2);
        auto b = e.heap->untrusted_page(5);
        std::memcpy(b.ciphertext.data(), a.ciphertext.data(), kPageBytes);
        std::memcpy(b.tag.data(), a.tag.data(), a.tag.size());
        volatile uint8_t x = e.base[5 * kPageBytes];
        (void)x;
        std::exit(0);
      },
      ::testing::ExitedWithCode(kEpcIntegrityExitStatus), "page 5 .*tampered");
}

TEST_F(EpcIntegrity, ReplayedOldVersionStopsTheEnclave) {
  EXPECT_EXIT(
      {
        EvictedHeap e = evicted_heap("victim");  // page 4 at version 1
        auto u = e.heap->untrusted_page(4);
        std::vector<uint8_t> old_ct(u.ciphertext.begin(), u.ciphertext.end());
        std::vector<uint8_t> old_tag(u.tag.begin(), u.tag.end());
        fill_page(e.base, 4, 8);                          // load, then overwrite
        (void)e.heap->evict(e.base + 4 * kPageBytes, kPageBytes);  // version 2
        if (e.heap->page_version(4) != 2) std::exit(3);
        std::memcpy(u.ciphertext.data(), old_ct.data(), old_ct.size());  // the host replays version 1
        std::memcpy(u.tag.data(), old_tag.data(), old_tag.size());
        volatile uint8_t x = e.base[4 * kPageBytes];
        (void)x;
        std::exit(0);
      },
      ::testing::ExitedWithCode(kEpcIntegrityExitStatus),
      "enclave 'victim': integrity check failed loading page 4 .*replayed old version 1 of the page \\(current "
      "version 2\\)");
}

TEST_F(EpcIntegrity, IntegrityStopGivesTheBudgetBack) {
  // A forked death-test child shares this segment; after it dies its pages are back.
  GTEST_FLAG_SET(death_test_style, "fast");
  const std::string name = testing::unique_host_name("giveback");
  auto host = HostEpc::open(name, 4 * kMiB);
  ASSERT_TRUE(host.ok());
  EXPECT_EXIT(
      {
        auto heap = make_heap(*host, 4 * kMiB, 0, "victim");
        auto* base = static_cast<uint8_t*>(*heap->allocate(64 * kPageBytes));
        std::memset(base, 1, 64 * kPageBytes);
        (void)heap->evict(base, kPageBytes);
        heap->untrusted_page(0).ciphertext[0] ^= 1;
        volatile uint8_t x = base[0];
        (void)x;
        std::exit(0);
      },
      ::testing::ExitedWithCode(kEpcIntegrityExitStatus), "tampered");
  EXPECT_EQ((*host)->resident_bytes(), 0u);
  EXPECT_EQ((*host)->counters().enclaves, 0u);
  EXPECT_TRUE(HostEpc::remove(name).ok());
}

TEST_F(EpcIntegrity, RealSegfaultsStillCrash) {
  // A touch of heap address space outside any allocation goes to the previous handler (default
  // SIGSEGV, or AddressSanitizer's report).
  EXPECT_DEATH(
      {
        auto host = private_host(4 * kMiB);
        auto heap = make_heap(host, 4 * kMiB);
        volatile uint8_t* unallocated = heap->base() + 2 * kMiB;
        *unallocated = 1;
        std::exit(0);
      },
      "");
}

TEST_F(EpcIntegrity, BudgetHeldByAnotherEnclaveTimesOut) {
  EXPECT_EXIT(
      {
        auto host = private_host(1 * kMiB);
        auto holder = make_heap(host, 4 * kMiB, 0, "holder");
        std::memset(*holder->allocate(1 * kMiB), 1, 1 * kMiB);  // holds the whole budget
        EnclaveHeapOptions o;
        o.name = "starved";
        o.reserve_bytes = 4 * kMiB;
        o.budget_wait_timeout_ms = 100;
        auto starved = EnclaveHeap::create(host, o);
        static_cast<uint8_t*>(*(*starved)->allocate(kPageBytes))[0] = 1;
        std::exit(0);
      },
      ::testing::ExitedWithCode(kEpcExhaustedExitStatus),
      "enclave 'starved': no EPC page .*cross-enclave eviction is not emulated");
}

TEST(EpcSharing, StarvedEnclaveWaitsForTheOtherToRelease) {
  auto host = private_host(1 * kMiB);
  auto holder = make_heap(host, 4 * kMiB, 0, "holder");
  ASSERT_TRUE(holder);
  void* held = *holder->allocate(1 * kMiB);
  std::memset(held, 1, 1 * kMiB);
  auto waiter = make_heap(host, 4 * kMiB, 0, "waiter");
  ASSERT_TRUE(waiter);
  auto* w = static_cast<uint8_t*>(*waiter->allocate(2 * kMiB));
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (void)holder->free(held);
  });
  for (uint64_t i = 0; i < 2 * kMiB / kPageBytes; ++i) fill_page(w, i, 9);  // blocks until the free
  release.join();
  for (uint64_t i = 0; i < 2 * kMiB / kPageBytes; ++i) ASSERT_EQ(check_page(w, i, 9), -1);
  EXPECT_LE(host->counters().peak_resident_bytes, 1 * kMiB);
}

// Two enclaves in one process (two threads), each allowed 3 of the host's 4 MiB: the host budget
// is what binds, and the sum never passes it.
TEST(EpcSharing, TwoHeapsShareOneHostBudget) {
  const uint64_t budget = 4 * kMiB;
  auto host = private_host(budget);
  auto a = make_heap(host, 16 * kMiB, 3 * kMiB, "a");
  auto b = make_heap(host, 16 * kMiB, 3 * kMiB, "b");
  ASSERT_TRUE(a && b);
  std::atomic<int> errors{0};
  auto work = [&](EnclaveHeap* heap, uint64_t round) {
    auto* base = static_cast<uint8_t*>(*heap->allocate(16 * kMiB));
    const uint64_t pages = 16 * kMiB / kPageBytes;
    for (int r = 0; r < 2; ++r) {
      for (uint64_t i = 0; i < pages; ++i) fill_page(base, i, round + r);
      for (uint64_t i = 0; i < pages; ++i) {
        if (check_page(base, i, round + r) != -1) errors.fetch_add(1);
      }
    }
  };
  std::thread ta(work, a.get(), 20), tb(work, b.get(), 30);
  ta.join();
  tb.join();
  EXPECT_EQ(errors.load(), 0);
  const HostEpcCounters h = host->counters();
  EXPECT_LE(h.peak_resident_bytes, budget);
  EXPECT_EQ(h.resident_bytes, a->counters().resident_bytes + b->counters().resident_bytes);
  EXPECT_EQ(h.evictions, a->counters().evictions + b->counters().evictions);
  EXPECT_GT(a->counters().evictions, 0u);
  EXPECT_GT(b->counters().evictions, 0u);
  EXPECT_EQ(host->enclaves().size(), 2u);
}

// Two enclave processes on one named host segment.
TEST(EpcSharing, TwoProcessesShareOneHostBudget) {
  const uint64_t budget = 4 * kMiB;
  const std::string name = testing::unique_host_name("procs");
  auto host = HostEpc::open(name, budget);
  ASSERT_TRUE(host.ok());
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto h = HostEpc::open(name);  // attach by name, as a separate enclave process would
      if (!h.ok() || (*h)->budget_bytes() != budget) ::_exit(10);
      EnclaveHeapOptions o;
      o.name = c == 0 ? "proc-a" : "proc-b";
      o.reserve_bytes = 16 * kMiB;
      o.resident_limit_bytes = 3 * kMiB;
      auto heap = EnclaveHeap::create(*h, o);
      if (!heap.ok()) ::_exit(11);
      auto* base = static_cast<uint8_t*>(*(*heap)->allocate(16 * kMiB));
      const uint64_t pages = 16 * kMiB / kPageBytes;
      for (int r = 0; r < 3; ++r) {
        for (uint64_t i = 0; i < pages; ++i) fill_page(base, i, 40 + c * 10 + r);
        for (uint64_t i = 0; i < pages; ++i) {
          if (check_page(base, i, 40 + c * 10 + r) != -1) ::_exit(12);
        }
      }
      if ((*heap)->counters().evictions == 0) ::_exit(13);
      if ((*h)->counters().peak_resident_bytes > budget) ::_exit(14);
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  const HostEpcCounters h = (*host)->counters();
  EXPECT_LE(h.peak_resident_bytes, budget);
  EXPECT_GT(h.peak_resident_bytes, 3 * kMiB);  // both were resident at once
  EXPECT_GT(h.evictions, 0u);
  // The children _exit()ed without releasing: the next registration reclaims their pages.
  auto again = EnclaveHeap::create(*host, EnclaveHeapOptions{.name = "after", .reserve_bytes = kMiB});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*host)->resident_bytes(), 0u);
  EXPECT_EQ((*host)->counters().enclaves, 1u);
  again->reset();
  EXPECT_TRUE(HostEpc::remove(name).ok());
}

TEST(EpcMeasure, EaddEextendShapedDigest) {
  std::vector<uint8_t> image(3 * kPageBytes + 100, 0);
  const auto zero = measure_pages(image);
  EXPECT_EQ(zero, measure_enclave(4 * kPageBytes));  // a partial last page is zero-padded
  image[5000] = 1;
  EXPECT_NE(measure_pages(image), zero);
  image[5000] = 0;
  EXPECT_NE(measure_pages(image, kPageBytes), zero);  // the offset is measured
  EXPECT_NE(measure_enclave(8 * kPageBytes), measure_enclave(4 * kPageBytes));
}

}  // namespace
}  // namespace tenet::epc
