// A hybrid-mode model behind the KServe front ends (trusted side): the glue between
// serving::ServedModel (what the REST and gRPC handlers call) and hybrid::HybridModel (the
// enclave side of hybrid mode: blinding, Freivalds checks, outsourced linear layers).
//
// It lives in the enclave runtime, not in src/serving or src/hybrid, so that tenet_serving stays
// free of the accelerator and tenet_hybrid free of the serving layer; only the enclave, which
// needs both, links both.
//
// Contract, as served:
//   * Fixed shapes. A HybridModel binds its input shapes when compiled; variable input dimensions
//     other than the batch dimension are bound to 1, and the KServe metadata shows those shapes.
//   * Batch 1 by default (max_batch_size 0 or 1): the batch dimension is bound to 1 too,
//     max_batch_size() is 0, the metadata shows the fixed shapes, and HTTP / gRPC threads call
//     infer(), which runs the request itself. At most max_queue_requests requests wait or run at
//     once, beyond that infer() fails at once with kResourceExhausted (HTTP 503 / gRPC
//     UNAVAILABLE), as the engine-backed model does.
//   * Dynamic batching with max_batch_size B > 1 (the manifest's "max_batch_size", and
//     "max_queue_delay_us"; the model needs a variable dimension 0 on every input, and on every
//     output once compiled): every instance is compiled for batch B, max_batch_size() is B and the
//     metadata shows -1 for dimension 0, as for a batching tee model. infer() queues the request
//     (same bound); a batcher takes queued requests in FIFO order up to B rows, waiting at most
//     max_queue_delay_us after the oldest arrived for the batch to fill, and runs them as one
//     batch: one blinded transfer, one product and one Freivalds check per outsourced layer, one
//     B-row unblinding term per layer (each used once, as at batch 1). A partial batch of k < B
//     rows is padded with zero rows, whose outputs are discarded, and runs as a partial batch
//     (hybrid::ActiveImages): the outsourced layers quantize, blind, send, check and unblind its
//     k real rows only, so the accelerator computes k rows, not B; the enclave's own kernels
//     (pooling, ...) still run B rows and each layer still takes one B-row unblinding term. Why
//     one compiled size rather than an instance per batch size: a HybridModel binds its shapes,
//     and its layers, accelerator registrations and pool of unblinding terms are per shape, so
//     each further size would keep another copy of the quantized weights in the enclave,
//     register every weight on the accelerator again and keep its own pool (unblind_pool terms
//     of every layer, computed in the enclave). The accelerator learns k; the host, which relays
//     every request, knows it anyway.
//     Each row is quantized with its own scales (hybrid::RuntimeOptions::images), so a request's
//     output is bitwise what it gets alone at batch B and nothing of one request's values reaches
//     another's output; the batch's joined inputs, padding and outputs are wiped after the run.
//     A failed batch fails every request in it, each with the same error (below), no output.
//   * Up to pipeline_depth runs (requests, or batches) at a time (the manifest's
//     "pipeline_depth", default 1): the model is compiled that many times and each run in flight
//     has its own instance, so one run's enclave work (quantizing, blinding, checking, the
//     non-linear layers) overlaps another's products on the accelerator (Slalom's and TEESlice's
//     pipelining). Depth 1 suits a host of two cores whose accelerator shares them; a GPU host
//     wants 2 or more. With threads 0 each instance gets cores / pipeline_depth enclave threads
//     (at least one). With batching, pipeline_depth batcher threads form and run batches.
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
  int pipeline_depth = 1;                              // runs in flight at once (1..64)
  int max_batch_size = 0;                              // > 1: dynamic batching up to this many rows (<= 64)
  uint64_t max_queue_delay_us = 0;                     // batching: how long a batch may wait to fill
  size_t max_queue_requests = 64;
  int threads = 0;  // enclave CPU threads per request (0: the cores, shared among pipeline_depth requests)
};

// Compiles `graph` for hybrid mode and precomputes the pool. Errors name the model.
Result<std::shared_ptr<serving::ServedModel>> load_hybrid_model(const std::string& name, const ir::Graph& graph,
                                                                 const HybridServedOptions& options);

}  // namespace tenet::enclave
