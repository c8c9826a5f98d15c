#include "epc/host_epc.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

namespace tenet::epc {
namespace {

constexpr uint64_t kMagic = 0x3143504554454e54ull;  // "TENETEPC1" (little endian, truncated)
constexpr uint32_t kLayoutVersion = 1;
constexpr uint64_t kMinBudgetPages = 16;

std::string shm_name(std::string_view name) { return "/tenet-epc-" + std::string(name); }

Status check_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return invalid_argument("EPC segment name must be 1..64 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return invalid_argument("EPC segment name '{}' may only contain [A-Za-z0-9._-]", name);
  }
  return ok_status();
}

void atomic_max(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

bool pid_alive(int32_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); }

}  // namespace

struct HostEpc::Shared {
  struct Slot {
    std::atomic<int32_t> pid;  // 0 free, -1 being claimed or reclaimed
    std::atomic<uint64_t> resident_bytes;
    std::atomic<uint64_t> peak_resident_bytes;
  };
  std::atomic<uint64_t> magic;  // written last by the creator (release)
  uint32_t layout_version;
  uint32_t reserved0;
  uint64_t budget_bytes;
  std::atomic<uint64_t> resident_bytes;
  std::atomic<uint64_t> peak_resident_bytes;
  std::atomic<uint64_t> page_faults;
  std::atomic<uint64_t> evictions;
  std::atomic<uint64_t> loads;
  std::atomic<uint64_t> bytes_encrypted;
  std::atomic<uint64_t> bytes_decrypted;
  Slot slots[kMaxEnclavesPerHost];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<int32_t>::is_always_lock_free,
              "the shared EPC segment needs address-free lock-free atomics");

Result<uint64_t> parse_epc_size(std::string_view text) {
  const std::string s(text);
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(s, &pos);
  } catch (...) {
    return invalid_argument("EPC size '{}': expected a number with an optional unit (KiB, MiB, GiB, TiB)", text);
  }
  std::string unit = s.substr(pos);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  double scale = 1;
  if (unit.empty() || unit == "B") {
    scale = 1;
  } else if (unit == "KiB" || unit == "K" || unit == "KB" || unit == "k") {
    scale = 1024.0;
  } else if (unit == "MiB" || unit == "M" || unit == "MB") {
    scale = 1024.0 * 1024;
  } else if (unit == "GiB" || unit == "G" || unit == "GB") {
    scale = 1024.0 * 1024 * 1024;
  } else if (unit == "TiB" || unit == "T" || unit == "TB") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else {
    return invalid_argument("EPC size '{}': unknown unit '{}' (KiB, MiB, GiB, TiB)", text, unit);
  }
  const double bytes = value * scale;
  if (!(bytes >= 0) || bytes > 9.0e18) return out_of_range("EPC size '{}' is out of range", text);
  return static_cast<uint64_t>(bytes) / kPageBytes * kPageBytes;
}

std::string format_epc_size(uint64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  uint64_t v = bytes;
  while (u < 4 && v >= 1024 && v % 1024 == 0) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{} {}", v, kUnits[u]);
}

std::string to_json(const HostEpcCounters& c) {
  return fmt::format(
      "{{\"budget_bytes\":{},\"resident_bytes\":{},\"peak_resident_bytes\":{},\"page_faults\":{},"
      "\"evictions\":{},\"loads\":{},\"bytes_encrypted\":{},\"bytes_decrypted\":{},\"enclaves\":{}}}",
      c.budget_bytes, c.resident_bytes, c.peak_resident_bytes, c.page_faults, c.evictions, c.loads,
      c.bytes_encrypted, c.bytes_decrypted, c.enclaves);
}

