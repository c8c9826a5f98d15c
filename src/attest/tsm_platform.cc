// configfs-tsm evidence (Linux Documentation/ABI/testing/configfs-tsm, 6.7+): per quote, mkdir a
// fresh report entry, write inblob (<= 64 bytes), read outblob, read provider, and compare
// generation before and after reading outblob to detect a concurrent writer; rmdir the entry.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

Result<uint64_t> read_generation(const std::string& entry) {
  TENET_ASSIGN_OR_RETURN(Bytes g, read_pseudo_file(entry + "/generation", 64));
  const std::string s = trim(std::string(crypto::as_chars(g)));
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
    return data_loss("tsm: generation '{}' is not a number", s);
  }
  return std::stoull(s);
}

class TsmPlatform final : public Platform {
 public:
  explicit TsmPlatform(TsmOptions options) : options_(std::move(options)) {}

  std::string name() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return provider_.empty() ? "tsm" : "tsm-" + provider_;
  }
  bool is_secure() const override { return true; }

  Result<Bytes> get_quote(ByteSpan report_data) override {
    if (report_data.size() != kReportDataSize) return invalid_argument("report data is {} bytes, expected 64", report_data.size());
    TENET_ASSIGN_OR_RETURN(Bytes random, crypto::random_bytes(8));
    const std::string entry = options_.root + "/tenet-" + std::to_string(::getpid()) + "-" +
                              std::to_string(counter_.fetch_add(1)) + "-" + crypto::to_hex(random);
    if (::mkdir(entry.c_str(), 0700) != 0) {
      return not_found("tsm: cannot create report entry '{}': {} (is configfs-tsm mounted, and is this a TDX/SEV-SNP guest?)",
                       entry, std::strerror(errno));
    }
    struct Rmdir {
      const std::string& path;
      ~Rmdir() { ::rmdir(path.c_str()); }
    } cleanup{entry};
    if (options_.after_mkdir) options_.after_mkdir(entry);

    TENET_RETURN_IF_ERROR(write_pseudo_file(entry + "/inblob", report_data).with_context("tsm"));
    TENET_ASSIGN_OR_RETURN(uint64_t gen_before, read_generation(entry));
    auto outblob = read_pseudo_file(entry + "/outblob", kMaxQuoteSize);
    if (!outblob.ok()) return outblob.status().with_context("tsm: reading outblob");
    TENET_ASSIGN_OR_RETURN(uint64_t gen_after, read_generation(entry));
    // Our entry is fresh and we wrote inblob once: generation must be 1 throughout.
    if (gen_before != 1 || gen_after != gen_before) {
      return data_loss("tsm: report entry generation went {} -> {} (expected 1): a concurrent writer touched '{}'",
                       gen_before, gen_after, entry);
    }
    TENET_ASSIGN_OR_RETURN(Bytes provider_bytes, read_pseudo_file(entry + "/provider", 64));
    const std::string provider = trim(std::string(crypto::as_chars(provider_bytes)));
    if (provider != "tdx_guest" && provider != "sev_guest") return unimplemented("tsm: provider '{}' (tdx_guest, sev_guest)", provider);
    {
      std::lock_guard<std::mutex> lock(mu_);
      provider_ = provider;
    }
    if (provider == "tdx_guest") {
      auto parsed = parse_quote(*outblob);
      if (!parsed.ok()) return parsed.status().with_context("tsm: the TDX quote in outblob");
      if (!parsed->is_tdx()) return data_loss("tsm: provider tdx_guest returned a non-TDX quote");
      if (!crypto::constant_time_equal(parsed->report_data(), report_data)) {
        return data_loss("tsm: the quote carries other REPORTDATA than inblob");
      }
    }
    // sev_guest: an SNP attestation report, returned as is (verify_quote does not verify SNP).
    return outblob;
  }

  Result<Bytes> sealing_key(SealPolicy, std::string_view) override {
    return unimplemented("tsm: configfs-tsm has no sealing-key interface; obtain keys from the key broker");
  }

  Result<EnclaveIdentity> identity() override {
    const ReportData zero{};
    TENET_ASSIGN_OR_RETURN(Bytes q, get_quote(zero));
    auto parsed = parse_quote(q);
    if (!parsed.ok()) return unimplemented("tsm: identity is only available for TDX quotes");
    return identity_of(*parsed);
  }

 private:
  TsmOptions options_;
  std::atomic<uint64_t> counter_{0};
  mutable std::mutex mu_;
  std::string provider_;
};

}  // namespace

Result<std::unique_ptr<Platform>> open_tsm_platform(const TsmOptions& options) {
  struct stat st {};
  if (::stat(options.root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return not_found("tsm platform: '{}' is not a directory (configfs-tsm needs Linux 6.7+ in a TDX/SEV-SNP guest)", options.root);
  }
  return std::unique_ptr<Platform>(std::make_unique<TsmPlatform>(options));
}

}  // namespace tenet::attest
