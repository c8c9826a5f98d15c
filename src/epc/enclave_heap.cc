#include "epc/enclave_heap.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <openssl/evp.h>

#include "epc/measure.h"

namespace tenet::epc {
namespace {

constexpr size_t kTagBytes = crypto::kAesGcmTagBytes;
constexpr uint64_t kMaxPages = uint64_t{1} << 32;  // the page index fills 4 bytes of the IV
constexpr int kMaxHeapsPerProcess = 64;
constexpr uint64_t kMaxReplayProbe = 64;  // older versions tried when telling replay from tamper

uint8_t st(PageState s) { return static_cast<uint8_t>(s); }

void atomic_max(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// Async-signal-safe message building: fixed buffer, no allocation, no stdio.
class SignalSafeLine {
 public:
  SignalSafeLine& str(const char* s) {
    while (*s && len_ < sizeof(buf_) - 1) buf_[len_++] = *s++;
    return *this;
  }
  SignalSafeLine& u64(uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
      tmp[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v && n < 24);
    while (n && len_ < sizeof(buf_) - 1) buf_[len_++] = tmp[--n];
    return *this;
  }
  SignalSafeLine& hex(uint64_t v) {
    str("0x");
    char tmp[16];
    int n = 0;
    do {
      tmp[n++] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v && n < 16);
    while (n && len_ < sizeof(buf_) - 1) buf_[len_++] = tmp[--n];
    return *this;
  }
  void write_stderr() {
    buf_[len_++] = '\n';
    size_t done = 0;
    while (done < len_) {
      const ssize_t w = ::write(STDERR_FILENO, buf_ + done, len_ - done);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
  }

 private:
  char buf_[512];
  size_t len_ = 0;
};

uint64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

void* map_anonymous(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// The pager. Everything reachable from the SIGSEGV handler is async-signal-safe in the sense that
// matters here: the faulting thread was running code touching enclave-heap memory, never inside
// malloc or a lock of ours, so the handler may use atomics, syscalls and preallocated OpenSSL
// contexts (AES-GCM with a preset key does not allocate).
struct EnclaveHeap::Impl {
  std::shared_ptr<HostEpc> host;
  EnclaveHeapOptions options;
  int slot = -1;
  int registry_index = -1;
  int32_t owner_pid = 0;
  size_t pages = 0;
  int memfd = -1;
  uint8_t* view = nullptr;       // enclave view (PROT_NONE unless resident)
  uint8_t* pager = nullptr;      // pager view of the same memfd, always read-write
  uint8_t* untrusted = nullptr;  // evicted ciphertext, one 4 KiB slot per page (untrusted memory)
  uint8_t* tags = nullptr;       // one 16-byte tag per page (SGX's PCMD MAC; untrusted memory)
  std::atomic<uint8_t>* state = nullptr;
  std::atomic<uint8_t>* referenced = nullptr;
  uint64_t* version = nullptr;   // trusted (SGX's VA slots); written only by the page's busy owner

  std::atomic<size_t> hand{0};
  std::atomic<size_t> high_water_pages{0};
  std::atomic<uint64_t> resident_bytes{0};
  std::atomic<uint64_t> peak_resident_bytes{0};
  std::atomic<uint64_t> page_faults{0};
  std::atomic<uint64_t> zero_fills{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> loads{0};
  std::atomic<uint64_t> bytes_encrypted{0};
  std::atomic<uint64_t> bytes_decrypted{0};
  std::atomic<uint64_t> allocated_bytes{0};
  std::atomic<uint64_t> peak_allocated_bytes{0};
  double creation_measure_ms = 0;

  uint8_t key[crypto::kAesGcmKeyBytes] = {};
  struct Cipher {
    std::atomic_flag busy = ATOMIC_FLAG_INIT;
    EVP_CIPHER_CTX* enc = nullptr;
    EVP_CIPHER_CTX* dec = nullptr;
  };
  std::unique_ptr<Cipher[]> ciphers;
  size_t cipher_count = 0;

  std::mutex alloc_mutex;
  std::map<size_t, size_t> free_runs;        // first page -> page count (coalesced)
  std::unordered_map<size_t, size_t> live;   // first page -> page count

  ~Impl();
  Status init();

  // ---- fault path ----
  bool handle_fault(uintptr_t addr);  // false: not a heap page (a real segfault)
  void bring_in(size_t p, uint8_t prior);
  void obtain_frame(size_t p);
  bool reserve_page();
  bool select_victim(size_t exclude, size_t* victim);
  void evict_page(size_t v);  // v is busy; keeps its budget reservation with the caller
  void load_page(size_t p);   // p is busy

  Cipher& acquire_cipher();
  bool seal_page(Cipher& c, size_t p, uint64_t ver, const uint8_t* src, uint8_t* dst, uint8_t* tag);
  bool open_page(Cipher& c, size_t p, uint64_t ver, const uint8_t* src, const uint8_t* tag, uint8_t* dst);

  [[noreturn]] void die_integrity(size_t p, uint64_t expected, uint64_t replayed);
  [[noreturn]] void die_syscall(const char* what, size_t p, int err);
  [[noreturn]] void die_exhausted(size_t p);

  // ---- allocator side ----
  void set_range_busy(size_t first, size_t count, size_t* resident_count);
  Status release_range(size_t first, size_t count, PageState new_state);
};

// ---- process-wide SIGSEGV handler and heap registry -------------------------------------------

namespace {

struct RegistryEntry {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<EnclaveHeap::Impl*> impl{nullptr};
};
RegistryEntry g_registry[kMaxHeapsPerProcess];
EnclaveHeap::Impl* const kClaimed = reinterpret_cast<EnclaveHeap::Impl*>(uintptr_t{1});
struct sigaction g_previous_segv;
std::once_flag g_install_once;
int g_install_errno = 0;

void chain_to_previous(int sig, siginfo_t* info, void* ucontext) {
  if ((g_previous_segv.sa_flags & SA_SIGINFO) && g_previous_segv.sa_sigaction != nullptr) {
    g_previous_segv.sa_sigaction(sig, info, ucontext);
    return;
  }
  if (!(g_previous_segv.sa_flags & SA_SIGINFO) && g_previous_segv.sa_handler != SIG_DFL &&
      g_previous_segv.sa_handler != SIG_IGN) {
    g_previous_segv.sa_handler(sig);
    return;
  }
  // Default disposition: restore it and return; the instruction faults again and the process
  // dies of SIGSEGV as it would have without us.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
}

void segv_handler(int sig, siginfo_t* info, void* ucontext) {
  const int saved_errno = errno;
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (auto& e : g_registry) {
    EnclaveHeap::Impl* impl = e.impl.load(std::memory_order_acquire);
    if (impl == nullptr || impl == kClaimed) continue;
    if (addr >= e.begin.load(std::memory_order_relaxed) && addr < e.end.load(std::memory_order_relaxed)) {
      if (impl->handle_fault(addr)) {
        errno = saved_errno;
        return;
      }
      break;
    }
  }
  errno = saved_errno;
  chain_to_previous(sig, info, ucontext);
}

Status install_handler() {
  std::call_once(g_install_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSEGV, &sa, &g_previous_segv) != 0) g_install_errno = errno;
  });
  if (g_install_errno != 0) return internal_error("installing the EPC fault handler: {}", std::strerror(g_install_errno));
  return ok_status();
}

int register_heap(EnclaveHeap::Impl* impl, uintptr_t begin, uintptr_t end) {
  for (int i = 0; i < kMaxHeapsPerProcess; ++i) {
    EnclaveHeap::Impl* expected = nullptr;
    // Claim with a sentinel first so the range is published before the pointer.
    if (g_registry[i].impl.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel)) {
      g_registry[i].begin.store(begin, std::memory_order_relaxed);
      g_registry[i].end.store(end, std::memory_order_relaxed);
      g_registry[i].impl.store(impl, std::memory_order_release);
      return i;
    }
  }
  return -1;
}

}  // namespace

// ---- fault path ---------------------------------------------------------------------------------

bool EnclaveHeap::Impl::handle_fault(uintptr_t addr) {
  if (static_cast<int32_t>(::getpid()) != owner_pid) {
    SignalSafeLine()
        .str("tenet epc: enclave '").str(options.name.c_str())
        .str("': heap touched in a child process after fork() (not supported); stopping")
        .write_stderr();
    ::_exit(kEpcFaultErrorExitStatus);
  }
  const size_t p = (addr - reinterpret_cast<uintptr_t>(view)) / kPageBytes;
  for (;;) {
    uint8_t s = state[p].load(std::memory_order_acquire);
    if (s == st(PageState::kResident)) return true;  // another thread brought it in: retry
    if (s == st(PageState::kUnallocated)) return false;
    if (s == st(PageState::kBusy)) {
      ::sched_yield();
      continue;
    }
    if (state[p].compare_exchange_weak(s, st(PageState::kBusy), std::memory_order_acq_rel)) {
      bring_in(p, s);
      return true;
    }
  }
}

void EnclaveHeap::Impl::bring_in(size_t p, uint8_t prior) {
  obtain_frame(p);
  if (prior == st(PageState::kEvicted)) {
    load_page(p);
  } else {
    zero_fills.fetch_add(1, std::memory_order_relaxed);  // the memfd hole reads as zeros
  }
  if (::mprotect(view + p * kPageBytes, kPageBytes, PROT_READ | PROT_WRITE) != 0) die_syscall("mprotect", p, errno);
  referenced[p].store(1, std::memory_order_relaxed);
  page_faults.fetch_add(1, std::memory_order_relaxed);
  host->add_events(1, 0, 0, 0, 0);
  state[p].store(st(PageState::kResident), std::memory_order_release);
}

bool EnclaveHeap::Impl::reserve_page() {
  const uint64_t limit = options.resident_limit_bytes;
  uint64_t cur = resident_bytes.load(std::memory_order_relaxed);
  do {
    if (limit != 0 && cur + kPageBytes > limit) return false;
  } while (!resident_bytes.compare_exchange_weak(cur, cur + kPageBytes, std::memory_order_acq_rel));
  if (!host->try_reserve(slot, kPageBytes)) {
    resident_bytes.fetch_sub(kPageBytes, std::memory_order_acq_rel);
    return false;
  }
  atomic_max(peak_resident_bytes, cur + kPageBytes);
  return true;
}

// Clock / second chance over [0, high water): clear the referenced bit on the first pass, take the
// page on the second. Two full turns without a candidate means every resident page is busy.
bool EnclaveHeap::Impl::select_victim(size_t exclude, size_t* victim) {
  const size_t n = high_water_pages.load(std::memory_order_acquire);
  if (n == 0) return false;
  for (size_t step = 0; step < 2 * n + 1; ++step) {
    const size_t i = hand.fetch_add(1, std::memory_order_relaxed) % n;
    if (i == exclude || state[i].load(std::memory_order_relaxed) != st(PageState::kResident)) continue;
    if (referenced[i].load(std::memory_order_relaxed) != 0) {
      referenced[i].store(0, std::memory_order_relaxed);
      continue;
    }
    uint8_t expected = st(PageState::kResident);
    if (state[i].compare_exchange_strong(expected, st(PageState::kBusy), std::memory_order_acq_rel)) {
      *victim = i;
      return true;
    }
  }
  return false;
}

void EnclaveHeap::Impl::obtain_frame(size_t p) {
  uint64_t waiting_since_ms = 0;
  for (;;) {
    if (reserve_page()) return;
    size_t v = 0;
    if (select_victim(p, &v)) {
      evict_page(v);  // its reservation passes to p
      return;
    }
    // Nothing of our own to evict: other enclaves hold the budget (or all our pages are busy).
    const uint64_t now = monotonic_ms();
    if (waiting_since_ms == 0) waiting_since_ms = now;
    if (now - waiting_since_ms > options.budget_wait_timeout_ms) die_exhausted(p);
    const timespec pause{0, 100 * 1000};
    ::nanosleep(&pause, nullptr);
  }
}

// SGX EWB: make the page inaccessible, seal it under a fresh version, drop the physical page.
void EnclaveHeap::Impl::evict_page(size_t v) {
  const size_t off = v * kPageBytes;
  if (::mprotect(view + off, kPageBytes, PROT_NONE) != 0) die_syscall("mprotect", v, errno);
  const uint64_t ver = ++version[v];
  Cipher& c = acquire_cipher();
  const bool ok = seal_page(c, v, ver, pager + off, untrusted + off, tags + v * kTagBytes);
  c.busy.clear(std::memory_order_release);
  if (!ok) die_syscall("AES-GCM seal", v, 0);
  if (::fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), kPageBytes) != 0) {
    die_syscall("fallocate(PUNCH_HOLE)", v, errno);
  }
  evictions.fetch_add(1, std::memory_order_relaxed);
  bytes_encrypted.fetch_add(kPageBytes, std::memory_order_relaxed);
  host->add_events(0, 1, 0, kPageBytes, 0);
  state[v].store(st(PageState::kEvicted), std::memory_order_release);
}

