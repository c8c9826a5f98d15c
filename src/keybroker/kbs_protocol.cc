#include "keybroker/kbs_protocol.h"

#include "seal/key_wrap.h"

namespace tenet::keybroker {

Result<ReportData> expected_report_data(std::string_view nonce, const crypto::PublicKey& tee_pubkey) {
  TENET_ASSIGN_OR_RETURN(std::string jwk, seal::canonical_jwk(tee_pubkey));
  crypto::Sha256 h;
  h.update(nonce);
  h.update(jwk);
  const crypto::Sha256Digest d = h.finish();
  ReportData rd{};
  std::copy(d.begin(), d.end(), rd.begin());
  return rd;
}

std::string resource_wrap_context(std::string_view path) { return "tenet-kbs/v0 resource " + std::string(path); }

Status validate_resource_path(std::string_view path) {
  int segments = 0;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string_view seg = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    ++segments;
    if (seg.empty() || seg.size() > 64 || seg == "." || seg == "..") {
      return invalid_argument("resource path '{}': segment {} is empty, too long, '.' or '..'", path.substr(0, 200), segments);
    }
    for (char c : seg) {
      const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
      if (!ok) return invalid_argument("resource path segment {} has a character outside [A-Za-z0-9._-]", segments);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
    if (segments >= 3) return invalid_argument("resource path has more than three segments (expected repo/type/tag)");
  }
  if (segments != 3) return invalid_argument("resource path has {} segments (expected repo/type/tag)", segments);
  return ok_status();
}

}  // namespace tenet::keybroker
