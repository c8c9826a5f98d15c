// The enclave manifest's per-model mode (issue 5 item 6): parsing, hostile values, and the
// claims the enclave makes from it (tenet-mode, tenet-model-modes in the RA-TLS evidence).
#include <gtest/gtest.h>

#include <string>

#include "attest/evidence.h"
#include "enclave/manifest.h"

namespace tenet::enclave {
namespace {

const std::string kDigest(64, 'a');

std::string manifest_with(const std::string& model_fields, const std::string& top = "") {
  return R"({"tenet_manifest": 1, )" + top + R"("models": [{"name": "m", "package_digest": ")" + kDigest + "\"" +
         (model_fields.empty() ? "" : ", " + model_fields) + "}]}";
}

Result<Manifest> parse(const std::string& fields, const std::string& top = "") { return parse_manifest(manifest_with(fields, top)); }

void expect_error(const std::string& fields, const std::string& needle, const std::string& top = "") {
  auto m = parse(fields, top);
  ASSERT_FALSE(m.ok()) << fields;
  EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status().to_string();
}

TEST(ManifestMode, DefaultsToTee) {
  auto m = parse("");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->models[0].mode, "tee");
  EXPECT_FALSE(m->models[0].hybrid());
  EXPECT_FALSE(m->any_hybrid());
  EXPECT_EQ(m->models[0].mode_claim(), "tee");
  EXPECT_EQ(m->models[0].max_batch_size, 8);
}

TEST(ManifestMode, HybridWithDefaults) {
  auto m = parse(R"("mode": "hybrid")");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const ManifestModel& mm = m->models[0];
  EXPECT_TRUE(mm.hybrid());
  EXPECT_TRUE(m->any_hybrid());
  EXPECT_EQ(mm.verify_bits, 40);
  EXPECT_FALSE(mm.allow_unverified);
  EXPECT_EQ(mm.unblind_pool, 16);
  EXPECT_EQ(mm.pipeline_depth, 1);
  EXPECT_EQ(mm.max_batch_size, 0);  // hybrid runs batch 1 unless asked (not the tee default 8)
  EXPECT_EQ(mm.mode_claim(), "hybrid:40");
}

TEST(ManifestMode, HybridWithParameters) {
  auto m = parse(R"("mode": "hybrid", "verify_bits": 64, "unblind_pool": 3, "pipeline_depth": 4, "max_batch_size": 1)");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->models[0].verify_bits, 64);
  EXPECT_EQ(m->models[0].unblind_pool, 3);
  EXPECT_EQ(m->models[0].pipeline_depth, 4);
  EXPECT_EQ(m->models[0].mode_claim(), "hybrid:64");
  EXPECT_EQ(m->models[0].max_batch_size, 0);  // 1: batch 1, no batch dimension shown
}

TEST(ManifestMode, HybridDynamicBatching) {
  auto m = parse(R"("mode": "hybrid", "max_batch_size": 8, "max_queue_delay_us": 500, "pipeline_depth": 2)");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->models[0].max_batch_size, 8);
  EXPECT_EQ(m->models[0].max_queue_delay_us, 500u);
  auto zero = parse(R"("mode": "hybrid", "max_batch_size": 0)");
  ASSERT_TRUE(zero.ok()) << zero.status().to_string();
  EXPECT_EQ(zero->models[0].max_batch_size, 0);
  auto most = parse(R"("mode": "hybrid", "max_batch_size": 64)");
  ASSERT_TRUE(most.ok()) << most.status().to_string();
  EXPECT_EQ(most->models[0].max_batch_size, 64);
}

TEST(ManifestMode, UnverifiedNeedsExplicitConsent) {
  expect_error(R"("mode": "hybrid", "verify_bits": 0)", "allow_unverified");
  expect_error(R"("mode": "hybrid", "verify_bits": 0, "allow_unverified": false)", "allow_unverified");
  auto m = parse(R"("mode": "hybrid", "verify_bits": 0, "allow_unverified": true)");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->models[0].verify_bits, 0);
  EXPECT_EQ(m->models[0].mode_claim(), "hybrid:0");
  // Consent to something that is not happening is a confused manifest.
  expect_error(R"("mode": "hybrid", "verify_bits": 40, "allow_unverified": true)", "only meaningful");
}

TEST(ManifestMode, HostileValues) {
  expect_error(R"("mode": "mpc")", "mode must be");
  expect_error(R"("mode": "Hybrid")", "mode must be");
  expect_error(R"("mode": "")", "mode must be");
  expect_error(R"("mode": 1)", "mode must be");
  expect_error(R"("mode": null)", "mode must be");
  expect_error(R"("mode": ["hybrid"])", "mode must be");
  expect_error(R"("mode": "hybrid", "verify_bits": -1)", "verify_bits");
  expect_error(R"("mode": "hybrid", "verify_bits": 129)", "verify_bits");
  expect_error(R"("mode": "hybrid", "verify_bits": 40.5)", "verify_bits");
  expect_error(R"("mode": "hybrid", "verify_bits": "40")", "verify_bits");
  expect_error(R"("mode": "hybrid", "verify_bits": 18446744073709551615)", "verify_bits");
  expect_error(R"("mode": "hybrid", "allow_unverified": "yes")", "allow_unverified");
  expect_error(R"("mode": "hybrid", "unblind_pool": -3)", "unblind_pool");
  expect_error(R"("mode": "hybrid", "unblind_pool": 4097)", "unblind_pool");
  expect_error(R"("mode": "hybrid", "pipeline_depth": 0)", "pipeline_depth");
  expect_error(R"("mode": "hybrid", "pipeline_depth": 65)", "pipeline_depth");
  expect_error(R"("mode": "hybrid", "pipeline_depth": 2.5)", "pipeline_depth");
  expect_error(R"("mode": "hybrid", "max_batch_size": 65)", "max_batch_size must be 0..64");
  expect_error(R"("mode": "hybrid", "max_batch_size": -2)", "max_batch_size");
  expect_error(R"("mode": "hybrid", "max_batch_size": 2.5)", "max_batch_size");
  expect_error(R"("mode": "hybrid", "max_queue_delay_us": -1)", "max_queue_delay_us");
  expect_error(R"("mode": "hybrid", "verifybits": 40)", "unknown key");
}

