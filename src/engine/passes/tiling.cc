// Output-channel tiling of linear layers (and ungrouped 2-D convolutions, along their output
// channels) whose weights exceed a memory bound (weight streaming,
// src/engine/cpu/weight_streaming.h): Gemm / MatMul / FusedMatMul with a constant 2-D weight
// [K, N] (or [N, K] with transB) becomes T layers over column ranges of the weight, each with
// its slice of the bias and the node's post-ops, and a Concat of their outputs along the last
// axis. At batch 1 the compiler turns that Concat into direct writes (every part is a contiguous
// block of the output), so tiling adds no copy; a streamed model then never needs more than one
// tile's weights in memory at once.
//
// Tiles have equal widths, a multiple of 64 (or 16) outputs where the width allows: oneDNN's
// blocked weight layouts pad the output dim to such blocks, so other widths would waste memory. A residual sum post-op would need its operand split too: such layers are
// left alone, as are layers with a transposed A or a non-constant weight.
#include <algorithm>
#include <cstring>

#include "core/safe_math.h"
#include "engine/passes/passes.h"

namespace tenet::passes {
namespace {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::ValueId;

// Columns [n0, n1) of a row-major [K, N] matrix (a copy), or rows of [N, K] when transposed (a view).
Result<Tensor> weight_slice(const Tensor& w, bool trans_b, int64_t n0, int64_t n1) {
  if (trans_b) return w.slice_rows(n0, n1);  // also a convolution's [Cout, ...]
  const int64_t rows = w.shape()[0], cols = w.shape()[1];
  const int64_t width = n1 - n0;
  // [N, K]: a tile is a run of rows, a view of the weight (no copy: slicing VGG16's fc6 would
  // otherwise hold 411 MB twice while the layer is cut).
  TENET_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(DType::kFloat32, Shape{rows, width}));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(t.as<float>() + r * width, w.as<float>() + r * cols + n0, static_cast<size_t>(width) * sizeof(float));
  }
  return t;
}

}  // namespace

