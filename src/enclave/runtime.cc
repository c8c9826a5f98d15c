#include "enclave/runtime.h"

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "attest/platform.h"
#include "attest/ratls.h"
#include "crypto/crypto.h"
#include "accel/accelerator.h"
#include "enclave/hybrid_served_model.h"
#include "enclave/manifest.h"
#include "epc/epc_allocator.h"
#include "epc/sealed_weight_store.h"
#include "keybroker/kbs_client.h"
#include "seal/package.h"
#include "serving/model_repository.h"
#include "serving/server.h"

namespace tenet::enclave {
namespace {

constexpr std::string_view kIdentityMagic = "TENETID1";
constexpr std::string_view kIdentityLabel = "tenet/ra-tls-identity/v1";

void log(const char* fmt_text, const std::string& arg = "") {
  std::fprintf(stderr, "tenet enclave: ");
  std::fprintf(stderr, fmt_text, arg.c_str());
  std::fprintf(stderr, "\n");
}

struct Identity {
  std::string cert_pem;
  std::string key_pem;  // secret: wiped by the destructor
  bool reused = false;
  ~Identity() { crypto::secure_wipe(key_pem); }
};

// Unseals the deployment's RA-TLS identity, or creates it (one quote) and seals it for the other
// enclaves and for restarts. The store is untrusted disk: AES-256-GCM under the MRENCLAVE sealing
// key authenticates it, so a host that edits or swaps it only forces a new identity.
Result<std::unique_ptr<Identity>> load_or_create_identity(attest::Platform& platform, const std::string& store,
                                                          const attest::RatlsClaimsInput& claims) {
  TENET_ASSIGN_OR_RETURN(crypto::Bytes seal_key, platform.sealing_key(attest::SealPolicy::kMrEnclave, kIdentityLabel));
  auto id = std::make_unique<Identity>();
  const crypto::ByteSpan aad = crypto::as_bytes(kIdentityLabel);
  struct stat st{};
  if (!store.empty() && ::stat(store.c_str(), &st) == 0) {
    auto blob = crypto::read_file(store, 1 << 20);
    const size_t head = kIdentityMagic.size() + crypto::kAesGcmIvBytes;
    if (blob.ok() && blob->size() > head && blob->compare(0, kIdentityMagic.size(), kIdentityMagic) == 0) {
      const crypto::ByteSpan all = crypto::as_bytes(*blob);
      auto plain = crypto::aes256gcm_open(seal_key, all.subspan(kIdentityMagic.size(), crypto::kAesGcmIvBytes), aad,
                                          all.subspan(head));
      if (plain.ok()) {
        const auto j = nlohmann::json::parse(crypto::as_chars(*plain), nullptr, false);
        crypto::secure_wipe(*plain);
        if (j.is_object() && j.contains("cert_pem") && j.contains("key_pem") && j["cert_pem"].is_string() &&
            j["key_pem"].is_string()) {
          id->cert_pem = j["cert_pem"].get<std::string>();
          id->key_pem = j["key_pem"].get<std::string>();
          id->reused = true;
          crypto::secure_wipe(seal_key);
          return id;
        }
      }
    }
    log("the sealed identity in '%s' cannot be opened by this enclave (other code, platform or tampered); "
        "creating a new one", store);
  }
  TENET_ASSIGN_OR_RETURN(attest::RatlsIdentity fresh, attest::make_ratls_identity(platform, claims));
  TENET_ASSIGN_OR_RETURN(attest::PemPair pem, attest::ratls_pem(fresh));
  id->cert_pem = pem.cert_pem;
  id->key_pem = pem.key_pem;
  crypto::secure_wipe(pem.key_pem);
  if (!store.empty()) {
    std::string plain = nlohmann::json{{"cert_pem", id->cert_pem}, {"key_pem", id->key_pem}}.dump();
    crypto::Bytes iv(crypto::kAesGcmIvBytes);
    TENET_RETURN_IF_ERROR(crypto::random_bytes(std::span<uint8_t>(iv)));
    auto sealed = crypto::aes256gcm_seal(seal_key, iv, aad, crypto::as_bytes(plain));
    crypto::secure_wipe(plain);
    TENET_RETURN_IF_ERROR(sealed.status());
    std::string blob(kIdentityMagic);
    blob.append(crypto::as_chars(iv));
    blob.append(crypto::as_chars(*sealed));
    TENET_RETURN_IF_ERROR(crypto::write_file(store, blob, 0600).with_context("writing the sealed identity"));
  }
  crypto::secure_wipe(seal_key);
  return id;
}

Result<std::unique_ptr<attest::Platform>> open_platform(const EnclaveOptions& o, const std::string& manifest_text) {
  if (o.platform == "sim") {
    if (o.sim_dir.empty()) return invalid_argument("--platform sim needs --sim-dir (tenet sim init)");
    attest::SimEnclaveOptions so;
    so.platform_dir = o.sim_dir;
    so.config = manifest_text;
    return attest::open_sim_platform(so);
  }
  return attest::open_platform(o.platform);
}

// Planned memory: what each model may keep resident, from the enclave's share of the EPC (its
// limit, or the host budget) less room for request and response tensors, split among the models.
constexpr uint64_t kPlannedIoReserveBytes = uint64_t{4} << 20;

Result<uint64_t> planned_model_budget(const EnclaveOptions& o, const epc::EnclaveMemory* memory, size_t models) {
  if (memory == nullptr) return invalid_argument("--memory planned needs EPC emulation (--epc)");
  const epc::EpcCounters c = memory->heap->counters();
  const uint64_t limit = c.resident_limit_bytes > 0 ? std::min(c.resident_limit_bytes, c.host_budget_bytes) : c.host_budget_bytes;
  if (limit <= kPlannedIoReserveBytes + (uint64_t{1} << 20)) {
    return invalid_argument("EPC share of {} bytes leaves no room for planned models", limit);
  }
  return (limit - kPlannedIoReserveBytes) / std::max<size_t>(models, 1);
}

// The accelerator hybrid models share (untrusted, remote) and the in-enclave exact engine that
// precomputes their unblinding terms (trusted code: tenet's CPU backend run in this process).
struct HybridBackends {
  std::shared_ptr<accel::Accelerator> accelerator;
  std::shared_ptr<accel::Accelerator> trusted_linear;
};

Result<HybridBackends> open_hybrid_backends(const EnclaveOptions& o, const Manifest& manifest) {
  HybridBackends b;
  if (!manifest.any_hybrid()) {
    if (!o.accelerator.empty()) return invalid_argument("--accelerator given, but the manifest has no hybrid model");
    return b;
  }
  if (o.accelerator.empty()) return invalid_argument("the manifest has hybrid models: --accelerator unix:PATH is required");
  if (o.accelerator.rfind("unix:", 0) != 0) return invalid_argument("--accelerator must be unix:PATH, got '{}'", o.accelerator);
  auto remote = accel::connect_accelerator(o.accelerator);
  if (!remote.ok()) return remote.status().with_context("connecting to the accelerator " + o.accelerator);
  b.accelerator = std::shared_ptr<accel::Accelerator>(std::move(remote).value());
  auto trusted = accel::make_cpu_accelerator(o.threads);
  if (trusted.ok()) b.trusted_linear = std::shared_ptr<accel::Accelerator>(std::move(trusted).value());
  log("hybrid models use the accelerator %s (untrusted: it sees blinded data only)", b.accelerator->name());
  return b;
}

Result<std::shared_ptr<serving::ServedModel>> load_model(attest::Platform& platform, const EnclaveOptions& o,
                                                         const ManifestModel& mm, uint64_t planned_budget_bytes,
                                                         const HybridBackends& hybrid) {
  const auto path = o.packages.find(mm.name);
  if (path == o.packages.end()) return invalid_argument("no --package given for model '{}'", mm.name);
  TENET_ASSIGN_OR_RETURN(seal::PackageReader reader, seal::PackageReader::open(path->second));
  if (reader.info().digest_hex() != mm.package_digest_hex) {
    return data_loss("package '{}' has digest {}, the manifest expects {} for model '{}' (wrong or tampered package)",
                     path->second, reader.info().digest_hex(), mm.package_digest_hex, mm.name);
  }
  auto evidence = [&platform](std::span<const uint8_t, 64> report_data) -> Result<crypto::Bytes> {
    return platform.get_quote(crypto::ByteSpan(report_data.data(), report_data.size()));
  };
  TENET_ASSIGN_OR_RETURN(seal::SecretBytes key,
                         keybroker::fetch_resource(o.keybroker_url, mm.key_resource, o.platform, evidence));
  onnx_import::ImportOptions import;
  if (planned_budget_bytes > 0 && !mm.hybrid()) {
    // Bounded loading: chunk by chunk, the large weights deferred into sealed untrusted memory
    // (seal::PackageReader::load_graph), materialized one kernel at a time while compiling, so that
    // loading stays within the model's budget like the steady state. Hybrid models never defer.
    TENET_ASSIGN_OR_RETURN(import.constant_store, epc::SealedWeightStore::create());
  }
  auto graph = reader.load_graph(key.view(), import);
  import.constant_store.reset();  // the graph holds it while it needs it
  if (!graph.ok()) return graph.status().with_context("model '" + mm.name + "'");
  if (mm.hybrid()) {
    if (planned_budget_bytes > 0) {
      return invalid_argument("model '{}' is hybrid: --memory planned (weight streaming) applies to tee models only", mm.name);
    }
    HybridServedOptions ho;
    ho.accelerator = hybrid.accelerator;
    ho.trusted_linear = hybrid.trusted_linear;
    ho.verify_bits = mm.verify_bits;
    ho.unblind_pool = mm.unblind_pool;
    ho.pipeline_depth = mm.pipeline_depth;
    ho.max_batch_size = mm.max_batch_size;
    ho.max_queue_delay_us = mm.max_queue_delay_us;
    ho.max_queue_requests = mm.max_queue_requests;
    ho.threads = o.threads;
    return load_hybrid_model(mm.name, *graph, ho);
  }
  serving::EngineModelOptions eo;
  eo.max_batch_size = mm.max_batch_size;
  eo.max_queue_delay_us = mm.max_queue_delay_us;
  eo.max_queue_requests = mm.max_queue_requests;
  eo.threads = o.threads;
  if (planned_budget_bytes > 0) {
    TENET_ASSIGN_OR_RETURN(auto store, epc::SealedWeightStore::create());
    eo.streaming.store = std::move(store);
    eo.streaming.budget_bytes = planned_budget_bytes;
  }
  return serving::load_engine_model(mm.name, std::move(*graph), eo);
}

// The enclave's EPC: a heap in the host's shared budget, installed as the engine's allocator before
// any model loads (weights, kernel weight copies, arenas all live in it).
Result<std::unique_ptr<epc::EnclaveMemory>> open_epc(const EnclaveOptions& o) {
  if (o.platform != "sim") return invalid_argument("--epc emulates the EPC of the sim platform only");
  epc::EnclaveMemoryOptions mo;
  mo.host_name = o.epc_host.empty() ? "tenet-default" : o.epc_host;
  TENET_ASSIGN_OR_RETURN(mo.budget_bytes, epc::parse_epc_size(o.epc_budget));
  for (const auto& [name, path] : o.packages) {
    std::error_code ec;
    mo.payload_bytes += std::filesystem::file_size(path, ec);
  }
  mo.enclave_name = fmt::format("enclave-{}", o.instance);
  if (!o.epc_limit.empty()) {
    TENET_ASSIGN_OR_RETURN(mo.resident_limit_bytes, epc::parse_epc_size(o.epc_limit));
  }
  return epc::open_enclave_memory(mo);
}

nlohmann::json stats_event(const serving::ModelRepository& repo, const epc::EnclaveMemory* epc_state) {
  nlohmann::json models = nlohmann::json::object();
  for (const auto& m : repo.models()) {
    const serving::ModelStats s = m->stats();
    models[m->name()] = {{"success", s.success.count},
                         {"fail", s.fail.count},
                         {"queue_us", s.queue.ns / 1000},
                         {"compute_us", (s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns) / 1000}};
  }
  nlohmann::json ev = {{"event", "stats"}, {"models", models}};
  if (epc_state != nullptr) {
    const epc::EpcCounters c = epc_state->heap->counters();
    ev["epc"] = {{"resident_bytes", c.resident_bytes}, {"peak_resident_bytes", c.peak_resident_bytes},
                 {"allocated_bytes", c.allocated_bytes}, {"resident_limit_bytes", c.resident_limit_bytes},
                 {"page_faults", c.page_faults}, {"evictions", c.evictions}, {"loads", c.loads}};
  }
  return ev;
}

nlohmann::json model_modes_json(const Manifest& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const ManifestModel& mm : m.models) j[mm.name] = mm.mode_claim();
  return j;
}

void emit(const nlohmann::json& event) {
  std::printf("%s\n", event.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int run_enclave(const EnclaveOptions& o) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto fail = [](const Status& s) {
    std::fprintf(stderr, "tenet enclave: error: %s\n", s.to_string().c_str());
    return 1;
  };
  auto manifest_text = crypto::read_file(o.manifest_path, 1 << 20);
  if (!manifest_text.ok()) return fail(manifest_text.status().with_context("manifest"));
  auto manifest = parse_manifest(*manifest_text);
  if (!manifest.ok()) return fail(manifest.status());
  auto platform = open_platform(o, *manifest_text);
  if (!platform.ok()) return fail(platform.status().with_context("platform"));
  attest::Platform& pf = **platform;
  auto me = pf.identity();
  if (!me.ok()) return fail(me.status());

  attest::RatlsClaimsInput claims;
  claims.mode = manifest->any_hybrid() ? "hybrid" : manifest->mode;
  for (const auto& mm : manifest->models) {
    auto d = crypto::from_hex(mm.package_digest_hex);
    if (!d.ok()) return fail(d.status());
    claims.model_digests.push_back(*d);
    claims.model_modes.push_back(mm.mode_claim());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto identity = load_or_create_identity(pf, o.identity_store, claims);
  if (!identity.ok()) return fail(identity.status().with_context("RA-TLS identity"));
  const double identity_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  std::unique_ptr<epc::EnclaveMemory> epc_state;
  if (!o.epc_budget.empty()) {
    auto st = open_epc(o);
    if (!st.ok()) return fail(st.status().with_context("EPC"));
    epc_state = std::move(st).value();
  }
  uint64_t planned_budget = 0;
  if (o.memory == "planned") {
    auto b = planned_model_budget(o, epc_state.get(), manifest->models.size());
    if (!b.ok()) return fail(b.status());
    planned_budget = *b;
  } else if (o.memory != "resident") {
    return fail(invalid_argument("--memory must be resident or planned, not '{}'", o.memory));
  }
  auto hybrid = open_hybrid_backends(o, *manifest);
  if (!hybrid.ok()) return fail(hybrid.status());
  auto repo = std::make_shared<serving::ModelRepository>();
  for (const auto& mm : manifest->models) {
    auto model = load_model(pf, o, mm, planned_budget, *hybrid);
    if (!model.ok()) return fail(model.status());
    const Status added = repo->add(*model);
    if (!added.ok()) return fail(added);
  }

  serving::ServerOptions so;
  so.http_address = o.http_address;
  so.grpc_address = o.grpc_address;
  so.tls_cert_pem = (*identity)->cert_pem;
  so.tls_key_pem = (*identity)->key_pem;
  so.max_body_bytes = manifest->max_body_bytes;
  so.http_threads = manifest->http_threads;
  auto server = serving::Server::start(repo, so);
  crypto::secure_wipe(so.tls_key_pem);
  if (!server.ok()) return fail(server.status());

  const epc::EpcCounters epc_at_start = epc_state ? epc_state->heap->counters() : epc::EpcCounters{};
  emit({{"event", "ready"},
        {"instance", o.instance},
        {"http_port", (*server)->http_port()},
        {"grpc_port", (*server)->grpc_port()},
        {"platform", pf.name()},
        {"mrenclave", crypto::to_hex(me->mrenclave)},
        {"identity", (*identity)->reused ? "unsealed (reused)" : "created (one quote)"},
        {"identity_ms", identity_ms},
        {"epc_budget_bytes", epc_at_start.host_budget_bytes},
        // The EPC commit: what this enclave needs resident to serve without paging (its heap's
        // allocations once the models are loaded: weights, kernel copies, arenas, scratch). The
        // host's EPC-aware scheduler admits enclaves by it (0 without EPC emulation).
        {"commit_bytes", epc_at_start.allocated_bytes},
        {"memory", o.memory},
        {"modes", model_modes_json(*manifest)},
        {"epc_resident_limit_bytes", epc_at_start.resident_limit_bytes},
        {"epc_peak_resident_bytes", epc_at_start.peak_resident_bytes},
        {"epc_evictions", epc_at_start.evictions},
        {"enclave_create_ms", epc_at_start.creation_measure_ms}});

  std::string last_stats;
  for (;;) {
    timespec ts{o.stats_interval_ms / 1000, (o.stats_interval_ms % 1000) * 1000000L};
    const int sig = sigtimedwait(&stop_signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) break;
    nlohmann::json ev = stats_event(*repo, epc_state.get());
    std::string text = ev.dump();
    if (text != last_stats) {
      emit(ev);
      last_stats = std::move(text);
    }
  }
  (*server)->stop();
  return 0;
}

}  // namespace tenet::enclave
