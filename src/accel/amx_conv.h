// The CPU accelerator's own convolution kernel on Intel AMX (cpu_accelerator.cc uses it where it
// applies and its self-test passes): exact W·x mod p for field elements split into four 8-bit
// planes, with the planes combined into field elements while the sums are still in L1.
//
// Why not oneDNN's AMX convolution alone: it writes each plane's int32 sums (16 bytes per output
// for four planes) to memory, and a second pass reads them back, combines the planes mod p and
// transposes to NCHW. On ResNet-50 that combine pass cost more than a third of the convolutions'
// own time. Here a work item's tiles of 16 pixels x 32 channels accumulate all four planes in
// AMX tile registers, are stored to a 8 KiB buffer and combined from there: the only output
// written is the field elements.
//
// Shape of the computation (an implicit GEMM; no im2col): the input strip of a work item is laid
// out per plane as padded NHWC bytes, [rows_in, Wp = pad_left + W + pad_right, Cin]. An output
// pixel (oy, ox) is a "virtual" pixel v = oy·Wp + ox, and the input of kernel tap (ky, kx) for it
// is padded pixel v + ky·d·Wp + kx·d: 16 consecutive virtual pixels read 16 pixels at a constant
// stride (Cin bytes) for every tap, which is what a tile load wants. Virtual pixels with ox >= Wo
// (the Wp - Wo right-hand columns) are computed and dropped, a waste of (kw - 1)·d columns per
// row. With stride s > 1 virtual rows would waste half or more, so tiles stay within an output
// row instead: 16 output pixels of one row (lanes past Wo dropped) read pixels s apart, a tile
// load stride of s·Cin bytes.
//
// Small images (fewer than half the direct layout's lanes would compute a real output: a
// ResNet's late stages at CIFAR sizes, or 7-wide outputs of a stride-2 layer) take the gathered
// layout instead: each output pixel of the whole batch gets its patch as one row of
// K = kh·kw·Cin bytes per plane (tap-major, the packed weights' order), gathered from the NCHW
// input 16 channels at a time, so that 16 consecutive rows are 16 real pixels; the combined
// results are scattered to their images.
//
// Tiles (8 of 16 rows x 64 bytes): C[plane pair][2 x 16 channels] in tmm0-3, A for two planes in
// tmm4-5 (16 virtual pixels x 64 input channels of one tap), B for two 16-channel blocks in
// tmm6-7 (weights packed per (16-channel block, tap, 64-channel chunk) in the VNNI layout
// TDPBUSD reads: row r holds channels 4r..4r+3 for each of the 16 output channels). TDPBUSD
// multiplies unsigned bytes (the planes, < 256) by signed bytes (the weights, in [-127, 127]) and
// adds groups of four into int32 without saturation; |sum| <= K·255·127 < 2^30 for
// K <= kMaxReductionCount, so every plane's sum is exact and combine_rows_avx512's bias applies.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "core/status.h"

namespace tenet::accel {

class AmxPlaneConv {
 public:
  // True when the CPU has AMX-TILE, AMX-INT8 and AVX-512 (F, BW) and the kernel lets this process
  // use the tile registers (Linux: arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA).
  static bool available();
  // Why this kernel cannot run `spec` ("" when it can): a convolution with equal strides and
  // equal dilations, one group, no padding as wide as the (dilated) kernel, Cin a multiple of 64
  // and Cout a multiple of 32.
  static std::string unsupported(const LinearSpec& spec);
  // The layer with its weights packed into tiles. kFailedPrecondition when !available(),
  // kInvalidArgument when unsupported() or validate() says no.
  static Result<std::unique_ptr<AmxPlaneConv>> create(const LinearSpec& spec);

  // y = W·x mod p for x [N, Cin, H, W] of field elements (< p: checked by the caller, as
  // check_run_arguments does) and y [N, Cout, Ho, Wo]. Work items (an image, or a strip of its
  // output rows) run on up to `threads` OpenMP threads. Thread-safe.
  Status run(const Shape& input_shape, const uint32_t* x, uint32_t* y, int threads) const;

 private:
  explicit AmxPlaneConv(const LinearSpec& spec) : spec_(spec) {}
  struct Item;
  struct Tiles;
  // One work item in the direct or the gathered layout (file comment); false when its input
  // planes cannot be allocated.
  bool run_direct(const Item& item, const uint32_t* x, uint32_t* y) const;
  bool run_gathered(const Item& item, const uint32_t* x, uint32_t* y) const;
  // The tile loop and the combine, on the item's planes (4 of plane_stride bytes).
  void multiply(const uint8_t* planes, size_t plane_stride, const Tiles& tiles) const;

  LinearSpec spec_;  // weights not kept: packed_ holds them
  int64_t cin_ = 0, cout_ = 0, kh_ = 0, kw_ = 0, chunks_ = 0;
  std::vector<int8_t> packed_;  // [Cout / 16][kh·kw][Cin / 64][16][64], 64-byte aligned start
  size_t packed_offset_ = 0;    // where the aligned data starts in packed_
};

}  // namespace tenet::accel
