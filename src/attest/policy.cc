#include "attest/policy.h"

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

namespace tenet::attest {

namespace {

using nlohmann::json;

constexpr size_t kMaxPolicySize = 1 << 20;
constexpr size_t kMaxRoots = 64;

Result<crypto::Bytes> hex_field(const json& v, const std::string& key, std::initializer_list<size_t> sizes) {
  if (!v.is_string()) return invalid_argument("policy key '{}': expected a hex string", key);
  auto bytes = crypto::from_hex(v.get<std::string>());
  if (!bytes.ok()) return invalid_argument("policy key '{}': not hex: {}", key, bytes.status().message());
  for (size_t s : sizes) {
    if (bytes->size() == s) return std::move(bytes).value();
  }
  std::string want;
  for (size_t s : sizes) want += (want.empty() ? "" : " or ") + std::to_string(2 * s);
  return invalid_argument("policy key '{}': {} hex digits, expected {}", key, 2 * bytes->size(), want);
}

Result<uint16_t> u16_field(const json& v, const std::string& key) {
  if (!v.is_number_integer()) return invalid_argument("policy key '{}': expected an integer", key);
  const int64_t x = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), 1u << 20))
                                           : v.get<int64_t>();
  if (x < 0 || x > 65535) return invalid_argument("policy key '{}': {} is outside 0..65535", key, x);
  return static_cast<uint16_t>(x);
}

Result<bool> bool_field(const json& v, const std::string& key) {
  if (!v.is_boolean()) return invalid_argument("policy key '{}': expected true or false", key);
  return v.get<bool>();
}

Result<std::vector<std::string>> load_root(const std::string& entry, const std::string& base_dir) {
  std::string pem;
  if (entry.find("-----BEGIN") != std::string::npos) {
    pem = entry;
  } else {
    std::filesystem::path p(entry);
    if (p.is_relative()) p = std::filesystem::path(base_dir) / p;
    auto text = crypto::read_file(p.string(), 1 << 20);
    if (!text.ok()) return invalid_argument("policy key 'trusted_roots': {}", text.status().message());
    pem = std::move(text).value();
  }
  auto chain = crypto::x509_chain_from_pem(pem);
  if (!chain.ok()) return invalid_argument("policy key 'trusted_roots': '{}' holds no PEM certificate", entry.substr(0, 64));
  std::vector<std::string> out;
  for (auto& c : *chain) {
    TENET_ASSIGN_OR_RETURN(std::string one, crypto::x509_to_pem(c.get()));
    out.push_back(std::move(one));
  }
  return out;
}

}  // namespace

Status validate_policy(const Policy& p) {
  if (p.mrenclave.empty() && !p.mrsigner) {
    return invalid_argument("{}: needs 'mrenclave' or 'mrsigner' (with 'isv_prod_id')", p.source);
  }
  for (const auto& m : p.mrenclave) {
    if (m.size() != 32 && m.size() != 48) return invalid_argument("{}: 'mrenclave' entry of {} bytes", p.source, m.size());
  }
  if (p.mrsigner && p.mrsigner->size() != 32) return invalid_argument("{}: 'mrsigner' of {} bytes", p.source, p.mrsigner->size());
  if (p.mrsigner && !p.isv_prod_id) return invalid_argument("{}: 'mrsigner' requires 'isv_prod_id'", p.source);
  if (!p.mrsigner && p.isv_prod_id) return invalid_argument("{}: 'isv_prod_id' requires 'mrsigner'", p.source);
  if (p.trusted_roots_pem.empty()) return invalid_argument("{}: 'trusted_roots' is empty", p.source);
  if (p.model_digest && p.model_digest->empty()) return invalid_argument("{}: 'model_digest' is empty", p.source);
  return ok_status();
}

namespace {
Result<Policy> parse_policy_impl(std::string_view text, const std::string& base_dir, const std::string& source);
}  // namespace

Result<Policy> parse_policy(std::string_view text, const std::string& base_dir, const std::string& source) {
  auto p = parse_policy_impl(text, base_dir, source);
  if (!p.ok() && p.status().message().rfind(source + ":", 0) != 0) return p.status().with_context(source);
  return p;
}

