#include "crypto/crypto.h"

#include "crypto/gcm_vaes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

namespace tenet::crypto {
namespace {

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, CtxDeleter>;

Status ossl_error(const char* what) { return internal_error("{}: {}", what, openssl_errors()); }

Owned<BIO> mem_bio(std::string_view data) {
  return Owned<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

const char* curve_group_name(Curve c) { return c == Curve::kP256 ? "prime256v1" : "secp384r1"; }

Result<Curve> pkey_curve(EVP_PKEY* pkey) {
  if (pkey == nullptr || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) return invalid_argument("not an EC key");
  char name[64] = {};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) != 1) {
    return ossl_error("reading EC group");
  }
  const std::string_view n(name, len);
  if (n == "prime256v1" || n == "P-256") return Curve::kP256;
  if (n == "secp384r1" || n == "P-384") return Curve::kP384;
  return unimplemented("EC curve '{}' (tenet uses P-256 and P-384)", n);
}

const EVP_MD* curve_digest(Curve c) { return c == Curve::kP256 ? EVP_sha256() : EVP_sha384(); }

// key_bytes: kAesGcmKeyBytes (AES-256) or kAes128GcmKeyBytes (AES-128), whichever the caller's
// function name promises.
Status check_gcm_args(ByteSpan key, ByteSpan iv, size_t key_bytes) {
  if (key.size() != key_bytes) return invalid_argument("AES-{}-GCM key must be {} bytes, got {}", key_bytes * 8, key_bytes, key.size());
  if (iv.size() != kAesGcmIvBytes) return invalid_argument("AES-GCM IV must be 12 bytes, got {}", iv.size());
  return ok_status();
}

constexpr size_t kMaxGcmInput = size_t{1} << 36;  // SP 800-38D bounds one message at 2^39-256 bits

}  // namespace

std::string openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

Status random_bytes(std::span<uint8_t> out) {
  if (out.empty()) return ok_status();
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) return ossl_error("RAND_bytes");
  return ok_status();
}

Result<Bytes> random_bytes(size_t count) {
  Bytes b(count);
  TENET_RETURN_IF_ERROR(random_bytes(std::span<uint8_t>(b)));
  return b;
}

bool constant_time_equal(ByteSpan a, ByteSpan b) {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void secure_wipe(void* data, size_t size) {
  if (data != nullptr && size > 0) OPENSSL_cleanse(data, size);
}

std::string to_hex(ByteSpan data) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(data.size() * 2, '0');
  for (size_t i = 0; i < data.size(); ++i) {
    s[2 * i] = kDigits[data[i] >> 4];
    s[2 * i + 1] = kDigits[data[i] & 15];
  }
  return s;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return invalid_argument("hex string has odd length {}", hex.size());
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return invalid_argument("not a hex digit at offset {}", 2 * i + (hi < 0 ? 0 : 1));
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

Sha256Digest sha256(ByteSpan data) {
  Sha256Digest d{};
  EVP_Digest(data.data(), data.size(), d.data(), nullptr, EVP_sha256(), nullptr);
  return d;
}

Sha384Digest sha384(ByteSpan data) {
  Sha384Digest d{};
  EVP_Digest(data.data(), data.size(), d.data(), nullptr, EVP_sha384(), nullptr);
  return d;
}

struct Sha256::Impl {
  Owned<EVP_MD_CTX> ctx{EVP_MD_CTX_new()};
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { EVP_DigestInit_ex(impl_->ctx.get(), EVP_sha256(), nullptr); }
Sha256::~Sha256() = default;
void Sha256::update(ByteSpan data) { EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()); }
Sha256Digest Sha256::finish() {
  Sha256Digest d{};
  EVP_DigestFinal_ex(impl_->ctx.get(), d.data(), nullptr);
  EVP_DigestInit_ex(impl_->ctx.get(), EVP_sha256(), nullptr);
  return d;
}

Result<Sha256Digest> sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return not_found("cannot open '{}': {}", path, std::strerror(errno));
  Sha256 h;
  std::vector<uint8_t> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(ByteSpan(buf.data(), n));
  const bool err = std::ferror(f) != 0;
  std::fclose(f);
  if (err) return data_loss("reading '{}' failed", path);
  return h.finish();
}

