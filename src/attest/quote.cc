#include "attest/quote.h"

#include <cstring>

#include <fmt/format.h>

namespace tenet::attest {

const std::array<uint8_t, 16> kIntelQeVendorId = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                                  0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
const std::array<uint8_t, 16> kSimQeVendorId = {'t', 'e', 'n', 'e', 't', '-', 's', 'i',
                                                'm', '-', 'U', 'N', 'S', 'A', 'F', 'E'};

namespace {

// Bounds-checked little-endian reader over hostile bytes. Every read checks the remaining size
// first; the first failure sticks and names the field.
class Reader {
 public:
  explicit Reader(ByteSpan data) : data_(data) {}

  template <size_t N>
  void array(std::array<uint8_t, N>& out, const char* field) {
    if (const uint8_t* p = take(N, field)) std::memcpy(out.data(), p, N);
  }
  ByteSpan span(size_t n, const char* field) {
    const uint8_t* p = take(n, field);
    return p ? ByteSpan(p, n) : ByteSpan();
  }
  uint16_t u16(const char* field) {
    const uint8_t* p = take(2, field);
    return p ? static_cast<uint16_t>(p[0] | (p[1] << 8)) : 0;
  }
  uint32_t u32(const char* field) {
    const uint8_t* p = take(4, field);
    return p ? static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                   (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24)
             : 0;
  }
  uint64_t u64(const char* field) {
    const uint64_t lo = u32(field);
    const uint64_t hi = u32(field);
    return lo | (hi << 32);
  }
  void skip(size_t n, const char* field) { take(n, field); }

  size_t remaining() const { return data_.size() - pos_; }
  size_t pos() const { return pos_; }
  const Status& status() const { return status_; }
  bool ok() const { return status_.ok(); }

 private:
  const uint8_t* take(size_t n, const char* field) {
    if (!status_.ok()) return nullptr;
    if (n > data_.size() - pos_) {
      status_ = data_loss("quote truncated: {} needs {} bytes at offset {}, {} left", field, n, pos_,
                          data_.size() - pos_);
      return nullptr;
    }
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }

  ByteSpan data_;
  size_t pos_ = 0;
  Status status_;
};

class Writer {
 public:
  template <size_t N>
  void array(const std::array<uint8_t, N>& a) { out_.insert(out_.end(), a.begin(), a.end()); }
  void bytes(ByteSpan b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void u16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v));
    out_.push_back(static_cast<uint8_t>(v >> 8));
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    u32(static_cast<uint32_t>(v));
    u32(static_cast<uint32_t>(v >> 32));
  }
  void zeros(size_t n) { out_.insert(out_.end(), n, 0); }
  Bytes& out() { return out_; }

 private:
  Bytes out_;
};

void write_header(Writer& w, const QuoteHeader& h) {
  w.u16(h.version);
  w.u16(h.att_key_type);
  w.u32(h.tee_type);
  w.u16(h.qe_svn);
  w.u16(h.pce_svn);
  w.array(h.qe_vendor_id);
  w.array(h.user_data);
}

void read_header(Reader& r, QuoteHeader& h) {
  h.version = r.u16("header.version");
  h.att_key_type = r.u16("header.att_key_type");
  h.tee_type = r.u32("header.tee_type");
  h.qe_svn = r.u16("header.qe_svn");
  h.pce_svn = r.u16("header.pce_svn");
  r.array(h.qe_vendor_id, "header.qe_vendor_id");
  r.array(h.user_data, "header.user_data");
}

void write_sgx_body(Writer& w, const SgxReportBody& b) {
  w.array(b.cpu_svn);
  w.u32(b.misc_select);
  w.zeros(12);
  w.array(b.isv_ext_prod_id);
  w.u64(b.attributes_flags);
  w.u64(b.attributes_xfrm);
  w.array(b.mr_enclave);
  w.zeros(32);
  w.array(b.mr_signer);
  w.zeros(32);
  w.array(b.config_id);
  w.u16(b.isv_prod_id);
  w.u16(b.isv_svn);
  w.u16(b.config_svn);
  w.zeros(42);
  w.array(b.isv_family_id);
  w.array(b.report_data);
}

// Reserved fields are not checked for zero: real quotes are accepted as the hardware made them,
// and the signature covers every byte anyway.
void read_sgx_body(Reader& r, SgxReportBody& b, const char* what) {
  (void)what;
  r.array(b.cpu_svn, "report.cpu_svn");
  b.misc_select = r.u32("report.misc_select");
  r.skip(12, "report.reserved1");
  r.array(b.isv_ext_prod_id, "report.isv_ext_prod_id");
  b.attributes_flags = r.u64("report.attributes.flags");
  b.attributes_xfrm = r.u64("report.attributes.xfrm");
  r.array(b.mr_enclave, "report.mr_enclave");
  r.skip(32, "report.reserved2");
  r.array(b.mr_signer, "report.mr_signer");
  r.skip(32, "report.reserved3");
  r.array(b.config_id, "report.config_id");
  b.isv_prod_id = r.u16("report.isv_prod_id");
  b.isv_svn = r.u16("report.isv_svn");
  b.config_svn = r.u16("report.config_svn");
  r.skip(42, "report.reserved4");
  r.array(b.isv_family_id, "report.isv_family_id");
  r.array(b.report_data, "report.report_data");
}

