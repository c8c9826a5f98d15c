// Quote layout: round trips, real DCAP quotes (SGX v3, TDX v4), and hostile lengths.
#include <cstring>

#include "attest/quote.h"
#include "attest/ratls.h"
#include "attest_test_util.h"
#include "real_quotes.h"

namespace tenet::attest {
namespace {

using testing::value_or_die;

Bytes hex(const char* h) { return value_or_die(crypto::from_hex(h), "hex"); }

Quote sample_quote() {
  Quote q;
  q.header.qe_vendor_id = kSimQeVendorId;
  for (size_t i = 0; i < 32; ++i) {
    q.sgx.mr_enclave[i] = static_cast<uint8_t>(i);
    q.sgx.mr_signer[i] = static_cast<uint8_t>(0x80 + i);
  }
  q.sgx.isv_prod_id = 0x1234;
  q.sgx.isv_svn = 0x5678;
  q.sgx.attributes_flags = kSgxAttributeDebug | 0x5;
  for (size_t i = 0; i < 64; ++i) q.sgx.report_data[i] = static_cast<uint8_t>(0xc0 ^ i);
  q.qe_auth_data = Bytes(32, 0x11);
  const std::string chain = "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n";
  q.cert_data.assign(chain.begin(), chain.end());
  return q;
}

TEST(QuoteTest, OffsetsMatchTheDcapLayout) {
  const Quote q = sample_quote();
  const Bytes b = value_or_die(serialize_quote(q), "serialize");
  EXPECT_EQ(b[0], 3);
  EXPECT_EQ(b[2], 2);
  EXPECT_EQ(std::memcmp(b.data() + kQuoteOffsetMrEnclave, q.sgx.mr_enclave.data(), 32), 0);
  EXPECT_EQ(std::memcmp(b.data() + kQuoteOffsetMrSigner, q.sgx.mr_signer.data(), 32), 0);
  EXPECT_EQ(b[kQuoteOffsetIsvProdId], 0x34);
  EXPECT_EQ(b[kQuoteOffsetIsvProdId + 1], 0x12);
  EXPECT_EQ(b[kQuoteOffsetIsvSvn], 0x78);
  EXPECT_EQ(b[kQuoteOffsetAttributes] & kSgxAttributeDebug, kSgxAttributeDebug);
  EXPECT_EQ(std::memcmp(b.data() + kQuoteOffsetReportData, q.sgx.report_data.data(), 64), 0);
  uint32_t sig_len = 0;
  std::memcpy(&sig_len, b.data() + kQuoteOffsetSignatureLen, 4);
  EXPECT_EQ(sig_len, b.size() - kQuoteOffsetSignatureLen - 4);
  EXPECT_EQ(b.size(), 436 + 64 + 64 + 384 + 64 + 2 + 32 + 6 + q.cert_data.size());
}

TEST(QuoteTest, RoundTripV3AndV4) {
  for (uint16_t version : {3, 4}) {
    Quote q = sample_quote();
    q.header.version = version;
    const Bytes b = value_or_die(serialize_quote(q), "serialize");
    const Quote p = value_or_die(parse_quote(b), "parse");
    EXPECT_EQ(p.header.version, version);
    EXPECT_EQ(p.sgx.mr_enclave, q.sgx.mr_enclave);
    EXPECT_EQ(p.sgx.mr_signer, q.sgx.mr_signer);
    EXPECT_EQ(p.sgx.isv_prod_id, q.sgx.isv_prod_id);
    EXPECT_EQ(p.sgx.isv_svn, q.sgx.isv_svn);
    EXPECT_TRUE(p.debug());
    EXPECT_EQ(p.report_data(), q.sgx.report_data);
    EXPECT_EQ(p.qe_auth_data, q.qe_auth_data);
    EXPECT_EQ(p.cert_data, q.cert_data);
    EXPECT_EQ(value_or_die(serialize_quote(p), "reserialize"), b);
    EXPECT_EQ(p.raw_signed, quote_signed_bytes(q));
  }
}

TEST(QuoteTest, TdxRoundTrip) {
  Quote q = sample_quote();
  q.header.version = 4;
  q.header.tee_type = kTeeTypeTdx;
  q.tdx.emplace();
  q.tdx->mr_td.fill(0x42);
  q.tdx->report_data.fill(0x17);
  q.tdx->td_attributes = kTdAttributeDebug;
  const Bytes b = value_or_die(serialize_quote(q), "serialize");
  EXPECT_EQ(b[kTdxQuoteOffsetMrTd], 0x42);
  EXPECT_EQ(b[kTdxQuoteOffsetReportData], 0x17);
  const Quote p = value_or_die(parse_quote(b), "parse");
  ASSERT_TRUE(p.is_tdx());
  EXPECT_EQ(p.tdx->mr_td, q.tdx->mr_td);
  EXPECT_TRUE(p.debug());
}

TEST(QuoteTest, EveryTruncationIsRejected) {
  const Bytes b = value_or_die(serialize_quote(sample_quote()), "serialize");
  for (size_t len = 0; len < b.size(); ++len) {
    auto r = parse_quote(ByteSpan(b.data(), len));
    ASSERT_FALSE(r.ok()) << "truncated to " << len << " bytes parsed";
  }
}

TEST(QuoteTest, OversizedLengthFieldsAreRejected) {
  const Quote q = sample_quote();
  const Bytes b = value_or_die(serialize_quote(q), "serialize");
  const size_t auth_size_at = 436 + 64 + 64 + 384 + 64;
  const size_t cert_size_at = auth_size_at + 2 + 32 + 2;
  struct Case {
    size_t at;
    size_t width;
  };
  for (Case c : {Case{kQuoteOffsetSignatureLen, 4}, Case{auth_size_at, 2}, Case{cert_size_at, 4}}) {
    for (uint8_t fill : {0xff, 0x7f}) {
      Bytes bad = b;
      std::memset(bad.data() + c.at, fill, c.width);
      auto r = parse_quote(bad);
      EXPECT_FALSE(r.ok()) << "length at " << c.at;
    }
  }
  EXPECT_FALSE(parse_quote(Bytes(kMaxQuoteSize + 1, 0)).ok());
}

TEST(QuoteTest, ZeroPaddingIsAcceptedOtherTrailingBytesAreNot) {
  Bytes b = value_or_die(serialize_quote(sample_quote()), "serialize");
  b.insert(b.end(), 70, 0);
  EXPECT_TRUE(parse_quote(b).ok());
  b.back() = 1;
  EXPECT_FALSE(parse_quote(b).ok());
}

// A real Gramine-style SGX DCAP quote: the same parser reads it, and the same signature path
// verifies the attestation key, the QE report, and the PCK chain to the Intel SGX Root CA.
TEST(QuoteTest, RealSgxDcapQuoteParsesAndVerifies) {
  const Bytes b = hex(kRealSgxQuoteHex);
  const Quote q = value_or_die(parse_quote(b), "parse");
  EXPECT_EQ(q.header.version, 3);
  EXPECT_EQ(q.header.qe_vendor_id, kIntelQeVendorId);
  EXPECT_FALSE(q.is_tdx());
  EXPECT_EQ(q.cert_data_type, kCertDataPckChain);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(q.sgx.report_data.data())), "Hello, world!");
  EXPECT_EQ(crypto::to_hex(q.sgx.mr_enclave).substr(0, 8), "33d8736d");
  EXPECT_EQ(q.sgx.attributes_flags & kSgxAttributeDebug, 0u);

