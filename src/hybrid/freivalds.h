// Trusted (enclave side): Freivalds' check of the accelerator's results (Freivalds 1977;
// Slalom §3.2 for convolutions), with secret per-layer check vectors precomputed at build.
//
// The accelerator claims y' = W·x' mod p for a blinded input x' the enclave sent. Each
// repetition draws secret uniform vectors at build time and precomputes what W contributes:
//   * Conv (input [N, Cin, H, W], output [N, Cout, Ho, Wo]): s over output channels, t over
//     output positions (n, ho, wo), and Z = the correlation of (s^T W) with t, a tensor shaped
//     like the input, so that for every x: Σ_{co,n,p} s_co t_{n,p} (W·x)[n,co,p] = Σ Z·x.
//     Check: Σ s_co t_{n,p} y'[n,co,p] == Σ Z[n,ci,q] x'[n,ci,q] (mod p).
//   * MatMul (input [M, K], output [M, Nout]): s over outputs, z = s^T W. Check, per row m:
//     Σ_o s_o y'[m,o] == Σ_k z_k x'[m,k] (mod p).
//   * A pointwise conv (1x1 kernel, stride 1, no padding: most of a ResNet's) has
//     Z[n,ci,q] = ws_ci·t_{n,q} with ws = s^T W, so Σ Z·x = Σ_{n,ci} ws_ci (t_n · x[n,ci]): only
//     ws (Cin values) is kept, and the input is read once however many repetitions there are,
//     instead of a Z as large as the input per repetition.
//   * A conv whose output planes are small (fewer than 64 positions) keeps s ⊗ t whole, shaped
//     like the output, so that the left side is one long dot with y' (and uses the whole Z).
// Cost per repetition: O(|x| + |y|) multiply-adds mod p, against O(|W|·positions) for the product.
//
// Soundness. Let E = y' - W·x' (mod p), the accelerator's error, fixed before it could learn
// anything about s, t (they never leave the enclave; the only signal it gets is whether a
// request failed). A wrong result has E != 0 and passes a repetition only if:
//   * MatMul, for a row m with E_m != 0: s·E_m = 0, a nonzero linear form in uniform s, which
//     vanishes with probability exactly 1/p.
//   * Conv: s^T E t = 0 with E viewed as a [Cout, positions] matrix. Either E t = 0 (probability
//     <= 1/p over t, since some row of E is nonzero) or E t != 0 and s^T (E t) = 0 (probability
//     1/p over s); so <= 2/p.
// Repetitions use independent vectors, so k repetitions accept a wrong result with probability
// <= (2/p)^k = 2^(-29.99999... k). repetitions_for_bits(b) is the least k with (2/p)^k <= 2^-b
// (b = 40 -> 2). Over q cheating attempts against the same vectors the union bound gives
// q·(2/p)^k, since every failed attempt aborts its request. Values >= p in y' are rejected
// in the same pass (a field element must be < p), so the check is over well-formed results only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "accel/accelerator.h"
#include "core/status.h"
#include "core/tensor.h"

namespace tenet::hybrid {

// The number of repetitions for `bits` of soundness (0 -> 0: no verification).
int repetitions_for_bits(int bits);

// Uniform field elements from the enclave's CSPRNG (rejection of p, as in pad_prg.h).
Status random_field_elements(std::span<uint32_t> out);

class FreivaldsCheck {
 public:
  FreivaldsCheck() = default;
  // Draws `repetitions` independent checks for a layer run on `input_shape`.
  static Result<FreivaldsCheck> create(const accel::LinearSpec& spec, const Shape& input_shape, int repetitions);

  int repetitions() const { return static_cast<int>(reps_.size()); }
  // -1 when every repetition accepts y as W·x (both of the shapes given at create(), or their
  // first images (conv) / rows (matmul): a partial batch, checked with the prefix of the same
  // vectors), else the index of the first repetition that rejects (0 for sizes that fit no such
  // prefix), or kOutsideField when some value of y is not a field element (>= p: the untrusted
  // result is checked for that in the same pass that reads it for the dot products). x holds
  // field elements (< p: the enclave made it).
  static constexpr int kOutsideField = -2;
  int first_failure(std::span<const uint32_t> x, std::span<const uint32_t> y) const;
  size_t size_bytes() const;

 private:
  struct Rep {
    std::vector<uint32_t> s;  // per output channel
    std::vector<uint32_t> t;  // conv: per output position (n, ho, wo)
    std::vector<uint32_t> z;  // conv: input-shaped (empty for a pointwise conv); matmul: [K]
    std::vector<uint32_t> ws;  // pointwise conv: s^T W per input channel
    std::vector<uint32_t> st;  // conv with small planes: s ⊗ t, output-shaped
  };
  static constexpr int64_t kSmallPlane = 64;  // output positions per (image, channel)
  bool conv_ = false;
  bool pointwise_ = false;     // conv with Z = ws ⊗ t (see above)
  bool small_planes_ = false;  // conv with positions_ < kSmallPlane: s ⊗ t kept whole
  int64_t channels_in_ = 0;
  int64_t batch_ = 0, channels_out_ = 0, positions_ = 0, k_ = 0;
  int64_t x_per_row_ = 0;  // input elements per image (conv) or row (matmul)
  std::vector<Rep> reps_;
};

}  // namespace tenet::hybrid