Result<Bytes> hmac_sha256(ByteSpan key, ByteSpan data) {
  Bytes out(32);
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(), &len) == nullptr) {
    return ossl_error("HMAC-SHA256");
  }
  return out;
}

Result<Bytes> hkdf_sha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, size_t out_size) {
  if (out_size == 0 || out_size > 255 * 32) return invalid_argument("HKDF output size {} out of range", out_size);
  // RFC 5869 §2.2: an absent salt is HashLen zero bytes (OpenSSL refuses a zero-length one).
  static const uint8_t kZeroSalt[32] = {};
  if (salt.empty()) salt = ByteSpan(kZeroSalt, sizeof(kZeroSalt));
  Owned<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  Bytes out(out_size);
  size_t len = out_size;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 || EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt.data(), static_cast<int>(salt.size())) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) <= 0 || len != out_size) {
    return ossl_error("HKDF-SHA256");
  }
  return out;
}

namespace {

// Starts an AES-GCM operation (`enc` 1 to seal, 0 to open; AES-128 for a 16-byte key, else AES-256)
// and feeds the AAD.
Status gcm_begin(EVP_CIPHER_CTX* ctx, ByteSpan key, ByteSpan iv, ByteSpan aad, int enc) {
  int len = 0;
  const EVP_CIPHER* cipher = key.size() == kAes128GcmKeyBytes ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
  if (ctx == nullptr || EVP_CipherInit_ex(ctx, cipher, nullptr, key.data(), iv.data(), enc) != 1) {
    return ossl_error("AES-GCM init");
  }
  if (!aad.empty() && EVP_CipherUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return ossl_error("AES-GCM aad");
  }
  return ok_status();
}

// Which AES-GCM runs: 1 = tenet's VAES/AVX-512 code (gcm_vaes.h), 0 = OpenSSL's EVP, -1 = not yet
// decided (VAES when the CPU has it, unless TENET_GCM=openssl).
std::atomic<int> g_gcm_vaes{-1};

bool use_vaes_gcm() {
  int v = g_gcm_vaes.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv("TENET_GCM");
    v = gcm_vaes::supported() && !(env != nullptr && std::string_view(env) == "openssl") ? 1 : 0;
    g_gcm_vaes.store(v, std::memory_order_relaxed);
  }
  return v == 1;
}

// Constant-time tag comparison; the decrypted text is wiped when the tag does not verify.
Status check_tag(const uint8_t* expected, const uint8_t* computed, std::span<uint8_t> out) {
  if (CRYPTO_memcmp(expected, computed, kAesGcmTagBytes) != 0) {
    secure_wipe(out.data(), out.size());
    return data_loss("AES-GCM authentication failed (tampered data or wrong key)");
  }
  return ok_status();
}

// Opens with tenet's VAES GCM, which reads each ciphertext byte once and uses that one copy for
// both GHASH and decryption, so `ciphertext` may lie in untrusted memory. The tag is copied first.
Status vaes_open(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext, ByteSpan tag, std::span<uint8_t> out) {
  uint8_t expected[kAesGcmTagBytes], computed[kAesGcmTagBytes];
  std::memcpy(expected, tag.data(), kAesGcmTagBytes);
  gcm_vaes::Context vaes;
  vaes.start(key.data(), key.size(), iv.data(), aad.data(), aad.size());
  vaes.decrypt(ciphertext.data(), out.data(), ciphertext.size());
  vaes.finish(computed);
  return check_tag(expected, computed, out);
}

// Runs `in` through the cipher into `out` (same size). EVP takes int lengths: large messages go
// in pieces.
Status gcm_update(EVP_CIPHER_CTX* ctx, ByteSpan in, uint8_t* out) {
  size_t done = 0;
  int len = 0;
  while (done < in.size()) {
    const int piece = static_cast<int>(std::min<size_t>(in.size() - done, size_t{1} << 30));
    if (EVP_CipherUpdate(ctx, out + done, &len, in.data() + done, piece) != 1) return ossl_error("AES-GCM update");
    done += static_cast<size_t>(len);
  }
  return ok_status();
}

}  // namespace

std::string_view aes_gcm_backend() { return use_vaes_gcm() ? "vaes-avx512" : "openssl"; }

