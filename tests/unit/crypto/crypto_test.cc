// Known-answer tests for the OpenSSL wrappers (NIST / RFC vectors) and their failure paths.
#include "crypto/crypto.h"

#include <gtest/gtest.h>

namespace tenet::crypto {
namespace {

Bytes hex(std::string_view h) { return from_hex(h).value(); }

TEST(Crypto, Sha256KnownAnswer) {
  EXPECT_EQ(to_hex(sha256(as_bytes("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.finish(), sha256(as_bytes("abc")));
  EXPECT_EQ(to_hex(sha384(as_bytes("abc"))).substr(0, 16), "cb00753f45a35e8b");
}

TEST(Crypto, HkdfRfc5869Case1) {
  const Bytes okm = hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), hex("000102030405060708090a0b0c"),
                                hex("f0f1f2f3f4f5f6f7f8f9"), 42)
                        .value();
  EXPECT_EQ(to_hex(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  EXPECT_FALSE(hkdf_sha256(hex("00"), {}, {}, 0).ok());
  // RFC 5869 test case 3: no salt, no info.
  EXPECT_EQ(to_hex(hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), {}, {}, 42).value()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Crypto, AesGcmNistVectorAndTamper) {
  // GCM spec test case 14: 256-bit zero key, zero IV, one zero block.
  const Bytes key(32, 0), iv(12, 0), pt(16, 0);
  const Bytes ct = aes256gcm_seal(key, iv, {}, pt).value();
  EXPECT_EQ(to_hex(ct), "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
  EXPECT_EQ(aes256gcm_open(key, iv, {}, ct).value(), pt);

  Bytes bad = ct;
  bad[3] ^= 1;
  auto r = aes256gcm_open(key, iv, {}, bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  const Bytes aad = {1, 2, 3};
  EXPECT_FALSE(aes256gcm_open(key, iv, aad, ct).ok());                          // AAD binds
  EXPECT_FALSE(aes256gcm_open(key, iv, {}, ByteSpan(ct.data(), 10)).ok());       // truncated
  EXPECT_FALSE(aes256gcm_seal(Bytes(16, 0), iv, {}, pt).ok());                   // AES-128 key refused
  EXPECT_FALSE(aes256gcm_seal(key, Bytes(8, 0), {}, pt).ok());                   // short IV refused
}

TEST(Crypto, EcdsaSignVerifyBothCurves) {
  for (Curve c : {Curve::kP256, Curve::kP384}) {
    const PrivateKey k = PrivateKey::generate(c).value();
    const Bytes sig = k.sign(as_bytes("message")).value();
    const PublicKey pub = k.public_key().value();
    EXPECT_TRUE(pub.verify(as_bytes("message"), sig).ok());
    EXPECT_FALSE(pub.verify(as_bytes("messagE"), sig).ok());
    // PEM and raw-point round trips.
    const PrivateKey k2 = PrivateKey::from_pem(k.to_pem().value()).value();
    EXPECT_EQ(k2.public_spki_der().value(), k.public_spki_der().value());
    const PublicKey p2 = PublicKey::from_raw_point(c, pub.raw_point().value()).value();
    EXPECT_TRUE(p2.verify(as_bytes("message"), sig).ok());
    const size_t scalar = c == Curve::kP256 ? 32 : 48;
    const Bytes raw = ecdsa_der_to_raw(sig, scalar).value();
    EXPECT_EQ(raw.size(), 2 * scalar);
    EXPECT_TRUE(pub.verify(as_bytes("message"), ecdsa_raw_to_der(raw).value()).ok());
  }
}

TEST(Crypto, HostileKeyInputs) {
  Bytes not_on_curve(64, 0x11);
  EXPECT_FALSE(PublicKey::from_raw_point(Curve::kP256, not_on_curve).ok());
  EXPECT_FALSE(PublicKey::from_raw_point(Curve::kP256, Bytes(63, 1)).ok());
  EXPECT_FALSE(PublicKey::from_spki_der(Bytes{0x30, 0x82, 0xff, 0xff}).ok());
  EXPECT_FALSE(PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
  EXPECT_FALSE(ecdsa_der_to_raw(Bytes{0x30, 0x01}, 32).ok());
  EXPECT_FALSE(x509_from_der(Bytes(10, 0)).ok());
  EXPECT_FALSE(from_hex("abc").ok());
  EXPECT_FALSE(from_hex("zz").ok());
}

TEST(Crypto, EcdhAgrees) {
  const PrivateKey a = PrivateKey::generate(Curve::kP384).value();
  const PrivateKey b = PrivateKey::generate(Curve::kP384).value();
  EXPECT_EQ(a.ecdh(b.public_key().value()).value(), b.ecdh(a.public_key().value()).value());
  const PrivateKey c = PrivateKey::generate(Curve::kP256).value();
  EXPECT_FALSE(a.ecdh(c.public_key().value()).ok());
}

TEST(Crypto, ConstantTimeEqualAndWipe) {
  EXPECT_TRUE(constant_time_equal(Bytes{1, 2}, Bytes{1, 2}));
  EXPECT_FALSE(constant_time_equal(Bytes{1, 2}, Bytes{1, 3}));
  EXPECT_FALSE(constant_time_equal(Bytes{1, 2}, Bytes{1}));
  Bytes secret = {9, 9, 9};
  secure_wipe(secret);
  EXPECT_EQ(secret, (Bytes{0, 0, 0}));
}

}  // namespace
}  // namespace tenet::crypto
