// Exact W·x mod p inside the enclave (trusted): int64 loops over the public int8 weights.
//
// Hybrid mode needs the true product in two places where the accelerator cannot be asked:
// precomputing the unblinding terms W·r of the one-time pads (the accelerator must never see r),
// and tests that need an honest accelerator without the accel library's backends. The loops are
// the same arithmetic as accel::reference_linear (exact integer sums, reduced mod p at the end:
// |x| < 2^31, |w| <= 127 and K < 66,572 keep every sum below 2^55), parallel over output
// channels with OpenMP. ExactLinear exposes them through the Accelerator interface so that the
// precompute path can use either these loops or an in-process fast backend (also trusted code
// when it runs inside the enclave).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "core/status.h"
#include "core/tensor.h"

namespace tenet::hybrid {

// Output shape of a layer for an input shape, and the reduction length K of one output
// (Cin/group·kh·kw, or K); kInvalidArgument when they do not fit.
Result<Shape> linear_output_shape(const accel::LinearSpec& spec, const Shape& input_shape);
int64_t reduction_length(const accel::LinearSpec& spec);

// y = W·x mod p, exactly. x holds field elements (< p); y has linear_output_shape elements.
Status exact_linear(const accel::LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x,
                    std::span<uint32_t> y);

// The exact loops as an in-process Accelerator (thread-safe; layers are immutable once added).
class ExactLinear final : public accel::Accelerator {
 public:
  std::string name() const override { return "enclave-exact"; }
  Result<int32_t> add_layer(const accel::LinearSpec& spec) override;
  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override;

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<const accel::LinearSpec>> layers_;
};

}  // namespace tenet::hybrid
