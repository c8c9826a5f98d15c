#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace tenet {
namespace {

class HeapAllocator final : public BufferAllocator {
 public:
  void* allocate(size_t bytes, size_t alignment) override {
    const size_t n = (bytes + alignment - 1) / alignment * alignment;
    return std::aligned_alloc(alignment, n);
  }
  void deallocate(void* p, size_t) override { std::free(p); }
  const char* name() const override { return "heap"; }
};

std::atomic<BufferAllocator*> g_allocator{nullptr};

}  // namespace

BufferAllocator& heap_allocator() {
  static HeapAllocator heap;
  return heap;
}

BufferAllocator& buffer_allocator() {
  BufferAllocator* a = g_allocator.load(std::memory_order_acquire);
  return a != nullptr ? *a : heap_allocator();
}

void set_buffer_allocator(BufferAllocator* a) { g_allocator.store(a, std::memory_order_release); }

std::shared_ptr<std::byte[]> allocate_buffer(size_t bytes) {
  const size_t n = (bytes == 0 ? 1 : bytes + 63) / 64 * 64;
  BufferAllocator* a = &buffer_allocator();
  void* p = a->allocate(n, 64);
  if (p == nullptr) return nullptr;
  if (!a->returns_zeroed()) std::memset(p, 0, n);
  return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(p), [a, n](std::byte* q) { a->deallocate(q, n); });
}

}  // namespace tenet