// SGX ELDU: copy ciphertext and tag into trusted memory, then open under the current version.
void EnclaveHeap::Impl::load_page(size_t p) {
  const size_t off = p * kPageBytes;
  const uint64_t ver = version[p];
  alignas(64) uint8_t ct[kPageBytes];
  uint8_t tag[kTagBytes];
  std::memcpy(ct, untrusted + off, kPageBytes);
  std::memcpy(tag, tags + p * kTagBytes, kTagBytes);
  Cipher& c = acquire_cipher();
  const bool ok = open_page(c, p, ver, ct, tag, pager + off);
  if (!ok) {
    std::memset(pager + off, 0, kPageBytes);  // never mapped, but leave nothing behind
    alignas(64) uint8_t scratch[kPageBytes];
    uint64_t replayed = 0;
    for (uint64_t k = 1; k <= kMaxReplayProbe && k < ver; ++k) {
      if (open_page(c, p, ver - k, ct, tag, scratch)) {
        replayed = ver - k;
        break;
      }
    }
    crypto::secure_wipe(scratch, sizeof(scratch));
    c.busy.clear(std::memory_order_release);
    die_integrity(p, ver, replayed);
  }
  c.busy.clear(std::memory_order_release);
  loads.fetch_add(1, std::memory_order_relaxed);
  bytes_decrypted.fetch_add(kPageBytes, std::memory_order_relaxed);
  host->add_events(0, 0, 1, 0, kPageBytes);
}

