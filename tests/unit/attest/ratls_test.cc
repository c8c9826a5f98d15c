// RA-TLS identity creation and verification: the positive path, every negative case failing at
// its named stage, and real TLS handshakes on loopback.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <thread>

#include "attest/evidence.h"
#include "attest/quote.h"
#include "attest/ratls.h"
#include "attest/x509_util.h"
#include "attest_test_util.h"

namespace tenet::attest {
namespace {

using testing::expect_stage;
using testing::SimWorld;
using testing::value_or_die;

const Bytes kModelDigest(32, 0xab);

class RatlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world_ = new SimWorld();
    auto platform = world_->platform();
    RatlsClaimsInput claims;
    claims.model_digests = {kModelDigest};
    identity_ = new RatlsIdentity(value_or_die(make_ratls_identity(*platform, claims), "identity"));
  }
  static void TearDownTestSuite() {
    delete identity_;
    delete world_;
  }

  // The identity's evidence with `quote` substituted, in a certificate under the same key.
  static crypto::X509Ptr rewrap(ByteSpan quote, ByteSpan claims_cbor) {
    Bytes evidence = value_or_die(encode_evidence(quote, claims_cbor), "evidence");
    return value_or_die(make_ratls_certificate(identity_->key, evidence), "cert");
  }
  static Status verify_with_quote(const Bytes& quote, const Policy& policy) {
    auto cert = rewrap(quote, identity_->claims_cbor);
    return verify_ratls_certificate(cert.get(), policy).status();
  }

  static SimWorld* world_;
  static RatlsIdentity* identity_;
};
SimWorld* RatlsTest::world_ = nullptr;
RatlsIdentity* RatlsTest::identity_ = nullptr;

TEST_F(RatlsTest, VerifiesAgainstMrenclavePolicy) {
  auto peer = verify_ratls_certificate(identity_->cert.get(), world_->policy());
  ASSERT_TRUE(peer.ok()) << peer.status().to_string();
  EXPECT_TRUE(peer->insecure);
  EXPECT_EQ(peer->platform, "sim (INSECURE)");
  EXPECT_EQ(peer->identity.isv_prod_id, 7);  // from the manifest
  EXPECT_EQ(peer->identity.isv_svn, 3);
  EXPECT_FALSE(peer->identity.debug);
  ASSERT_EQ(peer->claims.model_digests.size(), 1u);
  EXPECT_EQ(peer->claims.model_digests[0], kModelDigest);
  EXPECT_EQ(peer->claims.mode, "tee");
  EXPECT_EQ(peer->claims.platform, "sim (INSECURE)");
  EXPECT_NE(describe_peer(*peer).find("INSECURE"), std::string::npos);
}

TEST_F(RatlsTest, VerifiesAgainstMrsignerPolicy) {
  Policy p = world_->policy();
  p.mrenclave.clear();
  auto signer = value_or_die(crypto::PrivateKey::from_pem(value_or_die(crypto::read_file(sim_signer_key_path(world_->platform_dir)), "k")), "key");
  auto mrsigner = value_or_die(mrsigner_of_key(value_or_die(signer.public_key(), "pub")), "mrsigner");
  p.mrsigner = Bytes(mrsigner.begin(), mrsigner.end());
  p.isv_prod_id = 7;
  p.min_isv_svn = 3;
  p.model_digest = kModelDigest;
  TENET_ASSERT_OK(validate_policy(p));
  auto peer = verify_ratls_certificate(identity_->cert.get(), p);
  ASSERT_TRUE(peer.ok()) << peer.status().to_string();
  EXPECT_EQ(peer->identity.mrsigner, *p.mrsigner);

  p.min_isv_svn = 4;  // svn below minimum
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kMeasurement);
  p.min_isv_svn = 3;
  p.isv_prod_id = 8;  // another product
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kMeasurement);
  p.isv_prod_id = 7;
  (*p.mrsigner)[0] ^= 1;  // another signer
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kMeasurement);
}