Status set_aes_gcm_backend(std::string_view name) {
  if (name == "openssl") {
    g_gcm_vaes.store(0, std::memory_order_relaxed);
  } else if (name == "vaes-avx512") {
    if (!gcm_vaes::supported()) return failed_precondition("this CPU lacks AVX-512 VAES/VPCLMULQDQ");
    g_gcm_vaes.store(1, std::memory_order_relaxed);
  } else if (name == "auto") {
    g_gcm_vaes.store(-1, std::memory_order_relaxed);
  } else {
    return invalid_argument("unknown AES-GCM backend '{}' (auto, vaes-avx512, openssl)", name);
  }
  return ok_status();
}

namespace {

Status gcm_seal_into(size_t key_bytes, ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext, std::span<uint8_t> out) {
  TENET_RETURN_IF_ERROR(check_gcm_args(key, iv, key_bytes));
  if (plaintext.size() > kMaxGcmInput) return out_of_range("AES-GCM message of {} bytes is too large", plaintext.size());
  if (out.size() != plaintext.size() + kAesGcmTagBytes) {
    return invalid_argument("AES-GCM output buffer is {} bytes, expected {}", out.size(), plaintext.size() + kAesGcmTagBytes);
  }
  if (use_vaes_gcm()) {
    gcm_vaes::Context vaes;
    vaes.start(key.data(), key.size(), iv.data(), aad.data(), aad.size());
    vaes.encrypt(plaintext.data(), out.data(), plaintext.size());
    vaes.finish(out.data() + plaintext.size());
    return ok_status();
  }
  Owned<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
  TENET_RETURN_IF_ERROR(gcm_begin(ctx.get(), key, iv, aad, 1));
  TENET_RETURN_IF_ERROR(gcm_update(ctx.get(), plaintext, out.data()));
  int len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + plaintext.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAesGcmTagBytes, out.data() + plaintext.size()) != 1) {
    return ossl_error("AES-GCM final");
  }
  return ok_status();
}

}  // namespace

Status aes256gcm_seal_into(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext, std::span<uint8_t> out) {
  return gcm_seal_into(kAesGcmKeyBytes, key, iv, aad, plaintext, out);
}
Status aes128gcm_seal_into(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext, std::span<uint8_t> out) {
  return gcm_seal_into(kAes128GcmKeyBytes, key, iv, aad, plaintext, out);
}

Result<Bytes> aes256gcm_seal(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext) {
  Bytes out(plaintext.size() + kAesGcmTagBytes);
  TENET_RETURN_IF_ERROR(aes256gcm_seal_into(key, iv, aad, plaintext, out));
  return out;
}

Status aes256gcm_open_into(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext_and_tag, std::span<uint8_t> out) {
  TENET_RETURN_IF_ERROR(check_gcm_args(key, iv, kAesGcmKeyBytes));
  if (ciphertext_and_tag.size() < kAesGcmTagBytes) {
    return data_loss("AES-GCM message of {} bytes is shorter than its tag", ciphertext_and_tag.size());
  }
  const size_t n = ciphertext_and_tag.size() - kAesGcmTagBytes;
  if (n > kMaxGcmInput) return out_of_range("AES-GCM message of {} bytes is too large", n);
  if (out.size() != n) return invalid_argument("AES-GCM output buffer is {} bytes, expected {}", out.size(), n);
  if (use_vaes_gcm()) return vaes_open(key, iv, aad, ciphertext_and_tag.first(n), ciphertext_and_tag.subspan(n), out);
  Owned<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
  TENET_RETURN_IF_ERROR(gcm_begin(ctx.get(), key, iv, aad, 0));
  if (Status s = gcm_update(ctx.get(), ciphertext_and_tag.first(n), out.data()); !s.ok()) {
    secure_wipe(out.data(), out.size());
    return s;
  }
  int len = 0;
  uint8_t tag[kAesGcmTagBytes];
  std::memcpy(tag, ciphertext_and_tag.data() + n, kAesGcmTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAesGcmTagBytes, tag) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &len) != 1) {
    ERR_clear_error();
    secure_wipe(out.data(), out.size());
    return data_loss("AES-GCM authentication failed (tampered data or wrong key)");
  }
  return ok_status();
}