EnclaveHeap::Impl::Cipher& EnclaveHeap::Impl::acquire_cipher() {
  uintptr_t local = 0;
  size_t start = (reinterpret_cast<uintptr_t>(&local) >> 12) % cipher_count;
  for (;;) {
    for (size_t k = 0; k < cipher_count; ++k) {
      Cipher& c = ciphers[(start + k) % cipher_count];
      if (!c.busy.test_and_set(std::memory_order_acquire)) return c;
    }
    ::sched_yield();
  }
}

namespace {
// IV = page index (4 bytes LE) || version (8 bytes LE); AAD = page index (8) || version (8).
void page_iv_aad(size_t p, uint64_t ver, uint8_t iv[12], uint8_t aad[16]) {
  for (int i = 0; i < 4; ++i) iv[i] = static_cast<uint8_t>(p >> (8 * i));
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<uint8_t>(ver >> (8 * i));
  for (int i = 0; i < 8; ++i) aad[i] = static_cast<uint8_t>(uint64_t{p} >> (8 * i));
  for (int i = 0; i < 8; ++i) aad[8 + i] = static_cast<uint8_t>(ver >> (8 * i));
}
}  // namespace

bool EnclaveHeap::Impl::seal_page(Cipher& c, size_t p, uint64_t ver, const uint8_t* src, uint8_t* dst,
                                  uint8_t* tag) {
  uint8_t iv[12], aad[16];
  page_iv_aad(p, ver, iv, aad);
  int len = 0;
  return EVP_EncryptInit_ex(c.enc, nullptr, nullptr, nullptr, iv) == 1 &&
         EVP_EncryptUpdate(c.enc, nullptr, &len, aad, sizeof(aad)) == 1 &&
         EVP_EncryptUpdate(c.enc, dst, &len, src, static_cast<int>(kPageBytes)) == 1 &&
         EVP_EncryptFinal_ex(c.enc, dst + len, &len) == 1 &&
         EVP_CIPHER_CTX_ctrl(c.enc, EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
}

bool EnclaveHeap::Impl::open_page(Cipher& c, size_t p, uint64_t ver, const uint8_t* src, const uint8_t* tag,
                                  uint8_t* dst) {
  uint8_t iv[12], aad[16];
  page_iv_aad(p, ver, iv, aad);
  uint8_t tag_copy[kTagBytes];
  std::memcpy(tag_copy, tag, kTagBytes);
  int len = 0;
  return EVP_DecryptInit_ex(c.dec, nullptr, nullptr, nullptr, iv) == 1 &&
         EVP_DecryptUpdate(c.dec, nullptr, &len, aad, sizeof(aad)) == 1 &&
         EVP_DecryptUpdate(c.dec, dst, &len, src, static_cast<int>(kPageBytes)) == 1 &&
         EVP_CIPHER_CTX_ctrl(c.dec, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag_copy) == 1 &&
         EVP_DecryptFinal_ex(c.dec, dst + len, &len) == 1;
}

void EnclaveHeap::Impl::die_integrity(size_t p, uint64_t expected, uint64_t replayed) {
  SignalSafeLine line;
  line.str("tenet epc: enclave '").str(options.name.c_str()).str("': integrity check failed loading page ")
      .u64(p).str(" (heap offset ").hex(p * kPageBytes).str(", ELDU): ");
  if (replayed != 0) {
    line.str("replayed old version ").u64(replayed).str(" of the page (current version ").u64(expected).str(")");
  } else {
    line.str("ciphertext or tag was tampered with (AES-GCM authentication failed, version ").u64(expected).str(")");
  }
  line.str("; stopping the enclave").write_stderr();
  host->unregister_enclave(slot);  // give the budget back: the process will not
  ::_exit(kEpcIntegrityExitStatus);
}

void EnclaveHeap::Impl::die_syscall(const char* what, size_t p, int err) {
  SignalSafeLine line;
  line.str("tenet epc: enclave '").str(options.name.c_str()).str("': ").str(what).str(" failed on page ").u64(p);
  if (err == ENOMEM) line.str(" (ENOMEM: too many mappings? see vm.max_map_count)");
  else if (err != 0) line.str(" (errno ").u64(static_cast<uint64_t>(err)).str(")");
  line.str("; stopping the enclave").write_stderr();
  host->unregister_enclave(slot);
  ::_exit(kEpcFaultErrorExitStatus);
}

void EnclaveHeap::Impl::die_exhausted(size_t p) {
  SignalSafeLine()
      .str("tenet epc: enclave '").str(options.name.c_str()).str("': no EPC page for page ").u64(p)
      .str(" within ").u64(options.budget_wait_timeout_ms)
      .str(" ms: the host budget is held by other enclaves and this enclave has no page of its own to evict "
           "(cross-enclave eviction is not emulated); stopping the enclave")
      .write_stderr();
  host->unregister_enclave(slot);
  ::_exit(kEpcExhaustedExitStatus);
}

// ---- allocator side -----------------------------------------------------------------------------

// Takes every page of the range to busy (waiting out pages another thread is loading or evicting),
// so no fault can race with what follows. Counts the ones that were resident.
void EnclaveHeap::Impl::set_range_busy(size_t first, size_t count, size_t* resident_count) {
  size_t resident = 0;
  for (size_t i = first; i < first + count; ++i) {
    for (;;) {
      uint8_t s = state[i].load(std::memory_order_acquire);
      if (s == st(PageState::kBusy)) {
        ::sched_yield();
        continue;
      }
      if (state[i].compare_exchange_weak(s, st(PageState::kBusy), std::memory_order_acq_rel)) {
        if (s == st(PageState::kResident)) ++resident;
        break;
      }
    }
  }
  *resident_count = resident;
}

Status EnclaveHeap::Impl::release_range(size_t first, size_t count, PageState new_state) {
  if (count == 0) return ok_status();
  size_t resident = 0;
  set_range_busy(first, count, &resident);
  const size_t off = first * kPageBytes, len = count * kPageBytes;
  Status status;
  if (::mprotect(view + off, len, PROT_NONE) != 0) {
    status = internal_error("enclave '{}': mprotect on release: {}", options.name, std::strerror(errno));
  }
  if (::fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), static_cast<off_t>(len)) != 0 &&
      status.ok()) {
    status = internal_error("enclave '{}': punching freed pages: {}", options.name, std::strerror(errno));
  }
  ::madvise(untrusted + off, len, MADV_DONTNEED);
  for (size_t i = first; i < first + count; ++i) {
    referenced[i].store(0, std::memory_order_relaxed);
    state[i].store(st(new_state), std::memory_order_release);
  }
  if (resident != 0) {
    resident_bytes.fetch_sub(resident * kPageBytes, std::memory_order_acq_rel);
    host->release(slot, resident * kPageBytes);
  }
  return status;
}