TEST_F(RatlsTest, OtherMrenclaveFailsAtMeasurement) {
  Policy p = world_->policy();
  p.mrenclave[0][5] ^= 0x40;
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kMeasurement);
}

TEST_F(RatlsTest, DebugEnclaveRejectedUnlessAllowed) {
  auto platform = world_->platform(/*debug=*/true);
  auto debug_id = value_or_die(make_ratls_identity(*platform, {}), "identity");
  Policy p = world_->policy();
  expect_stage(verify_ratls_certificate(debug_id.cert.get(), p).status(), VerifyStage::kDebug);
  p.allow_debug = true;
  auto peer = verify_ratls_certificate(debug_id.cert.get(), p);
  ASSERT_TRUE(peer.ok()) << peer.status().to_string();
  EXPECT_TRUE(peer->identity.debug);
}

TEST_F(RatlsTest, ManifestChangesMrenclave) {
  SimEnclaveOptions o = world_->options();
  o.config = R"({"name":"test-enclave","isv_prod_id":7,"isv_svn":3,"extra":1})";
  auto platform = value_or_die(open_sim_platform(o), "platform");
  auto other = value_or_die(make_ratls_identity(*platform, {}), "identity");
  expect_stage(verify_ratls_certificate(other.cert.get(), world_->policy()).status(), VerifyStage::kMeasurement);
}

TEST_F(RatlsTest, SimEvidenceNeedsAllowInsecureSim) {
  Policy p = world_->policy();
  p.allow_insecure_sim = false;
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kInsecurePlatform);
}

TEST_F(RatlsTest, WrongModelDigestFails) {
  Policy p = world_->policy();
  p.model_digest = Bytes(32, 0xcd);
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kModelDigest);
  p.model_digest = kModelDigest;
  EXPECT_TRUE(verify_ratls_certificate(identity_->cert.get(), p).ok());
}

TEST_F(RatlsTest, EvidenceUnderAnotherKeyFailsAtPubkeyHash) {
  auto other_key = value_or_die(crypto::PrivateKey::generate(crypto::Curve::kP384), "key");
  auto cert = value_or_die(make_ratls_certificate(other_key, identity_->evidence), "cert");
  expect_stage(verify_ratls_certificate(cert.get(), world_->policy()).status(), VerifyStage::kPubkeyHash);
}

TEST_F(RatlsTest, ClaimsSwappedUnderSameQuoteFailAtReportData) {
  Claims c = identity_->claims;
  c.model_digests = {Bytes(32, 0xcd)};  // claim another model, keep the quote
  Bytes claims_cbor = value_or_die(encode_claims(c), "claims");
  auto cert = rewrap(identity_->quote, claims_cbor);
  expect_stage(verify_ratls_certificate(cert.get(), world_->policy()).status(), VerifyStage::kReportData);
}

TEST_F(RatlsTest, UntrustedRootFailsAtPlatformChain) {
  SimWorld other;  // a second provisioning directory: another sim root
  Policy p = world_->policy();
  p.trusted_roots_pem = {other.root_pem()};
  expect_stage(verify_ratls_certificate(identity_->cert.get(), p).status(), VerifyStage::kPlatformChain);
}

TEST_F(RatlsTest, CertificateWithoutEvidenceFails) {
  auto key = value_or_die(crypto::PrivateKey::generate(crypto::Curve::kP384), "key");
  CertSpec spec;
  spec.common_name = "plain";
  spec.is_ca = true;
  auto cert = value_or_die(make_certificate(spec, key, nullptr, key), "cert");
  expect_stage(verify_ratls_certificate(cert.get(), world_->policy()).status(), VerifyStage::kEvidenceExtension);
  expect_stage(verify_ratls_certificate(nullptr, world_->policy()).status(), VerifyStage::kCertificate);
}

TEST_F(RatlsTest, GarbageEvidenceFailsAtEvidenceExtension) {
  const Bytes junk = {0xd9, 0xea, 0x60, 0x82, 0x41};  // tag 60000, [h'..' truncated
  auto cert = value_or_die(make_ratls_certificate(identity_->key, junk), "cert");
  expect_stage(verify_ratls_certificate(cert.get(), world_->policy()).status(), VerifyStage::kEvidenceExtension);
}

