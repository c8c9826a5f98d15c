// The engine's buffer allocator (core/allocator.h) over an enclave heap: installed in a sim
// enclave before models load, it puts weights, kernel-owned weight copies, the activation arena
// and the scratchpad into EPC-accounted, paged memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/allocator.h"
#include "epc/enclave_heap.h"
#include "epc/host_epc.h"

namespace tenet::epc {

class EpcBufferAllocator final : public BufferAllocator {
 public:
  explicit EpcBufferAllocator(EnclaveHeap& heap) : heap_(heap) {}
  void* allocate(size_t bytes, size_t alignment) override;
  void deallocate(void* p, size_t bytes) override;
  const char* name() const override { return "epc"; }
  bool returns_zeroed() const override { return true; }

 private:
  EnclaveHeap& heap_;
};

// An enclave's memory on the sim platform: a heap in a host's EPC budget, installed as the
// process's buffer allocator (so every model buffer made afterwards lives in it).
struct EnclaveMemoryOptions {
  std::string host_name;               // shared-memory segment of the host budget
  uint64_t budget_bytes = 0;           // the host budget (when this call creates the segment)
  std::string enclave_name = "enclave";
  uint64_t payload_bytes = 0;          // what the enclave loads (model or package files)
  uint64_t resident_limit_bytes = 0;   // this enclave's share of the budget; 0 = the whole budget
};

struct EnclaveMemory {
  std::shared_ptr<HostEpc> host;
  std::unique_ptr<EnclaveHeap> heap;
  std::unique_ptr<EpcBufferAllocator> allocator;
};

// Sizes the heap from the payload: virtual room for the weights (imported and the kernels'
// reordered copies) and activations; the declared enclave size, measured page by page at
// creation as EADD/EEXTEND do, is what the payload needs at rest (two weight copies + headroom).
Result<std::unique_ptr<EnclaveMemory>> open_enclave_memory(const EnclaveMemoryOptions& options);

}  // namespace tenet::epc
