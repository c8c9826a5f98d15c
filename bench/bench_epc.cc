// EPC emulation cost on this machine (sim platform, src/epc): what one secure-paging event costs,
// how streaming over twice the budget compares with a working set that fits, and what the
// EADD/EEXTEND creation measurement costs per MiB. Prints a table; SGX hardware figures for
// comparison are from the literature (ELDU/EWB fault path 10–40 µs; Vessels, TEMPER).
//
//   build-*/src/epc/bench_epc [--budget-mib 16] [--threads N]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <omp.h>

#include "crypto/crypto.h"
#include "epc/enclave_heap.h"
#include "epc/host_epc.h"
#include "epc/measure.h"

using namespace tenet;
using namespace tenet::epc;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::shared_ptr<HostEpc> private_host(uint64_t budget) {
  const std::string name = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(budget);
  auto host = HostEpc::open(name, budget);
  if (!host.ok()) {
    std::fprintf(stderr, "bench_epc: %s\n", host.status().to_string().c_str());
    std::exit(1);
  }
  (void)HostEpc::remove(name);
  return *host;
}

std::unique_ptr<EnclaveHeap> make_heap(std::shared_ptr<HostEpc> host, uint64_t reserve) {
  EnclaveHeapOptions o;
  o.name = "bench";
  o.reserve_bytes = reserve;
  auto heap = EnclaveHeap::create(std::move(host), o);
  if (!heap.ok()) {
    std::fprintf(stderr, "bench_epc: %s\n", heap.status().to_string().c_str());
    std::exit(1);
  }
  return std::move(*heap);
}

uint8_t* must_allocate(EnclaveHeap& heap, uint64_t bytes) {
  auto p = heap.allocate(bytes, kPageBytes);
  if (!p.ok()) {
    std::fprintf(stderr, "bench_epc: %s\n", p.status().to_string().c_str());
    std::exit(1);
  }
  return static_cast<uint8_t*>(*p);
}

