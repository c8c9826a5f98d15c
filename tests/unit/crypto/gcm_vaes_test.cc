// tenet's VAES/VPCLMULQDQ AES-GCM against OpenSSL's EVP AES-GCM, with 256- and 128-bit keys: NIST
// vectors, then the
// same random messages (every length class: empty, partial blocks, the 16-block loop and its tail,
// megabytes; AAD of any length; updates split at random block boundaries) must give identical
// ciphertexts and tags. Also the public wrappers on both backends, and wrap-around of the 32-bit
// counter.
#include "crypto/gcm_vaes.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cmath>
#include <cstring>
#include <random>

#include "crypto/crypto.h"

namespace tenet::crypto {
namespace {

Bytes hex(std::string_view h) { return from_hex(h).value(); }

struct Sealed {
  Bytes text;
  Bytes tag;
};

Sealed openssl_seal(const Bytes& key, const Bytes& iv, const Bytes& aad, const Bytes& plain) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Sealed out{Bytes(plain.size()), Bytes(16)};
  int len = 0;
  const EVP_CIPHER* cipher = key.size() == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
  EXPECT_EQ(EVP_EncryptInit_ex(ctx, cipher, nullptr, key.data(), iv.data()), 1);
  if (!aad.empty()) {
    EXPECT_EQ(EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())), 1);
  }
  if (!plain.empty()) {
    EXPECT_EQ(EVP_EncryptUpdate(ctx, out.text.data(), &len, plain.data(), static_cast<int>(plain.size())), 1);
  }
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx, out.text.data() + plain.size(), &len), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out.tag.data()), 1);
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

// Runs the VAES context over `in` in random update sizes (multiples of 16, the last one free).
Sealed vaes_run(bool encrypt, const Bytes& key, const Bytes& iv, const Bytes& aad, const Bytes& in, std::mt19937& rng) {
  gcm_vaes::Context ctx;
  ctx.start(key.data(), key.size(), iv.data(), aad.data(), aad.size());
  Sealed out{Bytes(in.size()), Bytes(16)};
  size_t done = 0;
  while (done < in.size()) {
    size_t n = 16 * std::uniform_int_distribution<size_t>(0, 40)(rng);
    if (n == 0 || done + n > in.size()) n = in.size() - done;
    if (encrypt) {
      ctx.encrypt(in.data() + done, out.text.data() + done, n);
    } else {
      ctx.decrypt(in.data() + done, out.text.data() + done, n);
    }
    done += n;
  }
  ctx.finish(out.tag.data());
  return out;
}

Bytes random_bytes(size_t n, std::mt19937& rng) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

class GcmVaes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gcm_vaes::supported()) GTEST_SKIP() << "this CPU lacks VAES/VPCLMULQDQ/AVX-512; OpenSSL's GCM is used";
  }
};

// Test cases of the GCM specification (McGrew and Viega): for AES-256 cases 13, 14 and 16, for
// AES-128 cases 1, 2 and 4 (an empty message, one zero block under a zero key, then AAD and a
// partial last block under the same IV, AAD and plaintext for both key sizes).
struct SpecCases {
  size_t key_bytes;
  const char* empty_tag;
  const char* zero_block_text;
  const char* zero_block_tag;
  const char* key;
  const char* aad_tag;
};