namespace {

Status gcm_open_from_untrusted(size_t key_bytes, ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                               std::span<uint8_t> out) {
  TENET_RETURN_IF_ERROR(check_gcm_args(key, iv, key_bytes));
  if (tag.size() != kAesGcmTagBytes) return invalid_argument("AES-GCM tag of {} bytes, expected {}", tag.size(), kAesGcmTagBytes);
  if (untrusted_ciphertext.size() > kMaxGcmInput) return out_of_range("AES-GCM message of {} bytes is too large", untrusted_ciphertext.size());
  if (out.size() != untrusted_ciphertext.size()) {
    return invalid_argument("AES-GCM output buffer is {} bytes, expected {}", out.size(), untrusted_ciphertext.size());
  }
  // tenet's GCM runs straight off untrusted memory (no bounce copy; the hardware prefetcher
  // streams the ciphertext while the rounds run).
  if (use_vaes_gcm()) return vaes_open(key, iv, aad, untrusted_ciphertext, tag, out);
  // OpenSSL's GCM may read its input twice (GHASH and counter mode in separate passes), so each
  // piece is first copied into private memory.
  constexpr size_t kPiece = 16 * 1024;  // stays in L1/L2 between the copy and the decryption
  alignas(64) uint8_t bounce[kPiece];
  Owned<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
  TENET_RETURN_IF_ERROR(gcm_begin(ctx.get(), key, iv, aad, 0));
  for (size_t done = 0; done < untrusted_ciphertext.size();) {
    const size_t n = std::min(kPiece, untrusted_ciphertext.size() - done);
    std::memcpy(bounce, untrusted_ciphertext.data() + done, n);
    int len = 0;
    if (EVP_DecryptUpdate(ctx.get(), out.data() + done, &len, bounce, static_cast<int>(n)) != 1 || static_cast<size_t>(len) != n) {
      secure_wipe(out.data(), out.size());
      return ossl_error("AES-GCM update");
    }
    done += n;
  }
  int len = 0;
  uint8_t tag_copy[kAesGcmTagBytes];
  std::memcpy(tag_copy, tag.data(), kAesGcmTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAesGcmTagBytes, tag_copy) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + out.size(), &len) != 1) {
    ERR_clear_error();
    secure_wipe(out.data(), out.size());
    return data_loss("AES-GCM authentication failed (tampered data or wrong key)");
  }
  return ok_status();
}

}  // namespace

Status aes256gcm_open_from_untrusted(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                                     std::span<uint8_t> out) {
  return gcm_open_from_untrusted(kAesGcmKeyBytes, key, iv, aad, untrusted_ciphertext, tag, out);
}
Status aes128gcm_open_from_untrusted(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                                     std::span<uint8_t> out) {
  return gcm_open_from_untrusted(kAes128GcmKeyBytes, key, iv, aad, untrusted_ciphertext, tag, out);
}

bool aes128gcm_dot_supported(int64_t k) { return use_vaes_gcm() && k > 0 && k % 64 == 0; }

Status aes128gcm_open_dot_from_untrusted(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                                         const float* x, size_t k, std::span<float> lanes) {
  TENET_RETURN_IF_ERROR(check_gcm_args(key, iv, kAes128GcmKeyBytes));
  if (tag.size() != kAesGcmTagBytes) return invalid_argument("AES-GCM tag of {} bytes, expected {}", tag.size(), kAesGcmTagBytes);
  if (!aes128gcm_dot_supported(static_cast<int64_t>(k))) return unimplemented("no fused AES-GCM dot product for rows of {} floats here", k);
  const size_t row_bytes = k * sizeof(float);
  if (untrusted_ciphertext.size() % row_bytes != 0 || lanes.size() != untrusted_ciphertext.size() / row_bytes * 64) {
    return invalid_argument("AES-GCM dot product: {} bytes of text and {} lanes for rows of {} floats", untrusted_ciphertext.size(),
                            lanes.size(), k);
  }
  uint8_t expected[kAesGcmTagBytes], computed[kAesGcmTagBytes];
  std::memcpy(expected, tag.data(), kAesGcmTagBytes);
  gcm_vaes::Context vaes;
  vaes.start(key.data(), key.size(), iv.data(), aad.data(), aad.size());
  vaes.decrypt_dot_f32(untrusted_ciphertext.data(), untrusted_ciphertext.size() / row_bytes, k, x, lanes.data());
  vaes.finish(computed);
  return check_tag(expected, computed, std::span(reinterpret_cast<uint8_t*>(lanes.data()), lanes.size_bytes()));
}

