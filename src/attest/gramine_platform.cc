// Gramine-SGX evidence through /dev/attestation (Gramine docs, "Attestation and Secret
// Provisioning": attestation_type, user_report_data, quote, report, keys/_sgx_mrenclave,
// keys/_sgx_mrsigner). Tested against a fake directory tree (tests/unit/attest/platforms_test.cc).
#include <cstring>
#include <mutex>

#include "attest/file_io.h"
#include "attest/platform.h"

namespace tenet::attest {

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

class GraminePlatform final : public Platform {
 public:
  explicit GraminePlatform(std::string root) : root_(std::move(root)) {}

  std::string name() const override { return "gramine-sgx"; }
  bool is_secure() const override { return true; }

  Result<Bytes> get_quote(ByteSpan report_data) override {
    if (report_data.size() != kReportDataSize) return invalid_argument("report data is {} bytes, expected 64", report_data.size());
    TENET_RETURN_IF_ERROR(check_dcap());
    std::lock_guard<std::mutex> lock(mu_);
    TENET_RETURN_IF_ERROR(write_pseudo_file(path("user_report_data"), report_data).with_context("gramine"));
    auto quote = read_pseudo_file(path("quote"), kMaxQuoteSize);
    if (!quote.ok()) return quote.status().with_context("gramine: reading the quote");
    // Parse it here too: a malformed quote or another thread's REPORTDATA is caught at the source.
    auto parsed = parse_quote(*quote);
    if (!parsed.ok()) return parsed.status().with_context("gramine: the quote from " + path("quote"));
    if (!crypto::constant_time_equal(parsed->report_data(), report_data)) {
      return data_loss("gramine: the quote carries other REPORTDATA than was written (concurrent writer?)");
    }
    return quote;
  }

  Result<Bytes> sealing_key(SealPolicy policy, std::string_view label) override {
    const std::string p = path(policy == SealPolicy::kMrEnclave ? "keys/_sgx_mrenclave" : "keys/_sgx_mrsigner");
    auto key = read_pseudo_file(p, 64);
    if (!key.ok()) return key.status().with_context("gramine sealing key");
    if (key->size() != 16) return data_loss("gramine sealing key '{}' is {} bytes, expected 16", p, key->size());
    // Gramine's keys are 128-bit; stretch with HKDF and bind the label.
    auto out = crypto::hkdf_sha256(*key, crypto::as_bytes("tenet-gramine-sealing-v1"), crypto::as_bytes(label), 32);
    crypto::secure_wipe(*key);
    return out;
  }

  Result<EnclaveIdentity> identity() override {
    std::lock_guard<std::mutex> lock(mu_);
    const ReportData zero{};
    TENET_RETURN_IF_ERROR(write_pseudo_file(path("user_report_data"), zero).with_context("gramine"));
    // sgx_report_t: 384-byte body, 32-byte key id, 16-byte MAC.
    auto report = read_pseudo_file(path("report"), 4096);
    if (!report.ok()) return report.status().with_context("gramine: reading the local report");
    if (report->size() < kSgxReportBodySize) return data_loss("gramine: local report of {} bytes", report->size());
    TENET_ASSIGN_OR_RETURN(SgxReportBody body, parse_report_body(ByteSpan(report->data(), kSgxReportBodySize)));
    Quote q;
    q.sgx = body;
    return identity_of(q);
  }

 private:
  std::string path(const char* leaf) const { return root_ + "/" + leaf; }

  Status check_dcap() const {
    auto type = read_pseudo_file(path("attestation_type"), 64);
    if (!type.ok()) return type.status().with_context("gramine: is this running inside Gramine-SGX?");
    const std::string t = trim(std::string(crypto::as_chars(*type)));
    if (t == "dcap") return ok_status();
    if (t == "none") {
      return failed_precondition("gramine: attestation_type is 'none': set sgx.remote_attestation = \"dcap\" in the manifest");
    }
    return unimplemented("gramine: attestation_type '{}' (tenet supports dcap)", t);
  }

  std::string root_;
  std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<Platform>> open_gramine_platform(const GramineOptions& options) {
  auto type = read_pseudo_file(options.root + "/attestation_type", 64);
  if (!type.ok()) return type.status().with_context("gramine platform: no " + options.root + " (not inside Gramine?)");
  return std::unique_ptr<Platform>(std::make_unique<GraminePlatform>(options.root));
}

}  // namespace tenet::attest