void touch_pages(uint8_t* base, uint64_t pages) {
  auto* v = reinterpret_cast<volatile uint8_t*>(base);
  for (uint64_t i = 0; i < pages; ++i) v[i * kPageBytes] = static_cast<uint8_t>(v[i * kPageBytes] + 1);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Reads every 8-byte word (parallel over `threads`); returns GB/s over `passes` passes.
double stream_gbps(uint8_t* base, uint64_t bytes, int passes, int threads) {
  const auto* words = reinterpret_cast<const uint64_t*>(base);
  const int64_t n = static_cast<int64_t>(bytes / 8);
  uint64_t sink = 0;
  const auto t0 = Clock::now();
  for (int p = 0; p < passes; ++p) {
    uint64_t s = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; ++i) s += words[i];
    sink += s;
  }
  const double t = seconds_since(t0);
  if (sink == 42) std::printf(" ");
  return static_cast<double>(bytes) * passes / t / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t budget = 16 * kMiB;
  int threads = std::max(1, omp_get_max_threads());
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--budget-mib") == 0) budget = std::stoull(argv[i + 1]) * kMiB;
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::stoi(argv[i + 1]);
  }
  const uint64_t pages = 16384;  // 64 MiB per measurement
  std::printf("EPC emulation (sim platform) on this machine: %d threads, %llu pages per measurement\n\n", threads,
              static_cast<unsigned long long>(pages));
  std::printf("%-52s %12s %14s\n", "event (4 KiB page)", "cost", "SGX reference");

  // Raw AES-256-GCM of one page, for the breakdown.
  {
    std::vector<uint8_t> key(32, 7), iv(12, 1), page(kPageBytes, 3), out(kPageBytes + 16), back(kPageBytes);
    const int reps = 20000;
    auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) (void)crypto::aes256gcm_seal_into(key, iv, {}, page, out);
    const double seal_us = seconds_since(t0) / reps * 1e6;
    t0 = Clock::now();
    for (int r = 0; r < reps; ++r) (void)crypto::aes256gcm_open_into(key, iv, {}, out, back);
    const double open_us = seconds_since(t0) / reps * 1e6;
    std::printf("%-52s %9.2f us %14s\n", "AES-256-GCM seal, alone (OpenSSL, fresh context)", seal_us, "-");
    std::printf("%-52s %9.2f us %14s\n", "AES-256-GCM open, alone (OpenSSL, fresh context)", open_us, "-");
  }

  std::vector<double> zero_us, evict_us, load_us, thrash_us;
  for (int rep = 0; rep < 3; ++rep) {
    auto host = private_host(2 * pages * kPageBytes);
    auto heap = make_heap(host, 4 * pages * kPageBytes);
    uint8_t* base = must_allocate(*heap, pages * kPageBytes);
    auto t0 = Clock::now();
    touch_pages(base, pages);  // first touch: zero-fill faults
    zero_us.push_back(seconds_since(t0) / pages * 1e6);
    t0 = Clock::now();
    (void)heap->evict(base, pages * kPageBytes);  // EWB every page
    evict_us.push_back(seconds_since(t0) / pages * 1e6);
    t0 = Clock::now();
    touch_pages(base, pages);  // ELDU every page, budget free
    load_us.push_back(seconds_since(t0) / pages * 1e6);
  }
  for (int rep = 0; rep < 3; ++rep) {
    // Steady-state thrashing: every touch faults, evicts one page and loads one.
    auto host = private_host(4 * kMiB);
    auto heap = make_heap(host, 2 * pages * kPageBytes);
    uint8_t* base = must_allocate(*heap, pages * kPageBytes);
    touch_pages(base, pages);
    touch_pages(base, pages);
    const auto before = heap->counters();
    const auto t0 = Clock::now();
    touch_pages(base, pages);
    const double t = seconds_since(t0);
    const auto after = heap->counters();
    thrash_us.push_back(t / static_cast<double>(after.loads - before.loads) * 1e6);
  }
  std::printf("%-52s %9.2f us %14s\n", "first-touch fault (zero fill, no crypto)", median(zero_us), "-");
  std::printf("%-52s %9.2f us %14s\n", "evict-and-encrypt (EWB)", median(evict_us), "-");
  std::printf("%-52s %9.2f us %14s\n", "fault-and-decrypt (ELDU, budget free)", median(load_us), "10-40 us");
  std::printf("%-52s %9.2f us %14s\n", "fault at budget: evict one + load one (EWB+ELDU)", median(thrash_us), "-");

  // Streaming: working set that fits vs twice the budget.
  std::printf("\n%-52s %12s %12s %10s\n", "streaming read (sum of uint64)", "fits", "2x budget", "slowdown");
  for (int t : {1, threads}) {
    auto host = private_host(budget);
    auto heap = make_heap(host, 4 * budget);
    uint8_t* small = must_allocate(*heap, budget / 2);
    std::memset(small, 1, budget / 2);
    const double fits = stream_gbps(small, budget / 2, 8, t);
    (void)heap->free(small);
    uint8_t* big = must_allocate(*heap, 2 * budget);
    std::memset(big, 1, 2 * budget);
    const auto before = heap->counters();
    const double over = stream_gbps(big, 2 * budget, 2, t);
    const auto after = heap->counters();
    char label[96];
    std::snprintf(label, sizeof(label), "budget %s, %d thread%s (%.0f faults/pass)", format_epc_size(budget).c_str(), t,
                  t == 1 ? "" : "s", static_cast<double>(after.page_faults - before.page_faults) / 2);
    std::printf("%-52s %7.2f GB/s %7.2f GB/s %9.1fx\n", label, fits, over, fits / over);
    if (t == threads) break;
  }

  // Enclave creation: EADD + EEXTEND over every page of the declared size.
  {
    const uint64_t size = 256 * kMiB;
    std::vector<double> ms;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = Clock::now();
      (void)measure_enclave(size);
      ms.push_back(seconds_since(t0) * 1e3);
    }
    const double per_mib = median(ms) / 256;
    std::printf("\n%-52s %9.3f ms/MiB\n", "enclave creation, measure_enclave (EADD+EEXTEND)", per_mib);
    for (uint64_t declared : {uint64_t{93} * kMiB, uint64_t{1} << 30, uint64_t{8} << 30}) {
      std::printf("  %-50s %9.1f ms\n", ("declared " + format_epc_size(declared)).c_str(),
                  per_mib * static_cast<double>(declared) / kMiB);
    }
  }
  return 0;
}