Status aes256gcm_open_pieces(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext_and_tag, size_t piece_bytes,
                             const std::function<void(size_t, ByteSpan)>& sink) {
  TENET_RETURN_IF_ERROR(check_gcm_args(key, iv, kAesGcmKeyBytes));
  if (ciphertext_and_tag.size() < kAesGcmTagBytes) {
    return data_loss("AES-GCM message of {} bytes is shorter than its tag", ciphertext_and_tag.size());
  }
  const size_t n = ciphertext_and_tag.size() - kAesGcmTagBytes;
  if (n > kMaxGcmInput) return out_of_range("AES-GCM message of {} bytes is too large", n);
  if (piece_bytes == 0 || piece_bytes % 64 != 0) return invalid_argument("AES-GCM pieces of {} bytes (a multiple of 64 > 0)", piece_bytes);
  uint8_t expected[kAesGcmTagBytes], computed[kAesGcmTagBytes];
  std::memcpy(expected, ciphertext_and_tag.data() + n, kAesGcmTagBytes);
  std::vector<uint8_t> piece(std::min(piece_bytes, std::max<size_t>(n, 1)));
  const uint8_t* text = ciphertext_and_tag.data();
  Status s = ok_status();
  if (use_vaes_gcm()) {
    gcm_vaes::Context vaes;
    vaes.start(key.data(), key.size(), iv.data(), aad.data(), aad.size());
    for (size_t off = 0; off < n; off += piece_bytes) {
      const size_t m = std::min(piece_bytes, n - off);
      vaes.decrypt(text + off, piece.data(), m);
      sink(off, ByteSpan(piece.data(), m));
    }
    vaes.finish(computed);
  } else {
    Owned<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
    s = gcm_begin(ctx.get(), key, iv, aad, 0);
    for (size_t off = 0; s.ok() && off < n; off += piece_bytes) {
      const size_t m = std::min(piece_bytes, n - off);
      s = gcm_update(ctx.get(), ByteSpan(text + off, m), piece.data());
      if (s.ok()) sink(off, ByteSpan(piece.data(), m));
    }
    int len = 0;
    if (s.ok() && (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAesGcmTagBytes, expected) != 1 ||
                   EVP_DecryptFinal_ex(ctx.get(), piece.data(), &len) != 1)) {
      ERR_clear_error();
      s = data_loss("AES-GCM authentication failed (tampered data or wrong key)");
    }
    std::memcpy(computed, expected, kAesGcmTagBytes);  // checked by OpenSSL above
  }
  secure_wipe(piece.data(), piece.size());
  TENET_RETURN_IF_ERROR(s);
  return check_tag(expected, computed, {});
}

Result<Bytes> aes256gcm_open(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kAesGcmTagBytes) {
    return data_loss("AES-GCM message of {} bytes is shorter than its tag", ciphertext_and_tag.size());
  }
  Bytes out(ciphertext_and_tag.size() - kAesGcmTagBytes);
  TENET_RETURN_IF_ERROR(aes256gcm_open_into(key, iv, aad, ciphertext_and_tag, out));
  return out;
}

// ---- keys ----

void PkeyDeleter::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
void X509Deleter::operator()(X509* p) const { X509_free(p); }

Result<PublicKey> PublicKey::from_spki_der(ByteSpan der) {
  const unsigned char* p = der.data();
  PkeyPtr k(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!k || p != der.data() + der.size()) {
    ERR_clear_error();
    return invalid_argument("not a DER SubjectPublicKeyInfo ({} bytes)", der.size());
  }
  return PublicKey(std::move(k));
}

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  auto bio = mem_bio(pem);
  PkeyPtr k(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!k) {
    ERR_clear_error();
    return invalid_argument("not a PEM public key");
  }
  return PublicKey(std::move(k));
}