Result<int> tile_linear_outputs(ir::Graph& g, uint64_t max_weight_bytes, const std::function<bool(const ir::Node&)>& keep) {
  if (max_weight_bytes == 0) return invalid_argument("tile_linear_outputs: a bound of 0 bytes");
  int tiled = 0;
  const size_t node_count = g.nodes.size();
  std::vector<Node> added;
  for (size_t ni = 0; ni < node_count; ++ni) {
    Node& n = g.nodes[ni];
    const bool gemm = n.op_type == "Gemm";
    const bool conv = n.op_type == "Conv";
    if (n.dead || !(gemm || conv || n.op_type == "MatMul" || n.op_type == "FusedMatMul")) continue;
    if (keep && keep(n)) continue;
    if (n.inputs.size() < 2 || n.inputs.size() > 3 || n.outputs.size() != 1 || n.outputs[0] == kNoValue) continue;
    if (std::any_of(n.post_ops.begin(), n.post_ops.end(), [](const ir::PostOp& p) { return p.kind == ir::PostOp::Kind::kSum; })) {
      continue;
    }
    const ir::Value& b = g.value(n.inputs[1]);
    if (!b.is_constant() || b.dtype != DType::kFloat32 || b.shape.size() != (conv ? 4u : 2u)) continue;
    if (b.constant_bytes() <= max_weight_bytes) continue;
    // A 2-D convolution's weight [Cout, Cin/g, kh, kw] is tiled by output channels like a [N, K]
    // weight (rows: a view); only ungrouped ones (a group's channels would straddle tiles).
    if (conv && (!n.attr_int("group", 1).ok() || n.attr_int("group", 1).value() != 1)) continue;
    const bool trans_b = conv || (gemm && n.attr_int("transB", 0).ok() && n.attr_int("transB", 0).value() != 0);
    if (gemm && (!n.attr_int("transA", 0).ok() || n.attr_int("transA", 0).value() != 0)) continue;
    const ir::Value y = g.value(n.outputs[0]);
    if (y.shape.empty() || y.dtype != DType::kFloat32) continue;
    const int64_t width = trans_b ? b.shape[0] : b.shape[1];
    const size_t out_axis = conv ? 1 : y.shape.size() - 1;
    if (out_axis >= y.shape.size() || y.shape[out_axis] != width || width < 2) continue;
    // Bias: a scalar stays shared; a [N] (or [1, N]) vector is sliced.
    const ValueId c_id = n.input(2);
    const ir::Value* c = c_id == kNoValue ? nullptr : &g.value(c_id);
    if (c && (!c->is_constant() || c->dtype != DType::kFloat32)) continue;
    const bool c_vector = c && numel(c->shape) == width && !c->shape.empty() && c->shape.back() == width;
    if (c && !c_vector && numel(c->shape) != 1) continue;

    int64_t tiles = static_cast<int64_t>((b.constant_bytes() + max_weight_bytes - 1) / max_weight_bytes);
    int64_t per = (width + tiles - 1) / tiles;
    // oneDNN's blocked weight layouts pad the output dim to 16 or 64: tiles of such widths waste nothing.
    const int64_t align = per >= 64 ? 64 : 16;
    if (per >= 16) per = (per + align - 1) / align * align;
    per = std::max<int64_t>(per, 1);
    // Rounding up may make a tile exceed the bound a little: by less than one block of columns.
    tiles = (width + per - 1) / per;
    if (tiles < 2) continue;

    // A deferred weight (ir/graph.h) is not read whole when its tiles are runs of rows ([N, K],
    // a convolution's [Cout, ...]): each tile is read from the store on its own and deferred again,
    // so no more than one tile is in memory. Column tiles of [K, N] need the whole weight.
    const ValueId b_id = n.inputs[1];
    const bool by_rows = trans_b && !b.constant.defined();
    Tensor w;
    if (!by_rows) {
      TENET_ASSIGN_OR_RETURN(w, g.load_constant(b_id));
    }
    const Shape b_shape = b.shape;
    Tensor bias;
    if (c) {
      TENET_ASSIGN_OR_RETURN(bias, g.load_constant(c_id));
    }
    const std::string base = n.name.empty() ? g.unique_name("tiled") : n.name;
    std::vector<ValueId> parts;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t n0 = t * per, n1 = std::min(width, n0 + per);
      Node part = n;
      part.name = fmt::format("{}/tile{}", base, t);
      Tensor ws;
      if (by_rows) {
        Shape ts = b_shape;
        ts[0] = n1 - n0;
        TENET_ASSIGN_OR_RETURN(ws, Tensor::zeros(DType::kFloat32, ts));
        const uint64_t row_bytes = ws.size_bytes() / static_cast<uint64_t>(n1 - n0);
        TENET_RETURN_IF_ERROR(g.read_constant(b_id, static_cast<uint64_t>(n0) * row_bytes,
                                              std::span(static_cast<std::byte*>(ws.data()), ws.size_bytes())));
      } else {
        TENET_ASSIGN_OR_RETURN(ws, weight_slice(w, trans_b, n0, n1));
      }
      TENET_ASSIGN_OR_RETURN(part.inputs[1], g.add_constant_deferrable(g.unique_name(part.name + "/weight"), std::move(ws)));
      if (c_vector) {
        Shape cs = bias.shape();
        cs.back() = n1 - n0;
        TENET_ASSIGN_OR_RETURN(Tensor bs, Tensor::zeros(DType::kFloat32, cs));
        std::memcpy(bs.as<float>(), bias.as<float>() + n0, static_cast<size_t>(n1 - n0) * sizeof(float));
        TENET_ASSIGN_OR_RETURN(part.inputs[2], g.add_constant_deferrable(g.unique_name(part.name + "/bias"), std::move(bs)));
      }
      ir::Value out;
      out.name = g.unique_name(part.name + "/out");
      out.dtype = DType::kFloat32;
      out.shape = y.shape;
      out.shape[out_axis] = n1 - n0;
      out.shape_known = true;
      part.outputs = {g.add_value(std::move(out))};
      parts.push_back(part.outputs[0]);
      added.push_back(std::move(part));
    }
    Node concat;
    concat.name = base + "/concat";
    concat.op_type = "Concat";
    concat.inputs = parts;
    concat.outputs = {g.nodes[ni].outputs[0]};
    concat.attrs["axis"] = ir::Attribute{static_cast<int64_t>(out_axis)};
    added.push_back(std::move(concat));
    g.nodes[ni].dead = true;
    // The whole weight is not needed any more when no other node reads it: free it now, before
    // the next layer is sliced, rather than at compact().
    bool shared = false;
    for (size_t other = 0; other < node_count; ++other) {
      const Node& o = g.nodes[other];
      if (other != ni && !o.dead && std::count(o.inputs.begin(), o.inputs.end(), g.nodes[ni].inputs[1]) > 0) shared = true;
    }
    if (!shared && std::count(g.outputs.begin(), g.outputs.end(), g.nodes[ni].inputs[1]) == 0) {
      g.value(g.nodes[ni].inputs[1]).constant = Tensor();
      g.value(g.nodes[ni].inputs[1]).deferred = false;  // its store entry is simply not read again
    }
    ++tiled;
  }
  if (tiled == 0) return 0;
  for (Node& a : added) g.nodes.push_back(std::move(a));
  g.compact();
  TENET_RETURN_IF_ERROR(g.topo_sort());
  TENET_RETURN_IF_ERROR(g.validate());
  return tiled;
}

}  // namespace tenet::passes
