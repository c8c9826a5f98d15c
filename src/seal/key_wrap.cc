#include "seal/key_wrap.h"

#include <nlohmann/json.hpp>

#include "seal/base64url.h"

namespace tenet::seal {
namespace {

using nlohmann::json;

constexpr std::string_view kWrapLabel = "tenet-keywrap/v1";

size_t coordinate_bytes(crypto::Curve curve) { return curve == crypto::Curve::kP256 ? 32 : 48; }
const char* curve_jwk_name(crypto::Curve curve) { return curve == crypto::Curve::kP256 ? "P-256" : "P-384"; }

Result<crypto::Bytes> wrap_info(const crypto::PublicKey& ephemeral, const crypto::PublicKey& recipient,
                                std::string_view context) {
  TENET_ASSIGN_OR_RETURN(crypto::Bytes e, ephemeral.raw_point());
  TENET_ASSIGN_OR_RETURN(crypto::Bytes r, recipient.raw_point());
  crypto::Bytes info;
  info.insert(info.end(), kWrapLabel.begin(), kWrapLabel.end());
  info.push_back(0);
  info.insert(info.end(), context.begin(), context.end());
  info.push_back(0);
  info.insert(info.end(), e.begin(), e.end());
  info.insert(info.end(), r.begin(), r.end());
  return info;
}

Result<SecretBytes> derive_wrap_key(const crypto::PrivateKey& mine, const crypto::PublicKey& theirs, ByteSpan info) {
  TENET_ASSIGN_OR_RETURN(crypto::Bytes z, mine.ecdh(theirs));
  SecretBytes shared = SecretBytes::adopt(std::move(z));
  TENET_ASSIGN_OR_RETURN(crypto::Bytes k, crypto::hkdf_sha256(shared.view(), crypto::as_bytes(kWrapLabel), info, crypto::kAesGcmKeyBytes));
  return SecretBytes::adopt(std::move(k));
}

Result<std::string> string_member(const json& j, const char* name, const char* what) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return invalid_argument("{}: member '{}' is missing or not a string", what, name);
  return it->get<std::string>();
}

Result<crypto::Bytes> b64_member(const json& j, const char* name, const char* what, size_t expected_size) {
  TENET_ASSIGN_OR_RETURN(std::string text, string_member(j, name, what));
  auto bytes = base64url_decode(text);
  if (!bytes.ok()) return bytes.status().with_context(fmt::format("{}: member '{}'", what, name));
  if (expected_size != 0 && bytes->size() != expected_size) {
    return invalid_argument("{}: member '{}' is {} bytes, expected {}", what, name, bytes->size(), expected_size);
  }
  return bytes;
}

Result<crypto::PublicKey> public_key_from_jwk_json(const json& j) {
  constexpr const char* what = "JWK";
  if (!j.is_object()) return invalid_argument("JWK is not a JSON object");
  if (j.contains("d")) return invalid_argument("JWK carries a private key ('d'); send the public key only");
  TENET_ASSIGN_OR_RETURN(std::string kty, string_member(j, "kty", what));
  if (kty != "EC") return invalid_argument("JWK kty is '{}', expected 'EC'", kty);
  TENET_ASSIGN_OR_RETURN(std::string crv, string_member(j, "crv", what));
  crypto::Curve curve;
  if (crv == "P-256") curve = crypto::Curve::kP256;
  else if (crv == "P-384") curve = crypto::Curve::kP384;
  else return invalid_argument("JWK crv '{}' is not supported (P-256, P-384)", crv);
  const size_t n = coordinate_bytes(curve);
  TENET_ASSIGN_OR_RETURN(crypto::Bytes x, b64_member(j, "x", what, n));
  TENET_ASSIGN_OR_RETURN(crypto::Bytes y, b64_member(j, "y", what, n));
  x.insert(x.end(), y.begin(), y.end());
  auto key = crypto::PublicKey::from_raw_point(curve, x);
  if (!key.ok()) return key.status().with_context("JWK");
  return key;
}

Result<json> parse_json(std::string_view text, const char* what) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument("{} is not valid JSON", what);
  return j;
}

}  // namespace

Result<std::string> canonical_jwk(const crypto::PublicKey& key) {
  if (!key.valid()) return failed_precondition("canonical_jwk: empty key");
  TENET_ASSIGN_OR_RETURN(crypto::Curve curve, key.curve());
  TENET_ASSIGN_OR_RETURN(crypto::Bytes xy, key.raw_point());
  const size_t n = coordinate_bytes(curve);
  if (xy.size() != 2 * n) return internal_error("EC point has {} bytes, expected {}", xy.size(), 2 * n);
  return fmt::format(R"({{"crv":"{}","kty":"EC","x":"{}","y":"{}"}})", curve_jwk_name(curve),
                     base64url_encode(ByteSpan(xy).first(n)), base64url_encode(ByteSpan(xy).subspan(n)));
}

Result<crypto::PublicKey> public_key_from_jwk(std::string_view text) {
  TENET_ASSIGN_OR_RETURN(json j, parse_json(text, "JWK"));
  return public_key_from_jwk_json(j);
}

Result<crypto::Sha256Digest> jwk_thumbprint(const crypto::PublicKey& key) {
  TENET_ASSIGN_OR_RETURN(std::string jwk, canonical_jwk(key));
  return crypto::sha256(crypto::as_bytes(jwk));
}

