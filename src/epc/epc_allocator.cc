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
