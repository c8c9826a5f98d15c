#include "engine/passes/shape_inference.h"

#include <algorithm>

#include "engine/ops/op.h"

namespace tenet::passes {
namespace {

// Constant folding evaluates nodes with at most this many output bytes; larger results (e.g. a
// transposed weight) stay nodes so that folding never multiplies a model's size.
constexpr size_t kMaxFoldBytes = size_t{1} << 20;

bool is_graph_output(const ir::Graph& g, ir::ValueId id) {
  return std::find(g.outputs.begin(), g.outputs.end(), id) != g.outputs.end();
}

}  // namespace

Status bind_input_shapes(ir::Graph& g, const std::map<std::string, Shape>& shapes) {
  for (const auto& [name, shape] : shapes) {
    bool found = false;
    for (ir::ValueId id : g.inputs) found = found || g.value(id).name == name;
    if (!found) return invalid_argument("the model has no input named '{}'", name);
  }
  for (ir::ValueId id : g.inputs) {
    ir::Value& v = g.value(id);
    auto it = shapes.find(v.name);
    Shape declared = v.shape;
    if (it == shapes.end()) {
      if (std::any_of(declared.begin(), declared.end(), [](int64_t d) { return d < 0; })) {
        return invalid_argument("input '{}' has dynamic dimensions {}; give its shape", v.name, shape_to_string(declared));
      }
    } else {
      const Shape& given = it->second;
      if (given.size() != declared.size()) {
        return invalid_argument("input '{}' has rank {} in the model, but a shape of rank {} was given ({})", v.name,
                                declared.size(), given.size(), shape_to_string(given));
      }
      for (size_t i = 0; i < given.size(); ++i) {
        if (declared[i] >= 0 && declared[i] != given[i]) {
          return invalid_argument("input '{}' has dimension {} fixed to {} in the model, but {} was given", v.name, i,
                                  declared[i], given[i]);
        }
      }
      declared = given;
    }
    TENET_ASSIGN_OR_RETURN(size_t bytes, byte_size(v.dtype, declared));
    (void)bytes;
    v.shape = declared;
    v.shape_known = true;
  }
  return ok_status();
}

Status infer_shapes_and_fold(ir::Graph& g, PassStats& stats) {
  for (ir::Node& node : g.nodes) {
    if (node.dead) continue;
    std::vector<ops::InferInput> inputs(node.inputs.size());
    bool all_constant = true;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const ir::ValueId id = node.inputs[i];
      if (id == ir::kNoValue) continue;
      const ir::Value& v = g.value(id);
      if (!v.shape_known) return internal_error("{}: input '{}' has no known shape", node.describe(), v.name);
      inputs[i].dtype = v.dtype;
      inputs[i].shape = &v.shape;
      // A deferred constant (ir/graph.h) not in memory gives shapes only: deferred ones are large
      // weights, never the small shape or index operands an op's inference reads.
      inputs[i].constant = v.constant.defined() ? &v.constant : nullptr;
      all_constant = all_constant && v.is_constant();
    }
    std::vector<ops::InferOutput> outs;
    TENET_RETURN_IF_ERROR(ops::infer_node(node, g.opset, inputs, outs));
    if (outs.size() < node.outputs.size()) {
      return internal_error("{}: shape inference produced {} outputs for {}", node.describe(), outs.size(), node.outputs.size());
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i] == ir::kNoValue) continue;
      ir::Value& v = g.value(node.outputs[i]);
      v.dtype = outs[i].dtype;
      v.shape = outs[i].shape;
      v.shape_known = true;
    }

    // Constant folding: Shape of a known shape, or any node over constants with small outputs.
    const bool is_shape = node.op_type == "Shape";
    if (!(all_constant || is_shape)) continue;
    size_t out_bytes = 0;
    for (const auto& o : outs) out_bytes += byte_size(o.dtype, o.shape).value();
    if (out_bytes > kMaxFoldBytes) continue;
    const ops::OpSchema* schema = ops::find_op(node.op_type, g.opset);
    if (schema == nullptr) return internal_error("{}: no schema", node.describe());
    std::vector<ConstTensorView> in_views(node.inputs.size());
    std::vector<Tensor> loaded(node.inputs.size());  // deferred inputs, read back for this fold only
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i] == ir::kNoValue) continue;
      const ir::Value& v = g.value(node.inputs[i]);
      if (v.is_constant() && !is_shape) {
        TENET_ASSIGN_OR_RETURN(loaded[i], g.load_constant(node.inputs[i]));
      }
      // Shape reads only the shape; its input data may not be known.
      in_views[i] = ConstTensorView{v.dtype, v.shape, loaded[i].defined() ? loaded[i].data() : nullptr};
    }
    std::vector<Tensor> results;
    std::vector<TensorView> out_views;
    for (const auto& o : outs) {
      TENET_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(o.dtype, o.shape));
      results.push_back(std::move(t));
    }
    for (Tensor& t : results) out_views.push_back(t.view());
    TENET_RETURN_IF_ERROR(schema->reference(node, in_views, out_views));
    bool keeps_output = false;
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i] == ir::kNoValue) continue;
      // A graph output that folds to a constant is still computed by its node, so the runtime can
      // hand it out like any other output.
      if (is_graph_output(g, node.outputs[i])) keeps_output = true;
    }
    if (keeps_output) continue;
    loaded.clear();
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i] == ir::kNoValue) continue;
      const bool defer = g.defers(results[i].size_bytes());
      g.value(node.outputs[i]).constant = std::move(results[i]);
      if (defer) TENET_RETURN_IF_ERROR(g.defer_constant(node.outputs[i]));
    }
    node.dead = true;
    ++stats.nodes_folded;
  }
  g.compact();
  return ok_status();
}

Status prepare_graph(ir::Graph& g, const std::map<std::string, Shape>& input_shapes, const OptimizeOptions& options,
                     PassStats& stats) {
  TENET_RETURN_IF_ERROR(bind_input_shapes(g, input_shapes));
  TENET_RETURN_IF_ERROR(g.topo_sort());
  TENET_RETURN_IF_ERROR(infer_shapes_and_fold(g, stats));
  const size_t before = g.nodes.size();
  g.remove_dead_nodes();
  stats.dead_nodes_removed += static_cast<int>(before - g.nodes.size());
  TENET_RETURN_IF_ERROR(eliminate_identities(g, stats));
  TENET_RETURN_IF_ERROR(fold_pads(g, stats));
  if (options.fold_batch_norm) TENET_RETURN_IF_ERROR(fold_batch_norm(g, stats));
  TENET_RETURN_IF_ERROR(crop_dead_conv_taps(g, stats));
  if (options.fuse) {
    TENET_RETURN_IF_ERROR(fuse_gelu(g, stats));
    TENET_RETURN_IF_ERROR(fuse_matmul_epilogue(g, stats));
    TENET_RETURN_IF_ERROR(fuse_residual_add(g, stats));
    TENET_RETURN_IF_ERROR(fuse_activations(g, stats));
  }
  g.remove_dead_nodes();
  TENET_RETURN_IF_ERROR(g.topo_sort());
  // Fusions create nodes whose outputs keep their shapes; one more inference pass checks that
  // every node of the final graph is consistent.
  return infer_shapes_and_fold(g, stats);
}

}  // namespace tenet::passes
