#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "seal/base64url.h"
#include "seal/key_wrap.h"

namespace tenet::seal {
namespace {

using crypto::Bytes;
using crypto::Curve;
using crypto::PrivateKey;

TEST(Base64UrlTest, Rfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : vectors) {
    EXPECT_EQ(base64url_encode(crypto::as_bytes(plain)), enc);
    auto d = base64url_decode(enc);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(std::string(d->begin(), d->end()), plain);
  }
  const Bytes hi = {0xfb, 0xff, 0xfe};
  EXPECT_EQ(base64url_encode(hi), "-__-");
  EXPECT_FALSE(base64url_decode("Zm9=").ok());   // padding
  EXPECT_FALSE(base64url_decode("Zm+v").ok());   // standard alphabet
  EXPECT_FALSE(base64url_decode("Z").ok());      // impossible length
  EXPECT_FALSE(base64url_decode("Zh").ok());     // non-zero trailing bits
  EXPECT_FALSE(base64url_decode("Zm 9").ok());   // whitespace
}

TEST(JwkTest, CanonicalFormRoundTrips) {
  auto priv = PrivateKey::generate(Curve::kP384);
  ASSERT_TRUE(priv.ok());
  auto pub = priv->public_key();
  ASSERT_TRUE(pub.ok());
  auto jwk = canonical_jwk(*pub);
  ASSERT_TRUE(jwk.ok());
  EXPECT_EQ(jwk->rfind(R"({"crv":"P-384","kty":"EC","x":")", 0), 0u) << *jwk;
  EXPECT_EQ(jwk->find(' '), std::string::npos);
  auto back = public_key_from_jwk(*jwk);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back->raw_point(), *pub->raw_point());
  // Member order and extra members do not matter on input; the canonical form is unique.
  auto j = nlohmann::json::parse(*jwk);
  j["use"] = "enc";
  auto again = public_key_from_jwk(j.dump(2));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*canonical_jwk(*again), *jwk);
  auto p256 = PrivateKey::generate(Curve::kP256);
  auto j256 = canonical_jwk(*p256->public_key());
  ASSERT_TRUE(j256.ok());
  EXPECT_NE(j256->find("P-256"), std::string::npos);
}

TEST(JwkTest, RejectsMalformedKeys) {
  auto pub = PrivateKey::generate(Curve::kP384)->public_key();
  auto j = nlohmann::json::parse(*canonical_jwk(*pub));
  auto with = [&](const char* k, nlohmann::json v) {
    auto c = j;
    c[k] = v;
    return public_key_from_jwk(c.dump());
  };
  EXPECT_FALSE(public_key_from_jwk("{").ok());
  EXPECT_FALSE(public_key_from_jwk("[]").ok());
  EXPECT_FALSE(with("kty", "RSA").ok());
  EXPECT_FALSE(with("crv", "P-521").ok());
  EXPECT_FALSE(with("crv", 384).ok());
  EXPECT_FALSE(with("x", base64url_encode(Bytes(47, 1))).ok());  // short coordinate
  EXPECT_FALSE(with("d", "AAAA").ok());                          // private key material
  // A point not on the curve (x, y both 1).
  Bytes one(48, 0);
  one[47] = 1;
  auto c = j;
  c["x"] = base64url_encode(one);
  c["y"] = base64url_encode(one);
  EXPECT_FALSE(public_key_from_jwk(c.dump()).ok());
  auto no_y = j;
  no_y.erase("y");
  EXPECT_FALSE(public_key_from_jwk(no_y.dump()).ok());
}

TEST(KeyWrapTest, RoundTripAndJson) {
  auto tee = PrivateKey::generate(Curve::kP384);
  ASSERT_TRUE(tee.ok());
  const Bytes secret(32, 0x5a);
  auto wrapped = wrap_secret(*tee->public_key(), secret, "ctx");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status().to_string();
  const std::string json = wrapped_secret_to_json(*wrapped);
  EXPECT_EQ(json.find(crypto::to_hex(secret)), std::string::npos);
  auto parsed = wrapped_secret_from_json(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  auto out = unwrap_secret(*tee, *parsed, "ctx");
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(crypto::constant_time_equal(out->view(), secret));
}

TEST(KeyWrapTest, WrongKeyContextOrTamperingFails) {
  auto tee = PrivateKey::generate(Curve::kP384);
  auto other = PrivateKey::generate(Curve::kP384);
  const Bytes secret(32, 0x33);
  auto wrapped = wrap_secret(*tee->public_key(), secret, "tenet-kbs/v0 resource a/b/c");
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(unwrap_secret(*other, *wrapped, "tenet-kbs/v0 resource a/b/c").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(unwrap_secret(*tee, *wrapped, "tenet-kbs/v0 resource a/b/d").status().code(), StatusCode::kDataLoss);
  for (int field = 0; field < 3; ++field) {
    WrappedSecret w{crypto::PublicKey(), wrapped->iv, wrapped->ciphertext, wrapped->tag};
    w.ephemeral_public = std::move(crypto::PublicKey::from_raw_point(Curve::kP384, *wrapped->ephemeral_public.raw_point()).value());
    Bytes& b = field == 0 ? w.iv : field == 1 ? w.ciphertext : w.tag;
    b[0] ^= 1;
    EXPECT_EQ(unwrap_secret(*tee, w, "tenet-kbs/v0 resource a/b/c").status().code(), StatusCode::kDataLoss) << field;
  }
  // Another ephemeral key substituted.
  WrappedSecret w{std::move(PrivateKey::generate(Curve::kP384)->public_key().value()), wrapped->iv, wrapped->ciphertext, wrapped->tag};
  EXPECT_EQ(unwrap_secret(*tee, w, "tenet-kbs/v0 resource a/b/c").status().code(), StatusCode::kDataLoss);
  // A P-256 recipient cannot unwrap a P-384 epk.
  auto p256 = PrivateKey::generate(Curve::kP256);
  EXPECT_FALSE(unwrap_secret(*p256, *wrapped, "tenet-kbs/v0 resource a/b/c").ok());
}

TEST(KeyWrapTest, MalformedJsonIsRefused) {
  auto tee = PrivateKey::generate(Curve::kP384);
  auto wrapped = wrap_secret(*tee->public_key(), Bytes(32, 1), "c");
  auto j = nlohmann::json::parse(wrapped_secret_to_json(*wrapped));
  for (const char* member : {"alg", "epk", "iv", "ciphertext", "tag"}) {
    auto c = j;
    c.erase(member);
    EXPECT_FALSE(wrapped_secret_from_json(c.dump()).ok()) << member;
  }
  auto c = j;
  c["alg"] = "A256KW";
  EXPECT_FALSE(wrapped_secret_from_json(c.dump()).ok());
  c = j;
  c["iv"] = base64url_encode(Bytes(11, 0));
  EXPECT_FALSE(wrapped_secret_from_json(c.dump()).ok());
  c = j;
  c["ciphertext"] = base64url_encode(Bytes(kMaxWrappedSecretBytes + 1, 0));
  EXPECT_FALSE(wrapped_secret_from_json(c.dump()).ok());
  EXPECT_FALSE(wrapped_secret_from_json("not json").ok());
  EXPECT_FALSE(wrapped_secret_from_json("42").ok());
}

}  // namespace
}  // namespace tenet::seal