TEST_F(RatlsTest, NotSelfSignedFailsAtCertificate) {
  // Signed by another key: the certificate stage rejects it before the evidence is read.
  auto other = value_or_die(crypto::PrivateKey::generate(crypto::Curve::kP384), "key");
  CertSpec spec;
  spec.common_name = "x";
  spec.extra_oid = kTaggedEvidenceOid;
  spec.extra_value = identity_->evidence;
  auto issuer = value_or_die(make_certificate(spec, other, nullptr, other), "issuer");
  auto cert = value_or_die(make_certificate(spec, identity_->key, issuer.get(), other), "cert");
  expect_stage(verify_ratls_certificate(cert.get(), world_->policy()).status(), VerifyStage::kCertificate);
}

// Flips one byte of the quote at `offset` and expects failure at `stage`.
struct Tamper {
  const char* field;
  size_t offset;
  VerifyStage stage;
};

TEST_F(RatlsTest, TamperedQuoteFieldsFailAtTheirStage) {
  const Bytes& q = identity_->quote;
  const auto parsed = value_or_die(parse_quote(q), "parse");
  const size_t sig = kQuoteOffsetSignatureLen + 4;
  const size_t qe_report = sig + 128;
  const size_t qe_sig = qe_report + kSgxReportBodySize;
  const size_t auth = qe_sig + 64 + 2;
  const size_t cert_data = auth + parsed.qe_auth_data.size() + 6;
  const Tamper cases[] = {
      {"header.version", 0, VerifyStage::kQuoteFormat},
      {"header.qe_svn", 8, VerifyStage::kQuoteSignature},
      {"header.qe_vendor_id", 12, VerifyStage::kQuoteSignature},
      {"report.cpu_svn", 48, VerifyStage::kQuoteSignature},
      {"report.attributes (debug bit)", kQuoteOffsetAttributes, VerifyStage::kQuoteSignature},
      {"report.mr_enclave", kQuoteOffsetMrEnclave, VerifyStage::kQuoteSignature},
      {"report.mr_signer", kQuoteOffsetMrSigner + 31, VerifyStage::kQuoteSignature},
      {"report.isv_prod_id", kQuoteOffsetIsvProdId, VerifyStage::kQuoteSignature},
      {"report.isv_svn", kQuoteOffsetIsvSvn, VerifyStage::kQuoteSignature},
      {"report.report_data", kQuoteOffsetReportData, VerifyStage::kReportData},
      {"report.report_data (zero half)", kQuoteOffsetReportData + 40, VerifyStage::kReportData},
      {"signature_data_len", kQuoteOffsetSignatureLen, VerifyStage::kQuoteFormat},
      {"signature", sig + 10, VerifyStage::kQuoteSignature},
      {"attestation_key", sig + 64 + 3, VerifyStage::kQuoteSignature},
      {"qe_report.mr_enclave", qe_report + 64, VerifyStage::kQeReport},
      {"qe_report.report_data", qe_report + 320, VerifyStage::kQeReport},
      {"qe_report_signature", qe_sig + 5, VerifyStage::kQeReport},
      {"qe_auth_data", auth + 1, VerifyStage::kQeReport},
      {"certification_data.type", cert_data - 6, VerifyStage::kPlatformChain},
      {"certification_data.size", cert_data - 4, VerifyStage::kQuoteFormat},
  };
  for (const Tamper& t : cases) {
    SCOPED_TRACE(t.field);
    ASSERT_LT(t.offset, q.size());
    Bytes bad = q;
    bad[t.offset] ^= (t.offset == kQuoteOffsetAttributes ? kSgxAttributeDebug : 0x01);
    expect_stage(verify_with_quote(bad, world_->policy()), t.stage);
  }
}

