// The ONNX importer on parsed protobufs, for callers that assemble a model in parts: a sealed
// package (seal/package.h) imports its graph chunk, then each weight chunk's initializers as it
// decrypts them, so that no more than one chunk's plaintext exists at a time.
#pragma once

#include <memory>

#include <onnx/onnx_pb.h>

#include "engine/onnx/importer.h"

namespace tenet::onnx_import {

class Importer;

// begin(model) checks the model's header (IR version, opsets); add_initializer() takes the
// initializers one by one, in the order the whole model would list them; finish(model) adds the
// graph's inputs, nodes and outputs (`model`'s own initializers are not read). The same calls on
// a whole model produce the same graph as import_model_bytes.
class ModelImporter {
 public:
  explicit ModelImporter(const ImportOptions& options = {});
  ~ModelImporter();
  Status begin(const onnx::ModelProto& model);
  Status add_initializer(const onnx::TensorProto& init);
  // An initializer whose data comes separately (a sealed package's part chunks): `header` has the
  // name, type and dims and no data; `fill(offset, dst)` writes its `bytes` raw little-endian
  // bytes in order of offset, as ONNX raw_data would hold them. Deferred into the constant store
  // piece by piece when the import defers a constant of that size (never whole in memory), else
  // filled straight into the constant's tensor. Fixed-size types only.
  Status add_initializer_from(const onnx::TensorProto& header, uint64_t bytes, const ir::ConstantStore::Filler& fill);
  Result<ir::Graph> finish(const onnx::ModelProto& model);

 private:
  std::unique_ptr<Importer> impl_;
};

}  // namespace tenet::onnx_import
