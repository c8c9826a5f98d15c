#include "attest/x509_util.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace tenet::attest {

namespace {

template <typename T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const { F(p); }
};
using ExtPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION, X509_EXTENSION_free>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, Free<ASN1_OBJECT, ASN1_OBJECT_free>>;
using OctPtr = std::unique_ptr<ASN1_OCTET_STRING, Free<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;

Status ossl(const char* what) { return internal_error("{}: {}", what, crypto::openssl_errors()); }

Status add_conf_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) return ossl(OBJ_nid2sn(nid));
  return ok_status();
}

}  // namespace

Result<crypto::X509Ptr> make_certificate(const CertSpec& spec, const crypto::PrivateKey& subject_key, X509* issuer,
                                         const crypto::PrivateKey& issuer_key) {
  crypto::X509Ptr cert(X509_new());
  if (!cert) return ossl("X509_new");
  if (X509_set_version(cert.get(), 2) != 1) return ossl("X509_set_version");

  uint8_t serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return ossl("serial");
  serial_bytes[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr);
  ASN1_INTEGER* serial = bn ? BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) : nullptr;
  BN_free(bn);
  if (!serial) return ossl("serial");

  // Backdated an hour for clock skew between enclave and clients.
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(spec.validity_days) * 86400)) {
    return ossl("validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  auto add_name = [name](const char* field, const std::string& v) {
    return v.empty() || X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                                   reinterpret_cast<const unsigned char*>(v.data()),
                                                   static_cast<int>(v.size()), -1, 0) == 1;
  };
  if (!add_name("O", spec.organization) || !add_name("CN", spec.common_name)) return ossl("subject name");
  if (X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name) != 1) return ossl("issuer name");
  if (X509_set_pubkey(cert.get(), subject_key.get()) != 1) return ossl("public key");

  X509* issuer_for_ext = issuer ? issuer : cert.get();
  TENET_RETURN_IF_ERROR(add_conf_ext(cert.get(), issuer_for_ext, NID_basic_constraints,
                                     spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"));
  TENET_RETURN_IF_ERROR(add_conf_ext(cert.get(), issuer_for_ext, NID_key_usage,
                                     spec.is_ca ? "critical,digitalSignature,keyCertSign,cRLSign"
                                                : "critical,digitalSignature"));
  if (spec.server_and_client_auth) {
    TENET_RETURN_IF_ERROR(add_conf_ext(cert.get(), issuer_for_ext, NID_ext_key_usage, "serverAuth,clientAuth"));
  }
  TENET_RETURN_IF_ERROR(add_conf_ext(cert.get(), issuer_for_ext, NID_subject_key_identifier, "hash"));
  TENET_RETURN_IF_ERROR(add_conf_ext(cert.get(), issuer_for_ext, NID_authority_key_identifier, "keyid:always"));
  std::string san;
  for (const auto& d : spec.dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& ip : spec.ip_addresses) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  if (!san.empty()) TENET_RETURN_IF_ERROR(add_conf_ext(cert.get(), issuer_for_ext, NID_subject_alt_name, san));

  if (!spec.extra_oid.empty()) {
    ObjPtr obj(OBJ_txt2obj(spec.extra_oid.c_str(), /*no_name=*/1));
    OctPtr oct(ASN1_OCTET_STRING_new());
    if (!obj || !oct ||
        ASN1_OCTET_STRING_set(oct.get(), spec.extra_value.data(), static_cast<int>(spec.extra_value.size())) != 1) {
      return ossl("extension value");
    }
    ExtPtr ext(X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), /*crit=*/0, oct.get()));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) return ossl("evidence extension");
  }

  TENET_ASSIGN_OR_RETURN(crypto::Curve curve, issuer_key.curve());
  const EVP_MD* md = curve == crypto::Curve::kP384 ? EVP_sha384() : EVP_sha256();
  if (X509_sign(cert.get(), issuer_key.get(), md) <= 0) return ossl("signing certificate");
  return cert;
}

Result<std::optional<crypto::Bytes>> find_extension(X509* cert, const char* oid) {
  ObjPtr obj(OBJ_txt2obj(oid, 1));
  if (!obj) return ossl("OID");
  const int idx = X509_get_ext_by_OBJ(cert, obj.get(), -1);
  if (idx < 0) return std::optional<crypto::Bytes>();
  if (X509_get_ext_by_OBJ(cert, obj.get(), idx) >= 0) return invalid_argument("extension {} appears twice", oid);
  X509_EXTENSION* ext = X509_get_ext(cert, idx);
  ASN1_OCTET_STRING* data = ext ? X509_EXTENSION_get_data(ext) : nullptr;
  if (!data) return invalid_argument("extension {} has no value", oid);
  const unsigned char* p = ASN1_STRING_get0_data(data);
  return std::optional<crypto::Bytes>(crypto::Bytes(p, p + ASN1_STRING_length(data)));
}

}  // namespace tenet::attest