Status EnclaveHeap::Impl::init() {
  owner_pid = static_cast<int32_t>(::getpid());
  TENET_ASSIGN_OR_RETURN(slot, host->register_enclave());
  const size_t bytes = pages * kPageBytes;
  memfd = ::memfd_create("tenet-epc-heap", MFD_CLOEXEC);
  if (memfd < 0) return internal_error("memfd_create: {}", std::strerror(errno));
  if (::ftruncate(memfd, static_cast<off_t>(bytes)) != 0) return internal_error("ftruncate heap: {}", std::strerror(errno));
  void* v = ::mmap(nullptr, bytes, PROT_NONE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (v == MAP_FAILED) return resource_exhausted("reserving {} of enclave heap: {}", format_epc_size(bytes), std::strerror(errno));
  view = static_cast<uint8_t*>(v);
  void* pg = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (pg == MAP_FAILED) return resource_exhausted("mapping the pager view: {}", std::strerror(errno));
  pager = static_cast<uint8_t*>(pg);
  ::madvise(view, bytes, MADV_DONTFORK);
  ::madvise(pager, bytes, MADV_DONTFORK);
  untrusted = static_cast<uint8_t*>(map_anonymous(bytes));
  tags = static_cast<uint8_t*>(map_anonymous(pages * kTagBytes));
  state = static_cast<std::atomic<uint8_t>*>(map_anonymous(pages));
  referenced = static_cast<std::atomic<uint8_t>*>(map_anonymous(pages));
  version = static_cast<uint64_t*>(map_anonymous(pages * sizeof(uint64_t)));
  if (!untrusted || !tags || !state || !referenced || !version) {
    return resource_exhausted("mapping heap metadata for {} pages: {}", pages, std::strerror(errno));
  }
  TENET_RETURN_IF_ERROR(crypto::random_bytes(std::span<uint8_t>(key, sizeof(key))));
  cipher_count = std::clamp<size_t>(2 * std::max(1u, std::thread::hardware_concurrency()), 8, 256);
  ciphers = std::make_unique<Cipher[]>(cipher_count);
  for (size_t i = 0; i < cipher_count; ++i) {
    ciphers[i].enc = EVP_CIPHER_CTX_new();
    ciphers[i].dec = EVP_CIPHER_CTX_new();
    if (!ciphers[i].enc || !ciphers[i].dec ||
        EVP_EncryptInit_ex(ciphers[i].enc, EVP_aes_256_gcm(), nullptr, key, nullptr) != 1 ||
        EVP_DecryptInit_ex(ciphers[i].dec, EVP_aes_256_gcm(), nullptr, key, nullptr) != 1) {
      return internal_error("AES-GCM context: {}", crypto::openssl_errors());
    }
  }
  free_runs[0] = pages;
  if (options.measure_declared_bytes != 0) {
    const auto t0 = std::chrono::steady_clock::now();
    (void)measure_enclave(options.measure_declared_bytes);
    creation_measure_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  TENET_RETURN_IF_ERROR(install_handler());
  registry_index = register_heap(this, reinterpret_cast<uintptr_t>(view), reinterpret_cast<uintptr_t>(view) + bytes);
  if (registry_index < 0) return resource_exhausted("more than {} enclave heaps in one process", kMaxHeapsPerProcess);
  return ok_status();
}

EnclaveHeap::Impl::~Impl() {
  if (registry_index >= 0) {
    auto& e = g_registry[registry_index];
    e.impl.store(kClaimed, std::memory_order_release);
    e.begin.store(0, std::memory_order_relaxed);
    e.end.store(0, std::memory_order_relaxed);
    e.impl.store(nullptr, std::memory_order_release);
  }
  const size_t bytes = pages * kPageBytes;
  if (view) ::munmap(view, bytes);
  if (pager) ::munmap(pager, bytes);
  if (untrusted) ::munmap(untrusted, bytes);
  if (tags) ::munmap(tags, pages * kTagBytes);
  if (state) ::munmap(state, pages);
  if (referenced) ::munmap(referenced, pages);
  if (version) ::munmap(version, pages * sizeof(uint64_t));
  if (memfd >= 0) ::close(memfd);
  for (size_t i = 0; i < cipher_count; ++i) {
    EVP_CIPHER_CTX_free(ciphers[i].enc);
    EVP_CIPHER_CTX_free(ciphers[i].dec);
  }
  crypto::secure_wipe(key, sizeof(key));
  if (slot >= 0 && host) host->unregister_enclave(slot);
}

// ---- EnclaveHeap --------------------------------------------------------------------------------

std::string to_json(const EpcCounters& c) {
  return fmt::format(
      "{{\"name\":\"{}\",\"reserve_bytes\":{},\"allocated_bytes\":{},\"resident_limit_bytes\":{},"
      "\"host_budget_bytes\":{},\"resident_bytes\":{},\"peak_resident_bytes\":{},\"peak_allocated_bytes\":{},\"page_faults\":{},"
      "\"zero_fills\":{},\"evictions\":{},\"loads\":{},\"bytes_encrypted\":{},\"bytes_decrypted\":{},"
      "\"creation_measure_ms\":{:.3f}}}",
      c.name, c.reserve_bytes, c.allocated_bytes, c.resident_limit_bytes, c.host_budget_bytes, c.resident_bytes,
      c.peak_resident_bytes, c.peak_allocated_bytes, c.page_faults, c.zero_fills, c.evictions, c.loads, c.bytes_encrypted,
      c.bytes_decrypted, c.creation_measure_ms);
}

Result<std::unique_ptr<EnclaveHeap>> EnclaveHeap::create(std::shared_ptr<HostEpc> host, EnclaveHeapOptions options) {
  if (!host) return invalid_argument("EnclaveHeap::create: no host EPC");
  for (char ch : options.name) {
    if (ch == '"' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20) {
      return invalid_argument("enclave heap name may not contain quotes, backslashes or control characters");
    }
  }
  if (options.reserve_bytes == 0) return invalid_argument("enclave '{}': reserve_bytes is 0", options.name);
  const uint64_t pages = options.reserve_bytes / kPageBytes + (options.reserve_bytes % kPageBytes != 0);
  if (pages > kMaxPages) {
    return out_of_range("enclave '{}': a heap of {} bytes exceeds the 16 TiB limit", options.name, options.reserve_bytes);
  }
  if (options.resident_limit_bytes != 0 && options.resident_limit_bytes < 16 * kPageBytes) {
    return invalid_argument("enclave '{}': resident_limit_bytes below 16 pages", options.name);
  }
  options.resident_limit_bytes = options.resident_limit_bytes / kPageBytes * kPageBytes;
  auto impl = std::make_unique<Impl>();
  impl->host = std::move(host);
  impl->options = std::move(options);
  impl->pages = pages;
  TENET_RETURN_IF_ERROR(impl->init().with_context(fmt::format("creating enclave heap '{}'", impl->options.name)));
  return std::unique_ptr<EnclaveHeap>(new EnclaveHeap(std::move(impl)));
}

EnclaveHeap::EnclaveHeap(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EnclaveHeap::~EnclaveHeap() {
  std::lock_guard<std::mutex> lock(impl_->alloc_mutex);
  for (const auto& [first, count] : impl_->live) (void)impl_->release_range(first, count, PageState::kUnallocated);
  impl_->live.clear();
}

Result<void*> EnclaveHeap::allocate(size_t size_bytes, size_t alignment) {
  if (size_bytes == 0) return invalid_argument("enclave '{}': zero-byte allocation", impl_->options.name);
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return invalid_argument("enclave '{}': alignment {} is not a power of two", impl_->options.name, alignment);
  }
  size_t need = size_bytes / kPageBytes + (size_bytes % kPageBytes != 0);
  const size_t align_pages = std::max<size_t>(1, alignment / kPageBytes);
  // Alignment is of the address, not of the page index: the view's base is only page-aligned.
  const size_t base_page = reinterpret_cast<uintptr_t>(impl_->view) / kPageBytes;
  std::lock_guard<std::mutex> lock(impl_->alloc_mutex);
  for (auto it = impl_->free_runs.begin(); it != impl_->free_runs.end(); ++it) {
    const size_t start = it->first, count = it->second;
    const size_t aligned = (base_page + start + align_pages - 1) / align_pages * align_pages - base_page;
    if (aligned < start || aligned - start > count || count - (aligned - start) < need) continue;
    impl_->free_runs.erase(it);
    if (aligned > start) impl_->free_runs[start] = aligned - start;
    if (start + count > aligned + need) impl_->free_runs[aligned + need] = start + count - (aligned + need);
    for (size_t i = aligned; i < aligned + need; ++i) {
      impl_->state[i].store(st(PageState::kZero), std::memory_order_relaxed);
    }
    std::atomic_thread_fence(std::memory_order_release);
    impl_->live[aligned] = need;
    const uint64_t now_allocated = impl_->allocated_bytes.fetch_add(need * kPageBytes, std::memory_order_relaxed) + need * kPageBytes;
    atomic_max(impl_->peak_allocated_bytes, now_allocated);
    size_t hw = impl_->high_water_pages.load(std::memory_order_relaxed);
    if (aligned + need > hw) impl_->high_water_pages.store(aligned + need, std::memory_order_release);
    return static_cast<void*>(impl_->view + aligned * kPageBytes);
  }
  return resource_exhausted("enclave '{}': no free run of {} pages ({} bytes) in its {} heap ({} allocated)",
                            impl_->options.name, need, size_bytes, format_epc_size(impl_->pages * kPageBytes),
                            impl_->allocated_bytes.load());
}

Status EnclaveHeap::free(void* ptr) {
  if (ptr == nullptr) return ok_status();
  if (!contains(ptr) || (static_cast<uint8_t*>(ptr) - impl_->view) % kPageBytes != 0) {
    return invalid_argument("enclave '{}': free of {} which is not an allocation of this heap", impl_->options.name, ptr);
  }
  const size_t first = static_cast<size_t>(static_cast<uint8_t*>(ptr) - impl_->view) / kPageBytes;
  std::lock_guard<std::mutex> lock(impl_->alloc_mutex);
  auto it = impl_->live.find(first);
  if (it == impl_->live.end()) {
    return invalid_argument("enclave '{}': free of {} which is not a live allocation (double free?)", impl_->options.name, ptr);
  }
  const size_t count = it->second;
  impl_->live.erase(it);
  Status status = impl_->release_range(first, count, PageState::kUnallocated);
  impl_->allocated_bytes.fetch_sub(count * kPageBytes, std::memory_order_relaxed);
  // Coalesce with neighbours.
  size_t start = first, len = count;
  auto next = impl_->free_runs.lower_bound(first);
  if (next != impl_->free_runs.end() && next->first == first + count) {
    len += next->second;
    next = impl_->free_runs.erase(next);
  }
  if (next != impl_->free_runs.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == first) {
      start = prev->first;
      len += prev->second;
      impl_->free_runs.erase(prev);
    }
  }
  impl_->free_runs[start] = len;
  return status;
}

namespace {
// Pages wholly inside [p, p+size) as [first, last).
std::pair<size_t, size_t> inner_pages(const uint8_t* view, const void* p, size_t size) {
  const size_t begin = static_cast<size_t>(static_cast<const uint8_t*>(p) - view);
  const size_t first = (begin + kPageBytes - 1) / kPageBytes;
  const size_t last = (begin + size) / kPageBytes;
  return {first, std::max(first, last)};
}
}  // namespace

Status EnclaveHeap::discard(void* ptr, size_t size_bytes) {
  if (!contains(ptr) || (size_bytes != 0 && !contains(static_cast<uint8_t*>(ptr) + size_bytes - 1))) {
    return invalid_argument("enclave '{}': discard range is outside the heap", impl_->options.name);
  }
  const auto [first, last] = inner_pages(impl_->view, ptr, size_bytes);
  for (size_t i = first; i < last; ++i) {
    if (impl_->state[i].load(std::memory_order_acquire) == st(PageState::kUnallocated)) {
      return invalid_argument("enclave '{}': discard range covers unallocated page {}", impl_->options.name, i);
    }
  }
  return impl_->release_range(first, last - first, PageState::kZero);
}

Status EnclaveHeap::evict(void* ptr, size_t size_bytes) {
  if (!contains(ptr) || (size_bytes != 0 && !contains(static_cast<uint8_t*>(ptr) + size_bytes - 1))) {
    return invalid_argument("enclave '{}': evict range is outside the heap", impl_->options.name);
  }
  const auto [first, last] = inner_pages(impl_->view, ptr, size_bytes);
  for (size_t i = first; i < last; ++i) {
    uint8_t expected = st(PageState::kResident);
    if (!impl_->state[i].compare_exchange_strong(expected, st(PageState::kBusy), std::memory_order_acq_rel)) continue;
    impl_->evict_page(i);
    impl_->resident_bytes.fetch_sub(kPageBytes, std::memory_order_acq_rel);
    impl_->host->release(impl_->slot, kPageBytes);
  }
  return ok_status();
}

Status EnclaveHeap::prefault(void* ptr, size_t size_bytes) {
  if (size_bytes == 0) return ok_status();
  if (!contains(ptr) || !contains(static_cast<uint8_t*>(ptr) + size_bytes - 1)) {
    return invalid_argument("enclave '{}': prefault range is outside the heap", impl_->options.name);
  }
  const size_t first = static_cast<size_t>(static_cast<uint8_t*>(ptr) - impl_->view) / kPageBytes;
  const size_t last = (static_cast<size_t>(static_cast<uint8_t*>(ptr) - impl_->view) + size_bytes - 1) / kPageBytes;
  for (size_t i = first; i <= last; ++i) {
    if (impl_->state[i].load(std::memory_order_acquire) == st(PageState::kUnallocated)) {
      return invalid_argument("enclave '{}': prefault range covers unallocated page {}", impl_->options.name, i);
    }
    (void)*reinterpret_cast<volatile uint8_t*>(impl_->view + i * kPageBytes);
  }
  return ok_status();
}

EpcCounters EnclaveHeap::counters() const {
  const Impl& m = *impl_;
  EpcCounters c;
  c.name = m.options.name;
  c.reserve_bytes = m.pages * kPageBytes;
  c.allocated_bytes = m.allocated_bytes.load(std::memory_order_relaxed);
  c.resident_limit_bytes = m.options.resident_limit_bytes;
  c.host_budget_bytes = m.host->budget_bytes();
  c.resident_bytes = m.resident_bytes.load(std::memory_order_relaxed);
  c.peak_resident_bytes = m.peak_resident_bytes.load(std::memory_order_relaxed);
  c.peak_allocated_bytes = m.peak_allocated_bytes.load(std::memory_order_relaxed);
  c.page_faults = m.page_faults.load(std::memory_order_relaxed);
  c.zero_fills = m.zero_fills.load(std::memory_order_relaxed);
  c.evictions = m.evictions.load(std::memory_order_relaxed);
  c.loads = m.loads.load(std::memory_order_relaxed);
  c.bytes_encrypted = m.bytes_encrypted.load(std::memory_order_relaxed);
  c.bytes_decrypted = m.bytes_decrypted.load(std::memory_order_relaxed);
  c.creation_measure_ms = m.creation_measure_ms;
  return c;
}

void EnclaveHeap::reset_peaks() {
  impl_->peak_resident_bytes.store(impl_->resident_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
  impl_->peak_allocated_bytes.store(impl_->allocated_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

const std::string& EnclaveHeap::name() const { return impl_->options.name; }
HostEpc& EnclaveHeap::host() const { return *impl_->host; }
uint8_t* EnclaveHeap::base() const { return impl_->view; }
uint64_t EnclaveHeap::reserve_bytes() const { return impl_->pages * kPageBytes; }

bool EnclaveHeap::contains(const void* p) const {
  const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(impl_->view);
  return a >= b && a < b + impl_->pages * kPageBytes;
}

Result<size_t> EnclaveHeap::page_index(const void* p) const {
  if (!contains(p)) return out_of_range("address {} is not in enclave heap '{}'", p, impl_->options.name);
  return static_cast<size_t>(static_cast<const uint8_t*>(p) - impl_->view) / kPageBytes;
}

PageState EnclaveHeap::page_state(size_t page_index) const {
  if (page_index >= impl_->pages) return PageState::kUnallocated;
  return static_cast<PageState>(impl_->state[page_index].load(std::memory_order_acquire));
}

uint64_t EnclaveHeap::page_version(size_t page_index) const {
  return page_index < impl_->pages ? impl_->version[page_index] : 0;
}

EnclaveHeap::UntrustedPage EnclaveHeap::untrusted_page(size_t page_index) {
  if (page_index >= impl_->pages) return {};
  return {std::span<uint8_t>(impl_->untrusted + page_index * kPageBytes, kPageBytes),
          std::span<uint8_t>(impl_->tags + page_index * kTagBytes, kTagBytes)};
}

// ---- EpcArena -----------------------------------------------------------------------------------

Result<EpcArena> EpcArena::create(EnclaveHeap& heap, size_t capacity_bytes) {
  TENET_ASSIGN_OR_RETURN(void* p, heap.allocate(capacity_bytes, kPageBytes));
  return EpcArena(&heap, static_cast<uint8_t*>(p), capacity_bytes);
}

EpcArena::EpcArena(EpcArena&& o) noexcept
    : heap_(o.heap_), base_(o.base_), capacity_bytes_(o.capacity_bytes_), used_bytes_(o.used_bytes_) {
  o.heap_ = nullptr;
  o.base_ = nullptr;
}

EpcArena& EpcArena::operator=(EpcArena&& o) noexcept {
  if (this != &o) {
    if (heap_ && base_) (void)heap_->free(base_);
    heap_ = o.heap_;
    base_ = o.base_;
    capacity_bytes_ = o.capacity_bytes_;
    used_bytes_ = o.used_bytes_;
    o.heap_ = nullptr;
    o.base_ = nullptr;
  }
  return *this;
}

EpcArena::~EpcArena() {
  if (heap_ && base_) (void)heap_->free(base_);
}

Result<void*> EpcArena::allocate(size_t size_bytes, size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > kPageBytes) {
    return invalid_argument("arena alignment {} must be a power of two ≤ 4096", alignment);
  }
  const size_t start = (used_bytes_ + alignment - 1) & ~(alignment - 1);
  if (start > capacity_bytes_ || capacity_bytes_ - start < size_bytes) {
    return resource_exhausted("arena of {} bytes: {} more bytes do not fit ({} used)", capacity_bytes_, size_bytes,
                              used_bytes_);
  }
  used_bytes_ = start + size_bytes;
  return static_cast<void*>(base_ + start);
}

Status EpcArena::reset(bool discard_pages) {
  used_bytes_ = 0;
  if (discard_pages && heap_ && base_) return heap_->discard(base_, capacity_bytes_);
  return ok_status();
}

}  // namespace tenet::epc
