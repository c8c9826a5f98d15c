#include "engine/plan/arena_planner.h"

#include <algorithm>
#include <numeric>

#include "core/safe_math.h"

namespace tenet::plan {
namespace {
bool lifetimes_overlap(const BufferRequest& a, const BufferRequest& b) {
  return a.first_step <= b.last_step && b.first_step <= a.last_step;
}
}  // namespace

ArenaPlan plan_greedy_by_size(std::span<const BufferRequest> requests) {
  ArenaPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return requests[a].size_bytes > requests[b].size_bytes;
  });
  std::vector<size_t> placed;
  placed.reserve(requests.size());
  std::vector<std::pair<size_t, size_t>> busy;  // [offset, end) of conflicting placed buffers
  for (size_t i : order) {
    const BufferRequest& r = requests[i];
    plan.total_bytes += r.size_bytes;
    const size_t size = align_up(r.size_bytes, kArenaAlignment);
    busy.clear();
    for (size_t j : placed) {
      if (lifetimes_overlap(r, requests[j])) {
        busy.emplace_back(plan.offsets[j], plan.offsets[j] + align_up(requests[j].size_bytes, kArenaAlignment));
      }
    }
    std::sort(busy.begin(), busy.end());
    size_t candidate = 0;
    for (const auto& [begin, end] : busy) {
      if (begin >= candidate + size) break;  // the gap before this buffer fits
      candidate = std::max(candidate, end);
    }
    plan.offsets[i] = candidate;
    plan.peak_bytes = std::max(plan.peak_bytes, candidate + size);
    placed.push_back(i);
  }
  return plan;
}

ArenaPlan plan_without_reuse(std::span<const BufferRequest> requests) {
  ArenaPlan plan;
  plan.offsets.reserve(requests.size());
  for (const BufferRequest& r : requests) {
    plan.offsets.push_back(plan.peak_bytes);
    plan.total_bytes += r.size_bytes;
    plan.peak_bytes += align_up(r.size_bytes, kArenaAlignment);
  }
  return plan;
}

Status verify_plan(std::span<const BufferRequest> requests, const ArenaPlan& plan) {
  if (plan.offsets.size() != requests.size()) return internal_error("plan has {} offsets for {} buffers", plan.offsets.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    if (plan.offsets[i] % kArenaAlignment != 0) return internal_error("buffer '{}' is misaligned", requests[i].name);
    if (plan.offsets[i] + requests[i].size_bytes > plan.peak_bytes) {
      return internal_error("buffer '{}' ends past the arena ({} + {} > {})", requests[i].name, plan.offsets[i],
                            requests[i].size_bytes, plan.peak_bytes);
    }
    for (size_t j = i + 1; j < requests.size(); ++j) {
      if (!lifetimes_overlap(requests[i], requests[j])) continue;
      if (requests[i].size_bytes == 0 || requests[j].size_bytes == 0) continue;
      const size_t a0 = plan.offsets[i], a1 = a0 + requests[i].size_bytes;
      const size_t b0 = plan.offsets[j], b1 = b0 + requests[j].size_bytes;
      if (a0 < b1 && b0 < a1) {
        return internal_error("buffers '{}' [{}, {}) steps {}-{} and '{}' [{}, {}) steps {}-{} overlap", requests[i].name, a0, a1,
                              requests[i].first_step, requests[i].last_step, requests[j].name, b0, b1,
                              requests[j].first_step, requests[j].last_step);
      }
    }
  }
  return ok_status();
}

std::string format_plan(std::span<const BufferRequest> requests, const ArenaPlan& plan) {
  std::string out = fmt::format("{:<40} {:>12} {:>12} {:>11}\n", "buffer", "offset", "bytes", "steps");
  for (size_t i = 0; i < requests.size(); ++i) {
    std::string name = requests[i].name.size() > 40 ? "..." + requests[i].name.substr(requests[i].name.size() - 37) : requests[i].name;
    out += fmt::format("{:<40} {:>12} {:>12} {:>5}-{:<5}\n", name, plan.offsets[i], requests[i].size_bytes,
                       requests[i].first_step, requests[i].last_step);
  }
  out += fmt::format("arena peak {} bytes; sum of buffers {} bytes ({:.1f}% of sum)\n", plan.peak_bytes, plan.total_bytes,
                     plan.total_bytes ? 100.0 * static_cast<double>(plan.peak_bytes) / static_cast<double>(plan.total_bytes) : 0.0);
  return out;
}

}  // namespace tenet::plan
