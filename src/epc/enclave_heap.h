// The enclave heap of the sim platform: enclave memory whose resident pages count against the
// machine-wide EPC budget (host_epc.h), with fault-driven, encrypted, version-checked paging.
// This is where enclave memory (weights, the activation arena, scratch) is allocated.
//
// Design
// ------
// Vessels (and TEMPER before it) found that enclave inference is slow because of secure paging
// once the working set exceeds the EPC. To make that cost real on the sim platform — so that
// unmodified code, oneDNN kernels on OpenMP threads included, pays it exactly where hardware
// would — the heap pages like SGX does:
//
//  * Two views of one memfd. The heap reserves `reserve_bytes` of address space twice over the
//    same memfd: the *enclave view* that callers use, whose pages are PROT_NONE unless resident,
//    and a private *pager view*, always read-write, through which the pager encrypts and decrypts
//    a page while the enclave view of that page is still inaccessible (no thread can observe a
//    half-loaded page or write to a page being evicted).
//  * Faults. Touching a non-resident page raises SIGSEGV; the process-wide handler finds the heap,
//    brings the page in and returns, and the instruction restarts. (userfaultfd would avoid the
//    signal but is off for unprivileged processes in most containers and CI; mprotect + SIGSEGV
//    works everywhere.) Faults run concurrently on many threads: every page has an atomic state
//    (unallocated, zero, resident, evicted, busy); one thread wins the CAS to busy and does the
//    work, others that fault on the same page wait until it turns resident. There is no lock.
//  * Budget. A page becomes resident only after reserving 4 KiB of the host budget (and of the
//    enclave's own limit, if set). When that fails the faulting thread evicts one of this
//    enclave's own resident pages and takes over its reservation, so the host total never passes
//    the budget. Cross-enclave eviction is out of scope (see host_epc.h); with nothing of its own
//    to evict the thread waits, and after `budget_wait_timeout_ms` the enclave stops (exit status
//    kEpcExhaustedExitStatus).
//  * Eviction (SGX EWB): the victim is chosen by a clock (second chance) over the heap's pages:
//    a page gets its referenced bit when it is loaded, the hand clears it on the first pass and
//    evicts on the second. SGX's driver approximates LRU with the page-table accessed bits; a user
//    process cannot read those without taking extra faults, so "referenced" here means "loaded
//    since the hand last passed". The victim turns PROT_NONE first, then its plaintext is sealed
//    with AES-256-GCM under a per-enclave random key into untrusted memory (a separate mapping:
//    4 KiB ciphertext + 16-byte tag per page, SGX's page and PCMD), its version counter (trusted,
//    SGX's VA slot) is incremented first and bound into the IV and the AAD together with the
//    page index, and the physical page is released (fallocate punch-hole).
//  * Load (SGX ELDU): the ciphertext and tag are copied into trusted memory first (TOCTOU), then
//    opened with the current version; on success the page turns read-write. On failure the
//    enclave stops cleanly: one line on stderr naming the heap, the page, its offset and what
//    failed (authentication failure, or a replay of an older version, which the handler tells
//    apart by trying the few previous versions), then _exit(kEpcIntegrityExitStatus). The bad
//    plaintext is never mapped.
//  * Free and discard return pages to the budget (state reset, PROT_NONE, punch-hole); versions
//    are never reset, so an (index, version) pair never repeats under one key.
//
// Costs to expect: a fault that decrypts is signal delivery + AES-GCM of 4 KiB + mprotect + a
// minor kernel fault, a few µs (bench/bench_epc); SGX's ELDU path is 10–40 µs.
//
// Contract and limits
//  * Allocation is page-granular (every allocation starts on its own page); the engine allocates a
//    few large buffers (weights, one activation arena). `EpcArena` sub-allocates one heap block.
//  * The kernel does not fault through the SIGSEGV path: a syscall that writes into a non-resident
//    heap page (read(), recv()) fails with EFAULT. Call `prefault()` on the destination first, or
//    read into a small buffer and copy.
//  * Asynchronous signal handlers must not touch heap memory. The heap is not usable in a child
//    after fork() (its mappings are MADV_DONTFORK; such a fault stops the child with a message).
//  * Each resident run of pages is one kernel VMA; scattered residency can reach
//    vm.max_map_count (65530 by default, ~128 MiB of worst-case scattered pages). mprotect
//    failing there stops the enclave with a message saying so.
//  * AddressSanitizer: ASan allows user SEGV handlers (allow_user_segv_handler=1 by default);
//    faults outside any heap are chained to the previous handler, so ASan still reports real
//    crashes. The heap works under ASan; its memory is outside ASan's allocator (no redzones).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"
#include "crypto/crypto.h"
#include "epc/host_epc.h"

