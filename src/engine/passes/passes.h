// Graph passes. Each takes a graph whose shapes have been inferred (see shape_inference.h) and
// rewrites it in place, keeping Value shapes/dtypes correct for every value it creates or keeps.
// Each returns the number of rewrites it made through `count` (for `tenet inspect` and tests).
#pragma once

#include <functional>

#include "core/status.h"
#include "engine/ir/graph.h"

namespace tenet::passes {

struct PassStats {
  int identities_removed = 0;
  int batch_norms_folded = 0;
  int activations_fused = 0;
  int residual_adds_fused = 0;
  int gelus_fused = 0;
  int nodes_folded = 0;      // constant folding (shape_inference.cc)
  int dead_nodes_removed = 0;
  int pads_folded = 0;
  int matmuls_fused = 0;  // MatMuls that absorbed an operand scale and/or a bias Add
  int conv_taps_cropped = 0;  // Convs whose kernel lost taps that meet only padding
};

// Identity and inference-mode Dropout become their input (graph outputs keep their names).
Status eliminate_identities(ir::Graph& g, PassStats& stats);
// Conv -> BatchNormalization with constant parameters: folded into the Conv's weights and bias.
Status fold_batch_norm(ir::Graph& g, PassStats& stats);
// Erf-based GELU subgraph (x * 0.5 * (1 + erf(x / sqrt(2))), in the orders exporters emit) ->
// one Gelu node (approximate="none").
Status fuse_gelu(ir::Graph& g, PassStats& stats);
// Conv / Gemm / MatMul / FusedMatMul / BatchNormalization / Add followed by an activation (Relu,
// Clip with constant bounds, Sigmoid, HardSigmoid, HardSwish, Gelu, and Mul(x, Sigmoid(x)) as
// swish) whose input has no other consumer: the activation becomes a post-op of the producer.
Status fuse_activations(ir::Graph& g, PassStats& stats);
// MatMul(A, B) whose operand is scaled by a scalar constant (Div(t, s), Mul(t, s): attention's
// 1/sqrt(d)) read by it alone, and/or whose output's only reader is Add(y, C) with a constant C
// that does not widen y: one tenet-internal FusedMatMul(A, B[, C]) with alpha = the scale
// (ops_nn.cc), so that oneDNN computes scale and bias inside the matmul.
Status fuse_matmul_epilogue(ir::Graph& g, PassStats& stats);
// Conv (or MatMul / FusedMatMul) -> Add(out, other) with same shapes and out consumed only by the
// Add: the Add becomes a kSum post-op (other appended to the node's inputs after the optional
// bias; a MatMul becomes a FusedMatMul). Must run after fuse_matmul_epilogue, so that the bias
// comes first, and before fuse_activations, so that Conv+Add+Relu becomes Conv{sum, relu}.
Status fuse_residual_add(ir::Graph& g, PassStats& stats);

// Pad (constant mode, zero value, constant pads on the spatial dims of a 4-D tensor) followed by a
// Conv, or by an AveragePool that counts padding, becomes padding of that consumer; a Pad whose
// pads are all zero becomes its input. (torch exports AvgPool2d(padding=p) as Pad + AveragePool,
// which would otherwise force a plain-layout copy between oneDNN ops.)
Status fold_pads(ir::Graph& g, PassStats& stats);

// Conv (2-D, explicit padding, constant fp32 weights) whose input is so small that some kernel
// rows or columns meet only zero padding (3x3 with padding 1 on a 1x1 input: ResNet's last stage
// at CIFAR sizes): those taps are dropped from a copy of the weights and the padding shrunk to
// match (core/conv_taps.h), so the output is the same with up to 9x less work. Needs input and
// output shapes.
Status crop_dead_conv_taps(ir::Graph& g, PassStats& stats);

// Gemm / MatMul / FusedMatMul with a constant 2-D weight larger than `max_weight_bytes`: split
// along the output channels into layers whose weights fit, joined by a Concat on the last axis
// (tiling.cc; for weight streaming). Nodes for which `keep` returns true are left whole. Returns
// the number of layers split.
Result<int> tile_linear_outputs(ir::Graph& g, uint64_t max_weight_bytes,
                                const std::function<bool(const ir::Node&)>& keep = nullptr);

}  // namespace tenet::passes
