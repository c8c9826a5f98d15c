// Platforms: sim sealing keys and measurement; gramine and tsm providers against fake trees.
//
// The fakes answer like the real interfaces do, through FIFOs served by a helper thread: the
// thread blocks until the provider opens the quote / outblob for reading, then reads the REPORTDATA
// the provider wrote (user_report_data / inblob) and answers with a quote over exactly those bytes,
// signed by a sim chain. So the tests prove the provider's protocol (write the 64 bytes first, read
// the quote to EOF, check attestation_type / provider / generation, bind REPORTDATA) and that the
// result goes through the full verifier. They do not prove anything about real Gramine or kernel
// behaviour beyond the documented interface (e.g. that configfs removes a populated entry on
// rmdir, which a plain directory refuses).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "attest/file_io.h"
#include "attest/platform.h"
#include "attest/quote.h"
#include "attest/ratls.h"
#include "attest_test_util.h"

namespace tenet::attest {
namespace {

using testing::SimWorld;
using testing::TempDir;
using testing::value_or_die;

// ---- sim ----

TEST(SimPlatformTest, SealingKeysAreBoundToIdentityAndLabel) {
  SimWorld w;
  auto p = w.platform();
  const Bytes a = value_or_die(p->sealing_key(SealPolicy::kMrEnclave, "model"), "key");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, value_or_die(w.platform()->sealing_key(SealPolicy::kMrEnclave, "model"), "again"));
  EXPECT_NE(a, value_or_die(p->sealing_key(SealPolicy::kMrEnclave, "other"), "label"));
  EXPECT_NE(a, value_or_die(p->sealing_key(SealPolicy::kMrSigner, "model"), "signer"));

