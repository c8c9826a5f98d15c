// The untrusted accelerator of hybrid mode (Slalom, TEESlice): it executes linear layers
// (convolution, matrix multiplication) on data it cannot read, and its results are checked by the
// enclave (src/hybrid), never trusted.
//
// Arithmetic. Everything the accelerator sees and returns lives in the prime field Z_p with
// p = 2^31 - 1: inputs are blinded 8-bit activations (x + r mod p, uniform in Z_p, so they reveal
// nothing about x), weights are the model's public 8-bit quantized weights (int8 in [-127, 127]).
// The accelerator returns W·x mod p, computed exactly: every backend must give bit-identical
// results (an exact integer result reduced mod p), so that CPU and CUDA agree exactly and the
// enclave's Freivalds check (also mod p) accepts only the true product.
//   * Why p = 2^31 - 1: the true product of 8-bit x and 8-bit W over a reduction of K terms is at
//     most K·127·127 in magnitude; it must stay below p/2 for the enclave to lift it back to a
//     signed integer (K < 66,572 — the largest ResNet reduction is 3·3·512 = 4,608). A Mersenne
//     prime also makes reduction cheap, and p < 2^31 lets a field element be split into four
//     bytes for exact int8 GEMMs (u8·s8 → s32 never overflows for K < 66,000), or be held in
//     fp64 (K·127·2^31 < 2^53 for K < 32,768) for DGEMM-based backends.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace tenet::accel {

inline constexpr uint32_t kFieldPrime = 2147483647u;  // 2^31 - 1

// One linear layer as the accelerator sees it. Bias, scales and activation functions stay in
// the enclave; the accelerator only multiplies.
struct LinearSpec {
  enum class Kind { kConv2d, kMatMul };
  Kind kind = Kind::kMatMul;
  // kConv2d: weights [Cout, Cin / group, kh, kw]; input [N, Cin, H, W]; output [N, Cout, Ho, Wo],
  //          zero padding (the padded zeros are not blinded: conv is linear, so
  //          conv(x + r) = conv(x) + conv(r) with the same zero padding).
  // kMatMul: weights [Nout, K] (y = W·x per row of x); input [M, K]; output [M, Nout].
  Shape weight_shape;
  std::array<int64_t, 2> strides{1, 1};
  std::array<int64_t, 2> dilations{1, 1};
  std::array<int64_t, 4> pads{0, 0, 0, 0};  // top, left, bottom, right
  int64_t group = 1;
  std::vector<int8_t> weights;  // row-major in weight_shape, each in [-127, 127]
};

// The output shape for an input shape; kInvalidArgument when they do not fit the spec.
Result<Shape> output_shape(const LinearSpec& spec, const Shape& input_shape);
// Checks a spec (shapes, weight count and range, K small enough for exactness).
Status validate(const LinearSpec& spec);

// Kernel taps that meet only zero padding for inputs of this height and width contribute nothing
// (a 3x3 convolution with padding 1 on a 1x1 input uses its centre tap alone; ResNet's last stage
// at CIFAR sizes): returns the same layer without those kernel rows and columns, its padding
// shrunk to match, which gives the same output for that input shape with up to 9x less work.
// nullopt when no tap is dead, or the spec or shape is invalid.
std::optional<LinearSpec> crop_dead_taps(const LinearSpec& spec, const Shape& input_shape);

// Limits every backend enforces (so that all of them accept exactly the same layers), and the
// remote protocol enforces on every frame.
//   * kMaxReductionCount: K (Cin/group·kh·kw for conv, K for matmul) ≤ 32,768, so that
//     K·127·(2^31-1) < 2^53 (fp64 backends are exact) and K·255·127 < 2^31 (int8 byte planes
//     accumulate in int32 without overflow).
//   * kMaxWeightCount: weights of one layer (256 Mi int8; VGG's largest FC layer is 103 Mi).
//   * kMaxRunCount: elements of one run's input or output (256 Mi field elements, 1 GiB).
inline constexpr int64_t kMaxReductionCount = 32768;
inline constexpr int64_t kMaxWeightCount = int64_t{1} << 28;
inline constexpr int64_t kMaxRunCount = int64_t{1} << 28;

class Accelerator {
 public:
  virtual ~Accelerator() = default;
  // "cpu", "cuda", "remote(cpu)", ...
  virtual std::string name() const = 0;
  // Registers a layer (its public weights are uploaded once); returns its handle.
  virtual Result<int32_t> add_layer(const LinearSpec& spec) = 0;
  // y = W·x mod p, exactly, for x of `input_shape` holding field elements (each < p); y has
  // output_shape(spec, input_shape) elements. Safe to call from several threads at once (the
  // enclave pipelines requests); each call is one batched transfer.
  virtual Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) = 0;
};

// True when every element of v is a field element (< p): one vectorized scan, for the
// accelerator's inputs (check_run_arguments) and the enclave's check of its results.
bool all_field_elements(std::span<const uint32_t> v);

// Checks one run's arguments against a validated spec: the input shape fits it, x has
// numel(input_shape) and y numel(output) elements, and every x is a field element (< p).
// Every backend (and the remote server) calls it before touching the data.
Status check_run_arguments(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x,
                           std::span<const uint32_t> y);

// Exact int64 loops, for tests and as the oracle of every backend.
Status reference_linear(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y);

// oneDNN int8 GEMMs on `threads` CPU threads (0: all cores), outside the enclave.
Result<std::unique_ptr<Accelerator>> make_cpu_accelerator(int threads);
// cuBLAS/CUDA on one GPU. kUnimplemented when tenet was built without CUDA, kFailedPrecondition
// when no device is present.
Result<std::unique_ptr<Accelerator>> make_cuda_accelerator(int device);
// A client of a separate accelerator process (`tenet accelerator --listen unix:PATH`).
Result<std::unique_ptr<Accelerator>> connect_accelerator(const std::string& address);

}  // namespace tenet::accel
