// Shape inference with constant propagation.
//
// Binds concrete shapes to the graph inputs, then walks the nodes in topological order calling
// each op's infer(); a node whose inputs are all constants is evaluated with its reference
// implementation and its outputs become constants (so the Shape -> Gather -> Concat -> Reshape
// chains exporters emit fold away); Shape nodes fold as soon as their input's shape is known.
// Folded nodes are removed. Tensors above kMaxFoldBytes are not folded (weights stay as they are).
#pragma once

#include <map>
#include <string>

#include "core/status.h"
#include "engine/ir/graph.h"
#include "engine/passes/passes.h"

namespace tenet::passes {

// Sets the shapes of graph inputs. `shapes` maps input name -> shape; inputs not named keep the
// shape declared in the model, where every dynamic dimension must then be given. Error when a
// name is unknown, the rank differs from the model's declaration, or a fixed dim disagrees.
Status bind_input_shapes(ir::Graph& g, const std::map<std::string, Shape>& shapes);

// Infers every value's dtype and shape; folds constants. Requires topo-sorted nodes.
Status infer_shapes_and_fold(ir::Graph& g, PassStats& stats);

struct OptimizeOptions {
  bool fold_batch_norm = true;
  bool fuse = true;
};

// The whole pipeline after import: bind shapes, infer + fold, eliminate identities, fold BN,
// fuse GELU, matmul epilogues, residual adds and activations, remove dead nodes, re-validate.
Status prepare_graph(ir::Graph& g, const std::map<std::string, Shape>& input_shapes,
                     const OptimizeOptions& options, PassStats& stats);

}  // namespace tenet::passes