  // Another manifest (another MRENCLAVE), same signer: MRENCLAVE keys differ, MRSIGNER keys agree.
  SimEnclaveOptions o = w.options();
  o.config = R"({"name":"v2","isv_prod_id":7,"isv_svn":4})";
  auto v2 = value_or_die(open_sim_platform(o), "v2");
  EXPECT_NE(a, value_or_die(v2->sealing_key(SealPolicy::kMrEnclave, "model"), "v2 enclave"));
  EXPECT_EQ(value_or_die(p->sealing_key(SealPolicy::kMrSigner, "model"), "s1"),
            value_or_die(v2->sealing_key(SealPolicy::kMrSigner, "model"), "s2"));
  // Another product id under the same signer: MRSIGNER keys differ.
  o.isv_prod_id = 8;
  auto other_product = value_or_die(open_sim_platform(o), "prod");
  EXPECT_NE(value_or_die(p->sealing_key(SealPolicy::kMrSigner, "model"), "s1"),
            value_or_die(other_product->sealing_key(SealPolicy::kMrSigner, "model"), "s3"));
  // Another platform (provisioning dir): all keys differ.
  SimWorld w2;
  EXPECT_NE(a, value_or_die(w2.platform()->sealing_key(SealPolicy::kMrEnclave, "model"), "w2"));
}

TEST(SimPlatformTest, MeasureMatchesIdentityAndNamesInsecure) {
  SimWorld w;
  auto p = w.platform();
  EXPECT_FALSE(p->is_secure());
  EXPECT_NE(p->name().find("INSECURE"), std::string::npos);
  const auto id = value_or_die(p->identity(), "identity");
  const auto m = value_or_die(measure_enclave(w.binary, crypto::as_bytes(testing::kTestManifest)), "measure");
  EXPECT_EQ(id.mrenclave, Bytes(m.begin(), m.end()));
  EXPECT_EQ(id.isv_prod_id, 7);
  EXPECT_EQ(id.isv_svn, 3);
  // Binary and configuration both count.
  EXPECT_NE(m, value_or_die(measure_enclave(w.binary, crypto::as_bytes("{}")), "m2"));
  TENET_ASSERT_OK(crypto::write_file(w.binary, "another binary", 0755));
  EXPECT_NE(m, value_or_die(measure_enclave(w.binary, crypto::as_bytes(testing::kTestManifest)), "m3"));
}

TEST(SimPlatformTest, ProvisionRefusesToOverwriteAndKeepsKeysPrivate) {
  SimWorld w;
  EXPECT_FALSE(sim_provision(w.platform_dir).ok());
  for (const char* f : {"root.key", "pck.key", "signer.key", "platform.secret"}) {
    struct stat st {};
    ASSERT_EQ(::stat((std::filesystem::path(w.platform_dir) / f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  auto q = w.platform()->get_quote(Bytes(63, 0));
  EXPECT_FALSE(q.ok());
}

// ---- fakes ----

// Serves `fifo` once: waits for the reader, reads the REPORTDATA the provider wrote to `input`,
// and writes `make_quote(report_data)`.
std::thread serve_fifo(std::string fifo, std::string input, std::function<Bytes(ByteSpan)> make_quote,
                       std::function<void()> before_write = {}) {
  return std::thread([fifo, input, make_quote, before_write] {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);  // blocks until the provider reads
    if (fd < 0) return;
    auto rd = read_pseudo_file(input, 4096);
    const Bytes quote = rd.ok() ? make_quote(*rd) : Bytes{};
    if (before_write) before_write();
    size_t done = 0;
    while (done < quote.size()) {
      const ssize_t n = ::write(fd, quote.data() + done, quote.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  });
}

class GramineFake {
 public:
  explicit GramineFake(const SimWorld& world, const std::string& type = "dcap") : world_(world) {
    std::filesystem::create_directories(dir_.sub("keys"));
    TENET_CHECK(crypto::write_file(dir_.sub("attestation_type"), type + "\n"));
    TENET_CHECK(crypto::write_file(dir_.sub("user_report_data"), ""));
    TENET_CHECK(crypto::write_file(dir_.sub("keys/_sgx_mrenclave"), std::string(16, 'e')));
    TENET_CHECK(crypto::write_file(dir_.sub("keys/_sgx_mrsigner"), std::string(16, 's')));
    auto id_quote = parse_quote(value_or_die(world.platform()->get_quote(Bytes(64, 0)), "q"));
    std::string report(crypto::as_chars(serialize_report_body(id_quote->sgx)));
    report.append(48, '\0');
    TENET_CHECK(crypto::write_file(dir_.sub("report"), report));
    if (::mkfifo(dir_.sub("quote").c_str(), 0600) != 0) throw std::runtime_error("mkfifo");
  }
  ~GramineFake() {
    if (server_.joinable()) server_.join();
  }
  void answer_once() {
    server_ = serve_fifo(dir_.sub("quote"), dir_.sub("user_report_data"), [this](ByteSpan rd) {
      return value_or_die(world_.platform()->get_quote(rd), "sim quote");
    });
  }
  const std::string& root() const { return dir_.path(); }

 private:
  static void TENET_CHECK(const Status& s) {
    if (!s.ok()) throw std::runtime_error(s.to_string());
  }
  const SimWorld& world_;
  TempDir dir_;
  std::thread server_;
};

TEST(GraminePlatformTest, QuoteThroughDevAttestationVerifies) {
  SimWorld w;
  GramineFake fake(w);
  auto p = value_or_die(open_gramine_platform({fake.root()}), "open");
  EXPECT_TRUE(p->is_secure());
  fake.answer_once();
  RatlsClaimsInput claims;
  claims.model_digests = {Bytes(32, 1)};
  auto id = make_ratls_identity(*p, claims);
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  // The REPORTDATA the provider wrote is the claims hash, and the quote over it verifies.
  auto written = value_or_die(read_pseudo_file(fake.root() + "/user_report_data", 4096), "rd");
  const auto want = report_data_for_claims(id->claims_cbor);
  EXPECT_EQ(written, Bytes(want.begin(), want.end()));
  auto peer = verify_ratls_certificate(id->cert.get(), w.policy());
  ASSERT_TRUE(peer.ok()) << peer.status().to_string();
  EXPECT_EQ(id->platform, "gramine-sgx");

  const auto ident = value_or_die(p->identity(), "identity");
  EXPECT_EQ(ident.mrenclave, w.policy().mrenclave[0]);
  const Bytes k1 = value_or_die(p->sealing_key(SealPolicy::kMrEnclave, "a"), "k1");
  EXPECT_EQ(k1.size(), 32u);
  EXPECT_NE(k1, value_or_die(p->sealing_key(SealPolicy::kMrSigner, "a"), "k2"));
  EXPECT_NE(k1, value_or_die(p->sealing_key(SealPolicy::kMrEnclave, "b"), "k3"));
}

TEST(GraminePlatformTest, AttestationTypeNoneIsAClearError) {
  SimWorld w;
  GramineFake fake(w, "none");
  auto p = value_or_die(open_gramine_platform({fake.root()}), "open");
  auto q = p->get_quote(Bytes(64, 0));
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("remote_attestation"), std::string::npos) << q.status().to_string();
  EXPECT_FALSE(open_gramine_platform({w.dir.sub("nonexistent")}).ok());
}

// A TDX v4 quote over `report_data`, signed by the world's sim PCK key (what a fake TDX guest
// answers through configfs-tsm).
Bytes sim_tdx_quote(const SimWorld& w, ByteSpan report_data) {
  const std::string dir = w.platform_dir;
  auto pck = value_or_die(crypto::PrivateKey::from_pem(value_or_die(crypto::read_file(dir + "/pck.key"), "k")), "pck");
  const std::string chain = value_or_die(crypto::read_file(dir + "/pck.pem"), "c") + value_or_die(crypto::read_file(dir + "/root.pem"), "r");
  auto att = value_or_die(crypto::PrivateKey::generate(crypto::Curve::kP256), "att");
  Quote q;
  q.header.version = 4;
  q.header.tee_type = kTeeTypeTdx;
  q.header.qe_vendor_id = kSimQeVendorId;
  q.tdx.emplace();
  q.tdx->mr_td.fill(0x5d);
  std::memcpy(q.tdx->report_data.data(), report_data.data(), 64);
  const Bytes att_raw = value_or_die(value_or_die(att.public_key(), "pub").raw_point(), "raw");
  std::memcpy(q.attestation_key.data(), att_raw.data(), 64);
  q.qe_auth_data = Bytes(32, 3);
  Bytes bind = att_raw;
  bind.insert(bind.end(), q.qe_auth_data.begin(), q.qe_auth_data.end());
  const auto h = crypto::sha256(bind);
  std::memcpy(q.qe_report.report_data.data(), h.data(), 32);
  const Bytes qe_sig = value_or_die(crypto::ecdsa_der_to_raw(value_or_die(pck.sign(serialize_report_body(q.qe_report)), "s"), 32), "r");
  std::memcpy(q.qe_report_signature.data(), qe_sig.data(), 64);
  q.cert_data.assign(chain.begin(), chain.end());
  const Bytes sig = value_or_die(crypto::ecdsa_der_to_raw(value_or_die(att.sign(quote_signed_bytes(q)), "s"), 32), "r");
  std::memcpy(q.signature.data(), sig.data(), 64);
  Bytes out = value_or_die(serialize_quote(q), "serialize");
  out.insert(out.end(), 64, 0);  // zero padding, as real TDX quote buffers have
  return out;
}

struct TsmFake {
  explicit TsmFake(const SimWorld& w, bool concurrent_writer = false) : world(w), concurrent(concurrent_writer) {
    std::filesystem::create_directories(root());
  }
  ~TsmFake() {
    for (auto& t : servers) t.join();
  }
  std::string root() const { return dir.sub("report"); }
  // Populates a new entry as configfs does at mkdir (generation already at 1: plain files cannot
  // count writes, so the fake states the value the kernel shows after the provider's one write).
  void populate(const std::string& entry) {
    entries.push_back(entry);
    (void)crypto::write_file(entry + "/provider", "tdx_guest\n");
    (void)crypto::write_file(entry + "/generation", "1\n");
    (void)crypto::write_file(entry + "/inblob", "");
    ::mkfifo((entry + "/outblob").c_str(), 0600);
    const std::string gen = entry + "/generation";
    servers.push_back(serve_fifo(
        entry + "/outblob", entry + "/inblob", [this](ByteSpan rd) { return sim_tdx_quote(world, rd); },
        concurrent ? std::function<void()>([gen] { (void)crypto::write_file(gen, "2\n"); }) : std::function<void()>()));
  }
  TsmOptions options() {
    TsmOptions o;
    o.root = root();
    o.after_mkdir = [this](const std::string& e) { populate(e); };
    return o;
  }
  const SimWorld& world;
  bool concurrent;
  TempDir dir;
  std::vector<std::string> entries;
  std::vector<std::thread> servers;
};

TEST(TsmPlatformTest, TdxQuoteThroughConfigfsVerifies) {
  SimWorld w;
  TsmFake fake(w);
  auto p = value_or_die(open_tsm_platform(fake.options()), "open");
  auto id = make_ratls_identity(*p, {});
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  EXPECT_EQ(id->platform, "tsm");  // named before the first quote; provider known after
  EXPECT_EQ(p->name(), "tsm-tdx_guest");
  ASSERT_EQ(fake.entries.size(), 1u);
  // Each quote gets a fresh entry, and inblob held exactly the REPORTDATA.
  auto inblob = value_or_die(read_pseudo_file(fake.entries[0] + "/inblob", 4096), "inblob");
  const auto want = report_data_for_claims(id->claims_cbor);
  EXPECT_EQ(inblob, Bytes(want.begin(), want.end()));

  Policy policy = w.policy();
  policy.mrenclave = {Bytes(48, 0x5d)};  // MRTD
  auto peer = verify_ratls_certificate(id->cert.get(), policy);
  ASSERT_TRUE(peer.ok()) << peer.status().to_string();
  EXPECT_TRUE(peer->identity.tdx);
  EXPECT_FALSE(p->sealing_key(SealPolicy::kMrEnclave, "x").ok());

  (void)value_or_die(p->get_quote(Bytes(64, 9)), "second quote");
  ASSERT_EQ(fake.entries.size(), 2u);
  EXPECT_NE(fake.entries[0], fake.entries[1]);
}

TEST(TsmPlatformTest, ConcurrentWriterIsDetected) {
  SimWorld w;
  TsmFake fake(w, /*concurrent_writer=*/true);
  auto p = value_or_die(open_tsm_platform(fake.options()), "open");
  auto q = p->get_quote(Bytes(64, 1));
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("concurrent writer"), std::string::npos) << q.status().to_string();
}

TEST(TsmPlatformTest, MissingConfigfsIsAClearError) {
  TempDir d;
  EXPECT_FALSE(open_tsm_platform({d.sub("nope"), {}}).ok());
}

}  // namespace
}  // namespace tenet::attest
