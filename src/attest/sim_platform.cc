// The sim platform (INSECURE): an in-process emulation of an SGX DCAP quoting stack.
//
// Chain of trust, mirroring DCAP: sim root CA -> sim PCK certificate -> (QE report signed by the
// PCK key, whose REPORTDATA binds the attestation key) -> attestation key -> quote signature over
// header || report body. The attestation key is fresh per process, as a QE's key is per boot.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/platform.h"
#include "attest/x509_util.h"

namespace tenet::attest {

namespace {

constexpr const char* kRootCert = "root.pem";
constexpr const char* kRootKey = "root.key";
constexpr const char* kPckCert = "pck.pem";
constexpr const char* kPckKey = "pck.key";
constexpr const char* kSecret = "platform.secret";
constexpr const char* kSignerKey = "signer.key";

std::string join(const std::string& dir, const char* name) { return (std::filesystem::path(dir) / name).string(); }

// Fixed identity of the sim quoting enclave (what its QE report claims).
crypto::Sha256Digest sim_qe_measurement(const char* what) {
  return crypto::sha256(crypto::as_bytes(std::string("tenet-sim-quoting-enclave-") + what));
}

void put_u64le(crypto::Sha256& h, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  h.update(ByteSpan(b, 8));
}

class SimPlatform final : public Platform {
 public:
  std::string name() const override { return "sim (INSECURE)"; }
  bool is_secure() const override { return false; }

  Result<Bytes> get_quote(ByteSpan report_data) override {
    if (report_data.size() != kReportDataSize) return invalid_argument("report data is {} bytes, expected 64", report_data.size());
    std::lock_guard<std::mutex> lock(mu_);
    Quote q = quote_template_;
    std::memcpy(q.sgx.report_data.data(), report_data.data(), kReportDataSize);
    TENET_ASSIGN_OR_RETURN(Bytes sig_der, attestation_key_.sign(quote_signed_bytes(q)));
    TENET_ASSIGN_OR_RETURN(Bytes sig_raw, crypto::ecdsa_der_to_raw(sig_der, 32));
    std::memcpy(q.signature.data(), sig_raw.data(), 64);
    return serialize_quote(q);
  }

  Result<Bytes> sealing_key(SealPolicy policy, std::string_view label) override {
    Bytes info;
    auto add = [&info](ByteSpan b) { info.insert(info.end(), b.begin(), b.end()); };
    if (policy == SealPolicy::kMrEnclave) {
      add(crypto::as_bytes("tenet-sim-seal-mrenclave-v1"));
      add(quote_template_.sgx.mr_enclave);
    } else {
      add(crypto::as_bytes("tenet-sim-seal-mrsigner-v1"));
      add(quote_template_.sgx.mr_signer);
      const uint8_t prod[2] = {static_cast<uint8_t>(quote_template_.sgx.isv_prod_id),
                               static_cast<uint8_t>(quote_template_.sgx.isv_prod_id >> 8)};
      add(ByteSpan(prod, 2));
    }
    add(crypto::as_bytes(label));
    return crypto::hkdf_sha256(platform_secret_, crypto::as_bytes("tenet-sim-sealing"), info, 32);
  }

  Result<EnclaveIdentity> identity() override { return identity_of(quote_template_); }

  ~SimPlatform() override { crypto::secure_wipe(platform_secret_); }