Result<std::shared_ptr<HostEpc>> HostEpc::open(std::string_view name, uint64_t budget_bytes) {
  TENET_RETURN_IF_ERROR(check_name(name));
  budget_bytes = budget_bytes / kPageBytes * kPageBytes;
  if (budget_bytes != 0 && budget_bytes < kMinBudgetPages * kPageBytes) {
    return invalid_argument("EPC budget of {} bytes is below the minimum of {} pages", budget_bytes, kMinBudgetPages);
  }
  const std::string path = shm_name(name);
  bool created = false;
  int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd >= 0) {
    created = true;
    if (::ftruncate(fd, sizeof(Shared)) != 0) {
      const int e = errno;
      ::close(fd);
      ::shm_unlink(path.c_str());
      return internal_error("EPC segment {}: ftruncate: {}", path, std::strerror(e));
    }
  } else if (errno == EEXIST) {
    fd = ::shm_open(path.c_str(), O_RDWR, 0600);
    if (fd < 0) return internal_error("EPC segment {}: shm_open: {}", path, std::strerror(errno));
    // The creator may not have sized it yet.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      struct stat st {};
      if (::fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= sizeof(Shared)) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::close(fd);
        return failed_precondition("EPC segment {} exists but has the wrong size (stale or foreign; remove it)", path);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } else {
    return internal_error("EPC segment {}: shm_open: {}", path, std::strerror(errno));
  }
  void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return internal_error("EPC segment {}: mmap: {}", path, std::strerror(errno));
  auto* shared = static_cast<Shared*>(p);
  if (created) {
    // A fresh segment is zero-filled; atomics of zero are valid.
    shared->layout_version = kLayoutVersion;
    shared->budget_bytes = budget_bytes != 0 ? budget_bytes : kSgx1UsableEpcBytes;
    shared->magic.store(kMagic, std::memory_order_release);
  } else {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (shared->magic.load(std::memory_order_acquire) != kMagic) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::munmap(p, sizeof(Shared));
        return failed_precondition("EPC segment {} was never initialized (stale or foreign; remove it)", path);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (shared->layout_version != kLayoutVersion) {
      ::munmap(p, sizeof(Shared));
      return failed_precondition("EPC segment {} has layout version {}, expected {}", path, shared->layout_version,
                                 kLayoutVersion);
    }
    if (budget_bytes != 0 && shared->budget_bytes != budget_bytes) {
      const uint64_t existing = shared->budget_bytes;
      ::munmap(p, sizeof(Shared));
      return failed_precondition("EPC segment {} already has a budget of {}, not {}", path,
                                 format_epc_size(existing), format_epc_size(budget_bytes));
    }
  }
  return std::shared_ptr<HostEpc>(new HostEpc(std::string(name), shared));
}

Status HostEpc::remove(std::string_view name) {
  TENET_RETURN_IF_ERROR(check_name(name));
  const std::string path = shm_name(name);
  if (::shm_unlink(path.c_str()) != 0 && errno != ENOENT) {
    return internal_error("EPC segment {}: shm_unlink: {}", path, std::strerror(errno));
  }
  return ok_status();
}

HostEpc::~HostEpc() { ::munmap(shared_, sizeof(Shared)); }

uint64_t HostEpc::budget_bytes() const { return shared_->budget_bytes; }
uint64_t HostEpc::resident_bytes() const { return shared_->resident_bytes.load(std::memory_order_relaxed); }

HostEpcCounters HostEpc::counters() const {
  HostEpcCounters c;
  c.budget_bytes = shared_->budget_bytes;
  c.resident_bytes = shared_->resident_bytes.load(std::memory_order_relaxed);
  c.peak_resident_bytes = shared_->peak_resident_bytes.load(std::memory_order_relaxed);
  c.page_faults = shared_->page_faults.load(std::memory_order_relaxed);
  c.evictions = shared_->evictions.load(std::memory_order_relaxed);
  c.loads = shared_->loads.load(std::memory_order_relaxed);
  c.bytes_encrypted = shared_->bytes_encrypted.load(std::memory_order_relaxed);
  c.bytes_decrypted = shared_->bytes_decrypted.load(std::memory_order_relaxed);
  for (const auto& s : shared_->slots) {
    if (s.pid.load(std::memory_order_relaxed) > 0) ++c.enclaves;
  }
  return c;
}