Result<WrappedSecret> wrap_secret(const crypto::PublicKey& recipient, ByteSpan secret, std::string_view context) {
  if (!recipient.valid()) return invalid_argument("wrap_secret: no recipient key");
  if (context.size() > kMaxWrapContextBytes) return invalid_argument("wrap_secret: context of {} bytes is too long", context.size());
  if (secret.empty() || secret.size() > kMaxWrappedSecretBytes) {
    return invalid_argument("wrap_secret: secret of {} bytes (1..{} allowed)", secret.size(), kMaxWrappedSecretBytes);
  }
  TENET_ASSIGN_OR_RETURN(crypto::Curve curve, recipient.curve());
  TENET_ASSIGN_OR_RETURN(crypto::PrivateKey ephemeral, crypto::PrivateKey::generate(curve));
  WrappedSecret out;
  TENET_ASSIGN_OR_RETURN(out.ephemeral_public, ephemeral.public_key());
  TENET_ASSIGN_OR_RETURN(crypto::Bytes info, wrap_info(out.ephemeral_public, recipient, context));
  TENET_ASSIGN_OR_RETURN(SecretBytes k, derive_wrap_key(ephemeral, recipient, info));
  TENET_ASSIGN_OR_RETURN(out.iv, crypto::random_bytes(crypto::kAesGcmIvBytes));
  TENET_ASSIGN_OR_RETURN(crypto::Bytes sealed, crypto::aes256gcm_seal(k.view(), out.iv, info, secret));
  out.tag.assign(sealed.end() - crypto::kAesGcmTagBytes, sealed.end());
  out.ciphertext.assign(sealed.begin(), sealed.end() - crypto::kAesGcmTagBytes);
  return out;
}

Result<SecretBytes> unwrap_secret(const crypto::PrivateKey& recipient, const WrappedSecret& wrapped, std::string_view context) {
  if (!recipient.valid() || !wrapped.ephemeral_public.valid()) return invalid_argument("unwrap_secret: missing key");
  if (context.size() > kMaxWrapContextBytes) return invalid_argument("unwrap_secret: context of {} bytes is too long", context.size());
  if (wrapped.iv.size() != crypto::kAesGcmIvBytes || wrapped.tag.size() != crypto::kAesGcmTagBytes ||
      wrapped.ciphertext.empty() || wrapped.ciphertext.size() > kMaxWrappedSecretBytes) {
    return invalid_argument("unwrap_secret: malformed wrapped secret (iv, tag or ciphertext size)");
  }
  TENET_ASSIGN_OR_RETURN(crypto::PublicKey mine, recipient.public_key());
  TENET_ASSIGN_OR_RETURN(crypto::Bytes info, wrap_info(wrapped.ephemeral_public, mine, context));
  auto k = derive_wrap_key(recipient, wrapped.ephemeral_public, info);
  if (!k.ok()) return k.status().with_context("unwrap_secret");
  crypto::Bytes sealed = wrapped.ciphertext;
  sealed.insert(sealed.end(), wrapped.tag.begin(), wrapped.tag.end());
  SecretBytes out(wrapped.ciphertext.size());
  Status s = crypto::aes256gcm_open_into(k->view(), wrapped.iv, info, sealed, out.span());
  if (!s.ok()) return data_loss("unwrap_secret: the wrapped secret does not authenticate (wrong key, wrong context, or tampered)");
  return out;
}

std::string wrapped_secret_to_json(const WrappedSecret& wrapped) {
  auto jwk = canonical_jwk(wrapped.ephemeral_public);
  json j;
  j["alg"] = std::string(kKeyWrapAlg);
  j["epk"] = jwk.ok() ? json::parse(*jwk) : json(nullptr);
  j["iv"] = base64url_encode(wrapped.iv);
  j["ciphertext"] = base64url_encode(wrapped.ciphertext);
  j["tag"] = base64url_encode(wrapped.tag);
  return j.dump();
}

Result<WrappedSecret> wrapped_secret_from_json(std::string_view text) {
  constexpr const char* what = "wrapped secret";
  TENET_ASSIGN_OR_RETURN(json j, parse_json(text, what));
  if (!j.is_object()) return invalid_argument("wrapped secret is not a JSON object");
  TENET_ASSIGN_OR_RETURN(std::string alg, string_member(j, "alg", what));
  if (alg != kKeyWrapAlg) return invalid_argument("wrapped secret: alg '{}' is not '{}'", alg, kKeyWrapAlg);
  auto epk = j.find("epk");
  if (epk == j.end()) return invalid_argument("wrapped secret: member 'epk' is missing");
  WrappedSecret out;
  auto key = public_key_from_jwk_json(*epk);
  if (!key.ok()) return key.status().with_context("wrapped secret: epk");
  out.ephemeral_public = std::move(key).value();
  TENET_ASSIGN_OR_RETURN(out.iv, b64_member(j, "iv", what, crypto::kAesGcmIvBytes));
  TENET_ASSIGN_OR_RETURN(out.ciphertext, b64_member(j, "ciphertext", what, 0));
  TENET_ASSIGN_OR_RETURN(out.tag, b64_member(j, "tag", what, crypto::kAesGcmTagBytes));
  if (out.ciphertext.empty() || out.ciphertext.size() > kMaxWrappedSecretBytes) {
    return invalid_argument("wrapped secret: ciphertext of {} bytes (1..{} allowed)", out.ciphertext.size(), kMaxWrappedSecretBytes);
  }
  return out;
}

}  // namespace tenet::seal
