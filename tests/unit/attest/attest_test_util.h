// Shared helpers for tenet_attest tests: temporary directories, a provisioned sim platform, and
// policies built in code.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "attest/platform.h"
#include "attest/policy.h"
#include "attest/ratls.h"
#include "crypto/crypto.h"

namespace tenet::attest::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tenet-attest-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

#define TENET_ASSERT_OK(expr)                                  \
  do {                                                         \
    const ::tenet::Status tenet_s_ = (expr);                   \
    ASSERT_TRUE(tenet_s_.ok()) << tenet_s_.to_string();        \
  } while (0)

template <typename T>
T value_or_die(Result<T> r, const char* what) {
  if (!r.ok()) throw std::runtime_error(std::string(what) + ": " + r.status().to_string());
  return std::move(r).value();
}

// The enclave manifest the tests measure.
inline const std::string kTestManifest = R"({"name":"test-enclave","isv_prod_id":7,"isv_svn":3})";

struct SimWorld {
  TempDir dir;
  std::string platform_dir;
  std::string binary;  // a small file standing in for the enclave binary
  SimWorld() {
    platform_dir = dir.sub("platform");
    const Status s = sim_provision(platform_dir);
    if (!s.ok()) throw std::runtime_error(s.to_string());
    binary = dir.sub("enclave.bin");
    const Status w = crypto::write_file(binary, "\x7f" "ELF pretend enclave binary", 0755);
    if (!w.ok()) throw std::runtime_error(w.to_string());
  }
  SimEnclaveOptions options(std::optional<bool> debug = std::nullopt) const {
    SimEnclaveOptions o;
    o.platform_dir = platform_dir;
    o.binary_path = binary;
    o.config = kTestManifest;
    o.debug = debug;
    return o;
  }
  std::unique_ptr<Platform> platform(std::optional<bool> debug = std::nullopt) const {
    return value_or_die(open_sim_platform(options(debug)), "open_sim_platform");
  }
  std::string root_pem() const { return value_or_die(crypto::read_file(sim_root_cert_path(platform_dir)), "root"); }
  // A policy that accepts this world's test enclave by MRENCLAVE.
  Policy policy() const {
    Policy p;
    p.source = "test policy";
    auto m = value_or_die(measure_enclave(binary, crypto::as_bytes(kTestManifest)), "measure");
    p.mrenclave.emplace_back(m.begin(), m.end());
    p.trusted_roots_pem.push_back(root_pem());
    p.allow_insecure_sim = true;
    return p;
  }
};

inline void expect_stage(const Status& s, VerifyStage stage) {
  ASSERT_FALSE(s.ok()) << "expected failure at " << verify_stage_name(stage);
  const auto got = failed_stage(s);
  ASSERT_TRUE(got.has_value()) << "no stage in: " << s.to_string();
  EXPECT_EQ(verify_stage_name(*got), std::string(verify_stage_name(stage))) << s.to_string();
}

}  // namespace tenet::attest::testing
