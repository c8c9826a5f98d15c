// `tenet run --mode hybrid` (see hybrid_cli.h).
#include "hybrid/hybrid_cli.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "core/npy.h"
#include "core/timing.h"
#include "engine/onnx/importer.h"
#include "hybrid/hybrid_model.h"
#include "hybrid/slices.h"
#include "seal/package.h"
#include "hybrid/trusted_linear.h"

namespace tenet::hybrid {
namespace {

using Clock = std::chrono::steady_clock;

using tenet::ms_since;
using tenet::percentile;

Result<std::shared_ptr<accel::Accelerator>> open_accelerator(const std::string& which, int threads) {
  if (which == "cpu") {
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<accel::Accelerator> a, accel::make_cpu_accelerator(threads));
    return std::shared_ptr<accel::Accelerator>(std::move(a));
  }
  if (which == "cuda") {
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<accel::Accelerator> a, accel::make_cuda_accelerator(0));
    return std::shared_ptr<accel::Accelerator>(std::move(a));
  }
  if (which.rfind("unix:", 0) == 0) {
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<accel::Accelerator> a, accel::connect_accelerator(which));
    return std::shared_ptr<accel::Accelerator>(std::move(a));
  }
  if (which == "exact") return std::shared_ptr<accel::Accelerator>(std::make_shared<ExactLinear>());
  return invalid_argument("--accelerator must be cpu, cuda, unix:PATH or exact, got '{}'", which);
}

}  // namespace