Result<PublicKey> PublicKey::from_raw_point(Curve curve, ByteSpan xy) {
  const size_t coord = curve == Curve::kP256 ? 32 : 48;
  if (xy.size() != 2 * coord) return invalid_argument("EC point must be {} bytes, got {}", 2 * coord, xy.size());
  Bytes point(1 + xy.size());
  point[0] = 0x04;
  std::memcpy(point.data() + 1, xy.data(), xy.size());
  Owned<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve_group_name(curve)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()), OSSL_PARAM_construct_end()};
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 || EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    ERR_clear_error();
    return invalid_argument("EC point is not on the curve");
  }
  PkeyPtr k(raw);
  // fromdata does not always check the point; a public-key check does.
  Owned<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, k.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    return invalid_argument("EC point is not on the curve");
  }
  return PublicKey(std::move(k));
}

Result<Bytes> PublicKey::spki_der() const {
  if (!pkey_) return failed_precondition("empty public key");
  unsigned char* out = nullptr;
  const int n = i2d_PUBKEY(pkey_.get(), &out);
  if (n <= 0) return ossl_error("encoding SubjectPublicKeyInfo");
  Bytes b(out, out + n);
  OPENSSL_free(out);
  return b;
}

Result<std::string> PublicKey::to_pem() const {
  if (!pkey_) return failed_precondition("empty public key");
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(bio.get(), pkey_.get()) != 1) return ossl_error("writing PEM public key");
  return bio_to_string(bio.get());
}

Result<Bytes> PublicKey::raw_point() const {
  if (!pkey_) return failed_precondition("empty public key");
  uint8_t buf[1 + 2 * 66];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(pkey_.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof(buf), &len) != 1 ||
      len < 1 || buf[0] != 0x04) {
    // Point format may be compressed by default on some builds; ask for uncompressed.
    return ossl_error("reading EC point");
  }
  return Bytes(buf + 1, buf + len);
}

Result<Curve> PublicKey::curve() const { return pkey_curve(pkey_.get()); }

Status PublicKey::verify(ByteSpan message, ByteSpan signature_der) const {
  TENET_ASSIGN_OR_RETURN(const Curve c, curve());
  Owned<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, curve_digest(c), nullptr, pkey_.get()) != 1) {
    return ossl_error("ECDSA verify init");
  }
  const int r = EVP_DigestVerify(ctx.get(), signature_der.data(), signature_der.size(), message.data(), message.size());
  ERR_clear_error();
  if (r != 1) return invalid_argument("ECDSA signature does not verify");
  return ok_status();
}

Result<PrivateKey> PrivateKey::generate(Curve curve) {
  PkeyPtr k(EVP_EC_gen(curve_group_name(curve)));
  if (!k) return ossl_error("generating EC key");
  return PrivateKey(std::move(k));
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  auto bio = mem_bio(pem);
  PkeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!k) {
    ERR_clear_error();
    return invalid_argument("not a PEM private key");
  }
  TENET_RETURN_IF_ERROR(pkey_curve(k.get()).status());
  return PrivateKey(std::move(k));
}

Result<std::string> PrivateKey::to_pem() const {
  if (!pkey_) return failed_precondition("empty private key");
  Owned<BIO> bio(BIO_new(BIO_s_secmem()));
  if (!bio) bio.reset(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return ossl_error("writing PEM private key");
  }
  return bio_to_string(bio.get());
}

Result<Bytes> PrivateKey::public_spki_der() const {
  if (!pkey_) return failed_precondition("empty private key");
  unsigned char* out = nullptr;
  const int n = i2d_PUBKEY(pkey_.get(), &out);
  if (n <= 0) return ossl_error("encoding SubjectPublicKeyInfo");
  Bytes b(out, out + n);
  OPENSSL_free(out);
  return b;
}

Result<PublicKey> PrivateKey::public_key() const {
  TENET_ASSIGN_OR_RETURN(Bytes der, public_spki_der());
  return PublicKey::from_spki_der(der);
}

Result<Curve> PrivateKey::curve() const { return pkey_curve(pkey_.get()); }

Result<Bytes> PrivateKey::sign(ByteSpan message) const {
  TENET_ASSIGN_OR_RETURN(const Curve c, curve());
  Owned<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, curve_digest(c), nullptr, pkey_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()) != 1) {
    return ossl_error("ECDSA sign init");
  }
  Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1) return ossl_error("ECDSA sign");
  sig.resize(len);
  return sig;
}

