// Helpers for the EPC tests: private host segments and page patterns.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "epc/enclave_heap.h"
#include "epc/host_epc.h"

namespace tenet::epc::testing {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;

inline std::string unique_host_name(const char* tag) {
  static std::atomic<int> counter{0};
  return std::string("t-") + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// A host segment of its own, unlinked at once: it lives as long as it is mapped, so tests (and
// death-test children) never leave anything in /dev/shm.
inline std::shared_ptr<HostEpc> private_host(uint64_t budget_bytes, const char* tag = "h") {
  const std::string name = unique_host_name(tag);
  auto host = HostEpc::open(name, budget_bytes);
  EXPECT_TRUE(host.ok()) << host.status().to_string();
  EXPECT_TRUE(HostEpc::remove(name).ok());
  return host.ok() ? *host : nullptr;
}

inline std::unique_ptr<EnclaveHeap> make_heap(std::shared_ptr<HostEpc> host, uint64_t reserve_bytes,
                                              uint64_t limit_bytes = 0, const char* name = "test") {
  EnclaveHeapOptions o;
  o.name = name;
  o.reserve_bytes = reserve_bytes;
  o.resident_limit_bytes = limit_bytes;
  auto heap = EnclaveHeap::create(std::move(host), o);
  EXPECT_TRUE(heap.ok()) << heap.status().to_string();
  return heap.ok() ? std::move(*heap) : nullptr;
}

// The value word `w` of page `page` holds in round `round`.
inline uint64_t pattern(uint64_t page, uint64_t w, uint64_t round) {
  uint64_t x = (page * 0x9e3779b97f4a7c15ull) ^ (w * 0xbf58476d1ce4e5b9ull) ^ (round * 0x94d049bb133111ebull);
  x ^= x >> 31;
  return x | 1;
}

inline void fill_page(uint8_t* base, uint64_t page, uint64_t round) {
  auto* words = reinterpret_cast<uint64_t*>(base + page * kPageBytes);
  for (uint64_t w = 0; w < kPageBytes / 8; ++w) words[w] = pattern(page, w, round);
}

// Index of the first wrong word, or -1.
inline int64_t check_page(const uint8_t* base, uint64_t page, uint64_t round) {
  const auto* words = reinterpret_cast<const uint64_t*>(base + page * kPageBytes);
  for (uint64_t w = 0; w < kPageBytes / 8; ++w) {
    if (words[w] != pattern(page, w, round)) return static_cast<int64_t>(w);
  }
  return -1;
}

}  // namespace tenet::epc::testing
