// The enclave heap: budget, paging patterns, free/discard, concurrency, counters.
#include <algorithm>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "epc_test_util.h"

namespace tenet::epc {
namespace {

using testing::check_page;
using testing::fill_page;
using testing::kMiB;
using testing::make_heap;
using testing::private_host;

TEST(EpcSize, ParsesUnits) {
  EXPECT_EQ(*parse_epc_size("93MiB"), 93 * kMiB);
  EXPECT_EQ(*parse_epc_size("64GiB"), uint64_t{64} << 30);
  EXPECT_EQ(*parse_epc_size("4096"), 4096u);
  EXPECT_EQ(*parse_epc_size("5000"), 4096u);  // whole pages
  EXPECT_EQ(*parse_epc_size("1.5GiB"), uint64_t{3} << 29);
  EXPECT_EQ(*parse_epc_size("128 M"), 128 * kMiB);
  EXPECT_FALSE(parse_epc_size("lots").ok());
  EXPECT_FALSE(parse_epc_size("12 parsecs").ok());
  EXPECT_EQ(format_epc_size(93 * kMiB), "93 MiB");
}

TEST(HostEpc, BudgetIsFixedByTheCreator) {
  const std::string name = testing::unique_host_name("fixed");
  auto a = HostEpc::open(name, 8 * kMiB);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  auto b = HostEpc::open(name);  // attach, keep the budget
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->budget_bytes(), 8 * kMiB);
  auto c = HostEpc::open(name, 16 * kMiB);
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find("already has a budget of 8 MiB"), std::string::npos) << c.status().message();
  EXPECT_TRUE(HostEpc::remove(name).ok());
  EXPECT_FALSE(HostEpc::open("bad/name", 8 * kMiB).ok());
  EXPECT_FALSE(HostEpc::open(testing::unique_host_name("tiny"), 4096).ok());
}

TEST(HostEpc, DefaultBudgetIsSgx1) {
  const std::string name = testing::unique_host_name("dflt");
  auto a = HostEpc::open(name);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->budget_bytes(), kSgx1UsableEpcBytes);
  EXPECT_TRUE(HostEpc::remove(name).ok());
}

TEST(EnclaveHeap, FitsInBudgetFaultsOncePerPage) {
  auto host = private_host(4 * kMiB);
  auto heap = make_heap(host, 64 * kMiB);
  ASSERT_TRUE(heap);
  auto p = heap->allocate(2 * kMiB);
  ASSERT_TRUE(p.ok());
  auto* base = static_cast<uint8_t*>(*p);
  const uint64_t pages = 2 * kMiB / kPageBytes;
  EXPECT_EQ(heap->counters().resident_bytes, 0u);  // allocation costs no EPC until touched
  for (uint64_t i = 0; i < pages; ++i) fill_page(base, i, 0);
  for (uint64_t i = 0; i < pages; ++i) ASSERT_EQ(check_page(base, i, 0), -1) << "page " << i;
  const EpcCounters c = heap->counters();
  EXPECT_EQ(c.page_faults, pages);
  EXPECT_EQ(c.zero_fills, pages);
  EXPECT_EQ(c.evictions, 0u);
  EXPECT_EQ(c.loads, 0u);
  EXPECT_EQ(c.resident_bytes, 2 * kMiB);
  EXPECT_EQ(c.peak_resident_bytes, 2 * kMiB);
  EXPECT_EQ(host->resident_bytes(), 2 * kMiB);
}

