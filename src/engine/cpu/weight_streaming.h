// Memory-bounded execution: on-demand, layer-wise weight loading (Vessels) for models whose
// weights do not fit the memory they may keep resident (an enclave's share of the EPC).
//
// A compiled model normally keeps every kernel's weights (reordered into the kernel's layout)
// in memory. With streaming, the compiler moves each large weight buffer into a WeightStore as
// soon as its kernel is built (so the kernels' copies never accumulate), drops the graph's
// constants that no kernel reads at run time, and then plans the steady state from the budget:
//
//   budget ≥ arena + scratchpad + small weights + resident weights + ring
//
// * The ring: `ring_slots` buffers of the largest streamed weight's size, in which streamed
//   weights are loaded just before their step and released after it.
// * Resident or streamed, per weight buffer: streaming a buffer costs its load (decryption,
//   proportional to its bytes) plus a fixed per-load cost, on every run; keeping it resident costs
//   its bytes of budget. With every byte of budget worth the same, the knapsack's greedy order is
//   by value density (1 + fixed/bytes): smallest first. So the planner streams the largest
//   buffers and keeps the others resident, smallest first, while they fit; what is resident is
//   loaded back once, at compile time.
// * Tiling (passes::tile_linear_outputs, applied before compiling): a linear layer whose weights
//   alone exceed a ring slot (VGG16's fc6, 411 MB) is split along its output channels into
//   layers whose weights fit, joined by a Concat that the compiler turns into direct writes.
//   The slot size derives from the budget: the ring takes at most a quarter of it (two slots),
//   which leaves the rest for the arena and for resident weights — the more is resident, the
//   less is decrypted per run.
//
// The store is where the bytes go between runs. In a sim enclave it is epc::SealedWeightStore:
// AES-256-GCM in untrusted memory under a key that never leaves the enclave (TEESlice's
// "untrusted memory as an encrypted cache"), so a streamed weight costs one decryption per run,
// with no page faults and no evictions, instead of secure paging at 4 KiB granularity.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tenet::cpu {

// Storage outside the bounded memory. put() copies the bytes (the caller frees its buffer
// afterwards); get() writes an entry back, checking that it is the entry that was put. Thread-safe
// for concurrent get()s.
class WeightStore {
 public:
  virtual ~WeightStore() = default;
  virtual Result<uint32_t> put(std::span<const std::byte> data) = 0;
  virtual Status get(uint32_t id, std::span<std::byte> dst) = 0;
  virtual uint64_t stored_bytes() const = 0;
  virtual std::string describe() const = 0;
};

// Plain host memory (no protection): for tests and for the engine outside enclaves.
std::shared_ptr<WeightStore> make_plain_weight_store();

struct StreamingOptions {
  std::shared_ptr<WeightStore> store;  // null: no streaming (every weight stays resident)
  // What the compiled model may keep in memory in the steady state: arena, scratchpad, weights
  // kept resident and the ring. Required when `store` is set.
  uint64_t budget_bytes = 0;
  // Weight buffers below this stay resident without being considered (their per-load cost
  // dominates; biases and BN parameters).
  uint64_t min_streamed_bytes = 64 * 1024;
  int ring_slots = 2;
  // Who decrypts: a loader thread working ahead of the steps (overlapping decryption with
  // computation), or the compute threads right before each step. Auto: the loader thread when the
  // machine has more cores than the model's compute threads.
  enum class Prefetch { kAuto, kBackground, kInline };
  Prefetch prefetch = Prefetch::kAuto;
};

// The decision for one weight buffer of one step, for `tenet inspect --epc` and tests.
struct WeightPlacement {
  int step = 0;
  size_t index = 0;  // owned weight index within the step's kernel
  uint64_t bytes = 0;
  bool streamed = false;
};

struct StreamingPlan {
  bool enabled = false;
  uint64_t budget_bytes = 0;
  uint64_t arena_bytes = 0;
  uint64_t scratchpad_bytes = 0;
  uint64_t resident_weight_bytes = 0;  // kernel weights kept in memory (incl. small ones)
  uint64_t constant_bytes = 0;         // graph constants read directly by kernels
  uint64_t streamed_weight_bytes = 0;  // loaded on every run
  uint64_t ring_slot_bytes = 0;
  int ring_slots = 0;
  uint64_t planned_peak_bytes = 0;     // arena + scratchpad + resident + constants + ring
  int tiled_layers = 0;                // layers split by the tiling pass
  bool background_loading = false;     // a loader thread prefetches into the ring
  std::vector<WeightPlacement> placements;
};

// The ring slot size the tiling pass aims at for a budget: a quarter of it over `ring_slots`.
uint64_t ring_slot_target_bytes(uint64_t budget_bytes, int ring_slots);

}  // namespace tenet::cpu
