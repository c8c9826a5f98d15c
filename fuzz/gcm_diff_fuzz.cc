// libFuzzer target: tenet's VAES AES-GCM (src/crypto/gcm_vaes.h), 256- and 128-bit keys, against
// OpenSSL's on fuzzer-chosen keys, IVs, AAD, messages and update splits. Both directions must give the same
// bytes and tag, and a fuzzer-chosen bit flip in the ciphertext, tag or AAD must fail to
// authenticate through the public wrapper on both backends.
//
// Input layout: key (32) | iv (12) | aad length (1) | split seed (1) | flip position (2) | rest:
// aad then message. Bit 3 of the split seed selects AES-128 (the key's first 16 bytes).
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "crypto/crypto.h"
#include "crypto/gcm_vaes.h"

namespace {

std::vector<uint8_t> openssl_seal(const uint8_t* key, size_t key_bytes, const uint8_t* iv, const uint8_t* aad, size_t aad_len, const uint8_t* text,
                                  size_t n) {
  std::vector<uint8_t> out(n + 16);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  if (EVP_EncryptInit_ex(ctx, key_bytes == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), nullptr, key, iv) != 1) __builtin_trap();
  if (aad_len > 0 && EVP_EncryptUpdate(ctx, nullptr, &len, aad, static_cast<int>(aad_len)) != 1) __builtin_trap();
  if (n > 0 && EVP_EncryptUpdate(ctx, out.data(), &len, text, static_cast<int>(n)) != 1) __builtin_trap();
  if (EVP_EncryptFinal_ex(ctx, out.data() + n, &len) != 1) __builtin_trap();
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out.data() + n) != 1) __builtin_trap();
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

// Runs the VAES context in updates of (seed-derived) multiples of 16 bytes, the last one free.
std::vector<uint8_t> vaes_run(bool encrypt, const uint8_t* key, size_t key_bytes, const uint8_t* iv, const uint8_t* aad, size_t aad_len,
                              const uint8_t* in, size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n + 16);
  tenet::crypto::gcm_vaes::Context ctx;
  ctx.start(key, key_bytes, iv, aad, aad_len);
  size_t done = 0;
  uint32_t state = seed | 1u;
  while (done < n) {
    state = state * 1103515245u + 12345u;
    size_t step = 16 * ((state >> 16) % 24);
    if (step == 0 || done + step > n) step = n - done;
    if (encrypt) {
      ctx.encrypt(in + done, out.data() + done, step);
    } else {
      ctx.decrypt(in + done, out.data() + done, step);
    }
    done += step;
  }
  ctx.finish(out.data() + n);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tenet::crypto;
  if (size < 48 || !gcm_vaes::supported()) return 0;
  const uint8_t* key = data;
  const uint8_t* iv = data + 32;
  const size_t aad_len = std::min<size_t>(data[44], size - 48);
  const uint8_t seed = data[45];
  const size_t flip = static_cast<size_t>(data[46]) | static_cast<size_t>(data[47]) << 8;
  const uint8_t* aad = data + 48;
  const uint8_t* text = aad + aad_len;
  const size_t n = size - 48 - aad_len;
  const size_t key_bytes = (seed & 8) != 0 ? 16 : 32;

  const std::vector<uint8_t> ref = openssl_seal(key, key_bytes, iv, aad, aad_len, text, n);
  if (vaes_run(true, key, key_bytes, iv, aad, aad_len, text, n, seed) != ref) __builtin_trap();
  std::vector<uint8_t> back = vaes_run(false, key, key_bytes, iv, aad, aad_len, ref.data(), n, seed);
  if (std::memcmp(back.data(), text, n) != 0 || std::memcmp(back.data() + n, ref.data() + n, 16) != 0) __builtin_trap();

  // One flipped bit anywhere in ciphertext || tag || aad must be refused, on both backends.
  const ByteSpan k(key, key_bytes), v(iv, 12);
  std::vector<uint8_t> sealed = ref, bad_aad(aad, aad + aad_len);
  const size_t target = flip % (sealed.size() + aad_len);
  if (target < sealed.size()) {
    sealed[target] ^= static_cast<uint8_t>(1u << (seed & 7));
  } else {
    bad_aad[target - sealed.size()] ^= static_cast<uint8_t>(1u << (seed & 7));
  }
  std::vector<uint8_t> out(n);
  for (const char* backend : {"openssl", "vaes-avx512"}) {
    if (!set_aes_gcm_backend(backend).ok()) __builtin_trap();
    if (key_bytes == 32) {
      if (!aes256gcm_open_into(k, v, ByteSpan(aad, aad_len), ref, out).ok() || std::memcmp(out.data(), text, n) != 0) {
        __builtin_trap();
      }
      if (aes256gcm_open_into(k, v, bad_aad, sealed, out).ok()) __builtin_trap();
    }
    const auto open_untrusted = key_bytes == 16 ? aes128gcm_open_from_untrusted : aes256gcm_open_from_untrusted;
    const ByteSpan good_text = ByteSpan(ref).first(n), good_tag = ByteSpan(ref).subspan(n);
    if (!open_untrusted(k, v, ByteSpan(aad, aad_len), good_text, good_tag, out).ok() || std::memcmp(out.data(), text, n) != 0) {
      __builtin_trap();
    }
    if (open_untrusted(k, v, bad_aad, ByteSpan(sealed).first(n), ByteSpan(sealed).subspan(n), out).ok()) __builtin_trap();
  }
  return 0;
}
