// Intel DCAP ECDSA quotes: SGX quote v3 and TDX quote v4, as bytes and as parsed structures.
//
// Layout (Intel SGX ECDSA Quote Library API, appendix A "Quote format"; checked against
// intel/SGXDataCenterAttestationPrimitives and Gramine's sgx_attest.h; all integers little-endian):
//
//   header (48)          version u16 | att_key_type u16 (2 = ECDSA P-256) | tee_type u32 (v4: 0 SGX,
//                        0x81 TDX; v3: reserved) | qe_svn u16 | pce_svn u16 | qe_vendor_id[16] |
//                        user_data[20]
//   SGX report body (384, quote offset 48): cpu_svn[16] | misc_select u32 | reserved[12] |
//                        isv_ext_prod_id[16] | attributes{flags u64, xfrm u64} (@96) |
//                        mr_enclave[32] (@112) | reserved[32] | mr_signer[32] (@176) | reserved[32] |
//                        config_id[64] | isv_prod_id u16 (@304) | isv_svn u16 (@306) |
//                        config_svn u16 | reserved[42] | isv_family_id[16] | report_data[64] (@368)
//   TDX TD report body (584, quote offset 48; v4 with tee_type 0x81): tee_tcb_svn[16] | mr_seam[48]
//                        | mr_signer_seam[48] | seam_attributes u64 | td_attributes u64 | xfam u64 |
//                        mr_td[48] (@184) | mr_config_id[48] | mr_owner[48] | mr_owner_config[48] |
//                        rtmr[4][48] (@376) | report_data[64] (@568)
//   signature_data_len u32, then signature data:
//     ecdsa signature[64] (r||s over header||body, by the attestation key)
//     attestation key[64] (P-256 point x||y)
//     v3: qe_report[384] | qe_report_signature[64] (by the PCK key) | qe_auth_data (u16 size + bytes)
//         | certification data (u16 type | u32 size | bytes); type 5 = PEM chain PCK -> ... -> root
//     v4: certification data of type 6 whose bytes are the v3 tail above (QE report, its signature,
//         auth data, and a nested certification data of type 5)
//
// The QE report binds the attestation key: qe_report.report_data = SHA-256(attestation key ||
// qe_auth_data) followed by 32 zero bytes.
//
// parse_quote() treats its input as hostile: every length is checked against the bytes that are
// actually there, sizes are bounded (kMaxQuoteSize), and bytes after the signature data are
// rejected unless they are zero padding (real TDX quotes arrive zero-padded). It checks
// structure only; signatures and chains are checked by verify_quote() (ratls.h).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "crypto/crypto.h"

