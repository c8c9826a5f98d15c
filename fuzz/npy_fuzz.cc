// libFuzzer target for the .npy parser (src/core/npy.h), which reads tensors from outside.
//
// Beyond "no crash, no sanitizer report", it checks a round trip: whatever parse_npy accepts must
// serialize to bytes that parse back to the same dtype, shape and data.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "core/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = tenet::parse_npy(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  if (!parsed.ok()) return 0;
  const tenet::Tensor& t = *parsed;
  std::vector<std::byte> bytes = tenet::serialize_npy(t.view());
  auto again = tenet::parse_npy(bytes);
  if (!again.ok() || again->dtype() != t.dtype() || again->shape() != t.shape() ||
      again->size_bytes() != t.size_bytes() ||
      (t.size_bytes() > 0 && std::memcmp(again->data(), t.data(), t.size_bytes()) != 0)) {
    __builtin_trap();
  }
  return 0;
}
