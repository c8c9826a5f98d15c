#include "enclave/manifest.h"

#include <set>

#include <nlohmann/json.hpp>

namespace tenet::enclave {
namespace {

using nlohmann::json;

Status check_keys(const json& obj, const std::set<std::string>& allowed, const char* where) {
  for (const auto& [k, v] : obj.items()) {
    if (!allowed.count(k)) return invalid_argument("manifest: unknown key '{}' in {}", k, where);
  }
  return ok_status();
}

template <typename T>
Status get_uint(const json& obj, const char* key, T max, T* out, const char* where) {
  if (!obj.contains(key)) return ok_status();
  const json& v = obj[key];
  if (!v.is_number_unsigned() || v.get<uint64_t>() > static_cast<uint64_t>(max)) {
    return invalid_argument("manifest: {}.{} must be an integer in 0..{}", where, key, static_cast<uint64_t>(max));
  }
  *out = static_cast<T>(v.get<uint64_t>());
  return ok_status();
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

// A model's "mode" and its hybrid parameters (manifest.h).
Status parse_model_mode(const json& mj, const std::string& where, ManifestModel& mm) {
  if (mj.contains("mode")) {
    const json& v = mj["mode"];
    if (!v.is_string() || (v != "tee" && v != "hybrid")) {
      return invalid_argument("manifest: {} mode must be \"tee\" or \"hybrid\"", where);
    }
    mm.mode = v.get<std::string>();
  }
  for (const char* key : {"verify_bits", "allow_unverified", "unblind_pool", "pipeline_depth"}) {
    if (!mm.hybrid() && mj.contains(key)) {
      return invalid_argument("manifest: {} sets {}, which only a \"mode\": \"hybrid\" model has", where, key);
    }
  }
  if (!mm.hybrid()) return ok_status();
  if (mj.contains("allow_unverified")) {
    if (!mj["allow_unverified"].is_boolean()) return invalid_argument("manifest: {} allow_unverified must be true or false", where);
    mm.allow_unverified = mj["allow_unverified"].get<bool>();
  }
  TENET_RETURN_IF_ERROR(get_uint<int>(mj, "verify_bits", 128, &mm.verify_bits, where.c_str()));
  if (mm.verify_bits == 0 && !mm.allow_unverified) {
    return invalid_argument(
        "manifest: {} verify_bits 0 turns off the accelerator's result checks (INSECURE: a lying accelerator goes "
        "unnoticed); it needs \"allow_unverified\": true",
        where);
  }
  if (mm.verify_bits > 0 && mm.allow_unverified) {
    return invalid_argument("manifest: {} allow_unverified is only meaningful with verify_bits 0", where);
  }
  TENET_RETURN_IF_ERROR(get_uint<int>(mj, "unblind_pool", 4096, &mm.unblind_pool, where.c_str()));
  TENET_RETURN_IF_ERROR(get_uint<int>(mj, "pipeline_depth", 64, &mm.pipeline_depth, where.c_str()));
  if (mm.pipeline_depth < 1) return invalid_argument("manifest: {} pipeline_depth must be 1..64", where);
  // Batch 1 unless asked: every instance is compiled for max_batch_size rows (partial batches
  // padded), so the default is not the tee models' 8; and the bound is lower than theirs.
  if (!mj.contains("max_batch_size") || mm.max_batch_size <= 1) {
    mm.max_batch_size = 0;
  } else if (mm.max_batch_size > 64) {
    return invalid_argument("manifest: {} is hybrid, whose instances are compiled for max_batch_size rows; "
                            "max_batch_size must be 0..64 (0 or 1: batch 1, no dynamic batching)", where);
  }
  return ok_status();
}

}  // namespace

std::string ManifestModel::mode_claim() const {
  return hybrid() ? "hybrid:" + std::to_string(verify_bits) : std::string("tee");
}

bool Manifest::any_hybrid() const {
  for (const ManifestModel& m : models) {
    if (m.hybrid()) return true;
  }
  return false;
}

Result<Manifest> parse_manifest(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument("manifest: not a JSON object");
  TENET_RETURN_IF_ERROR(check_keys(j, {"tenet_manifest", "isv_prod_id", "isv_svn", "debug", "mode", "models", "server"}, "the manifest"));
  if (!j.contains("tenet_manifest") || j["tenet_manifest"] != 1) {
    return invalid_argument("manifest: \"tenet_manifest\": 1 is required (format version)");
  }
  Manifest m;
  TENET_RETURN_IF_ERROR(get_uint<uint16_t>(j, "isv_prod_id", 65535, &m.isv_prod_id, "manifest"));
  TENET_RETURN_IF_ERROR(get_uint<uint16_t>(j, "isv_svn", 65535, &m.isv_svn, "manifest"));
  if (j.contains("debug")) {
    if (!j["debug"].is_boolean()) return invalid_argument("manifest: debug must be true or false");
    m.debug = j["debug"].get<bool>();
  }
  if (j.contains("mode")) {
    if (!j["mode"].is_string() || j["mode"] != "tee") {
      return unimplemented(
          "manifest: the top-level mode must be \"tee\"; choose hybrid per model (\"mode\": \"hybrid\" in a model; mpc is "
          "not available yet)");
    }
  }
  if (!j.contains("models") || !j["models"].is_array() || j["models"].empty() || j["models"].size() > 64) {
    return invalid_argument("manifest: models must be a list of 1..64 models");
  }
  std::set<std::string> names;
  for (const json& mj : j["models"]) {
    if (!mj.is_object()) return invalid_argument("manifest: each model must be an object");
    TENET_RETURN_IF_ERROR(check_keys(
        mj, {"name", "package_digest", "key_resource", "max_batch_size", "max_queue_delay_us", "max_queue_requests", "mode",
             "verify_bits", "allow_unverified", "unblind_pool", "pipeline_depth"},
        "a model"));
    ManifestModel mm;
    if (!mj.contains("name") || !mj["name"].is_string() || !valid_name(mj["name"].get<std::string>())) {
      return invalid_argument("manifest: model name must be 1..128 of [A-Za-z0-9_.-]");
    }
    mm.name = mj["name"].get<std::string>();
    if (!names.insert(mm.name).second) return invalid_argument("manifest: model '{}' listed twice", mm.name);
    const std::string where = "model '" + mm.name + "'";
    if (!mj.contains("package_digest") || !mj["package_digest"].is_string()) {
      return invalid_argument("manifest: {} needs package_digest (from tenet seal)", where);
    }
    mm.package_digest_hex = mj["package_digest"].get<std::string>();
    if (mm.package_digest_hex.size() != 64 || mm.package_digest_hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return invalid_argument("manifest: {} package_digest must be 64 lower-case hex digits", where);
    }
    mm.key_resource = "default/model/" + mm.name;
    if (mj.contains("key_resource")) {
      if (!mj["key_resource"].is_string()) return invalid_argument("manifest: {} key_resource must be a string", where);
      mm.key_resource = mj["key_resource"].get<std::string>();
    }
    size_t slashes = 0;
    for (char c : mm.key_resource) slashes += c == '/';
    if (slashes != 2 || mm.key_resource.size() > 256 || mm.key_resource.front() == '/' || mm.key_resource.back() == '/' ||
        mm.key_resource.find("//") != std::string::npos || mm.key_resource.find("..") != std::string::npos) {
      return invalid_argument("manifest: {} key_resource must be REPO/TYPE/TAG", where);
    }
    TENET_RETURN_IF_ERROR(get_uint<int>(mj, "max_batch_size", 1024, &mm.max_batch_size, where.c_str()));
    TENET_RETURN_IF_ERROR(get_uint<uint64_t>(mj, "max_queue_delay_us", 10'000'000, &mm.max_queue_delay_us, where.c_str()));
    TENET_RETURN_IF_ERROR(get_uint<size_t>(mj, "max_queue_requests", 100000, &mm.max_queue_requests, where.c_str()));
    if (mm.max_queue_requests == 0) return invalid_argument("manifest: {} max_queue_requests must be at least 1", where);
    TENET_RETURN_IF_ERROR(parse_model_mode(mj, where, mm));
    m.models.push_back(std::move(mm));
  }
  if (j.contains("server")) {
    const json& s = j["server"];
    if (!s.is_object()) return invalid_argument("manifest: server must be an object");
    TENET_RETURN_IF_ERROR(check_keys(s, {"max_body_bytes", "http_threads"}, "server"));
    TENET_RETURN_IF_ERROR(get_uint<size_t>(s, "max_body_bytes", size_t{1} << 31, &m.max_body_bytes, "server"));
    TENET_RETURN_IF_ERROR(get_uint<int>(s, "http_threads", 1024, &m.http_threads, "server"));
    if (m.http_threads < 2) return invalid_argument("manifest: server.http_threads must be at least 2");
  }
  return m;
}

}  // namespace tenet::enclave