Result<Bytes> PrivateKey::ecdh(const PublicKey& peer) const {
  if (!pkey_ || !peer.valid()) return failed_precondition("ECDH needs both keys");
  TENET_ASSIGN_OR_RETURN(const Curve mine, curve());
  TENET_ASSIGN_OR_RETURN(const Curve theirs, peer.curve());
  if (mine != theirs) return invalid_argument("ECDH peer key is on another curve");
  Owned<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new(pkey_.get(), nullptr));
  size_t len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) {
    ERR_clear_error();
    return invalid_argument("ECDH with the peer key failed");
  }
  Bytes secret(len);
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1) return ossl_error("ECDH derive");
  secret.resize(len);
  return secret;
}

Result<Bytes> ecdsa_der_to_raw(ByteSpan der, size_t scalar_bytes) {
  const unsigned char* p = der.data();
  Owned<ECDSA_SIG> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    ERR_clear_error();
    return invalid_argument("not a DER ECDSA signature");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  Bytes raw(2 * scalar_bytes);
  if (BN_bn2binpad(r, raw.data(), static_cast<int>(scalar_bytes)) < 0 ||
      BN_bn2binpad(s, raw.data() + scalar_bytes, static_cast<int>(scalar_bytes)) < 0) {
    return invalid_argument("ECDSA signature scalar wider than {} bytes", scalar_bytes);
  }
  return raw;
}

Result<Bytes> ecdsa_raw_to_der(ByteSpan raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > 132) return invalid_argument("raw ECDSA signature of {} bytes", raw.size());
  const int half = static_cast<int>(raw.size() / 2);
  Owned<ECDSA_SIG> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), half, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, half, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return ossl_error("building ECDSA signature");
  }
  unsigned char* out = nullptr;
  const int n = i2d_ECDSA_SIG(sig.get(), &out);
  if (n <= 0) return ossl_error("encoding ECDSA signature");
  Bytes der(out, out + n);
  OPENSSL_free(out);
  return der;
}

// ---- X.509 ----

Result<X509Ptr> x509_from_pem(std::string_view pem) {
  auto bio = mem_bio(pem);
  X509Ptr c(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!c) {
    ERR_clear_error();
    return invalid_argument("not a PEM certificate");
  }
  return c;
}

Result<X509Ptr> x509_from_der(ByteSpan der) {
  const unsigned char* p = der.data();
  X509Ptr c(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!c || p != der.data() + der.size()) {
    ERR_clear_error();
    return invalid_argument("not a DER certificate ({} bytes)", der.size());
  }
  return c;
}

Result<std::string> x509_to_pem(X509* cert) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (cert == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) return ossl_error("writing PEM certificate");
  return bio_to_string(bio.get());
}

Result<Bytes> x509_to_der(X509* cert) {
  unsigned char* out = nullptr;
  const int n = cert ? i2d_X509(cert, &out) : -1;
  if (n <= 0) return ossl_error("encoding certificate");
  Bytes b(out, out + n);
  OPENSSL_free(out);
  return b;
}

Result<std::vector<X509Ptr>> x509_chain_from_pem(std::string_view pem) {
  auto bio = mem_bio(pem);
  std::vector<X509Ptr> chain;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) chain.emplace_back(c);
  ERR_clear_error();  // the loop ends on "no start line"
  if (chain.empty()) return invalid_argument("no PEM certificate found");
  return chain;
}

Result<std::string> read_file(const std::string& path, size_t max_size) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return not_found("cannot open '{}': {}", path, std::strerror(errno));
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0) return data_loss("cannot size '{}'", path);
  if (static_cast<size_t>(size) > max_size) return out_of_range("'{}' is {} bytes, limit {}", path, size, max_size);
  f.seekg(0);
  std::string data(static_cast<size_t>(size), '\0');
  if (!f.read(data.data(), size)) return data_loss("reading '{}' failed", path);
  return data;
}

Status write_file(const std::string& path, std::string_view data, unsigned mode) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return invalid_argument("cannot create '{}': {}", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return internal_error("writing '{}': {}", tmp, std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return internal_error("flushing '{}': {}", tmp, std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return internal_error("renaming '{}' to '{}': {}", tmp, path, std::strerror(errno));
  }
  return ok_status();
}

}  // namespace tenet::crypto