TEST_F(RatlsTest, TamperedPckCertificateFailsAtPlatformChain) {
  auto parsed = value_or_die(parse_quote(identity_->quote), "parse");
  std::string pem(crypto::as_chars(parsed.cert_data));
  // A base64 character inside the PCK certificate's signature (its last line before END).
  size_t pos = pem.find("-----END CERTIFICATE-----");
  ASSERT_NE(pos, std::string::npos);
  pos -= 8;
  while (pem[pos] == '=' || pem[pos] == '\n') --pos;
  pem[pos] = pem[pos] == 'A' ? 'B' : 'A';
  parsed.cert_data.assign(pem.begin(), pem.end());
  Bytes bad = value_or_die(serialize_quote(parsed), "serialize");
  const Status s = verify_with_quote(bad, world_->policy());
  // Either the PCK no longer parses, its signature breaks, or its key changed (qe-report).
  const auto stage = failed_stage(s);
  ASSERT_TRUE(stage.has_value()) << s.to_string();
  EXPECT_TRUE(*stage == VerifyStage::kPlatformChain || *stage == VerifyStage::kQeReport) << s.to_string();
}

TEST_F(RatlsTest, TruncatedAndOversizedQuotesFailAtQuoteFormat) {
  const Bytes& q = identity_->quote;
  for (size_t len : {size_t{1}, size_t{47}, size_t{48}, size_t{431}, size_t{436}, size_t{600}, q.size() - 1}) {
    SCOPED_TRACE(len);
    expect_stage(verify_with_quote(Bytes(q.begin(), q.begin() + static_cast<long>(len)), world_->policy()),
                 VerifyStage::kQuoteFormat);
  }
  // An empty quote is already malformed evidence.
  expect_stage(verify_with_quote(Bytes{}, world_->policy()), VerifyStage::kEvidenceExtension);
  Bytes big = q;
  big[kQuoteOffsetSignatureLen + 3] = 0xff;  // signature_data_len ~4 GiB
  expect_stage(verify_with_quote(big, world_->policy()), VerifyStage::kQuoteFormat);
  Bytes junk_after = q;
  junk_after.push_back(1);
  expect_stage(verify_with_quote(junk_after, world_->policy()), VerifyStage::kQuoteFormat);
}

TEST_F(RatlsTest, VerifyQuoteReturnsReportData) {
  auto vq = verify_quote(identity_->quote, world_->policy());
  ASSERT_TRUE(vq.ok()) << vq.status().to_string();
  EXPECT_EQ(vq->report_data, report_data_for_claims(identity_->claims_cbor));
  EXPECT_TRUE(vq->insecure);
  EXPECT_NE(vq->root_subject.find("INSECURE"), std::string::npos);
}

TEST_F(RatlsTest, KbsStyleEvidenceVerifies) {
  auto platform = world_->platform();
  auto tee_key = value_or_die(crypto::PrivateKey::generate(crypto::Curve::kP256), "key");
  Claims c;
  c.pubkey_hash = value_or_die(pubkey_hash(kHashAlgSha256, value_or_die(tee_key.public_spki_der(), "spki")), "hash");
  c.nonce = Bytes{9, 9, 9};
  c.model_digests = {kModelDigest};
  const Bytes evidence = value_or_die(make_evidence(*platform, c), "evidence");
  Policy p = world_->policy();
  p.model_digest = kModelDigest;
  auto v = verify_evidence(evidence, p);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(v->claims.nonce, c.nonce);
  EXPECT_EQ(v->claims.pubkey_hash, c.pubkey_hash);

  // Another nonce under the same quote: report-data.
  c.nonce = Bytes{1};
  const Bytes swapped = value_or_die(
      encode_evidence(value_or_die(decode_evidence(evidence), "d").quote, value_or_die(encode_claims(c), "c")), "e");
  expect_stage(verify_evidence(swapped, p).status(), VerifyStage::kReportData);
  p.model_digest = Bytes(32, 0);
  expect_stage(verify_evidence(evidence, p).status(), VerifyStage::kModelDigest);
}