TEST_F(GcmVaes, NistVectors) {
  const SpecCases cases[] = {
      {32, "530f8afbc74536b9a963b4f1c4cb738b", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919",
       "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "76fc6ece0f4e1768cddf8853bb2d551b"},
      {16, "58e2fccefa7e3061367f1d57a4e7455a", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf",
       "feffe9928665731c6d6a8f9467308308", "5bc94fbc3221a5db94fae95ae7121a47"},
  };
  std::mt19937 rng(1);
  for (const SpecCases& c : cases) {
    SCOPED_TRACE(c.key_bytes * 8);
    const Bytes zero_key(c.key_bytes, 0), zero_iv(12, 0);
    EXPECT_EQ(to_hex(vaes_run(true, zero_key, zero_iv, {}, {}, rng).tag), c.empty_tag);
    Sealed zero_block = vaes_run(true, zero_key, zero_iv, {}, Bytes(16, 0), rng);
    EXPECT_EQ(to_hex(zero_block.text), c.zero_block_text);
    EXPECT_EQ(to_hex(zero_block.tag), c.zero_block_tag);
    const Bytes key = hex(c.key);
    const Bytes iv = hex("cafebabefacedbaddecaf888");
    const Bytes aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    const Bytes plain = hex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    Sealed sealed = vaes_run(true, key, iv, aad, plain, rng);
    EXPECT_EQ(to_hex(sealed.tag), c.aad_tag);
    EXPECT_EQ(sealed.text, openssl_seal(key, iv, aad, plain).text);
    Sealed back = vaes_run(false, key, iv, aad, sealed.text, rng);
    EXPECT_EQ(back.text, plain);
    EXPECT_EQ(back.tag, sealed.tag);
  }
}

TEST_F(GcmVaes, MatchesOpenSslOnRandomMessages) {
  std::mt19937 rng(42);
  const size_t lengths[] = {0, 1, 15, 16, 17, 31, 255, 256, 257, 511, 512, 1000, 4096, 4111, 16384, 65536 + 48, 262144, 1 << 20};
  for (size_t key_len : {size_t{32}, size_t{16}})
  for (size_t len : lengths) {
    for (size_t aad_len : {size_t{0}, size_t{5}, size_t{16}, size_t{32}, size_t{77}}) {
      const Bytes key = random_bytes(key_len, rng), iv = random_bytes(12, rng), aad = random_bytes(aad_len, rng);
      const Bytes plain = random_bytes(len, rng);
      const Sealed ref = openssl_seal(key, iv, aad, plain);
      const Sealed enc = vaes_run(true, key, iv, aad, plain, rng);
      ASSERT_EQ(enc.text, ref.text) << "key " << key_len << " length " << len << " aad " << aad_len;
      ASSERT_EQ(enc.tag, ref.tag) << "key " << key_len << " length " << len << " aad " << aad_len;
      const Sealed dec = vaes_run(false, key, iv, aad, ref.text, rng);
      ASSERT_EQ(dec.text, plain) << "length " << len;
      ASSERT_EQ(dec.tag, ref.tag) << "length " << len;
    }
  }
}

TEST_F(GcmVaes, InPlace) {
  std::mt19937 rng(7);
  const Bytes key = random_bytes(32, rng), iv = random_bytes(12, rng);
  const Bytes plain = random_bytes(3000, rng);
  Bytes buf = plain;
  gcm_vaes::Context ctx;
  ctx.start(key.data(), key.size(), iv.data(), nullptr, 0);
  ctx.encrypt(buf.data(), buf.data(), buf.size());
  uint8_t tag[16];
  ctx.finish(tag);
  const Sealed ref = openssl_seal(key, iv, {}, plain);
  EXPECT_EQ(buf, ref.text);
  EXPECT_EQ(Bytes(tag, tag + 16), ref.tag);
}

// The counter is 32 bits (inc32) and must wrap within the low word only. A message reaches that
// only after 2^32 blocks, so the test seeks the counter to just below 2^32 and compares the
// keystream with AES-256-ECB (OpenSSL) of the expected counter blocks.
TEST_F(GcmVaes, CounterWrapsIn32Bits) {
  std::mt19937 rng(9);
  const Bytes key = random_bytes(32, rng), iv = random_bytes(12, rng);
  gcm_vaes::Context ctx;
  ctx.start(key.data(), key.size(), iv.data(), nullptr, 0);
  const uint32_t start = 0xFFFFFFFBu;
  ctx.seek_counter(start);
  const Bytes zeros(16 * 300, 0);
  Bytes stream(zeros.size());
  ctx.encrypt(zeros.data(), stream.data(), zeros.size());
  // Expected keystream: E_K(IV || be32(start + i)) with wrap-around.
  Bytes blocks(zeros.size());
  for (size_t i = 0; i < 300; ++i) {
    std::memcpy(blocks.data() + 16 * i, iv.data(), 12);
    const uint32_t c = start + static_cast<uint32_t>(i);
    blocks[16 * i + 12] = static_cast<uint8_t>(c >> 24);
    blocks[16 * i + 13] = static_cast<uint8_t>(c >> 16);
    blocks[16 * i + 14] = static_cast<uint8_t>(c >> 8);
    blocks[16 * i + 15] = static_cast<uint8_t>(c);
  }
  EVP_CIPHER_CTX* ecb = EVP_CIPHER_CTX_new();
  Bytes expect(blocks.size());
  int len = 0;
  ASSERT_EQ(EVP_EncryptInit_ex(ecb, EVP_aes_256_ecb(), nullptr, key.data(), nullptr), 1);
  EVP_CIPHER_CTX_set_padding(ecb, 0);
  ASSERT_EQ(EVP_EncryptUpdate(ecb, expect.data(), &len, blocks.data(), static_cast<int>(blocks.size())), 1);
  EVP_CIPHER_CTX_free(ecb);
  EXPECT_EQ(stream, expect);
}

// AES-256-CTR key stream from any block on: OpenSSL's EVP_aes_256_ctr bytes (of zeros), for
// lengths around the 16-block step and partial blocks, from block 0 and from later blocks.
TEST_F(GcmVaes, CtrKeystreamMatchesOpenSsl) {
  std::mt19937 rng(11);
  const Bytes key = random_bytes(32, rng);
  Bytes iv = random_bytes(16, rng);
  iv[12] = iv[13] = 0;  // room below 2^32 blocks for the offsets used here
  const size_t total = 70000;
  Bytes want(total);
  {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    const Bytes zeros(total, 0);
    ASSERT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key.data(), iv.data()), 1);
    ASSERT_EQ(EVP_EncryptUpdate(ctx, want.data(), &len, zeros.data(), static_cast<int>(total)), 1);
    EVP_CIPHER_CTX_free(ctx);
  }
  for (uint64_t first : {uint64_t{0}, uint64_t{1}, uint64_t{17}, uint64_t{1000}}) {
    for (size_t n : {size_t{0}, size_t{4}, size_t{16}, size_t{255}, size_t{256}, size_t{257}, size_t{4096 + 20}, size_t{50000}}) {
      Bytes got(n, 0xaa);
      gcm_vaes::ctr_keystream(key.data(), iv.data(), first, got.data(), n);
      ASSERT_EQ(got, Bytes(want.begin() + static_cast<std::ptrdiff_t>(16 * first),
                           want.begin() + static_cast<std::ptrdiff_t>(16 * first + n)))
          << "first block " << first << " bytes " << n;
    }
  }
}