void write_tdx_body(Writer& w, const TdxReportBody& b) {
  w.array(b.tee_tcb_svn);
  w.array(b.mr_seam);
  w.array(b.mr_signer_seam);
  w.u64(b.seam_attributes);
  w.u64(b.td_attributes);
  w.u64(b.xfam);
  w.array(b.mr_td);
  w.array(b.mr_config_id);
  w.array(b.mr_owner);
  w.array(b.mr_owner_config);
  for (const auto& r : b.rtmr) w.array(r);
  w.array(b.report_data);
}

void read_tdx_body(Reader& r, TdxReportBody& b) {
  r.array(b.tee_tcb_svn, "td_report.tee_tcb_svn");
  r.array(b.mr_seam, "td_report.mr_seam");
  r.array(b.mr_signer_seam, "td_report.mr_signer_seam");
  b.seam_attributes = r.u64("td_report.seam_attributes");
  b.td_attributes = r.u64("td_report.td_attributes");
  b.xfam = r.u64("td_report.xfam");
  r.array(b.mr_td, "td_report.mr_td");
  r.array(b.mr_config_id, "td_report.mr_config_id");
  r.array(b.mr_owner, "td_report.mr_owner");
  r.array(b.mr_owner_config, "td_report.mr_owner_config");
  for (auto& x : b.rtmr) r.array(x, "td_report.rtmr");
  r.array(b.report_data, "td_report.report_data");
}

// QE report, its signature, auth data, certification data (the v3 tail; the body of v4's type 6).
Status write_qe_tail(Writer& w, const Quote& q) {
  write_sgx_body(w, q.qe_report);
  w.array(q.qe_report_signature);
  if (q.qe_auth_data.size() > UINT16_MAX) return invalid_argument("qe_auth_data of {} bytes", q.qe_auth_data.size());
  w.u16(static_cast<uint16_t>(q.qe_auth_data.size()));
  w.bytes(q.qe_auth_data);
  if (q.cert_data.size() > kMaxQuoteSize) return invalid_argument("cert_data of {} bytes", q.cert_data.size());
  w.u16(q.cert_data_type);
  w.u32(static_cast<uint32_t>(q.cert_data.size()));
  w.bytes(q.cert_data);
  return ok_status();
}

Status read_qe_tail(ByteSpan data, Quote& q) {
  Reader r(data);
  if (r.remaining() >= kSgxReportBodySize) q.raw_qe_report.assign(data.begin(), data.begin() + kSgxReportBodySize);
  read_sgx_body(r, q.qe_report, "qe_report");
  r.array(q.qe_report_signature, "qe_report_signature");
  const uint16_t auth_size = r.u16("qe_auth_data.size");
  ByteSpan auth = r.span(auth_size, "qe_auth_data");
  q.qe_auth_data.assign(auth.begin(), auth.end());
  q.cert_data_type = r.u16("certification_data.type");
  const uint32_t cert_size = r.u32("certification_data.size");
  if (r.ok() && cert_size != r.remaining()) {
    return data_loss("quote: certification_data.size is {} but {} bytes follow", cert_size, r.remaining());
  }
  ByteSpan cert = r.span(cert_size, "certification_data");
  TENET_RETURN_IF_ERROR(r.status());
  q.cert_data.assign(cert.begin(), cert.end());
  return ok_status();
}

}  // namespace

Bytes serialize_report_body(const SgxReportBody& body) {
  Writer w;
  write_sgx_body(w, body);
  return std::move(w.out());
}

Result<SgxReportBody> parse_report_body(ByteSpan bytes) {
  if (bytes.size() != kSgxReportBodySize) return data_loss("SGX report body is {} bytes, expected 384", bytes.size());
  Reader r(bytes);
  SgxReportBody b;
  read_sgx_body(r, b, "report");
  TENET_RETURN_IF_ERROR(r.status());
  return b;
}

Bytes serialize_tdx_report_body(const TdxReportBody& body) {
  Writer w;
  write_tdx_body(w, body);
  return std::move(w.out());
}

Result<TdxReportBody> parse_tdx_report_body(ByteSpan bytes) {
  if (bytes.size() != kTdxReportBodySize) return data_loss("TD report body is {} bytes, expected 584", bytes.size());
  Reader r(bytes);
  TdxReportBody b;
  read_tdx_body(r, b);
  TENET_RETURN_IF_ERROR(r.status());
  return b;
}

Bytes quote_signed_bytes(const Quote& q) {
  Writer w;
  write_header(w, q.header);
  if (q.tdx) {
    write_tdx_body(w, *q.tdx);
  } else {
    write_sgx_body(w, q.sgx);
  }
  return std::move(w.out());
}

