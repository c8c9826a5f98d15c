// TEE platforms: where an enclave gets its evidence (quotes) and its sealing keys.
//
//   sim      INSECURE. A platform service emulated in-process from a provisioning directory
//            (sim_provision): it signs SGX-shaped v3 quotes with an attestation key certified by a
//            sim "QE report" signed by a sim PCK key chained to a sim root CA. Its quotes have the
//            DCAP structure, so one verifier path checks sim and hardware quotes; only the root
//            differs, and a policy must say allow_insecure_sim to accept sim roots. Anyone with the
//            provisioning directory can forge sim quotes: it proves nothing about the host.
//   gramine  Gramine-SGX's /dev/attestation pseudo-files (DCAP): write user_report_data, read
//            quote; sealing keys from /dev/attestation/keys/_sgx_mrenclave and _sgx_mrsigner.
//   tsm      Linux configfs-tsm (TDX / SEV-SNP guests, Linux 6.7+): one fresh report entry per
//            quote under /sys/kernel/config/tsm/report.
//
// An enclave asks for ONE quote at start (make_ratls_identity, ratls.h) and reuses it for every
// session (TEMPER's report reuse); get_quote is slow on hardware (tens of ms) and on sim (two
// ECDSA signatures plus the chain).
//
// Trusted side: Platform objects live inside the enclave process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "attest/quote.h"
#include "crypto/crypto.h"

namespace tenet::attest {

enum class SealPolicy { kMrEnclave, kMrSigner };

struct EnclaveIdentity {
  Bytes mrenclave;  // SGX MRENCLAVE (32 bytes) or TDX MRTD (48 bytes)
  Bytes mrsigner;   // SGX MRSIGNER (32 bytes); empty for TDX
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  bool debug = false;
  bool tdx = false;
};

EnclaveIdentity identity_of(const Quote& quote);

class Platform {
 public:
  virtual ~Platform() = default;
  // "sim (INSECURE)", "gramine-sgx", "tsm-tdx_guest", ...
  virtual std::string name() const = 0;
  // false for sim: its evidence proves nothing about the host.
  virtual bool is_secure() const = 0;
  // A quote whose REPORTDATA is `report_data` (exactly 64 bytes).
  virtual Result<Bytes> get_quote(ByteSpan report_data) = 0;
  // A 32-byte key bound to this enclave's MRENCLAVE, or to its MRSIGNER (+ ISVPRODID), and to
  // `label` (domain separation between uses).
  virtual Result<Bytes> sealing_key(SealPolicy policy, std::string_view label) = 0;
  // This enclave's own measurement.
  virtual Result<EnclaveIdentity> identity() = 0;
};

// ---- sim ----

// Creates `dir` (0700) holding the sim platform: root CA (root.pem, P-256 self-signed, CN marked
// INSECURE), PCK key and certificate (pck.key, pck.pem), platform sealing secret (platform.secret),
// and a development enclave signer key (signer.key). Private files are 0600. Fails if `dir`
// already holds a provisioned platform.
Status sim_provision(const std::string& dir);

// Paths inside a provisioning directory.
std::string sim_root_cert_path(const std::string& dir);
std::string sim_signer_key_path(const std::string& dir);

// The CN every sim root certificate carries; verifiers use it to label evidence INSECURE.
inline constexpr const char* kSimRootCommonName = "tenet sim root CA (INSECURE, not a TEE)";

struct SimEnclaveOptions {
  std::string platform_dir;                   // from sim_provision
  std::string binary_path = "/proc/self/exe";  // measured into MRENCLAVE
  std::string config;                         // the enclave's JSON manifest bytes, measured too
  std::string signer_key_path;                // PEM private key; default <platform_dir>/signer.key
  // Taken from the manifest's top-level "isv_prod_id", "isv_svn", "debug" when not set here.
  std::optional<uint16_t> isv_prod_id;
  std::optional<uint16_t> isv_svn;
  std::optional<bool> debug;
};

Result<std::unique_ptr<Platform>> open_sim_platform(const SimEnclaveOptions& options);

// MRENCLAVE as the sim platform computes it:
//   SHA-256("tenet-sim-mrenclave-v1" || u64le(binary size) || binary || u64le(config size) || config)
// Model owners compute the expected value with `tenet measure` without running an enclave.
Result<crypto::Sha256Digest> measure_enclave(const std::string& binary_path, ByteSpan config);
// MRSIGNER as the sim platform computes it: SHA-256 of the signer's DER SubjectPublicKeyInfo.
Result<crypto::Sha256Digest> mrsigner_of_key(const crypto::PublicKey& signer);

// ---- gramine ----

struct GramineOptions {
  std::string root = "/dev/attestation";
};
Result<std::unique_ptr<Platform>> open_gramine_platform(const GramineOptions& options = {});

// ---- tsm (configfs-tsm) ----

struct TsmOptions {
  std::string root = "/sys/kernel/config/tsm/report";
  // Test seam: called right after the report entry is created, with its path. configfs populates
  // an entry atomically at mkdir; a fake directory tree uses this to do the same.
  std::function<void(const std::string& entry_path)> after_mkdir;
};
Result<std::unique_ptr<Platform>> open_tsm_platform(const TsmOptions& options = {});

// "sim", "gramine" or "tsm" with default options (sim needs SimEnclaveOptions: use
// open_sim_platform).
Result<std::unique_ptr<Platform>> open_platform(const std::string& kind);

}  // namespace tenet::attest
