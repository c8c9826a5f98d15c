// Kernel taps of a convolution that meet only zero padding: on small inputs (a 3x3 convolution
// with padding 1 on a 1x1 input, ResNet's last stage at CIFAR sizes) some kernel rows or columns
// never touch the input, so they contribute nothing, and the same layer without them (its padding
// shrunk to match) computes the same output with up to 9x less work. Used by the engine's graph
// pass (passes::crop_dead_conv_taps) and the hybrid accelerator (accel::crop_dead_taps).
#pragma once

#include <cstdint>
#include <optional>

namespace tenet {

// The live taps [first, last] of a kernel along one spatial axis, and the padding that gives the
// cropped kernel the same `out` outputs: pad_begin = the original less the dropped leading taps;
// pad_end the smallest trailing padding with out = (in + pad_begin + pad_end - extent) / stride + 1.
struct LiveTaps {
  int64_t first = 0, last = 0;
  int64_t pad_begin = 0, pad_end = 0;
  bool cropped(int64_t kernel) const { return first > 0 || last < kernel - 1; }
};

// Along one axis: input size `in`, kernel size `kernel`, stride, dilation, leading padding, and
// the layer's output size `out` (all positive but the padding). nullopt when no tap reads the
// input (the output is all zeros; left to the layer) or the cropped layer would need negative
// padding. Tap t reads input rows t·dilation - pad_begin + o·stride for o in [0, out); the loop
// stops at the first row inside or beyond the input, so it is short whatever `out` is.
inline std::optional<LiveTaps> live_taps(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad_begin,
                                         int64_t out) {
  auto live = [&](int64_t t) {
    for (int64_t o = 0; o < out; ++o) {
      const int64_t row = t * dilation - pad_begin + o * stride;
      if (row >= in) return false;
      if (row >= 0) return true;
    }
    return false;
  };
  LiveTaps r;
  while (r.first < kernel && !live(r.first)) ++r.first;
  if (r.first == kernel) return std::nullopt;
  r.last = kernel - 1;
  while (!live(r.last)) --r.last;
  r.pad_begin = pad_begin - r.first * dilation;
  r.pad_end = (out - 1) * stride + (r.last - r.first) * dilation + 1 - in - r.pad_begin;
  if (r.pad_begin < 0 || r.pad_end < 0) return std::nullopt;
  return r;
}

}  // namespace tenet