  auto chain = value_or_die(crypto::x509_chain_from_pem(crypto::as_chars(q.cert_data)), "chain");
  ASSERT_EQ(chain.size(), 3u);
  Policy p;
  p.source = "real quote";
  p.mrenclave.emplace_back(q.sgx.mr_enclave.begin(), q.sgx.mr_enclave.end());
  p.trusted_roots_pem.push_back(value_or_die(crypto::x509_to_pem(chain.back().get()), "root"));
  auto v = verify_quote(b, p);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_FALSE(v->insecure);
  EXPECT_EQ(v->platform, "sgx-dcap");
  EXPECT_NE(v->root_subject.find("Intel SGX Root CA"), std::string::npos);

  // The same quote against a sim root fails at the chain, not before.
  testing::SimWorld world;
  p.trusted_roots_pem = {world.root_pem()};
  testing::expect_stage(verify_quote(b, p).status(), VerifyStage::kPlatformChain);
}

TEST(QuoteTest, RealTdxQuoteParses) {
  const Bytes b = hex(kRealTdxQuoteHex);
  const Quote q = value_or_die(parse_quote(b), "parse");
  ASSERT_TRUE(q.is_tdx());
  EXPECT_EQ(q.header.version, 4);
  EXPECT_EQ(std::memcmp(q.tdx->mr_td.data(), b.data() + kTdxQuoteOffsetMrTd, 48), 0);
  EXPECT_EQ(std::memcmp(q.tdx->report_data.data(), b.data() + kTdxQuoteOffsetReportData, 64), 0);
  EXPECT_EQ(q.cert_data_type, kCertDataPckChain);
  auto chain = value_or_die(crypto::x509_chain_from_pem(crypto::as_chars(q.cert_data)), "chain");
  Policy p;
  p.source = "real tdx quote";
  p.mrenclave.emplace_back(q.tdx->mr_td.begin(), q.tdx->mr_td.end());
  p.trusted_roots_pem.push_back(value_or_die(crypto::x509_to_pem(chain.back().get()), "root"));
  p.allow_debug = true;
  auto v = verify_quote(b, p);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(v->platform, "tdx-dcap");
  EXPECT_TRUE(v->identity.tdx);
}

}  // namespace
}  // namespace tenet::attest
