// CBOR evidence/claims encoding (byte-compatible with Gramine's RA-TLS) and the policy parser.
#include <nlohmann/json.hpp>

#include "attest/evidence.h"
#include "attest/policy.h"
#include "attest_test_util.h"

namespace tenet::attest {
namespace {

using testing::TempDir;
using testing::value_or_die;

TEST(EvidenceTest, ClaimsHaveGramineEncoding) {
  Claims c;
  c.pubkey_hash = Bytes(32, 0xaa);
  const Bytes b = value_or_die(encode_claims(c), "encode");
  // {"pubkey-hash": h'82 01 5820 aa..aa'}: map(1), text(11), bytes(36) wrapping [1, bytes(32)].
  Bytes want = {0xa1, 0x6b};
  for (char ch : std::string("pubkey-hash")) want.push_back(static_cast<uint8_t>(ch));
  for (uint8_t x : {0x58, 0x24, 0x82, 0x01, 0x58, 0x20}) want.push_back(x);
  want.insert(want.end(), 32, 0xaa);
  EXPECT_EQ(crypto::to_hex(b), crypto::to_hex(want));
}

TEST(EvidenceTest, EvidenceIsTag60000OverTwoByteStrings) {
  const Bytes quote(5, 0x01), claims(3, 0x02);
  const Bytes e = value_or_die(encode_evidence(quote, claims), "encode");
  // tag 60000 = d9 ea60, array(2) = 82, bytes(5), bytes(3)
  EXPECT_EQ(crypto::to_hex(e), "d9ea608245010101010143020202");
  const Evidence d = value_or_die(decode_evidence(e), "decode");
  EXPECT_EQ(d.quote, quote);
  EXPECT_EQ(d.claims_cbor, claims);
}

TEST(EvidenceTest, ClaimsRoundTripAndUnknownClaimsAreSkipped) {
  Claims c;
  c.pubkey_hash = Bytes(48, 0x01);
  c.pubkey_hash_alg = kHashAlgSha384;
  c.nonce = Bytes{1, 2, 3};
  c.model_digests = {Bytes(32, 7), Bytes(32, 8)};
  c.mode = "hybrid";
  c.platform = "sim (INSECURE)";
  const Claims d = value_or_die(decode_claims(value_or_die(encode_claims(c), "enc")), "dec");
  EXPECT_EQ(d.pubkey_hash, c.pubkey_hash);
  EXPECT_EQ(d.pubkey_hash_alg, kHashAlgSha384);
  EXPECT_EQ(d.nonce, c.nonce);
  EXPECT_EQ(d.model_digests, c.model_digests);
  EXPECT_EQ(d.mode, "hybrid");
  EXPECT_EQ(d.platform, c.platform);

  // {"x": [1, {"y": h''}], "pubkey-hash": [1, h'00']}: unknown claim skipped, bare-array form accepted.
  const Bytes other = value_or_die(crypto::from_hex("a2617882" "01" "a1617940" "6b7075626b65792d68617368" "82" "01" "4100"), "hex");
  const Claims o = value_or_die(decode_claims(other), "dec");
  EXPECT_EQ(o.pubkey_hash, Bytes{0});
}

TEST(EvidenceTest, HostileCborIsRejected) {
  const char* cases[] = {
      "",                      // empty
      "a1",                    // map without entries
      "bf",                    // indefinite map
      "a0",                    // no pubkey-hash
      "a26b7075626b65792d6861736841006b7075626b65792d686173684100",  // duplicate claim (bad entries)
      "a1617881818181818181818181818181818181818100",                  // nesting beyond limit
      "a1617a9bffffffffffffffff",  // array with 2^64-1 items
      "a1617a5bffffffffffffffff",  // byte string of 2^64-1 bytes
      "a16b7075626b65792d686173684382010041",  // hash entry with trailing junk... truncated
  };
  for (const char* h : cases) {
    SCOPED_TRACE(h);
    const Bytes b = value_or_die(crypto::from_hex(h), "hex");
    EXPECT_FALSE(decode_claims(b).ok());
  }
  for (const char* h : {"", "d9ea60", "d9ea6082", "d9ea608141", "d9ea5f824100410", "c082410041", "d9ea60824100410001"}) {
    SCOPED_TRACE(h);
    auto b = crypto::from_hex(h);
    if (!b.ok()) continue;
    EXPECT_FALSE(decode_evidence(*b).ok());
  }
}

// ---- policy ----

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TENET_ASSERT_OK(sim_provision(dir_.sub("sim")));
    std::filesystem::copy_file(sim_root_cert_path(dir_.sub("sim")), dir_.sub("root.pem"));
  }
  Result<Policy> parse(const std::string& text) { return parse_policy(text, dir_.path(), "p.json"); }
  TempDir dir_;
};

