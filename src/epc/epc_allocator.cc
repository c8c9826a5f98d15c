#include "epc/epc_allocator.h"

#include <cstdio>

namespace tenet::epc {

void* EpcBufferAllocator::allocate(size_t bytes, size_t alignment) {
  auto p = heap_.allocate(bytes, alignment);
  return p.ok() ? *p : nullptr;
}

void EpcBufferAllocator::deallocate(void* p, size_t) {
  const Status s = heap_.free(p);
  if (!s.ok()) std::fprintf(stderr, "tenet: enclave heap: %s\n", s.to_string().c_str());
}

}  // namespace tenet::epc

namespace tenet::epc {

Result<std::unique_ptr<EnclaveMemory>> open_enclave_memory(const EnclaveMemoryOptions& options) {
  auto m = std::make_unique<EnclaveMemory>();
  TENET_ASSIGN_OR_RETURN(m->host, HostEpc::open(options.host_name, options.budget_bytes));
  EnclaveHeapOptions ho;
  ho.name = options.enclave_name;
  ho.reserve_bytes = 4 * options.payload_bytes + (uint64_t{8} << 30);
  ho.measure_declared_bytes = 2 * options.payload_bytes + (uint64_t{64} << 20);
  ho.resident_limit_bytes = options.resident_limit_bytes;
  TENET_ASSIGN_OR_RETURN(m->heap, EnclaveHeap::create(m->host, ho));
  m->allocator = std::make_unique<EpcBufferAllocator>(*m->heap);
  set_buffer_allocator(m->allocator.get());
  return m;
}

}  // namespace tenet::epc