TEST(EnclaveHeap, SequentialFarBeyondBudget) {
  const uint64_t budget = 4 * kMiB, touched = 64 * kMiB;
  const uint64_t budget_pages = budget / kPageBytes, pages = touched / kPageBytes;
  auto host = private_host(budget);
  auto heap = make_heap(host, 128 * kMiB);
  ASSERT_TRUE(heap);
  auto p = heap->allocate(touched);
  ASSERT_TRUE(p.ok());
  auto* base = static_cast<uint8_t*>(*p);

  for (uint64_t i = 0; i < pages; ++i) fill_page(base, i, 1);
  EpcCounters c = heap->counters();
  EXPECT_EQ(c.page_faults, pages);
  EXPECT_EQ(c.zero_fills, pages);
  EXPECT_EQ(c.evictions, pages - budget_pages);  // every page past the budget pushes one out
  EXPECT_EQ(c.loads, 0u);
  EXPECT_EQ(c.resident_bytes, budget);
  EXPECT_EQ(c.bytes_encrypted, c.evictions * kPageBytes);

  for (uint64_t i = 0; i < pages; ++i) ASSERT_EQ(check_page(base, i, 1), -1) << "page " << i;
  c = heap->counters();
  // A sequential pass over 16x the budget misses on (nearly) every page.
  EXPECT_GE(c.loads, pages - budget_pages);
  EXPECT_LE(c.loads, pages);
  EXPECT_EQ(c.page_faults, c.zero_fills + c.loads);
  EXPECT_EQ(c.bytes_decrypted, c.loads * kPageBytes);
  EXPECT_LE(c.peak_resident_bytes, budget);
  EXPECT_LE(host->counters().peak_resident_bytes, budget);
  EXPECT_EQ(host->counters().evictions, c.evictions);
}

TEST(EnclaveHeap, StridedAndRandomBeyondBudget) {
  const uint64_t budget = 4 * kMiB, touched = 64 * kMiB, pages = touched / kPageBytes;
  auto host = private_host(budget);
  auto heap = make_heap(host, touched);
  ASSERT_TRUE(heap);
  auto p = heap->allocate(touched);
  ASSERT_TRUE(p.ok());
  auto* base = static_cast<uint8_t*>(*p);

  // Strided: stride of 17 pages visits every page (17 and 16384 are coprime).
  for (uint64_t k = 0, i = 0; k < pages; ++k, i = (i + 17) % pages) fill_page(base, i, 2);
  for (uint64_t k = 0, i = 0; k < pages; ++k, i = (i + 17) % pages) ASSERT_EQ(check_page(base, i, 2), -1) << i;

  // Random single-word writes against a shadow copy, then a random-order read-back.
  std::vector<uint64_t> shadow(touched / 8);
  for (uint64_t i = 0; i < pages; ++i) {
    std::memcpy(&shadow[i * kPageBytes / 8], base + i * kPageBytes, kPageBytes);
  }
  std::mt19937_64 rng(42);
  auto* words = reinterpret_cast<uint64_t*>(base);
  for (int k = 0; k < 50000; ++k) {
    const uint64_t w = rng() % shadow.size();
    const uint64_t v = rng();
    words[w] = v;
    shadow[w] = v;
  }
  std::vector<uint64_t> order(pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (uint64_t i : order) {
    ASSERT_EQ(std::memcmp(base + i * kPageBytes, &shadow[i * kPageBytes / 8], kPageBytes), 0) << "page " << i;
  }
  const EpcCounters c = heap->counters();
  EXPECT_LE(c.peak_resident_bytes, budget);
  EXPECT_LE(host->counters().peak_resident_bytes, budget);
  EXPECT_EQ(c.page_faults, c.zero_fills + c.loads);
  EXPECT_EQ(c.zero_fills, pages);
  EXPECT_GT(c.evictions, 3 * pages);
}

TEST(EnclaveHeap, ResidentLimitCapsOneEnclave) {
  auto host = private_host(16 * kMiB);
  auto heap = make_heap(host, 16 * kMiB, 1 * kMiB);
  ASSERT_TRUE(heap);
  auto p = heap->allocate(8 * kMiB);
  ASSERT_TRUE(p.ok());
  auto* base = static_cast<uint8_t*>(*p);
  for (uint64_t i = 0; i < 8 * kMiB / kPageBytes; ++i) fill_page(base, i, 3);
  for (uint64_t i = 0; i < 8 * kMiB / kPageBytes; ++i) ASSERT_EQ(check_page(base, i, 3), -1);
  EXPECT_EQ(heap->counters().peak_resident_bytes, 1 * kMiB);
  EXPECT_EQ(host->counters().peak_resident_bytes, 1 * kMiB);
}

TEST(EnclaveHeap, FreeAndDiscardReturnPagesToTheBudget) {
  auto host = private_host(4 * kMiB);
  auto heap = make_heap(host, 64 * kMiB);
  ASSERT_TRUE(heap);
  auto a = heap->allocate(2 * kMiB);
  auto b = heap->allocate(8 * kMiB);
  ASSERT_TRUE(a.ok() && b.ok());
  std::memset(*a, 0x5a, 2 * kMiB);
  std::memset(*b, 0x6b, 8 * kMiB);  // evicts some of a, and of b itself
  EXPECT_EQ(host->resident_bytes(), 4 * kMiB);
  EXPECT_EQ(heap->counters().allocated_bytes, 10 * kMiB);

  ASSERT_TRUE(heap->free(*b).ok());
  const uint64_t after_free = heap->counters().resident_bytes;
  EXPECT_LE(after_free, 2 * kMiB);
  EXPECT_EQ(host->resident_bytes(), after_free);
  EXPECT_EQ(heap->counters().allocated_bytes, 2 * kMiB);
  EXPECT_FALSE(heap->free(*b).ok());  // double free is reported, not ignored

  // a is intact (partly reloaded from untrusted memory).
  auto* pa = static_cast<uint8_t*>(*a);
  for (uint64_t i = 0; i < 2 * kMiB; i += 997) ASSERT_EQ(pa[i], 0x5a) << i;
  EXPECT_EQ(host->resident_bytes(), 2 * kMiB);

  // Discard: pages leave the budget, the allocation stays, contents read as zero.
  ASSERT_TRUE(heap->discard(pa, 2 * kMiB).ok());
  EXPECT_EQ(heap->counters().resident_bytes, 0u);
  EXPECT_EQ(host->resident_bytes(), 0u);
  EXPECT_EQ(pa[12345], 0);
  EXPECT_EQ(heap->page_state(*heap->page_index(pa + kMiB)), PageState::kZero);

  // A freed run is reused, and reads as zeros.
  auto c = heap->allocate(8 * kMiB);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *b);
  EXPECT_EQ(static_cast<uint8_t*>(*c)[4 * kMiB + 7], 0);
  ASSERT_TRUE(heap->free(*c).ok());
  ASSERT_TRUE(heap->free(*a).ok());
  EXPECT_EQ(host->resident_bytes(), 0u);
  heap.reset();
  EXPECT_EQ(host->counters().enclaves, 0u);
}