TEST_F(RatlsTest, CertificateIsUsableAsPinnedCa) {
  X509* cert = identity_->cert.get();
  EXPECT_EQ(X509_check_host(cert, "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ca(cert), 1);
  // As curl --cacert does: the certificate is its own trust anchor.
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, cert);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, cert, nullptr);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), "localhost", 0);
  EXPECT_EQ(X509_verify_cert(ctx), 1) << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
}

// ---- TLS on loopback ----

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

int listen_loopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4) != 0) return -1;
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
  return fd;
}

// Serves one TLS connection with `identity`, echoing one message; returns after the client leaves.
void serve_once(int listen_fd, const RatlsIdentity& identity) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!use_ratls_identity(ctx.get(), identity).ok()) return;
  const int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd < 0) return;
  SSL* ssl = SSL_new(ctx.get());
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    char buf[64];
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) SSL_write(ssl, buf, n);
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ::close(fd);
}

Result<VerifiedPeer> client_handshake(uint16_t port, std::shared_ptr<const Policy> policy, bool* handshake_ok) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  install_ratls_verifier(ctx.get(), std::move(policy));
  const int fd = connect_loopback(port);
  SSL* ssl = SSL_new(ctx.get());
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  *handshake_ok = SSL_connect(ssl) == 1;
  if (*handshake_ok) {
    SSL_write(ssl, "ping", 4);
    char buf[8] = {0};
    const int n = SSL_read(ssl, buf, sizeof buf - 1);
    *handshake_ok = n == 4 && std::string(buf) == "ping";
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  Result<VerifiedPeer> peer = ratls_peer(ssl);
  SSL_free(ssl);
  ::close(fd);
  return peer;
}

TEST_F(RatlsTest, TlsHandshakeOnLoopbackVerifiesTheEnclave) {
  uint16_t port = 0;
  const int lfd = listen_loopback(&port);
  ASSERT_GE(lfd, 0);
  std::thread server(serve_once, lfd, std::cref(*identity_));
  bool ok = false;
  auto peer = client_handshake(port, std::make_shared<const Policy>(world_->policy()), &ok);
  server.join();
  ::close(lfd);
  EXPECT_TRUE(ok);
  ASSERT_TRUE(peer.ok()) << peer.status().to_string();
  EXPECT_EQ(peer->claims.model_digests.at(0), kModelDigest);
  EXPECT_EQ(peer->cert_pem, identity_->cert_pem);
}

TEST_F(RatlsTest, TlsHandshakeFailsWithTheStageOnPolicyMismatch) {
  uint16_t port = 0;
  const int lfd = listen_loopback(&port);
  ASSERT_GE(lfd, 0);
  std::thread server(serve_once, lfd, std::cref(*identity_));
  Policy p = world_->policy();
  p.mrenclave[0][0] ^= 1;
  bool ok = true;
  auto peer = client_handshake(port, std::make_shared<const Policy>(p), &ok);
  server.join();
  ::close(lfd);
  EXPECT_FALSE(ok);
  expect_stage(peer.status(), VerifyStage::kMeasurement);
}

TEST_F(RatlsTest, OneQuotePerIdentity) {
  // Report reuse: the identity carries one quote; making sessions does not make quotes.
  class CountingPlatform : public Platform {
   public:
    explicit CountingPlatform(std::unique_ptr<Platform> inner) : inner_(std::move(inner)) {}
    std::string name() const override { return inner_->name(); }
    bool is_secure() const override { return false; }
    Result<Bytes> get_quote(ByteSpan rd) override {
      ++quotes;
      return inner_->get_quote(rd);
    }
    Result<Bytes> sealing_key(SealPolicy p, std::string_view l) override { return inner_->sealing_key(p, l); }
    Result<EnclaveIdentity> identity() override { return inner_->identity(); }
    int quotes = 0;

   private:
    std::unique_ptr<Platform> inner_;
  };
  CountingPlatform platform(world_->platform());
  auto id = value_or_die(make_ratls_identity(platform, {}), "identity");
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(verify_ratls_certificate(id.cert.get(), world_->policy()).ok());
  EXPECT_EQ(platform.quotes, 1);
}

}  // namespace
}  // namespace tenet::attest