Result<Bytes> serialize_quote(const Quote& q) {
  if (q.header.version != 3 && q.header.version != 4) return invalid_argument("quote version {} not supported", q.header.version);
  if (q.tdx && (q.header.version != 4 || q.header.tee_type != kTeeTypeTdx)) {
    return invalid_argument("TDX report body needs a v4 header with tee_type 0x81");
  }
  Writer sig;
  sig.array(q.signature);
  sig.array(q.attestation_key);
  if (q.header.version == 3) {
    TENET_RETURN_IF_ERROR(write_qe_tail(sig, q));
  } else {
    Writer inner;
    TENET_RETURN_IF_ERROR(write_qe_tail(inner, q));
    sig.u16(kCertDataQeReport);
    sig.u32(static_cast<uint32_t>(inner.out().size()));
    sig.bytes(inner.out());
  }
  Bytes out = quote_signed_bytes(q);
  Writer len;
  len.u32(static_cast<uint32_t>(sig.out().size()));
  out.insert(out.end(), len.out().begin(), len.out().end());
  out.insert(out.end(), sig.out().begin(), sig.out().end());
  if (out.size() > kMaxQuoteSize) return invalid_argument("quote of {} bytes exceeds {}", out.size(), kMaxQuoteSize);
  return out;
}

Result<Quote> parse_quote(ByteSpan bytes) {
  if (bytes.size() > kMaxQuoteSize) return out_of_range("quote of {} bytes exceeds the {} byte limit", bytes.size(), kMaxQuoteSize);
  Reader r(bytes);
  Quote q;
  read_header(r, q.header);
  TENET_RETURN_IF_ERROR(r.status());
  if (q.header.version != 3 && q.header.version != 4) {
    return unimplemented("quote version {} (supported: 3, 4)", q.header.version);
  }
  if (q.header.att_key_type != kAttKeyTypeEcdsaP256) {
    return unimplemented("quote attestation key type {} (supported: 2, ECDSA P-256)", q.header.att_key_type);
  }
  if (q.header.version == 4 && q.header.tee_type == kTeeTypeTdx) {
    q.tdx.emplace();
    read_tdx_body(r, *q.tdx);
  } else if (q.header.version == 3 || q.header.tee_type == kTeeTypeSgx) {
    read_sgx_body(r, q.sgx, "report");
  } else {
    return unimplemented("quote tee_type 0x{:x}", q.header.tee_type);
  }
  TENET_RETURN_IF_ERROR(r.status());
  q.raw_signed.assign(bytes.begin(), bytes.begin() + r.pos());
  const uint32_t sig_len = r.u32("signature_data_len");
  TENET_RETURN_IF_ERROR(r.status());
  if (sig_len > r.remaining()) {
    return data_loss("quote: signature_data_len is {} but only {} bytes follow", sig_len, r.remaining());
  }
  // Some quote generators hand out the quote in a zero-padded buffer: accept zero padding only.
  const ByteSpan padding = bytes.subspan(r.pos() + sig_len);
  for (uint8_t b : padding) {
    if (b != 0) return data_loss("quote: {} bytes after the signature data are not zero padding", padding.size());
  }
  Reader s(bytes.subspan(r.pos(), sig_len));
  s.array(q.signature, "signature");
  s.array(q.attestation_key, "attestation_key");
  TENET_RETURN_IF_ERROR(s.status());
  ByteSpan tail = s.span(s.remaining(), "signature tail");
  if (q.header.version == 3) {
    TENET_RETURN_IF_ERROR(read_qe_tail(tail, q));
  } else {
    Reader t(tail);
    const uint16_t type = t.u16("certification_data.type");
    const uint32_t size = t.u32("certification_data.size");
    TENET_RETURN_IF_ERROR(t.status());
    if (type != kCertDataQeReport) return unimplemented("v4 quote certification data type {} (expected 6)", type);
    if (size != t.remaining()) {
      return data_loss("quote: certification_data.size is {} but {} bytes follow", size, t.remaining());
    }
    TENET_RETURN_IF_ERROR(read_qe_tail(t.span(size, "qe report certification data"), q));
  }
  return q;
}

std::string describe_quote(const Quote& q) {
  if (q.tdx) {
    return fmt::format("TDX v{} mrtd={} debug={}", q.header.version, crypto::to_hex(q.tdx->mr_td),
                       q.tdx->debug() ? "yes" : "no");
  }
  return fmt::format("SGX v{} mrenclave={} mrsigner={} isv_prod_id={} isv_svn={} debug={}", q.header.version,
                     crypto::to_hex(q.sgx.mr_enclave), crypto::to_hex(q.sgx.mr_signer), q.sgx.isv_prod_id,
                     q.sgx.isv_svn, q.sgx.debug() ? "yes" : "no");
}

}  // namespace tenet::attest
