// The enclave runtime (trusted side): everything `tenet enclave` does inside the trust boundary.
//
// At start, once per enclave process (TEMPER's long-running enclaves with preloaded models):
//   1. read the manifest (measured into MRENCLAVE with the binary) and open the platform;
//   2. obtain the RA-TLS identity: unseal the deployment's identity from the identity store
//      (sealed to MRENCLAVE, so only this code on this platform can open it), or create it (one
//      key pair, ONE quote) and seal it there. Every enclave of the deployment, and every restart,
//      reuses the same certificate and quote: one attestation report for all users and sessions;
//   3. for each model: get its model key from the owner's key broker (KBS flow: the broker checks
//      a quote over a fresh nonce and an ephemeral key before it wraps the key to it), open the
//      sealed package from untrusted disk, check its digest against the manifest, decrypt it
//      layer by layer into enclave memory, compile it: in "tee" mode with the engine
//      (serving::load_engine_model), in "hybrid" mode (the manifest's per-model mode) for the
//      untrusted accelerator given by --accelerator (hybrid_served_model.h);
//   4. serve KServe v2 (REST + gRPC) with TLS terminating here, on loopback ports the host relays
//      to, and report {"event":"ready", ...} and periodic {"event":"stats", ...} (counts and
//      latencies only) on stdout, the control channel to the host.
// Nothing secret leaves: errors name what failed, never key or tensor bytes.
//
// The RA-TLS claims (attest/evidence.h) carry the model digests in manifest order, the per-model
// modes beside them ("tenet-model-modes": "tee" or "hybrid:<verify_bits>") and the enclave's
// mode ("tenet-mode": "hybrid" when any model is hybrid). All of it is also measured, through
// the manifest, into MRENCLAVE: a policy that pins MRENCLAVE pins the modes; the claims make
// them readable to a client that pins only MRSIGNER or the model digest.
#pragma once

#include <map>
#include <string>

#include "core/status.h"

namespace tenet::enclave {

struct EnclaveOptions {
  std::string manifest_path;
  std::map<std::string, std::string> packages;  // model name -> sealed package path (untrusted disk)
  std::string keybroker_url;                    // http://HOST:PORT
  std::string platform = "sim";                 // sim | gramine | tsm
  std::string sim_dir;                          // sim provisioning directory
  std::string identity_store;                   // sealed RA-TLS identity (untrusted disk)
  std::string http_address = "127.0.0.1:0";
  std::string grpc_address = "127.0.0.1:0";
  int threads = 0;
  int instance = 0;
  // sim only: enclave memory comes from a heap paged against the host's emulated EPC (src/epc),
  // the budget shared by every enclave that names the same host segment. Empty: no emulation.
  std::string epc_budget;  // "93MiB"
  std::string epc_host;    // shared-memory segment name (tenet serve makes one per server)
  std::string epc_limit;   // this enclave's own cap on resident pages (its share of the budget)
  // "resident" (default): every weight stays in enclave memory, dynamic batching. "planned"
  // (Vessels, needs epc_budget): each model is compiled for batch 1 with its weights streamed from
  // sealed untrusted memory, so that the enclave's steady state fits its EPC share.
  std::string memory = "resident";
  // Hybrid models: the untrusted accelerator process (`tenet accelerator --listen unix:PATH`),
  // "unix:PATH". Required when the manifest has a hybrid model, refused otherwise.
  std::string accelerator;
  int stats_interval_ms = 1000;
};

// Runs until SIGINT/SIGTERM. Returns the process exit status.
int run_enclave(const EnclaveOptions& options);

}  // namespace tenet::enclave