namespace tenet::epc {

// Exit statuses of an enclave stopped by the pager (distinct from 1/2 of the CLI).
inline constexpr int kEpcIntegrityExitStatus = 86;  // a page failed its integrity check on load
inline constexpr int kEpcExhaustedExitStatus = 87;  // no page could be obtained within the timeout
inline constexpr int kEpcFaultErrorExitStatus = 88; // mprotect/fallocate failed, or fault after fork

struct EnclaveHeapOptions {
  std::string name = "enclave";           // in messages and counters
  uint64_t reserve_bytes = uint64_t{1} << 30;  // virtual size of the heap (≤ 16 TiB)
  uint64_t resident_limit_bytes = 0;      // this enclave's own cap on resident pages; 0 = none
  uint32_t budget_wait_timeout_ms = 60000;
  // Model enclave creation (SGX1 EADD + EEXTEND of every page of the declared size) by running
  // measure_enclave(measure_declared_bytes) in create(); 0 = skip. Its time is in the counters.
  uint64_t measure_declared_bytes = 0;
};

enum class PageState : uint8_t {
  kUnallocated = 0,  // not part of any allocation: touching it is a real segfault
  kZero = 1,         // allocated, never touched (or discarded): first touch maps a zero page
  kResident = 2,     // in the EPC budget, read-write
  kEvicted = 3,      // sealed in untrusted memory
  kBusy = 4,         // a thread is loading or evicting it
};

struct EpcCounters {
  std::string name;
  uint64_t reserve_bytes = 0;
  uint64_t allocated_bytes = 0;
  uint64_t resident_limit_bytes = 0;  // 0 = host budget only
  uint64_t host_budget_bytes = 0;
  uint64_t resident_bytes = 0;
  uint64_t peak_resident_bytes = 0;  // peak EPC pages this enclave held (≤ its limit)
  uint64_t peak_allocated_bytes = 0; // peak enclave memory committed: what it needs to never page
  uint64_t page_faults = 0;          // all faults served (zero fills + loads)
  uint64_t zero_fills = 0;           // first touches (no decryption)
  uint64_t evictions = 0;            // EWB
  uint64_t loads = 0;                // ELDU
  uint64_t bytes_encrypted = 0;
  uint64_t bytes_decrypted = 0;
  double creation_measure_ms = 0;    // measure_declared_bytes' cost
};

// One JSON object with the fields above.
std::string to_json(const EpcCounters& counters);

class EnclaveHeap {
 public:
  static Result<std::unique_ptr<EnclaveHeap>> create(std::shared_ptr<HostEpc> host, EnclaveHeapOptions options);
  // Frees everything and returns the enclave's pages to the host budget.
  ~EnclaveHeap();
  EnclaveHeap(const EnclaveHeap&) = delete;
  EnclaveHeap& operator=(const EnclaveHeap&) = delete;

  // Page-granular, first fit. `alignment` is a power of two (≥ 4096 honoured by page placement).
  // kResourceExhausted when the reserve has no run of free pages large enough. Costs no EPC until
  // touched.
  Result<void*> allocate(size_t size_bytes, size_t alignment = 64);
  // Frees an allocation (ptr as returned by allocate). Its pages leave the budget.
  Status free(void* ptr);
  // Drops the contents of every page wholly inside [ptr, ptr+size_bytes) of a live allocation: they
  // leave the budget and read as zero on next touch, and dead data is never encrypted.
  Status discard(void* ptr, size_t size_bytes);
  // Evicts (EWB) every resident page wholly inside the range now. For tests and benchmarks.
  Status evict(void* ptr, size_t size_bytes);
  // Makes every page touching the range resident (for syscalls writing into it; see above). The
  // pages can be evicted again afterwards if the enclave needs room.
  Status prefault(void* ptr, size_t size_bytes);

  EpcCounters counters() const;
  // Restarts both peaks from the current values (e.g. after loading, to measure the steady state).
  void reset_peaks();
  const std::string& name() const;
  HostEpc& host() const;
  bool contains(const void* p) const;
  uint8_t* base() const;
  uint64_t reserve_bytes() const;
  // Page index of an address inside the heap; kOutOfRange otherwise.
  Result<size_t> page_index(const void* p) const;
  PageState page_state(size_t page_index) const;
  uint64_t page_version(size_t page_index) const;

  // The untrusted copy of an evicted page, as the host sees it (and may tamper with it): the
  // ciphertext (4096 bytes) and the tag. Meaningful only while page_state() is kEvicted.
  struct UntrustedPage {
    std::span<uint8_t> ciphertext;
    std::span<uint8_t> tag;
  };
  UntrustedPage untrusted_page(size_t page_index);

  struct Impl;  // the pager, shared with the process-wide SIGSEGV handler

 private:
  explicit EnclaveHeap(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A bump allocator over one heap allocation, for an activation arena planned ahead of time.
class EpcArena {
 public:
  static Result<EpcArena> create(EnclaveHeap& heap, size_t capacity_bytes);
  EpcArena(EpcArena&& other) noexcept;
  EpcArena& operator=(EpcArena&& other) noexcept;
  ~EpcArena();  // frees the block

  Result<void*> allocate(size_t size_bytes, size_t alignment = 64);
  // Rewinds to empty; with discard_pages also returns the block's pages to the budget (contents
  // lost, zero on next touch), so dead activations are never evicted (encrypted) later.
  Status reset(bool discard_pages = false);
  uint8_t* data() const { return base_; }
  size_t capacity_bytes() const { return capacity_bytes_; }
  size_t used_bytes() const { return used_bytes_; }

 private:
  EpcArena(EnclaveHeap* heap, uint8_t* base, size_t capacity) : heap_(heap), base_(base), capacity_bytes_(capacity) {}
  EnclaveHeap* heap_ = nullptr;
  uint8_t* base_ = nullptr;
  size_t capacity_bytes_ = 0;
  size_t used_bytes_ = 0;
};

}  // namespace tenet::epc
