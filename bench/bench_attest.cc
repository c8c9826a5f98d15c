// Attestation cost: one quote vs one RA-TLS certificate verification, and the server-side
// attestation cost per client session with report reuse (one identity per enclave lifetime,
// TEMPER) vs a quote per session. Prints a table; run: build/bench_attest [--sessions N]
//
// On the sim platform a quote is one ECDSA P-256 signature plus serialization, far cheaper than
// a hardware DCAP quote (tens of ms through the quoting enclave); the ratio below is therefore a
// lower bound on what reuse saves on hardware.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "attest/platform.h"
#include "attest/ratls.h"
#include "crypto/crypto.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double mean_us(int iterations, F&& f) {
  const auto t0 = Clock::now();
  for (int i = 0; i < iterations; ++i) f();
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / iterations;
}

[[noreturn]] void die(const tenet::Status& s) {
  std::fprintf(stderr, "bench_attest: %s\n", s.to_string().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  long sessions = 10000;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--sessions") == 0) sessions = std::atol(argv[i + 1]);
  }
  namespace attest = tenet::attest;
  char tmpl[] = "/tmp/tenet-bench-attest-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = std::string(tmpl) + "/sim";
  if (auto s = attest::sim_provision(dir); !s.ok()) die(s);
  attest::SimEnclaveOptions o;
  o.platform_dir = dir;
  o.config = R"({"name":"bench"})";
  auto platform = attest::open_sim_platform(o);
  if (!platform.ok()) die(platform.status());
  attest::Platform& p = **platform;

  attest::Policy policy;
  policy.source = "bench";
  auto id0 = p.identity();
  if (!id0.ok()) die(id0.status());
  policy.mrenclave.push_back(id0->mrenclave);
  auto root = tenet::crypto::read_file(attest::sim_root_cert_path(dir));
  if (!root.ok()) die(root.status());
  policy.trusted_roots_pem.push_back(*root);
  policy.allow_insecure_sim = true;

  const attest::ReportData rd{};
  const double quote_us = mean_us(300, [&] {
    if (auto q = p.get_quote(rd); !q.ok()) die(q.status());
  });
  attest::RatlsClaimsInput claims;
  claims.model_digests = {tenet::crypto::Bytes(32, 1)};
  const double identity_us = mean_us(100, [&] {
    if (auto id = attest::make_ratls_identity(p, claims); !id.ok()) die(id.status());
  });
  auto identity = attest::make_ratls_identity(p, claims);
  if (!identity.ok()) die(identity.status());
  const double verify_us = mean_us(300, [&] {
    if (auto v = attest::verify_ratls_certificate(identity->cert.get(), policy); !v.ok()) die(v.status());
  });
  std::filesystem::remove_all(tmpl);

  const double reuse_per_session_us = identity_us / static_cast<double>(sessions);
  const double baseline_per_session_us = identity_us;  // a fresh key, quote and certificate per session
  std::printf("attestation cost, sim platform (INSECURE), mean of repeated runs\n");
  std::printf("%-58s %12s\n", "operation", "time (us)");
  std::printf("%-58s %12.1f\n", "one quote (sim get_quote)", quote_us);
  std::printf("%-58s %12.1f\n", "one RA-TLS identity (P-384 key + quote + certificate)", identity_us);
  std::printf("%-58s %12.1f\n", "verify one RA-TLS certificate (client / key broker side)", verify_us);
  std::printf("%-58s %12.4f\n", ("server attestation per session, reuse over " + std::to_string(sessions) + " sessions").c_str(),
              reuse_per_session_us);
  std::printf("%-58s %12.1f\n", "server attestation per session, quote per session", baseline_per_session_us);
  std::printf("ratio reuse / quote-per-session: %.6f (bar: <= 0.01)\n", reuse_per_session_us / baseline_per_session_us);
  std::printf("ratio reuse / one quote:         %.6f\n", reuse_per_session_us / quote_us);
  return 0;
}
