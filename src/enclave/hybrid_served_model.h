// A hybrid-mode model behind the KServe front ends (trusted side): the glue between
// serving::ServedModel (what the REST and gRPC handlers call) and hybrid::HybridModel (the
// enclave side of hybrid mode: blinding, Freivalds checks, outsourced linear layers).
//
// It lives in the enclave runtime, not in src/serving or src/hybrid, so that tenet_serving stays
// free of the accelerator and tenet_hybrid free of the serving layer; only the enclave, which
// needs both, links both.
//
// Contract, as served:
//   * Batch 1, fixed shapes. A HybridModel binds its input shapes when compiled; the model is
//     compiled with every variable input dimension bound to 1, so max_batch_size() is 0 and the
//     KServe metadata shows those fixed shapes. No dynamic batching.
//   * Up to pipeline_depth requests at a time (the manifest's "pipeline_depth", default 1): the
//     model is compiled that many times and each request in flight has its own instance, so one
//     request's enclave work (quantizing, blinding, checking, the non-linear layers) overlaps
//     another's products on the accelerator (Slalom's and TEESlice's pipelining). Depth 1 suits a
//     host of two cores whose accelerator shares them; a GPU host wants 2 or more. With threads 0
//     each instance gets cores / pipeline_depth enclave threads (at least one). HTTP / gRPC
//     threads call infer() directly; at most max_queue_requests requests wait or run at once,
//     beyond that infer() fails at once with kResourceExhausted (HTTP 503 / gRPC UNAVAILABLE), as
//     the engine-backed model does.
//   * Unblinding terms (W·r per outsourced layer, hybrid/mask_vault.h): `unblind_pool` of them
//     per layer are precomputed at load. A background thread tops the pool back up to
//     `unblind_pool`, one term per layer at a time, but ONLY while no request is in flight, so
//     that refilling never competes with requests for the cores. When a burst drains the pool,
//     requests do not fail: the missing W·r is computed inside the enclave on the request path
//     (HybridOptions::allow_inline_masks; slower, counted as masks_inline in the stats).
//   * A failing accelerator (killed, hung up, returning malformed or wrong products) fails the
//     request with kResourceExhausted (HTTP 503 / gRPC UNAVAILABLE: the request was valid, the
//     service cannot answer it now), the message naming the model and the hybrid runtime's cause
//     (the layer, and e.g. "cannot connect to accelerator"); no output comes from a bad result.
//     The model stays loaded and later requests try the accelerator again: the remote client
//     (accel/client.cc) connects again and registers the model's layers again on a restarted
//     accelerator process (`tenet serve` restarts the one it started), under the same handles,
//     so requests succeed again once it listens; blinding and Freivalds checks are unchanged.
//     Requests never hang on a dead accelerator: its socket closes, and the client's read or
//     connect fails at once.
//   * Leak hygiene as the engine-backed model: inputs are wiped after the run; the caller wipes
//     the outputs once encoded.
#pragma once

#include <memory>
#include <string>

#include "accel/accelerator.h"
#include "core/status.h"
#include "engine/ir/graph.h"
#include "serving/model_repository.h"

namespace tenet::enclave {

struct HybridServedOptions {
  std::string version = "1";
  std::shared_ptr<accel::Accelerator> accelerator;     // untrusted (accel::connect_accelerator); required
  std::shared_ptr<accel::Accelerator> trusted_linear;  // in-enclave exact engine for W·r (null: exact loops)
  int verify_bits = 40;                                // 0: unverified (INSECURE); the manifest decides
  int unblind_pool = 16;                               // precomputed unblinding terms per layer
  int pipeline_depth = 1;                              // requests in flight at once (1..64)
  size_t max_queue_requests = 64;
  int threads = 0;  // enclave CPU threads per request (0: the cores, shared among pipeline_depth requests)
};

// Compiles `graph` for hybrid mode and precomputes the pool. Errors name the model.
Result<std::shared_ptr<serving::ServedModel>> load_hybrid_model(const std::string& name, const ir::Graph& graph,
                                                                 const HybridServedOptions& options);

}  // namespace tenet::enclave
