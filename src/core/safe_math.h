// Overflow-checked size arithmetic for sizes that come from outside (XNNPACK's xnn_safe_mul).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tenet {

// Largest element count tenet accepts for one tensor (2^40 elements, 4 TiB of fp32): far above
// any real model, far below what overflows size_t when multiplied by an element size.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 40;
inline constexpr int64_t kMaxRank = 8;

[[nodiscard]] inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
[[nodiscard]] inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
[[nodiscard]] inline bool checked_mul(size_t a, size_t b, size_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
[[nodiscard]] inline bool checked_add(size_t a, size_t b, size_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

// Product of dims; false if any dim is negative or the product exceeds kMaxTensorElements.
[[nodiscard]] inline bool checked_element_count(std::span<const int64_t> dims, int64_t* out) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || !checked_mul(n, d, &n) || n > kMaxTensorElements) return false;
  }
  *out = n;
  return true;
}

inline size_t align_up(size_t n, size_t alignment) { return (n + alignment - 1) / alignment * alignment; }

}  // namespace tenet