  Quote quote_template_;
  crypto::PrivateKey attestation_key_;
  Bytes platform_secret_;
  std::mutex mu_;
};

Status make_dir_private(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return invalid_argument("cannot create '{}': {}", dir, ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) return internal_error("chmod '{}': {}", dir, std::strerror(errno));
  return ok_status();
}

Result<crypto::PrivateKey> load_key(const std::string& path) {
  TENET_ASSIGN_OR_RETURN(std::string pem, crypto::read_file(path, 1 << 16));
  auto key = crypto::PrivateKey::from_pem(pem);
  crypto::secure_wipe(pem);
  if (!key.ok()) return key.status().with_context(path);
  return key;
}

struct ManifestAttrs {
  std::optional<uint16_t> isv_prod_id, isv_svn;
  std::optional<bool> debug;
};

Result<ManifestAttrs> manifest_attrs(std::string_view config) {
  ManifestAttrs a;
  if (config.empty()) return a;
  auto j = nlohmann::json::parse(config.begin(), config.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return a;  // not JSON: measured, but no attributes
  auto u16 = [&j](const char* key, std::optional<uint16_t>& out) -> Status {
    if (!j.contains(key)) return ok_status();
    const auto& v = j[key];
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 65535) return invalid_argument("enclave manifest key '{}': expected 0..65535", key);
    out = static_cast<uint16_t>(v.get<uint64_t>());
    return ok_status();
  };
  TENET_RETURN_IF_ERROR(u16("isv_prod_id", a.isv_prod_id));
  TENET_RETURN_IF_ERROR(u16("isv_svn", a.isv_svn));
  if (j.contains("debug")) {
    if (!j["debug"].is_boolean()) return invalid_argument("enclave manifest key 'debug': expected true or false");
    a.debug = j["debug"].get<bool>();
  }
  return a;
}

}  // namespace

std::string sim_root_cert_path(const std::string& dir) { return join(dir, kRootCert); }
std::string sim_signer_key_path(const std::string& dir) { return join(dir, kSignerKey); }

EnclaveIdentity identity_of(const Quote& q) {
  EnclaveIdentity id;
  if (q.tdx) {
    id.mrenclave.assign(q.tdx->mr_td.begin(), q.tdx->mr_td.end());
    id.debug = q.tdx->debug();
    id.tdx = true;
    return id;
  }
  id.mrenclave.assign(q.sgx.mr_enclave.begin(), q.sgx.mr_enclave.end());
  id.mrsigner.assign(q.sgx.mr_signer.begin(), q.sgx.mr_signer.end());
  id.isv_prod_id = q.sgx.isv_prod_id;
  id.isv_svn = q.sgx.isv_svn;
  id.debug = q.sgx.debug();
  return id;
}

Status sim_provision(const std::string& dir) {
  if (std::filesystem::exists(join(dir, kRootCert)) || std::filesystem::exists(join(dir, kSecret))) {
    return failed_precondition("'{}' already holds a sim platform; remove it or pick another --dir", dir);
  }
  TENET_RETURN_IF_ERROR(make_dir_private(dir));

  TENET_ASSIGN_OR_RETURN(auto root_key, crypto::PrivateKey::generate(crypto::Curve::kP256));
  CertSpec root_spec;
  root_spec.common_name = kSimRootCommonName;
  root_spec.organization = "tenet sim platform";
  root_spec.is_ca = true;
  root_spec.validity_days = 3650;
  TENET_ASSIGN_OR_RETURN(auto root, make_certificate(root_spec, root_key, nullptr, root_key));

  TENET_ASSIGN_OR_RETURN(auto pck_key, crypto::PrivateKey::generate(crypto::Curve::kP256));
  CertSpec pck_spec;
  pck_spec.common_name = "tenet sim PCK certificate (INSECURE)";
  pck_spec.organization = "tenet sim platform";
  pck_spec.is_ca = false;
  pck_spec.validity_days = 3650;
  TENET_ASSIGN_OR_RETURN(auto pck, make_certificate(pck_spec, pck_key, root.get(), root_key));

  TENET_ASSIGN_OR_RETURN(auto signer_key, crypto::PrivateKey::generate(crypto::Curve::kP256));
  TENET_ASSIGN_OR_RETURN(Bytes secret, crypto::random_bytes(32));

  TENET_ASSIGN_OR_RETURN(std::string root_pem, crypto::x509_to_pem(root.get()));
  TENET_ASSIGN_OR_RETURN(std::string pck_pem, crypto::x509_to_pem(pck.get()));
  TENET_ASSIGN_OR_RETURN(std::string root_key_pem, root_key.to_pem());
  TENET_ASSIGN_OR_RETURN(std::string pck_key_pem, pck_key.to_pem());
  TENET_ASSIGN_OR_RETURN(std::string signer_pem, signer_key.to_pem());
  TENET_RETURN_IF_ERROR(crypto::write_file(join(dir, kRootKey), root_key_pem, 0600));
  TENET_RETURN_IF_ERROR(crypto::write_file(join(dir, kPckKey), pck_key_pem, 0600));
  TENET_RETURN_IF_ERROR(crypto::write_file(join(dir, kSignerKey), signer_pem, 0600));
  TENET_RETURN_IF_ERROR(crypto::write_file(join(dir, kSecret), crypto::as_chars(secret), 0600));
  TENET_RETURN_IF_ERROR(crypto::write_file(join(dir, kPckCert), pck_pem, 0644));
  TENET_RETURN_IF_ERROR(crypto::write_file(join(dir, kRootCert), root_pem, 0644));
  crypto::secure_wipe(root_key_pem);
  crypto::secure_wipe(pck_key_pem);
  crypto::secure_wipe(signer_pem);
  crypto::secure_wipe(secret);
  return ok_status();
}

Result<crypto::Sha256Digest> measure_enclave(const std::string& binary_path, ByteSpan config) {
  const int fd = ::open(binary_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found("cannot open enclave binary '{}': {}", binary_path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument("enclave binary '{}' is not a regular file", binary_path);
  }
  crypto::Sha256 h;
  h.update(std::string_view("tenet-sim-mrenclave-v1"));
  put_u64le(h, static_cast<uint64_t>(st.st_size));
  std::vector<uint8_t> buf(1 << 16);
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return internal_error("reading '{}': {}", binary_path, std::strerror(e));
    }
    if (n == 0) break;
    h.update(ByteSpan(buf.data(), static_cast<size_t>(n)));
    total += static_cast<uint64_t>(n);
  }
  ::close(fd);
  if (total != static_cast<uint64_t>(st.st_size)) return data_loss("'{}' changed while it was measured", binary_path);
  put_u64le(h, config.size());
  h.update(config);
  return h.finish();
}

Result<crypto::Sha256Digest> mrsigner_of_key(const crypto::PublicKey& signer) {
  TENET_ASSIGN_OR_RETURN(Bytes spki, signer.spki_der());
  return crypto::sha256(spki);
}