// The public wrappers give the same bytes on both backends, and refuse tampering on both.
TEST(GcmBackends, WrappersAgreeAndRefuseTampering) {
  std::mt19937 rng(3);
  std::vector<std::string> backends = {"openssl"};
  if (gcm_vaes::supported()) backends.push_back("vaes-avx512");
  EXPECT_FALSE(set_aes_gcm_backend("aes-ni-please").ok());
  for (const std::string& backend : backends)
  for (size_t len : {size_t{0}, size_t{100}, size_t{16384}, size_t{16384 * 3 + 5}, size_t{262144}}) {
    const Bytes key = random_bytes(32, rng), iv = random_bytes(12, rng), aad = random_bytes(24, rng);
    ASSERT_TRUE(set_aes_gcm_backend(backend).ok());
    EXPECT_EQ(aes_gcm_backend(), backend);
    const Bytes plain = random_bytes(len, rng);
    const Sealed ref = openssl_seal(key, iv, aad, plain);
    Bytes sealed = aes256gcm_seal(key, iv, aad, plain).value();
    Bytes joined = ref.text;
    joined.insert(joined.end(), ref.tag.begin(), ref.tag.end());
    EXPECT_EQ(sealed, joined);
    EXPECT_EQ(aes256gcm_open(key, iv, aad, sealed).value(), plain);
    Bytes out(len);
    ASSERT_TRUE(aes256gcm_open_from_untrusted(key, iv, aad, ref.text, ref.tag, out).ok());
    EXPECT_EQ(out, plain);
    // Tampered ciphertext, tag, AAD: refused, output wiped.
    if (len > 0) {
      Bytes bad = ref.text;
      bad[len / 2] ^= 0x20;
      EXPECT_EQ(aes256gcm_open_from_untrusted(key, iv, aad, bad, ref.tag, out).code(), StatusCode::kDataLoss);
      EXPECT_EQ(out, Bytes(len, 0));
    }
    Bytes bad_tag = ref.tag;
    bad_tag[15] ^= 1;
    EXPECT_EQ(aes256gcm_open_from_untrusted(key, iv, aad, ref.text, bad_tag, out).code(), StatusCode::kDataLoss);
    Bytes bad_aad = aad;
    bad_aad[0] ^= 1;
    EXPECT_EQ(aes256gcm_open(key, iv, bad_aad, sealed).status().code(), StatusCode::kDataLoss);
  }
  ASSERT_TRUE(set_aes_gcm_backend("auto").ok());
}