Result<nlohmann::json> run_hybrid(const HybridRunArgs& a) {
  const auto t0 = Clock::now();
  TENET_ASSIGN_OR_RETURN(ir::Graph graph, onnx_import::import_model_file(a.model));
  std::map<std::string, Tensor> feeds;
  std::map<std::string, Shape> shapes;
  for (const std::string& arg : a.inputs) {
    const size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) return invalid_argument("--input expects NAME=FILE.npy, got '{}'", arg);
    const std::string name = arg.substr(0, eq);
    auto t = read_npy(arg.substr(eq + 1));
    if (!t.ok()) return t.status().with_context("input '" + name + "'");
    if (feeds.count(name)) return invalid_argument("input '{}' given twice", name);
    shapes[name] = t->shape();
    feeds[name] = std::move(t).value();
  }
  for (ir::ValueId id : graph.inputs) {
    const ir::Value& v = graph.value(id);
    if (!feeds.count(v.name)) {
      return invalid_argument("missing --input {}=FILE.npy ({} {})", v.name, dtype_name(v.dtype), shape_to_string(v.shape));
    }
  }
  if (a.bench < 0 || a.warmup < 0) return invalid_argument("--bench and --warmup must be >= 0");

  HybridOptions o;
  std::vector<std::string> slice_names;
  if (!a.slice_key.empty() && a.slices.empty()) return invalid_argument("--slice-key needs --slices MANIFEST.json");
  if (!a.slices.empty()) {
    // The slices run in the enclave (private_nodes); see slices.h for what the accelerator sees.
    std::optional<seal::SecretBytes> key;
    if (!a.slice_key.empty()) {
      auto k = seal::read_model_key_file(a.slice_key);
      if (!k.ok()) return k.status().with_context("--slice-key");
      key = std::move(k).value();
    }
    TENET_ASSIGN_OR_RETURN(SliceManifest manifest, read_slice_manifest_file(a.slices));
    const std::string base_dir = std::filesystem::path(a.slices).parent_path().string();
    TENET_ASSIGN_OR_RETURN(std::vector<LoadedSlice> loaded, load_slices(manifest, base_dir, key ? &*key : nullptr));
    TENET_ASSIGN_OR_RETURN(ComposedModel composed, compose_slices(graph, loaded, shapes));
    graph = std::move(composed.graph);
    o.private_nodes = std::move(composed.private_nodes);
    slice_names = std::move(composed.slice_names);
  }
  TENET_ASSIGN_OR_RETURN(o.accelerator, open_accelerator(a.accelerator, a.threads));
  // The in-enclave engine for W·r: the CPU backend's code run in this (the enclave's) process
  // when it is available (trusted code: the same exact arithmetic), else the exact loops.
  auto trusted = accel::make_cpu_accelerator(a.threads);
  if (trusted.ok()) o.trusted_linear = std::shared_ptr<accel::Accelerator>(std::move(trusted).value());
  o.verify_bits = a.insecure_plain ? 0 : a.verify_bits;
  o.insecure_no_blinding = a.insecure_plain;
  o.threads = a.threads;
  o.pipeline_depth = a.pipeline_depth;
  const int masks = a.insecure_plain ? 0 : a.masks >= 0 ? a.masks : a.warmup + a.bench + 1;
  TENET_ASSIGN_OR_RETURN(std::unique_ptr<HybridModel> model, HybridModel::compile(graph, shapes, o));
  const double compile_ms = ms_since(t0);
  const auto tp = Clock::now();
  TENET_RETURN_IF_ERROR(model->precompute(masks));
  const double precompute_ms = ms_since(tp);

  std::vector<ConstTensorView> views;
  for (const cpu::TensorInfo& info : model->inputs()) {
    const Tensor& t = feeds.at(info.name);
    if (t.dtype() != info.dtype) {
      return invalid_argument("input '{}' must be {}, the file holds {}", info.name, dtype_name(info.dtype), dtype_name(t.dtype()));
    }
    views.push_back(t.view());
  }
  std::vector<Tensor> outputs;
  const auto t_first = Clock::now();
  TENET_RETURN_IF_ERROR(model->run(views, outputs));
  const double first_ms = ms_since(t_first);

  std::error_code ec;
  std::filesystem::create_directories(a.output_dir, ec);
  if (ec) return invalid_argument("cannot create output directory '{}': {}", a.output_dir, ec.message());
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string file = model->outputs()[i].name;
    std::replace_if(file.begin(), file.end(), [](char c) { return c == '/' || c == '\\' || c == '\0'; }, '_');
    const std::string path = (std::filesystem::path(a.output_dir) / (file + ".npy")).string();
    TENET_RETURN_IF_ERROR(write_npy(path, outputs[i].view()));
    if (!a.quiet) std::printf("wrote %s (%s %s)\n", path.c_str(), dtype_name(outputs[i].dtype()), shape_to_string(outputs[i].shape()).c_str());
  }

  for (int i = 0; i < a.warmup && a.bench > 0; ++i) TENET_RETURN_IF_ERROR(model->run(views, outputs));
  const HybridStats before = model->stats();
  std::vector<double> times;
  double wall_ms = first_ms;
  if (a.bench > 0) {
    // pipeline_depth workers, each running whole requests on its own instance.
    std::mutex mu;
    std::atomic<int> next{0};
    Status first_error;
    auto worker = [&] {
      std::vector<Tensor> outs;
      while (next.fetch_add(1) < a.bench) {
        const auto tb = Clock::now();
        Status s = model->run(views, outs);
        const double ms = ms_since(tb);
        std::lock_guard<std::mutex> lock(mu);
        times.push_back(ms);
        if (!s.ok() && first_error.ok()) first_error = s;
      }
    };
    const auto tw = Clock::now();
    std::vector<std::thread> threads;
    for (int i = 1; i < a.pipeline_depth; ++i) threads.emplace_back(worker);
    worker();
    for (std::thread& t : threads) t.join();
    wall_ms = ms_since(tw);
    TENET_RETURN_IF_ERROR(first_error);
  } else {
    times.push_back(first_ms);
  }
  const HybridStats st = model->stats();
  const int64_t batch = model->inputs().empty() || model->inputs()[0].shape.empty() ? 1 : model->inputs()[0].shape[0];
  const double runs = static_cast<double>(times.size());
  nlohmann::json j;
  j["model"] = a.model;
  j["mode"] = a.insecure_plain ? "hybrid-plain (INSECURE: not blinded, not verified)" : "hybrid";
  j["platform"] = "sim (INSECURE)";
  j["accelerator"] = o.accelerator->name();
  j["verify_bits"] = o.verify_bits;
  j["verify_repetitions"] = st.verify_repetitions;
  j["verified"] = o.verify_bits > 0;
  j["blinded"] = !a.insecure_plain;
  j["threads"] = model->instance(0).threads();
  j["pipeline_depth"] = a.pipeline_depth;
  j["batch"] = batch;
  j["runs"] = times.size();
  j["latency_ms_p50"] = percentile(times, 0.5);
  j["latency_ms_p90"] = percentile(times, 0.9);
  j["latency_ms_min"] = percentile(times, 0.0);
  j["throughput_per_s"] = wall_ms > 0 ? runs * static_cast<double>(batch) * 1000.0 / wall_ms : 0.0;
  j["compile_ms"] = compile_ms;
  j["precompute_ms"] = precompute_ms;
  j["masks_precomputed_per_layer"] = masks;
  j["masks_inline"] = st.masks_inline;
  j["host_mask_bytes"] = st.host_mask_bytes;
  j["outsourced_layers"] = st.outsourced_layers;
  j["verified_layers"] = st.verified_layers;
  j["outsourced_flops_fraction"] = st.outsourced_flops_fraction;
  j["total_flops"] = st.total_flops;
  j["private_slices"] = slice_names;
  j["private_flops_fraction"] = st.private_flops_fraction;
  // Per request, over the timed runs (or the single run).
  const double n = a.bench > 0 ? static_cast<double>(st.requests - before.requests) : 1.0;
  const HybridStats& b0 = a.bench > 0 ? before : HybridStats{};
  j["phase_ms"] = {
      {"quantize_blind", (st.quantize_blind_ms - b0.quantize_blind_ms) / n},
      {"accelerator", (st.accelerator_ms - b0.accelerator_ms) / n},
      {"verify", (st.verify_ms - b0.verify_ms) / n},
      {"unblind", (st.unblind_ms - b0.unblind_ms) / n},
      {"dequantize_postops", (st.dequantize_ms - b0.dequantize_ms) / n},
      {"enclave_other", (st.enclave_other_ms - b0.enclave_other_ms) / n},
  };
  return j;
}

}  // namespace tenet::hybrid