namespace tenet::attest {

using crypto::ByteSpan;
using crypto::Bytes;

inline constexpr size_t kQuoteHeaderSize = 48;
inline constexpr size_t kSgxReportBodySize = 384;
inline constexpr size_t kTdxReportBodySize = 584;
inline constexpr size_t kReportDataSize = 64;
inline constexpr size_t kMaxQuoteSize = 64 * 1024;  // real quotes are ~4.6-5 KiB
inline constexpr uint16_t kAttKeyTypeEcdsaP256 = 2;
inline constexpr uint32_t kTeeTypeSgx = 0x00000000;
inline constexpr uint32_t kTeeTypeTdx = 0x00000081;
inline constexpr uint16_t kCertDataPckChain = 5;       // PEM: PCK leaf, intermediate(s), root
inline constexpr uint16_t kCertDataQeReport = 6;       // v4: nested QE report certification data
inline constexpr uint64_t kSgxAttributeDebug = 0x2;    // ATTRIBUTES.FLAGS bit 1
inline constexpr uint64_t kTdAttributeDebug = 0x1;     // TDATTRIBUTES bit 0 (TUD.DEBUG)

// Offsets in the whole quote (tests and documentation; the parser uses the structures).
inline constexpr size_t kQuoteOffsetAttributes = 96;
inline constexpr size_t kQuoteOffsetMrEnclave = 112;
inline constexpr size_t kQuoteOffsetMrSigner = 176;
inline constexpr size_t kQuoteOffsetIsvProdId = 304;
inline constexpr size_t kQuoteOffsetIsvSvn = 306;
inline constexpr size_t kQuoteOffsetReportData = 368;
inline constexpr size_t kQuoteOffsetSignatureLen = 432;
inline constexpr size_t kTdxQuoteOffsetMrTd = 184;
inline constexpr size_t kTdxQuoteOffsetReportData = 568;

// Intel's QE vendor id (939a7233-f79c-4ca9-940a-0db3957f0607) and the sim platform's.
extern const std::array<uint8_t, 16> kIntelQeVendorId;
extern const std::array<uint8_t, 16> kSimQeVendorId;  // "tenet-sim-UNSAFE"

using ReportData = std::array<uint8_t, kReportDataSize>;

struct QuoteHeader {
  uint16_t version = 3;
  uint16_t att_key_type = kAttKeyTypeEcdsaP256;
  uint32_t tee_type = kTeeTypeSgx;
  uint16_t qe_svn = 0;
  uint16_t pce_svn = 0;
  std::array<uint8_t, 16> qe_vendor_id{};
  std::array<uint8_t, 20> user_data{};
};

struct SgxReportBody {
  std::array<uint8_t, 16> cpu_svn{};
  uint32_t misc_select = 0;
  std::array<uint8_t, 16> isv_ext_prod_id{};
  uint64_t attributes_flags = 0;
  uint64_t attributes_xfrm = 0;
  std::array<uint8_t, 32> mr_enclave{};
  std::array<uint8_t, 32> mr_signer{};
  std::array<uint8_t, 64> config_id{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  uint16_t config_svn = 0;
  std::array<uint8_t, 16> isv_family_id{};
  ReportData report_data{};

  bool debug() const { return (attributes_flags & kSgxAttributeDebug) != 0; }
};

struct TdxReportBody {
  std::array<uint8_t, 16> tee_tcb_svn{};
  std::array<uint8_t, 48> mr_seam{};
  std::array<uint8_t, 48> mr_signer_seam{};
  uint64_t seam_attributes = 0;
  uint64_t td_attributes = 0;
  uint64_t xfam = 0;
  std::array<uint8_t, 48> mr_td{};
  std::array<uint8_t, 48> mr_config_id{};
  std::array<uint8_t, 48> mr_owner{};
  std::array<uint8_t, 48> mr_owner_config{};
  std::array<std::array<uint8_t, 48>, 4> rtmr{};
  ReportData report_data{};

  bool debug() const { return (td_attributes & kTdAttributeDebug) != 0; }
};

struct Quote {
  QuoteHeader header;
  SgxReportBody sgx;                 // the enclave's report (header.tee_type == SGX)
  std::optional<TdxReportBody> tdx;  // set for TDX v4 quotes (then `sgx` is unused)
  std::array<uint8_t, 64> signature{};        // r || s over signed_bytes()
  std::array<uint8_t, 64> attestation_key{};  // x || y, P-256
  SgxReportBody qe_report;                    // the quoting enclave's report
  std::array<uint8_t, 64> qe_report_signature{};  // r || s over the 384 QE report bytes, by PCK
  Bytes qe_auth_data;
  uint16_t cert_data_type = kCertDataPckChain;  // after unwrapping type 6 in v4
  Bytes cert_data;                              // type 5: PEM chain (may end with a NUL)

  // Set by parse_quote: the exact bytes the signatures cover (reserved fields included), so
  // verification never depends on re-serialization.
  Bytes raw_signed;     // header || report body
  Bytes raw_qe_report;  // the 384 QE report bytes

  bool is_tdx() const { return tdx.has_value(); }
  const ReportData& report_data() const { return tdx ? tdx->report_data : sgx.report_data; }
  bool debug() const { return tdx ? tdx->debug() : sgx.debug(); }
};

Bytes serialize_report_body(const SgxReportBody& body);  // 384 bytes
Result<SgxReportBody> parse_report_body(ByteSpan bytes);  // exactly 384 bytes
Bytes serialize_tdx_report_body(const TdxReportBody& body);  // 584 bytes
Result<TdxReportBody> parse_tdx_report_body(ByteSpan bytes);  // exactly 584 bytes

// header || report body: what the attestation key signs.
Bytes quote_signed_bytes(const Quote& quote);

// Serializes v3 (SGX) or v4 (SGX or TDX; type 6 wrapping) per quote.header.version.
Result<Bytes> serialize_quote(const Quote& quote);

// Bounds-checked parse of an SGX v3/v4 or TDX v4 ECDSA-P256 quote. Structure only.
Result<Quote> parse_quote(ByteSpan bytes);

// One line for logs and the CLI: "SGX v3 mrenclave=… mrsigner=… prodid=… svn=… debug=…".
std::string describe_quote(const Quote& quote);

}  // namespace tenet::attest
