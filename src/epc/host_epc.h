// The machine-wide EPC budget of the sim platform (untrusted: on SGX this accounting lives in the
// kernel driver, which the enclave does not trust either).
//
// On SGX the Enclave Page Cache is one physical pool per machine (128 MiB on SGX1, about 93 MiB of
// it usable for enclave pages; up to hundreds of GiB on SGX2 Xeons) shared by every enclave. The sim
// platform emulates that pool with a small POSIX shared-memory segment, `/tenet-epc-<name>`, that
// every enclave process on the host maps. It holds atomic counters only — no enclave data:
//
//   budget_bytes          the size of the emulated EPC (fixed by whoever creates the segment)
//   resident_bytes        the sum over all enclaves of their resident pages; an enclave reserves a
//                         page with one compare-and-swap that fails when it would pass the budget,
//                         so the sum never exceeds the budget, whatever the interleaving
//   peak_resident_bytes   high-water mark of resident_bytes
//   faults/evictions/loads/bytes encrypted and decrypted, summed over enclaves
//   one slot per enclave  (pid, resident and peak bytes), so the host can list enclaves and give
//                         back the pages of an enclave process that died without releasing them
//
// The name keeps parallel CI runs and tests apart (each uses its own segment). The segment is
// created on first use and outlives its processes until `remove()`; a process that dies holding
// pages is reclaimed by the next `register_enclave()` (its pid no longer exists).
//
// What is not emulated: cross-enclave eviction. The SGX driver's reclaimer may evict any enclave's
// pages; here an enclave that needs a page while the host is at its budget evicts one of its OWN
// pages (EWB on its own pages, see enclave_heap.h), and an enclave with no page of its own to give
// waits until another enclave releases some. Admission control (Vessels' EPC-aware scheduler) is
// what keeps the committed total under the budget in the first place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tenet::epc {

inline constexpr uint64_t kPageBytes = 4096;
// SGX1: 128 MiB of processor reserved memory, of which about 93 MiB hold enclave pages.
inline constexpr uint64_t kSgx1UsableEpcBytes = uint64_t{93} << 20;
inline constexpr int kMaxEnclavesPerHost = 256;

// Parses "93MiB", "64GiB", "512KiB", "4096" (bytes), "1.5GiB"; rounds down to whole pages.
// Accepts KiB/MiB/GiB/TiB (and K/M/G/T, KB/MB/GB meaning the same binary units).
Result<uint64_t> parse_epc_size(std::string_view text);
// "93 MiB", "64 GiB", "4096 B".
std::string format_epc_size(uint64_t bytes);

struct HostEpcCounters {
  uint64_t budget_bytes = 0;
  uint64_t resident_bytes = 0;
  uint64_t peak_resident_bytes = 0;
  uint64_t page_faults = 0;
  uint64_t evictions = 0;  // EWB
  uint64_t loads = 0;      // ELDU
  uint64_t bytes_encrypted = 0;
  uint64_t bytes_decrypted = 0;
  uint32_t enclaves = 0;   // registered enclave slots in use
};

struct EnclaveSlotInfo {
  int slot = -1;
  int32_t pid = 0;
  uint64_t resident_bytes = 0;
  uint64_t peak_resident_bytes = 0;
};

// One JSON object, e.g. {"budget_bytes":97517568,"resident_bytes":...}.
std::string to_json(const HostEpcCounters& counters);

class HostEpc {
 public:
  // Maps /tenet-epc-<name>, creating it with `budget_bytes` if it does not exist. `name` is
  // [A-Za-z0-9._-]{1,64}. With budget_bytes == 0 an existing segment keeps its budget and a new
  // one gets kSgx1UsableEpcBytes; a nonzero budget that differs from an existing segment's is
  // kFailedPrecondition (two budgets for one machine would be meaningless). The budget is rounded
  // down to whole pages and must be at least 16 pages.
  static Result<std::shared_ptr<HostEpc>> open(std::string_view name, uint64_t budget_bytes = 0);
  // shm_unlink: processes that have it mapped keep using it; the next open() creates a new one.
  static Status remove(std::string_view name);

  ~HostEpc();
  HostEpc(const HostEpc&) = delete;
  HostEpc& operator=(const HostEpc&) = delete;

  const std::string& name() const { return name_; }
  uint64_t budget_bytes() const;
  uint64_t resident_bytes() const;
  HostEpcCounters counters() const;
  std::vector<EnclaveSlotInfo> enclaves() const;

  // ---- used by EnclaveHeap (and by a scheduler that wants to look) ----
  // Claims a free enclave slot for the calling process, first reclaiming slots of dead processes.
  Result<int> register_enclave();
  // Gives the slot's resident bytes back to the budget and frees the slot. Async-signal-safe.
  void unregister_enclave(int slot);
  // Reserves `bytes` of the budget for `slot`; false when that would pass the budget.
  // Lock-free and async-signal-safe (atomics on the shared segment only).
  bool try_reserve(int slot, uint64_t bytes);
  // Returns bytes previously reserved by `slot`. Async-signal-safe.
  void release(int slot, uint64_t bytes);
  // Adds to the host-wide event counters. Async-signal-safe.
  void add_events(uint64_t page_faults, uint64_t evictions, uint64_t loads, uint64_t bytes_encrypted,
                  uint64_t bytes_decrypted);

 private:
  struct Shared;
  HostEpc(std::string name, Shared* shared) : name_(std::move(name)), shared_(shared) {}
  std::string name_;
  Shared* shared_;
};

}  // namespace tenet::epc