std::vector<EnclaveSlotInfo> HostEpc::enclaves() const {
  std::vector<EnclaveSlotInfo> out;
  for (int i = 0; i < kMaxEnclavesPerHost; ++i) {
    const auto& s = shared_->slots[i];
    const int32_t pid = s.pid.load(std::memory_order_relaxed);
    if (pid <= 0) continue;
    out.push_back({i, pid, s.resident_bytes.load(std::memory_order_relaxed),
                   s.peak_resident_bytes.load(std::memory_order_relaxed)});
  }
  return out;
}

Result<int> HostEpc::register_enclave() {
  // Reclaim slots of processes that died holding pages (crash, kill, _exit on an integrity failure
  // that could not release them).
  for (auto& s : shared_->slots) {
    int32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid > 0 && !pid_alive(pid) && s.pid.compare_exchange_strong(pid, -1, std::memory_order_acq_rel)) {
      const uint64_t held = s.resident_bytes.exchange(0, std::memory_order_acq_rel);
      shared_->resident_bytes.fetch_sub(held, std::memory_order_acq_rel);
      s.peak_resident_bytes.store(0, std::memory_order_relaxed);
      s.pid.store(0, std::memory_order_release);
    }
  }
  const int32_t self = static_cast<int32_t>(::getpid());
  for (int i = 0; i < kMaxEnclavesPerHost; ++i) {
    auto& s = shared_->slots[i];
    int32_t expected = 0;
    if (s.pid.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) {
      s.resident_bytes.store(0, std::memory_order_relaxed);
      s.peak_resident_bytes.store(0, std::memory_order_relaxed);
      s.pid.store(self, std::memory_order_release);
      return i;
    }
  }
  return resource_exhausted("EPC segment {}: all {} enclave slots are in use", name_, kMaxEnclavesPerHost);
}

void HostEpc::unregister_enclave(int slot) {
  if (slot < 0 || slot >= kMaxEnclavesPerHost) return;
  auto& s = shared_->slots[slot];
  const uint64_t held = s.resident_bytes.exchange(0, std::memory_order_acq_rel);
  shared_->resident_bytes.fetch_sub(held, std::memory_order_acq_rel);
  s.pid.store(0, std::memory_order_release);
}

bool HostEpc::try_reserve(int slot, uint64_t bytes) {
  const uint64_t budget = shared_->budget_bytes;
  uint64_t cur = shared_->resident_bytes.load(std::memory_order_relaxed);
  do {
    if (cur + bytes > budget) return false;
  } while (!shared_->resident_bytes.compare_exchange_weak(cur, cur + bytes, std::memory_order_acq_rel));
  atomic_max(shared_->peak_resident_bytes, cur + bytes);
  auto& s = shared_->slots[slot];
  const uint64_t mine = s.resident_bytes.fetch_add(bytes, std::memory_order_acq_rel) + bytes;
  atomic_max(s.peak_resident_bytes, mine);
  return true;
}

void HostEpc::release(int slot, uint64_t bytes) {
  shared_->slots[slot].resident_bytes.fetch_sub(bytes, std::memory_order_acq_rel);
  shared_->resident_bytes.fetch_sub(bytes, std::memory_order_acq_rel);
}

void HostEpc::add_events(uint64_t page_faults, uint64_t evictions, uint64_t loads, uint64_t bytes_encrypted,
                         uint64_t bytes_decrypted) {
  if (page_faults) shared_->page_faults.fetch_add(page_faults, std::memory_order_relaxed);
  if (evictions) shared_->evictions.fetch_add(evictions, std::memory_order_relaxed);
  if (loads) shared_->loads.fetch_add(loads, std::memory_order_relaxed);
  if (bytes_encrypted) shared_->bytes_encrypted.fetch_add(bytes_encrypted, std::memory_order_relaxed);
  if (bytes_decrypted) shared_->bytes_decrypted.fetch_add(bytes_decrypted, std::memory_order_relaxed);
}

}  // namespace tenet::epc
