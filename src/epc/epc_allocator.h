// The engine's buffer allocator (core/allocator.h) over an enclave heap: installed in a sim
// enclave before models load, it puts weights, kernel-owned weight copies, the activation arena
// and the scratchpad into EPC-accounted, paged memory.
#pragma once

#include "core/allocator.h"
#include "epc/enclave_heap.h"

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

}  // namespace tenet::epc
