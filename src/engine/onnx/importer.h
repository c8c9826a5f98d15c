// ONNX importer: ModelProto (opsets 11..17, IR version <= 8) -> ir::Graph.
//
// The file is hostile input. The importer checks every size against its declared dims before
// copying (initializers, attributes), rejects external data, other domains and subgraphs with a
// clear error naming the node, and topologically sorts the nodes (a cycle is an error). It does no
// shape inference: that runs when input shapes are bound (passes/shape_inference.h).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"
#include "engine/ir/graph.h"

namespace tenet::onnx_import {

inline constexpr int64_t kMinOpset = 11;
inline constexpr int64_t kMaxOpset = 17;
inline constexpr int64_t kMaxIrVersion = 8;
// Upper bound of a model file (protobuf's own limit is 2 GiB).
inline constexpr size_t kMaxModelBytes = size_t{2} << 30;

struct ImportOptions {
  // Non-null: initializers of at least min_deferred_bytes become deferred constants in this store
  // as they are read (ir/graph.h), so the imported graph does not hold the model's weights.
  std::shared_ptr<ir::ConstantStore> constant_store;
  uint64_t min_deferred_bytes = ir::kMinDeferredBytes;
};

Result<ir::Graph> import_model_bytes(std::span<const std::byte> bytes, const ImportOptions& options = {});
Result<ir::Graph> import_model_file(const std::string& path, const ImportOptions& options = {});

}  // namespace tenet::onnx_import