namespace {
Result<Policy> parse_policy_impl(std::string_view text, const std::string& base_dir, const std::string& source) {
  if (text.size() > kMaxPolicySize) return invalid_argument("{}: {} bytes exceeds {}", source, text.size(), kMaxPolicySize);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument("{}: not valid JSON", source);
  if (!j.is_object()) return invalid_argument("{}: expected a JSON object", source);
  Policy p;
  p.source = source;
  bool have_min_svn = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "mrenclave") {
      if (v.is_string()) {
        TENET_ASSIGN_OR_RETURN(auto m, hex_field(v, key, {32, 48}));
        p.mrenclave.push_back(std::move(m));
      } else if (v.is_array()) {
        if (v.empty()) return invalid_argument("{}: policy key 'mrenclave': empty list", source);
        for (const auto& e : v) {
          TENET_ASSIGN_OR_RETURN(auto m, hex_field(e, key, {32, 48}));
          p.mrenclave.push_back(std::move(m));
        }
      } else {
        return invalid_argument("{}: policy key 'mrenclave': expected a list of hex strings", source);
      }
    } else if (key == "mrsigner") {
      TENET_ASSIGN_OR_RETURN(p.mrsigner, hex_field(v, key, {32}));
    } else if (key == "isv_prod_id") {
      TENET_ASSIGN_OR_RETURN(p.isv_prod_id, u16_field(v, key));
    } else if (key == "min_isv_svn") {
      TENET_ASSIGN_OR_RETURN(p.min_isv_svn, u16_field(v, key));
      have_min_svn = true;
    } else if (key == "allow_debug") {
      TENET_ASSIGN_OR_RETURN(p.allow_debug, bool_field(v, key));
    } else if (key == "allow_insecure_sim") {
      TENET_ASSIGN_OR_RETURN(p.allow_insecure_sim, bool_field(v, key));
    } else if (key == "model_digest") {
      if (!v.is_string() || v.get<std::string>().empty()) return invalid_argument("{}: policy key 'model_digest': expected a hex string", source);
      auto d = crypto::from_hex(v.get<std::string>());
      if (!d.ok()) return invalid_argument("{}: policy key 'model_digest': not hex", source);
      p.model_digest = std::move(d).value();
    } else if (key == "trusted_roots") {
      if (!v.is_array() || v.empty()) return invalid_argument("{}: policy key 'trusted_roots': expected a non-empty list", source);
      if (v.size() > kMaxRoots) return invalid_argument("{}: policy key 'trusted_roots': more than {} entries", source, kMaxRoots);
      for (const auto& e : v) {
        if (!e.is_string()) return invalid_argument("{}: policy key 'trusted_roots': expected strings", source);
        auto roots = load_root(e.get<std::string>(), base_dir);
        if (!roots.ok()) return roots.status().with_context(source);
        for (auto& r : *roots) p.trusted_roots_pem.push_back(std::move(r));
      }
    } else {
      return invalid_argument("{}: unknown policy key '{}'", source, key);
    }
  }
  if (have_min_svn && !p.mrsigner) return invalid_argument("{}: policy key 'min_isv_svn' requires 'mrsigner'", source);
  TENET_RETURN_IF_ERROR(validate_policy(p));
  return p;
}
}  // namespace

Result<Policy> load_policy(const std::string& path) {
  auto text = crypto::read_file(path, kMaxPolicySize);
  if (!text.ok()) return text.status();
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return parse_policy(*text, dir.empty() ? "." : dir, path);
}

std::string policy_template(const std::string& mrenclave_hex, const std::string& mrsigner_hex, uint16_t isv_prod_id,
                            uint16_t isv_svn, const std::string& root_path, bool insecure_sim) {
  nlohmann::ordered_json j;
  j["mrenclave"] = nlohmann::json::array({mrenclave_hex});
  if (!mrsigner_hex.empty()) {
    j["mrsigner"] = mrsigner_hex;
    j["isv_prod_id"] = isv_prod_id;
    j["min_isv_svn"] = isv_svn;
  }
  j["allow_debug"] = false;
  j["trusted_roots"] = nlohmann::json::array({root_path});
  if (insecure_sim) j["allow_insecure_sim"] = true;
  return j.dump(2);
}

}  // namespace tenet::attest