// Decrypting into dot products: each row's 64 lanes equal the lanes of the same sums over the
// plaintext OpenSSL decrypts (fused multiply-adds in order: the engine's gemv order),
// bit for bit, with the ciphertext at any 16-byte offset; a tampered text or tag is refused with
// the lanes wiped; rows that are not whole 256-byte steps, or the OpenSSL backend, are declined.
TEST_F(GcmVaes, DecryptsIntoDotProductsOfTheRows) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (const size_t k : {size_t{64}, size_t{192}, size_t{9216}}) {
    for (const size_t rows : {size_t{1}, size_t{3}, size_t{7}}) {
      SCOPED_TRACE(::testing::Message() << k << " x " << rows);
      std::vector<float> w(rows * k), x(k);
      for (float& v : w) v = u(rng) * 0.05f;
      for (float& v : x) v = u(rng);
      const Bytes key = random_bytes(16, rng), iv = random_bytes(12, rng), aad = random_bytes(40, rng);
      Bytes plain(w.size() * sizeof(float));
      std::memcpy(plain.data(), w.data(), plain.size());
      const Sealed sealed = openssl_seal(key, iv, aad, plain);
      std::vector<float> want(rows * 64, 0.f);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < k; i += 64) {
          for (size_t j = 0; j < 64; ++j) {
            want[r * 64 + j] = std::fma(x[i + j], w[r * k + i + j], want[r * 64 + j]);
          }
        }
      }
      // At an offset that is not a multiple of 64, as the sealed store's chunks after the first are.
      Bytes shifted(16 + sealed.text.size());
      std::memcpy(shifted.data() + 16, sealed.text.data(), sealed.text.size());
      const ByteSpan text(shifted.data() + 16, sealed.text.size());
      std::vector<float> lanes(rows * 64, 1.f);
      ASSERT_TRUE(aes128gcm_open_dot_from_untrusted(key, iv, aad, text, sealed.tag, x.data(), k, lanes).ok());
      EXPECT_EQ(std::memcmp(lanes.data(), want.data(), lanes.size() * sizeof(float)), 0);

      Bytes bad = sealed.text;
      bad[bad.size() / 2] ^= 0x04;
      EXPECT_EQ(aes128gcm_open_dot_from_untrusted(key, iv, aad, bad, sealed.tag, x.data(), k, lanes).code(), StatusCode::kDataLoss);
      EXPECT_EQ(lanes, std::vector<float>(rows * 64, 0.f));
      Bytes bad_tag = sealed.tag;
      bad_tag[0] ^= 1;
      EXPECT_EQ(aes128gcm_open_dot_from_untrusted(key, iv, aad, sealed.text, bad_tag, x.data(), k, lanes).code(),
                StatusCode::kDataLoss);
      std::vector<float> short_lanes(rows * 64 - 1);
      EXPECT_EQ(aes128gcm_open_dot_from_untrusted(key, iv, aad, sealed.text, sealed.tag, x.data(), k, short_lanes).code(),
                StatusCode::kInvalidArgument);
    }
  }
  std::vector<float> x(100), lanes(64);
  const Bytes key(16, 1), iv(12, 2), text(400), tag(16);
  EXPECT_FALSE(aes128gcm_dot_supported(100));
  EXPECT_EQ(aes128gcm_open_dot_from_untrusted(key, iv, {}, text, tag, x.data(), 100, lanes).code(), StatusCode::kUnimplemented);
  ASSERT_TRUE(set_aes_gcm_backend("openssl").ok());
  EXPECT_FALSE(aes128gcm_dot_supported(64));
  ASSERT_TRUE(set_aes_gcm_backend("auto").ok());
  EXPECT_TRUE(aes128gcm_dot_supported(64));
}

}  // namespace
}  // namespace tenet::crypto