TEST(ManifestMode, HybridKeysOnTeeModelsAreRefused) {
  expect_error(R"("verify_bits": 40)", "only a \"mode\": \"hybrid\" model");
  expect_error(R"("mode": "tee", "unblind_pool": 4)", "only a \"mode\": \"hybrid\" model");
  expect_error(R"("pipeline_depth": 2)", "only a \"mode\": \"hybrid\" model");
  expect_error(R"("allow_unverified": true)", "only a \"mode\": \"hybrid\" model");
}

TEST(ManifestMode, TopLevelModeStaysTee) {
  EXPECT_TRUE(parse("", R"("mode": "tee", )").ok());
  auto m = parse("", R"("mode": "hybrid", )");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("per model"), std::string::npos) << m.status().to_string();
}

TEST(ManifestMode, MixedModels) {
  const std::string text = R"({"tenet_manifest": 1, "models": [
      {"name": "a", "package_digest": ")" + kDigest + R"("},
      {"name": "b", "package_digest": ")" + kDigest + R"(", "mode": "hybrid", "verify_bits": 20}]})";
  auto m = parse_manifest(text);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_TRUE(m->any_hybrid());
  EXPECT_EQ(m->models[0].mode_claim(), "tee");
  EXPECT_EQ(m->models[1].mode_claim(), "hybrid:20");
}

// The per-model modes the enclave claims survive the evidence encoding, and hostile encodings of
// the claim are refused.
TEST(ModeClaims, RoundTrip) {
  attest::Claims c;
  c.pubkey_hash = attest::Bytes(32, 7);
  c.model_digests = {attest::Bytes(32, 1), attest::Bytes(32, 2)};
  c.mode = "hybrid";
  c.model_modes = {"tee", "hybrid:40"};
  auto cbor = attest::encode_claims(c);
  ASSERT_TRUE(cbor.ok()) << cbor.status().to_string();
  auto back = attest::decode_claims(*cbor);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->mode, "hybrid");
  EXPECT_EQ(back->model_modes, c.model_modes);
  EXPECT_EQ(back->model_digests, c.model_digests);
  // Without the claim (an older enclave): empty.
  c.model_modes.clear();
  auto old = attest::decode_claims(*attest::encode_claims(c));
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->model_modes.empty());
}

attest::Bytes claims_with_modes(const attest::Bytes& modes_item) {
  // {"pubkey-hash": [1, h'00'], "tenet-model-modes": <modes_item>}
  attest::Bytes b = {0xa2, 0x6b};
  for (char ch : std::string("pubkey-hash")) b.push_back(static_cast<uint8_t>(ch));
  b.insert(b.end(), {0x82, 0x01, 0x41, 0x00});
  b.push_back(0x71);
  for (char ch : std::string("tenet-model-modes")) b.push_back(static_cast<uint8_t>(ch));
  b.insert(b.end(), modes_item.begin(), modes_item.end());
  return b;
}

TEST(ModeClaims, HostileEncodings) {
  // Well-formed: ["tee"].
  auto good = attest::decode_claims(claims_with_modes({0x81, 0x63, 't', 'e', 'e'}));
  ASSERT_TRUE(good.ok()) << good.status().to_string();
  EXPECT_EQ(good->model_modes, std::vector<std::string>{"tee"});
  // Not an array; an item that is a byte string; a count past the end; a truncated string.
  EXPECT_FALSE(attest::decode_claims(claims_with_modes({0x63, 't', 'e', 'e'})).ok());
  EXPECT_FALSE(attest::decode_claims(claims_with_modes({0x81, 0x43, 't', 'e', 'e'})).ok());
  EXPECT_FALSE(attest::decode_claims(claims_with_modes({0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})).ok());
  EXPECT_FALSE(attest::decode_claims(claims_with_modes({0x81, 0x7a, 0xff, 0xff, 0xff, 0xff})).ok());
  // The claim twice.
  attest::Bytes twice = claims_with_modes({0x80});
  twice[0] = 0xa3;
  twice.push_back(0x71);
  for (char ch : std::string("tenet-model-modes")) twice.push_back(static_cast<uint8_t>(ch));
  twice.push_back(0x80);
  EXPECT_FALSE(attest::decode_claims(twice).ok());
}

}  // namespace
}  // namespace tenet::enclave