TEST_F(PolicyTest, ParsesAFullPolicy) {
  const std::string m(64, 'a');
  const std::string s(64, 'b');
  auto p = parse(R"({"mrenclave": [")" + m + R"("], "mrsigner": ")" + s +
                 R"(", "isv_prod_id": 7, "min_isv_svn": 2, "allow_debug": true,
                    "trusted_roots": ["root.pem"], "model_digest": "00ff", "allow_insecure_sim": true})");
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->mrenclave.size(), 1u);
  EXPECT_EQ(p->mrsigner->size(), 32u);
  EXPECT_EQ(*p->isv_prod_id, 7);
  EXPECT_EQ(p->min_isv_svn, 2);
  EXPECT_TRUE(p->allow_debug);
  EXPECT_TRUE(p->allow_insecure_sim);
  EXPECT_EQ(p->trusted_roots_pem.size(), 1u);
  EXPECT_EQ(*p->model_digest, (Bytes{0x00, 0xff}));
}

TEST_F(PolicyTest, DefaultsAreStrictAndInlinePemWorks) {
  const std::string pem = value_or_die(crypto::read_file(dir_.sub("root.pem")), "pem");
  nlohmann::json j;
  j["mrenclave"] = std::string(64, '0');
  j["trusted_roots"] = {pem};
  auto p = parse(j.dump());
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_FALSE(p->allow_debug);
  EXPECT_FALSE(p->allow_insecure_sim);
}

TEST_F(PolicyTest, LoadPolicyResolvesRootsRelativeToTheFile) {
  std::filesystem::create_directories(dir_.sub("conf"));
  std::filesystem::copy_file(dir_.sub("root.pem"), dir_.sub("conf/r.pem"));
  TENET_ASSERT_OK(crypto::write_file(dir_.sub("conf/p.json"),
                                     R"({"mrenclave": [")" + std::string(64, '1') + R"("], "trusted_roots": ["r.pem"]})"));
  auto p = load_policy(dir_.sub("conf/p.json"));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
}

TEST_F(PolicyTest, ErrorsNameTheKey) {
  const std::string m = std::string(R"("mrenclave": [")") + std::string(64, 'a') + R"("])";
  const std::string roots = R"("trusted_roots": ["root.pem"])";
  struct Case {
    std::string text;
    std::string key;
  };
  const Case cases[] = {
      {"{" + m + "," + roots + R"(, "allow_insecure": true})", "allow_insecure"},
      {"{" + m + "," + roots + R"(, "allow_debug": "yes"})", "allow_debug"},
      {R"({"mrenclave": ["abc"], )" + roots + "}", "mrenclave"},
      {R"({"mrenclave": ["zz"], )" + roots + "}", "mrenclave"},
      {R"({"mrenclave": 5, )" + roots + "}", "mrenclave"},
      {R"({"mrsigner": ")" + std::string(64, 'a') + R"(", "isv_prod_id": 70000, )" + roots + "}", "isv_prod_id"},
      {R"({"mrsigner": ")" + std::string(64, 'a') + R"(", "isv_prod_id": -1, )" + roots + "}", "isv_prod_id"},
      {R"({"mrsigner": ")" + std::string(64, 'a') + R"(", )" + roots + "}", "isv_prod_id"},
      {"{" + m + "," + R"("trusted_roots": ["missing.pem"]})", "trusted_roots"},
      {"{" + m + "," + R"("trusted_roots": []})", "trusted_roots"},
      {"{" + m + "}", "trusted_roots"},
      {"{" + m + "," + roots + R"(, "model_digest": "xyz"})", "model_digest"},
      {"{" + m + "," + roots + R"(, "min_isv_svn": 1})", "min_isv_svn"},
      {"{" + roots + "}", "mrenclave"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto p = parse(c.text);
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find(c.key), std::string::npos) << p.status().to_string();
  }
  EXPECT_FALSE(parse("not json").ok());
  EXPECT_FALSE(parse("[]").ok());
}

TEST_F(PolicyTest, TemplateParses) {
  const std::string t = policy_template(std::string(64, 'a'), std::string(64, 'b'), 3, 4, "root.pem", true);
  auto p = parse(t);
  ASSERT_TRUE(p.ok()) << p.status().to_string() << "\n" << t;
  EXPECT_TRUE(p->allow_insecure_sim);
  EXPECT_EQ(p->min_isv_svn, 4);
}

}  // namespace
}  // namespace tenet::attest