Result<std::unique_ptr<Platform>> open_sim_platform(const SimEnclaveOptions& o) {
  if (o.platform_dir.empty()) return invalid_argument("sim platform: no platform directory (run `tenet sim init --dir D`)");
  const std::string& dir = o.platform_dir;
  auto p = std::make_unique<SimPlatform>();

  auto secret = crypto::read_file(join(dir, kSecret), 64);
  if (!secret.ok()) return secret.status().with_context("sim platform (run `tenet sim init --dir D` first)");
  if (secret->size() != 32) return data_loss("sim platform secret '{}' is {} bytes, expected 32", join(dir, kSecret), secret->size());
  p->platform_secret_.assign(secret->begin(), secret->end());
  crypto::secure_wipe(*secret);

  TENET_ASSIGN_OR_RETURN(auto pck_key, load_key(join(dir, kPckKey)));
  TENET_ASSIGN_OR_RETURN(std::string pck_pem, crypto::read_file(join(dir, kPckCert), 1 << 16));
  TENET_ASSIGN_OR_RETURN(std::string root_pem, crypto::read_file(sim_root_cert_path(dir), 1 << 16));
  const std::string signer_path = o.signer_key_path.empty() ? sim_signer_key_path(dir) : o.signer_key_path;
  TENET_ASSIGN_OR_RETURN(auto signer_key, load_key(signer_path));
  TENET_ASSIGN_OR_RETURN(auto signer_pub, signer_key.public_key());

  TENET_ASSIGN_OR_RETURN(auto attrs, manifest_attrs(o.config));
  TENET_ASSIGN_OR_RETURN(auto mrenclave, measure_enclave(o.binary_path, crypto::as_bytes(o.config)));
  TENET_ASSIGN_OR_RETURN(auto mrsigner, mrsigner_of_key(signer_pub));

  Quote& q = p->quote_template_;
  q.header.version = 3;
  q.header.att_key_type = kAttKeyTypeEcdsaP256;
  q.header.qe_svn = 1;
  q.header.pce_svn = 1;
  q.header.qe_vendor_id = kSimQeVendorId;
  q.sgx.mr_enclave = mrenclave;
  q.sgx.mr_signer = mrsigner;
  q.sgx.isv_prod_id = o.isv_prod_id.value_or(attrs.isv_prod_id.value_or(0));
  q.sgx.isv_svn = o.isv_svn.value_or(attrs.isv_svn.value_or(0));
  const bool debug = o.debug.value_or(attrs.debug.value_or(false));
  q.sgx.attributes_flags = 0x4 /* MODE64BIT */ | 0x1 /* INIT */ | (debug ? kSgxAttributeDebug : 0);
  q.sgx.attributes_xfrm = 0x3;

  // A fresh attestation key, certified by a sim QE report signed with the PCK key.
  TENET_ASSIGN_OR_RETURN(p->attestation_key_, crypto::PrivateKey::generate(crypto::Curve::kP256));
  TENET_ASSIGN_OR_RETURN(auto att_pub, p->attestation_key_.public_key());
  TENET_ASSIGN_OR_RETURN(Bytes att_raw, att_pub.raw_point());
  if (att_raw.size() != 64) return internal_error("attestation key point of {} bytes", att_raw.size());
  std::memcpy(q.attestation_key.data(), att_raw.data(), 64);
  TENET_ASSIGN_OR_RETURN(q.qe_auth_data, crypto::random_bytes(32));
  q.qe_report.mr_enclave = sim_qe_measurement("mrenclave");
  q.qe_report.mr_signer = sim_qe_measurement("mrsigner");
  q.qe_report.isv_prod_id = 1;
  q.qe_report.isv_svn = 1;
  q.qe_report.attributes_flags = 0x5;
  Bytes bind(att_raw);
  bind.insert(bind.end(), q.qe_auth_data.begin(), q.qe_auth_data.end());
  const auto bind_hash = crypto::sha256(bind);
  std::memcpy(q.qe_report.report_data.data(), bind_hash.data(), 32);
  TENET_ASSIGN_OR_RETURN(Bytes qe_sig_der, pck_key.sign(serialize_report_body(q.qe_report)));
  TENET_ASSIGN_OR_RETURN(Bytes qe_sig_raw, crypto::ecdsa_der_to_raw(qe_sig_der, 32));
  std::memcpy(q.qe_report_signature.data(), qe_sig_raw.data(), 64);
  q.cert_data_type = kCertDataPckChain;
  const std::string chain = pck_pem + root_pem;
  q.cert_data.assign(chain.begin(), chain.end());
  q.cert_data.push_back('\0');  // as DCAP's PCK chains end
  return std::unique_ptr<Platform>(std::move(p));
}

Result<std::unique_ptr<Platform>> open_platform(const std::string& kind) {
  if (kind == "gramine") return open_gramine_platform();
  if (kind == "tsm") return open_tsm_platform();
  if (kind == "sim") return invalid_argument("the sim platform needs SimEnclaveOptions (open_sim_platform)");
  return invalid_argument("unknown platform '{}' (sim, gramine, tsm)", kind);
}

}  // namespace tenet::attest
