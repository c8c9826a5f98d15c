// Activation memory planning: one arena for all intermediate tensors of a compiled model.
//
// Each buffer has a size and a lifetime [first_step, last_step] (inclusive, in execution steps).
// Greedy by size, as tflite-micro's GreedyMemoryPlanner: buffers are placed largest first, each at
// the lowest offset where it overlaps no already-placed buffer whose lifetime intersects its own.
// The plan is checkable: verify_plan() proves that no two buffers live at the same time share a
// byte, and format_plan() prints it (tflite-micro's PrintMemoryPlan / DoAnyBuffersOverlap).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tenet::plan {

inline constexpr size_t kArenaAlignment = 64;

struct BufferRequest {
  size_t size_bytes = 0;
  int first_step = 0;
  int last_step = 0;
  std::string name;  // for printing
};

struct ArenaPlan {
  std::vector<size_t> offsets;  // one per request, aligned to kArenaAlignment
  size_t peak_bytes = 0;        // arena size
  size_t total_bytes = 0;       // sum of all request sizes (what one-allocation-per-tensor would use)
};

ArenaPlan plan_greedy_by_size(std::span<const BufferRequest> requests);
// Every buffer its own bytes, nothing shared: what allocating each activation separately costs
// (the naive baseline of Vessels' comparison). peak_bytes == the aligned sum.
ArenaPlan plan_without_reuse(std::span<const BufferRequest> requests);
// Error naming the first pair of buffers that are live at the same step and share bytes, or a
// buffer that runs past the arena's end.
Status verify_plan(std::span<const BufferRequest> requests, const ArenaPlan& plan);
// One line per buffer: name, size, lifetime, offset; then a line with peak and total.
std::string format_plan(std::span<const BufferRequest> requests, const ArenaPlan& plan);

}  // namespace tenet::plan