TEST(EnclaveHeap, AllocationErrorsAreReported) {
  auto host = private_host(4 * kMiB);
  auto heap = make_heap(host, 1 * kMiB);
  ASSERT_TRUE(heap);
  EXPECT_EQ(heap->allocate(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(heap->allocate(100, 3).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(heap->allocate(2 * kMiB).status().code(), StatusCode::kResourceExhausted);
  auto big = heap->allocate(64 * 1024, 64 * 1024);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*big) % (64 * 1024), 0u);
  int local = 0;
  EXPECT_FALSE(heap->free(&local).ok());
  EXPECT_FALSE(heap->free(static_cast<uint8_t*>(*big) + 8).ok());
}

TEST(EnclaveHeap, ExplicitEvictAndPrefault) {
  auto host = private_host(4 * kMiB);
  auto heap = make_heap(host, 4 * kMiB);
  ASSERT_TRUE(heap);
  auto p = heap->allocate(64 * kPageBytes);
  ASSERT_TRUE(p.ok());
  auto* base = static_cast<uint8_t*>(*p);
  for (uint64_t i = 0; i < 64; ++i) fill_page(base, i, 4);
  ASSERT_TRUE(heap->evict(base, 64 * kPageBytes).ok());
  EXPECT_EQ(heap->counters().evictions, 64u);
  EXPECT_EQ(heap->counters().resident_bytes, 0u);
  EXPECT_EQ(heap->page_state(*heap->page_index(base)), PageState::kEvicted);
  EXPECT_EQ(heap->page_version(*heap->page_index(base)), 1u);
  ASSERT_TRUE(heap->prefault(base + 10, 2 * kPageBytes).ok());  // touches pages 0..2
  EXPECT_EQ(heap->counters().loads, 3u);
  for (uint64_t i = 0; i < 64; ++i) ASSERT_EQ(check_page(base, i, 4), -1);
  EXPECT_EQ(heap->counters().loads, 64u);
}

// Several threads on disjoint and shared pages with a budget far below the working set.
TEST(EnclaveHeap, ConcurrentFaultsKeepDataIntact) {
  constexpr int kThreads = 8;
  const uint64_t budget = 1 * kMiB, private_bytes = 2 * kMiB, shared_pages = 512;
  auto host = private_host(budget);
  auto heap = make_heap(host, 64 * kMiB);
  ASSERT_TRUE(heap);
  auto priv = heap->allocate(kThreads * private_bytes);
  auto shared = heap->allocate(shared_pages * kPageBytes);
  ASSERT_TRUE(priv.ok() && shared.ok());
  auto* pbase = static_cast<uint8_t*>(*priv);
  auto* counters = static_cast<uint64_t*>(*shared);  // one counter per 64 bytes
  const uint64_t slots = shared_pages * kPageBytes / 64;
  constexpr int kRounds = 2, kIncrementsPerRound = 20000;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const uint64_t first = t * private_bytes / kPageBytes, n = private_bytes / kPageBytes;
      std::mt19937_64 rng(t);
      for (int r = 0; r < kRounds; ++r) {
        for (uint64_t i = 0; i < n; ++i) fill_page(pbase, first + i, 10 + r);
        for (int k = 0; k < kIncrementsPerRound; ++k) {
          std::atomic_ref<uint64_t>(counters[(rng() % slots) * 8]).fetch_add(1, std::memory_order_relaxed);
        }
        for (uint64_t i = 0; i < n; ++i) {
          if (check_page(pbase, first + i, 10 + r) != -1) errors.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  uint64_t total = 0;
  for (uint64_t s = 0; s < slots; ++s) total += counters[s * 8];
  EXPECT_EQ(total, uint64_t{kThreads} * kRounds * kIncrementsPerRound);
  const EpcCounters c = heap->counters();
  EXPECT_LE(c.peak_resident_bytes, budget);
  EXPECT_LE(host->counters().peak_resident_bytes, budget);
  EXPECT_GT(c.evictions, 0u);
  EXPECT_EQ(c.page_faults, c.zero_fills + c.loads);
}

TEST(EpcArena, BumpsAndDiscards) {
  auto host = private_host(4 * kMiB);
  auto heap = make_heap(host, 16 * kMiB);
  ASSERT_TRUE(heap);
  auto arena = EpcArena::create(*heap, 1 * kMiB);
  ASSERT_TRUE(arena.ok()) << arena.status().to_string();
  auto a = arena->allocate(1000);
  auto b = arena->allocate(5000, 256);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*b) % 256, 0u);
  EXPECT_GE(static_cast<uint8_t*>(*b), static_cast<uint8_t*>(*a) + 1000);
  EXPECT_FALSE(arena->allocate(1 * kMiB).ok());
  std::memset(*b, 1, 5000);
  EXPECT_GT(heap->counters().resident_bytes, 0u);
  ASSERT_TRUE(arena->reset(/*discard_pages=*/true).ok());
  EXPECT_EQ(arena->used_bytes(), 0u);
  EXPECT_EQ(heap->counters().resident_bytes, 0u);
  { EpcArena moved = std::move(*arena); }
  EXPECT_EQ(heap->counters().allocated_bytes, 0u);
}

TEST(EpcCounters, RenderAsJson) {
  auto host = private_host(4 * kMiB);
  auto heap = make_heap(host, 4 * kMiB, 0, "worker-1");
  ASSERT_TRUE(heap);
  const std::string j = to_json(heap->counters());
  for (const char* key : {"\"name\":\"worker-1\"", "\"resident_bytes\":0", "\"peak_resident_bytes\":", "\"page_faults\":",
                          "\"evictions\":", "\"loads\":", "\"bytes_encrypted\":", "\"bytes_decrypted\":"}) {
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  }
  const std::string h = to_json(host->counters());
  EXPECT_NE(h.find("\"budget_bytes\":4194304"), std::string::npos) << h;
  EXPECT_NE(h.find("\"enclaves\":1"), std::string::npos) << h;
}

TEST(EnclaveHeap, MeasuresDeclaredSizeOnCreate) {
  auto host = private_host(4 * kMiB);
  EnclaveHeapOptions o;
  o.reserve_bytes = 4 * kMiB;
  o.measure_declared_bytes = 8 * kMiB;
  auto heap = EnclaveHeap::create(host, o);
  ASSERT_TRUE(heap.ok());
  EXPECT_GT((*heap)->counters().creation_measure_ms, 0.0);
}

}  // namespace
}  // namespace tenet::epc
