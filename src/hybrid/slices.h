// Model-private deployment (TEESlice, Zhang et al. 2024, §4.2.2 Eq. 6 and §4.3): a public
// backbone plus private slices, composed into one graph that hybrid mode runs.
//
//   h_l <- B_l(h_{l-1}) + Σ_p α_p^l · A_p^l(h_p)
//
// The backbone B is a plain ONNX model whose weights are public (it may run on the untrusted
// accelerator). Each slice A_p^l is a small ONNX graph with one input and one output, private to
// the model owner (a plain ONNX file, or a sealed `.tenet` package opened with the model key). A
// JSON manifest attaches the slices:
//
//   {"version": 1,
//    "slices": [{"name": "s1", "model": "slice1.tenet", "input": "<h_p>", "add_to": "<h_l>",
//                "alpha": 0.5}, ...]}
//
// `input` and `add_to` name backbone values. The slice reads h_p; its output, scaled by alpha, is
// added to h_l, and every reader of h_l downstream (later nodes, the graph outputs, other slices)
// reads the sum. Several slices may add to one h_l (summed in manifest order). A slice whose
// input is another slice's add_to reads that sum (Eq. 6's h_p includes its own slices).
//
// Where things run. compose_slices() prefixes every slice node and value with "slice.<name>/"
// and returns the names of all of them (and of the Mul/Add nodes that attach them) as
// `private_nodes` for HybridOptions: those nodes run on the engine's kernels inside the enclave,
// so slice weights never reach the accelerator. Features computed from a slice output do reach
// it (the backbone's next Conv reads h_l = B + α·A) — but only as hybrid mode sends every
// outsourced input: quantized and blinded with a fresh one-time pad (outsourced_linear.h, step
// 2), so the accelerator learns nothing of them; where a backbone Conv absorbs the attaching Add
// as a sum post-op, the slice term is added in the enclave after unblinding (step 6).
// tests/unit/hybrid/slices_test.cc checks both.
//
// The manifest and slice files are outside input (the operator's disk): the parser bounds every
// size, rejects unknown or duplicate keys, bad names, alpha outside [0, 1] and duplicate slice
// names; loading rejects missing or oversized files and wrong keys; composition rejects unknown
// value names, a slice output whose dtype or shape differs from h_l's, an add_to that is not
// computed by a backbone node, and slices that form a cycle (h_p computed from h_l).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "engine/ir/graph.h"
#include "seal/secret.h"

namespace tenet::hybrid {

inline constexpr size_t kMaxSliceManifestBytes = size_t{1} << 20;
inline constexpr size_t kMaxSlices = 64;
inline constexpr size_t kMaxSliceNameBytes = 64;        // [A-Za-z0-9_.-]
inline constexpr size_t kMaxSliceValueNameBytes = 4096;  // backbone value names
inline constexpr size_t kMaxSlicePathBytes = 4096;
inline constexpr int kMaxSliceManifestDepth = 8;  // JSON nesting

struct SliceSpec {
  std::string name;    // unique in the manifest
  std::string model;   // path of the slice (relative paths: to the manifest's directory)
  std::string input;   // backbone value h_p the slice reads
  std::string add_to;  // backbone value h_l the scaled slice output is added to
  float alpha = 1.f;   // in [0, 1]
};

struct SliceManifest {
  std::vector<SliceSpec> slices;
};

// Parses and validates the manifest text (structure only: files and value names are checked by
// load_slices / compose_slices). kInvalidArgument naming the slice and field on bad input.
Result<SliceManifest> parse_slice_manifest(std::string_view json_text);
// Reads (at most kMaxSliceManifestBytes) and parses a manifest file.
Result<SliceManifest> read_slice_manifest_file(const std::string& path);

struct LoadedSlice {
  SliceSpec spec;
  ir::Graph graph;
  bool sealed = false;  // loaded from a sealed package
};

// Loads every slice's graph: a sealed package (its file starts with the package magic, or its
// name ends in ".tenet") is opened with `model_key` (required then; kDataLoss on a wrong key),
// anything else is imported as ONNX. Relative paths are taken from `base_dir`.
Result<std::vector<LoadedSlice>> load_slices(const SliceManifest& manifest, const std::string& base_dir,
                                             const seal::SecretBytes* model_key);

struct ComposedModel {
  ir::Graph graph;                        // the backbone with every slice spliced in
  std::set<std::string> private_nodes;    // for HybridOptions::private_nodes
  std::vector<std::string> slice_names;   // manifest order
};

// Splices the slices into a copy of `backbone`. `input_shapes` (as for HybridModel::compile)
// binds the backbone inputs, so that slice outputs can be checked against h_l's shape.
Result<ComposedModel> compose_slices(const ir::Graph& backbone, const std::vector<LoadedSlice>& slices,
                                     const std::map<std::string, Shape>& input_shapes);

// The prefix of every node and value that comes from slice `name`.
std::string slice_prefix(const std::string& name);

}  // namespace tenet::hybrid
