// Where tenet's large buffers live: tensor storage (weights, inputs, outputs), weights reordered
// for a kernel, the activation arena and the scratchpad.
//
// By default they come from the C heap. An enclave on the sim platform installs its EPC heap here
// before loading models (src/epc), so that enclave memory counts against the emulated EPC budget
// and pays paging costs as on hardware (Vessels). The allocator is process-wide and set once, at
// start, before any buffer exists: buffers remember the allocator that made them, so freeing is
// always routed back correctly.
#pragma once

#include <cstddef>
#include <memory>

namespace tenet {

class BufferAllocator {
 public:
  virtual ~BufferAllocator() = default;
  // `bytes` > 0; `alignment` a power of two <= 4096. nullptr when out of memory.
  virtual void* allocate(size_t bytes, size_t alignment) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
  virtual const char* name() const = 0;
  // true if fresh allocations already read as zero (then allocate_buffer does not touch them:
  // for a paged enclave heap, a memset would fault every page in up front).
  virtual bool returns_zeroed() const { return false; }
};

// The C heap (aligned_alloc / free).
BufferAllocator& heap_allocator();
// The allocator new buffers come from (heap_allocator() unless replaced).
BufferAllocator& buffer_allocator();
// Replaces it for the rest of the process (`a` must outlive every buffer it makes).
void set_buffer_allocator(BufferAllocator* a);

// A buffer of `bytes` (rounded up to 64), zero-filled, from buffer_allocator(); freed back to the
// same allocator when the last owner drops it. nullptr when out of memory.
std::shared_ptr<std::byte[]> allocate_buffer(size_t bytes);

}  // namespace tenet
