// KServe v2 / Triton gRPC front end (service inference.GRPCInferenceService, proto/
// grpc_service.proto): ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
// ModelInfer, ModelConfig, ModelStatistics; every other Triton RPC answers UNIMPLEMENTED.
//
// ModelInfer accepts raw_input_contents (what tritonclient sends) or the typed contents fields,
// and answers with raw_output_contents (fixed size per output shape). Errors map to
// INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE (queue full), UNIMPLEMENTED, INTERNAL. Request raw
// bytes are wiped after use; the response message is serialized by gRPC after the handler
// returns, so its bytes are not wiped (a limit of the synchronous API).
#pragma once

#include <memory>

#include "core/status.h"
#include "serving/model_repository.h"
#include "serving/server.h"

namespace tenet::serving {

class GrpcServer {
 public:
  ~GrpcServer();
  static Result<std::unique_ptr<GrpcServer>> start(std::shared_ptr<ModelRepository> repository, const ServerOptions& options);
  int port() const { return port_; }
  void stop();

 private:
  GrpcServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace tenet::serving
