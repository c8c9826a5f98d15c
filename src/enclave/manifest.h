// The enclave manifest: an enclave's initial configuration, measured into MRENCLAVE together
// with the enclave binary (as Gramine measures its manifest). It names what the enclave will
// serve and under which identity, and nothing the untrusted host chooses: package file paths,
// ports and the key broker's address are launch arguments, not manifest content, so that one
// MRENCLAVE covers every deployment of the same model set.
//
//   {
//     "tenet_manifest": 1,
//     "isv_prod_id": 1, "isv_svn": 1, "debug": false,
//     "mode": "tee",
//     "models": [
//       { "name": "resnet18",
//         "package_digest": "<64 hex>",          // the sealed package's digest (tenet seal)
//         "key_resource": "default/model/resnet18",  // KBS resource path of its model key
//         "max_batch_size": 8, "max_queue_delay_us": 500, "max_queue_requests": 64 },
//       { "name": "resnet50", "package_digest": "<64 hex>",
//         "mode": "hybrid",                      // default "tee"
//         "verify_bits": 40,                     // hybrid: Freivalds soundness, default 40
//         "allow_unverified": false,             // hybrid: needed (true) for verify_bits 0 (INSECURE)
//         "unblind_pool": 16,                    // hybrid: precomputed unblinding terms per layer
//         "pipeline_depth": 1,                   // hybrid: runs in flight at once (1..64)
//         "max_batch_size": 8, "max_queue_delay_us": 500 }  // hybrid: dynamic batching (default: batch 1)
//     ],
//     "server": { "max_body_bytes": 67108864, "http_threads": 16 }
//   }
//
// Mode per model (design.md, "Three ways to protect a model"): "tee" runs the whole model in the
// enclave; "hybrid" outsources its Conv/Gemm/MatMul layers to the untrusted accelerator over
// blinded data, checking each result with Freivalds' algorithm (error <= 2^-verify_bits). The
// mode is manifest content, so it is measured: a client policy that pins MRENCLAVE pins every
// model's mode and verify_bits; the enclave also states them in its RA-TLS claims
// ("tenet-mode", "tenet-model-modes"; see runtime.h). Hybrid models run batch 1 unless their
// entry sets max_batch_size 2..64 (their shapes are fixed when compiled: each instance is
// compiled for that batch and partial batches are padded, enclave/hybrid_served_model.h); a
// larger one is refused, and without max_batch_size a hybrid model does not batch. The
// top-level "mode" is the legacy whole-enclave mode and may only say "tee"; it is the default of
// each model's mode.
//
// The manifest arrives from untrusted disk; it is measured, so a changed manifest changes
// MRENCLAVE and the enclave will not pass the owner's policy. It is still parsed as hostile input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tenet::enclave {

struct ManifestModel {
  std::string name;
  std::string package_digest_hex;  // lower-case, 64 hex digits
  std::string key_resource;        // repo/type/tag
  int max_batch_size = 8;  // hybrid: 0 (batch 1) unless set to 2..64
  uint64_t max_queue_delay_us = 0;
  size_t max_queue_requests = 64;
  // "tee" (default) or "hybrid".
  std::string mode = "tee";
  // hybrid only: Freivalds soundness in bits (0..128; 0 requires allow_unverified).
  int verify_bits = 40;
  bool allow_unverified = false;
  // hybrid only: unblinding terms per outsourced layer precomputed at load and kept topped up
  // while the model is idle (see enclave/hybrid_served_model.h).
  int unblind_pool = 16;
  // hybrid only: requests in flight at once, each on its own compiled instance, so that one
  // request's enclave work overlaps another's accelerator products (enclave/hybrid_served_model.h).
  int pipeline_depth = 1;

  bool hybrid() const { return mode == "hybrid"; }
  // The per-model RA-TLS claim: "tee", or "hybrid:<verify_bits>".
  std::string mode_claim() const;
};

struct Manifest {
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  bool debug = false;
  std::string mode = "tee";
  std::vector<ManifestModel> models;
  size_t max_body_bytes = size_t{64} << 20;
  int http_threads = 16;

  bool any_hybrid() const;
};

Result<Manifest> parse_manifest(std::string_view json);

}  // namespace tenet::enclave
