// The tenet command. Subcommands are stable interfaces other tools script:
//   tenet run MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR [--threads N] [--bench N]
//   tenet inspect MODEL.onnx [--input-shape NAME=1x3x224x224 ...]
// Errors go to stderr with a non-zero exit status; `run --bench` ends its stdout with one JSON line.
#include <omp.h>
#include <pthread.h>

#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/allocator.h"
#include "core/npy.h"
#include "core/safe_math.h"
#include "core/timing.h"
#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "engine/ops/op.h"
#include "epc/epc_allocator.h"
#include "epc/sealed_weight_store.h"
#include "hybrid/hybrid_cli.h"

namespace {

using tenet::Result;
using tenet::Shape;
using tenet::Status;

using tenet::cli::fail;

Result<std::pair<std::string, std::string>> split_assignment(const std::string& arg, const char* flag) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) {
    return tenet::invalid_argument("{} expects NAME=VALUE, got '{}'", flag, arg);
  }
  return std::make_pair(arg.substr(0, eq), arg.substr(eq + 1));
}

Result<Shape> parse_shape(const std::string& text) {
  Shape shape;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t x = text.find('x', pos);
    const std::string part = text.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
    try {
      size_t used = 0;
      const long long v = std::stoll(part, &used);
      if (used != part.size() || v < 0) throw std::invalid_argument(part);
      shape.push_back(v);
    } catch (const std::exception&) {
      return tenet::invalid_argument("bad shape '{}': expected dims separated by 'x', e.g. 1x3x224x224", text);
    }
    if (x == std::string::npos) break;
    pos = x + 1;
  }
  return shape;
}

using tenet::ms_since;
using tenet::percentile;

struct RunArgs {
  std::string model;
  std::vector<std::string> inputs;
  std::string output_dir;
  int threads = 0;
  int bench = 0;
  int warmup = 5;
  bool reference = false;
  bool quiet = false;
  std::string enclave;            // "" (plain process) or "sim"
  std::string epc = "93MiB";      // the sim host's EPC budget
  std::string memory = "planned";  // planned | naive
  double loading_overhead = tenet::cpu::StreamingOptions{}.max_loading_overhead;
  // --mode hybrid (src/hybrid): linear layers on an untrusted accelerator, blinded and verified.
  std::string mode = "tee";
  std::string accelerator = "cpu";
  int verify_bits = 40;
  bool no_verify = false;
  int pipeline_depth = 1;
  int masks = -1;
  bool insecure_plain = false;
  std::string slices;     // TEESlice manifest (src/hybrid/slices.h)
  std::string slice_key;  // model key file of sealed slices
};

int cmd_run_hybrid(const RunArgs& a) {
  if (a.reference || !a.enclave.empty() || a.memory != "planned") {
    return fail(tenet::invalid_argument("--mode hybrid does not combine with --reference, --enclave or --memory"));
  }
  tenet::hybrid::HybridRunArgs h;
  h.model = a.model;
  h.inputs = a.inputs;
  h.output_dir = a.output_dir;
  h.threads = a.threads;
  h.bench = a.bench;
  h.warmup = a.warmup;
  h.quiet = a.quiet;
  h.accelerator = a.accelerator;
  h.verify_bits = a.no_verify ? 0 : a.verify_bits;
  h.pipeline_depth = a.pipeline_depth;
  h.masks = a.masks;
  h.insecure_plain = a.insecure_plain;
  h.slices = a.slices;
  h.slice_key = a.slice_key;
  auto j = tenet::hybrid::run_hybrid(h);
  if (!j.ok()) return fail(j.status());
  std::printf("%s\n", j->dump().c_str());
  return 0;
}

// What planned mode gives the model of `tenet run --enclave sim` (and what `tenet inspect --epc`
// shows): the enclave's EPC less what the run itself keeps there, each input and an output of
// the same size (a bound), page-rounded, and 1 MiB.
struct PlannedBudget {
  uint64_t io_bytes = 0;
  uint64_t model_bytes = 0;
};
Result<PlannedBudget> planned_budget(uint64_t epc_bytes, const std::vector<size_t>& input_bytes, const std::string& epc_text) {
  PlannedBudget b;
  for (size_t n : input_bytes) b.io_bytes += 2 * tenet::align_up(n, 4096);
  const uint64_t reserve = b.io_bytes + (uint64_t{1} << 20);
  if (epc_bytes <= reserve) return tenet::invalid_argument("--epc {} leaves no room for the model", epc_text);
  b.model_bytes = epc_bytes - reserve;
  return b;
}

// `tenet run --enclave sim`: the model runs inside one sim enclave whose memory (weights, kernel
// weight copies, activations, scratch) comes from an EPC-accounted, paged heap (src/epc). The
// budget belongs to a private host segment for this run. Sim only: no hardware protection.
struct SimEnclave {
  std::string host_name;
  std::unique_ptr<tenet::epc::EnclaveMemory> memory;
  ~SimEnclave() {
    if (!host_name.empty()) (void)tenet::epc::HostEpc::remove(host_name);
  }
};

Result<std::unique_ptr<SimEnclave>> open_sim_enclave(const RunArgs& a) {
  auto e = std::make_unique<SimEnclave>();
  tenet::epc::EnclaveMemoryOptions o;
  TENET_ASSIGN_OR_RETURN(o.budget_bytes, tenet::epc::parse_epc_size(a.epc));
  std::error_code ec;
  o.payload_bytes = std::filesystem::file_size(a.model, ec);
  if (ec) return tenet::not_found("cannot stat '{}': {}", a.model, ec.message());
  e->host_name = o.host_name = fmt::format("tenet-run-{}", ::getpid());
  o.enclave_name = "run";
  TENET_ASSIGN_OR_RETURN(e->memory, tenet::epc::open_enclave_memory(o));
  return e;
}

int cmd_run(const RunArgs& a) {
  if (a.mode == "hybrid") return cmd_run_hybrid(a);
  if (!a.slices.empty() || !a.slice_key.empty()) return fail(tenet::invalid_argument("--slices and --slice-key need --mode hybrid"));
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<SimEnclave> enclave;
  if (a.enclave == "sim") {
    auto e = open_sim_enclave(a);
    if (!e.ok()) return fail(e.status().with_context("sim enclave"));
    enclave = std::move(e).value();
  } else if (a.memory != "planned") {
    return fail(tenet::invalid_argument("--memory {} needs --enclave sim", a.memory));
  }
  tenet::onnx_import::ImportOptions import;
  if (enclave && a.memory == "planned") {
    // Bounded loading: the model's large weights go into sealed untrusted memory as they are read
    // (deferred constants, ir/graph.h), and the compiler materializes each only while it builds the
    // kernel that takes it; so loading stays within the budget like the steady state. This store
    // lives only while the model loads (the streaming plan's store below keeps the kernels' weights).
    auto st = tenet::epc::SealedWeightStore::create();
    if (!st.ok()) return fail(st.status());
    import.constant_store = std::move(st).value();
  }
  auto graph = tenet::onnx_import::import_model_file(a.model, import);
  import.constant_store.reset();  // the graph holds it now
  if (!graph.ok()) return fail(graph.status());
  std::map<std::string, tenet::Tensor> feeds;
  std::map<std::string, Shape> shapes;
  for (const std::string& arg : a.inputs) {
    auto kv = split_assignment(arg, "--input");
    if (!kv.ok()) return fail(kv.status());
    auto t = tenet::read_npy(kv->second);
    if (!t.ok()) return fail(t.status().with_context("input '" + kv->first + "'"));
    if (feeds.count(kv->first)) return fail(tenet::invalid_argument("input '{}' given twice", kv->first));
    shapes[kv->first] = t->shape();
    feeds[kv->first] = std::move(t).value();
  }
  for (tenet::ir::ValueId id : graph->inputs) {
    const auto& v = graph->value(id);
    if (!feeds.count(v.name)) {
      return fail(tenet::invalid_argument("missing --input {}=FILE.npy ({} {})", v.name, tenet::dtype_name(v.dtype),
                                          tenet::shape_to_string(v.shape)));
    }
  }
  tenet::cpu::CompileOptions options;
  options.threads = a.threads;
  options.reference_only = a.reference;
  options.no_buffer_reuse = a.memory == "naive";
  std::shared_ptr<tenet::epc::SealedWeightStore> store;
  if (enclave && a.memory == "planned") {
    // Vessels' planned mode: weights beyond what fits stream from sealed untrusted memory. The
    // model's budget is the enclave's EPC less what the run itself keeps there (inputs, outputs).
    auto st = tenet::epc::SealedWeightStore::create();
    if (!st.ok()) return fail(st.status());
    store = std::move(st).value();
    const tenet::epc::EpcCounters c = enclave->memory->heap->counters();
    const uint64_t limit = c.resident_limit_bytes > 0 ? std::min(c.resident_limit_bytes, c.host_budget_bytes) : c.host_budget_bytes;
    std::vector<size_t> input_bytes;
    for (const auto& [name, t] : feeds) input_bytes.push_back(t.size_bytes());
    auto budget = planned_budget(limit, input_bytes, a.epc);
    if (!budget.ok()) return fail(budget.status());
    options.streaming.store = store;
    options.streaming.budget_bytes = budget->model_bytes;
    options.streaming.max_loading_overhead = a.loading_overhead;
  }
  auto model = tenet::cpu::compile_model(std::move(*graph), shapes, options);
  if (!model.ok()) return fail(model.status());
  const double compile_ms = ms_since(t0);

  std::vector<tenet::ConstTensorView> in_views;
  for (const auto& info : (*model)->inputs()) {
    const tenet::Tensor& t = feeds.at(info.name);
    if (t.dtype() != info.dtype) {
      return fail(tenet::invalid_argument("input '{}' must be {}, the file holds {}", info.name, tenet::dtype_name(info.dtype),
                                          tenet::dtype_name(t.dtype())));
    }
    in_views.push_back(t.view());
  }
  std::vector<tenet::Tensor> outputs;
  const auto t_first = std::chrono::steady_clock::now();
  Status s = (*model)->run(in_views, outputs);
  if (!s.ok()) return fail(s);
  const double first_ms = ms_since(t_first);
  // Loading is over with the first run (it also brings back what loading left evicted, and first
  // touches the arena): what follows is the steady state an enclave serves in.
  tenet::epc::EpcCounters at_load;
  if (enclave) {
    at_load = enclave->memory->heap->counters();
    enclave->memory->heap->reset_peaks();
  }

  std::error_code ec;
  std::filesystem::create_directories(a.output_dir, ec);
  if (ec) return fail(tenet::invalid_argument("cannot create output directory '{}': {}", a.output_dir, ec.message()));
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name = (*model)->outputs()[i].name;
    std::string file = name;
    std::replace_if(file.begin(), file.end(), [](char c) { return c == '/' || c == '\\' || c == '\0'; }, '_');
    const std::string path = (std::filesystem::path(a.output_dir) / (file + ".npy")).string();
    Status ws = tenet::write_npy(path, outputs[i].view());
    if (!ws.ok()) return fail(ws);
    if (!a.quiet) std::printf("wrote %s (%s %s)\n", path.c_str(), tenet::dtype_name(outputs[i].dtype()), tenet::shape_to_string(outputs[i].shape()).c_str());
  }

  std::vector<double> times;
  if (a.bench > 0) {
    for (int i = 0; i < a.warmup; ++i) {
      Status w = (*model)->run(in_views, outputs);
      if (!w.ok()) return fail(w);
    }
    for (int i = 0; i < a.bench; ++i) {
      const auto tb = std::chrono::steady_clock::now();
      Status r = (*model)->run(in_views, outputs);
      times.push_back(ms_since(tb));
      if (!r.ok()) return fail(r);
    }
  } else {
    times.push_back(first_ms);
  }
  const auto& plan = (*model)->arena_plan();
  nlohmann::json j;
  j["model"] = a.model;
  j["threads"] = (*model)->threads();
  j["runs"] = times.size();
  j["latency_ms_p50"] = percentile(times, 0.5);
  j["latency_ms_p90"] = percentile(times, 0.9);
  j["latency_ms_min"] = percentile(times, 0.0);
  j["compile_ms"] = compile_ms;
  j["peak_activation_bytes"] = plan.peak_bytes;
  j["sum_activation_bytes"] = plan.total_bytes;
  j["weight_bytes"] = (*model)->weight_bytes();
  j["mode"] = a.reference ? "reference" : "cpu";
  if (enclave) {
    // Counters of the runs after the first (loading and the first run are under "load");
    // peak_epc_bytes is the enclave memory committed at the peak of those runs: what it needs
    // resident never to page (Vessels' "peak EPC"). Without --bench there are no such runs.
    const tenet::epc::EpcCounters c = enclave->memory->heap->counters();
    j["enclave"] = "sim (INSECURE)";
    j["memory"] = a.memory;
    j["epc_budget_bytes"] = c.host_budget_bytes;
    j["peak_epc_bytes"] = c.peak_allocated_bytes;
    j["peak_resident_bytes"] = c.peak_resident_bytes;
    j["allocated_bytes"] = c.allocated_bytes;
    j["page_faults"] = c.page_faults - at_load.page_faults;
    j["evictions"] = c.evictions - at_load.evictions;
    j["loads"] = c.loads - at_load.loads;
    j["bytes_encrypted"] = c.bytes_encrypted - at_load.bytes_encrypted;
    j["enclave_create_ms"] = c.creation_measure_ms;
    j["load"] = {{"peak_epc_bytes", at_load.peak_allocated_bytes},
                 {"peak_resident_bytes", at_load.peak_resident_bytes},
                 {"page_faults", at_load.page_faults},
                 {"evictions", at_load.evictions}};
    const tenet::cpu::StreamingPlan& sp = (*model)->streaming_plan();
    if (sp.enabled) {
      j["streaming"] = {{"budget_bytes", sp.budget_bytes},
                        {"planned_peak_bytes", sp.planned_peak_bytes},
                        {"arena_bytes", sp.arena_bytes},
                        {"resident_weight_bytes", sp.resident_weight_bytes},
                        {"streamed_weight_bytes", sp.streamed_weight_bytes},
                        {"ring_slots", sp.ring_slots},
                        {"ring_slot_bytes", sp.ring_slot_bytes},
                        {"streamed_in_pieces_bytes", sp.streamed_in_pieces_bytes},
                        {"piece_buffer_bytes", sp.piece_buffer_bytes},
                        {"tiled_layers", sp.tiled_layers},
                        {"max_loading_overhead", sp.max_loading_overhead},
                        {"predicted_compute_ms", sp.predicted_compute_ms},
                        {"predicted_loading_ms", sp.predicted_loading_ms},
                        {"resident_cap_bytes", sp.resident_cap_bytes},
                        {"store", store->describe()},
                        {"store_bytes", store->stored_bytes()}};
    }
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

struct InspectArgs {
  std::string model;
  std::vector<std::string> shapes;
  bool show_plan = true;
  std::string epc;  // with a budget: the memory-bounded plan (Vessels) instead of the arena plan
  double loading_overhead = tenet::cpu::StreamingOptions{}.max_loading_overhead;
};

// `tenet inspect --epc BUDGET`: the plan of `tenet run --enclave sim --memory planned` (the same
// budget: planned_budget) beside what the naive mode would commit.
int inspect_epc(const InspectArgs& a, tenet::ir::Graph graph, const std::map<std::string, Shape>& shapes) {
  auto budget = tenet::epc::parse_epc_size(a.epc);
  if (!budget.ok()) return fail(budget.status());
  std::vector<size_t> input_bytes;
  for (tenet::ir::ValueId id : graph.inputs) {
    const auto& v = graph.value(id);
    input_bytes.push_back(static_cast<size_t>(tenet::numel(shapes.at(v.name))) * tenet::dtype_size(v.dtype));
  }
  auto plan_budget = planned_budget(*budget, input_bytes, a.epc);
  if (!plan_budget.ok()) return fail(plan_budget.status());
  const uint64_t io = plan_budget->io_bytes;
  // What naive mode commits: the imported weights, the kernels' copies, one buffer per activation.
  uint64_t imported = 0;
  for (const auto& v : graph.values) imported += v.constant_bytes();
  tenet::cpu::CompileOptions naive_opts;
  naive_opts.no_buffer_reuse = true;
  auto naive = tenet::cpu::compile_model(graph, shapes, naive_opts);
  if (!naive.ok()) return fail(naive.status());
  uint64_t naive_weights = 0;  // the kernels' own copies (a weight a kernel shares with the graph is counted once, above)
  for (const auto& st : (*naive)->steps()) naive_weights += st.weight_bytes - st.shared_weight_bytes;
  const uint64_t naive_acts = (*naive)->arena_plan().peak_bytes;
  const uint64_t naive_commit = imported + naive_weights + naive_acts + (*naive)->scratchpad_bytes() + io;
  naive->reset();

  // The sealed store the enclave would stream from: the plan depends on its measured load rate.
  auto store = tenet::epc::SealedWeightStore::create();
  if (!store.ok()) return fail(store.status());
  tenet::cpu::CompileOptions o;
  o.streaming.store = *store;
  o.streaming.budget_bytes = plan_budget->model_bytes;
  o.streaming.max_loading_overhead = a.loading_overhead;
  auto model = tenet::cpu::compile_model(std::move(graph), shapes, o);
  if (!model.ok()) return fail(model.status());
  const auto& m = **model;
  const tenet::cpu::StreamingPlan& p = m.streaming_plan();
  auto mib = [](uint64_t b) { return static_cast<double>(b) / (1 << 20); };
  std::printf("model: %s\nEPC budget %s = %.1f MiB; the model's share %.1f MiB (less inputs/outputs and 1 MiB)\n\n", a.model.c_str(),
              a.epc.c_str(), mib(*budget), mib(p.budget_bytes));
  std::vector<std::string> where_step(m.steps().size(), "resident");
  for (const auto& pl : p.placements) {
    if (!pl.streamed) continue;
    std::string& w = where_step[static_cast<size_t>(pl.step)];
    if (!pl.in_pieces) {
      w = "streamed (ring)";
    } else if (pl.resident_bytes == 0) {
      w = "streamed (pieces)";
    } else {
      w = fmt::format("streamed (pieces; first {:.1f} MiB resident)", mib(pl.resident_bytes));
    }
  }
  std::printf("%-5s %-36s %-12s %12s %12s  %s\n", "step", "node", "op", "act. KiB", "weight KiB", "weights");
  for (size_t i = 0; i < m.steps().size(); ++i) {
    const auto& s = m.steps()[i];
    std::string node = s.node.size() > 36 ? "..." + s.node.substr(s.node.size() - 33) : s.node;
    const char* where = s.weight_bytes == 0 ? "" : where_step[i].c_str();
    std::printf("%-5zu %-36s %-12s %12.1f %12.1f  %s\n", i, node.c_str(), s.op_type.c_str(), s.activation_bytes / 1024.0,
                s.weight_bytes / 1024.0, where);
  }
  const double rate = (*store)->load_bytes_per_second(m.threads());
  std::printf("\nplanned (peak EPC %.1f MiB of %.1f):\n", mib(p.planned_peak_bytes), mib(p.budget_bytes));
  std::printf("  activation arena   %8.1f MiB (one shared pool)\n", mib(p.arena_bytes));
  std::printf("  scratchpad         %8.1f MiB\n", mib(p.scratchpad_bytes));
  if (p.max_loading_overhead > 0) {
    std::printf("  resident weights   %8.1f MiB (kept: small first; keeping loading within %.0f%% of %.1f ms of predicted "
                "compute needs at most %.1f MiB)\n",
                mib(p.resident_weight_bytes + p.constant_bytes), 100 * p.max_loading_overhead, p.predicted_compute_ms,
                mib(p.resident_cap_bytes));
  } else {
    std::printf("  resident weights   %8.1f MiB (kept: small first, as many as fit)\n", mib(p.resident_weight_bytes + p.constant_bytes));
  }
  std::printf("  ring               %8.1f MiB (%d slots x %.1f MiB)\n", mib(p.ring_slot_bytes * static_cast<uint64_t>(p.ring_slots)),
              p.ring_slots, mib(p.ring_slot_bytes));
  std::printf("  piece buffers      %8.1f MiB (one piece per thread: matrix-vector weights decrypted piece by piece)\n",
              mib(p.piece_buffer_bytes));
  std::printf("  tiled layers       %8d (linear layers split along outputs to fit a slot)\n", p.tiled_layers);
  const std::string gcm(tenet::crypto::aes_gcm_backend());
  std::printf("  streamed per run   %8.1f MiB -> about %.1f ms of AES-GCM loading at %.1f GB/s (measured here, %d threads, %s)\n",
              mib(p.streamed_weight_bytes), rate > 0 ? 1e3 * static_cast<double>(p.streamed_weight_bytes) / rate : 0.0, rate / 1e9,
              m.threads(), gcm.c_str());
  std::printf("  expected paging    %8s\n", p.planned_peak_bytes <= p.budget_bytes ? "none" : "yes");
  std::printf("naive (what the baselines commit): %.1f MiB = imported weights %.1f + kernel copies %.1f + activations %.1f "
              "(one buffer each) + scratchpad and I/O\n",
              mib(naive_commit), mib(imported), mib(naive_weights), mib(naive_acts));
  std::printf("  expected paging    %8.1f MiB beyond the budget%s\n", naive_commit > *budget ? mib(naive_commit - *budget) : 0.0,
              naive_commit > *budget ? " (secure paging on every run)" : "");
  std::printf("planned peak is %.1f%% below naive\n", naive_commit > 0 ? 100.0 * (1.0 - static_cast<double>(p.planned_peak_bytes + io) / naive_commit) : 0.0);
  return 0;
}

int cmd_inspect(const InspectArgs& a) {
  auto graph = tenet::onnx_import::import_model_file(a.model);
  if (!graph.ok()) return fail(graph.status());
  std::map<std::string, Shape> shapes;
  for (const std::string& arg : a.shapes) {
    auto kv = split_assignment(arg, "--input-shape");
    if (!kv.ok()) return fail(kv.status());
    auto shape = parse_shape(kv->second);
    if (!shape.ok()) return fail(shape.status());
    shapes[kv->first] = *shape;
  }
  // Dynamic dims not given default to 1 (batch 1).
  for (tenet::ir::ValueId id : graph->inputs) {
    const auto& v = graph->value(id);
    if (shapes.count(v.name)) continue;
    Shape s = v.shape;
    for (int64_t& d : s) d = d < 0 ? 1 : d;
    shapes[v.name] = s;
  }
  if (!a.epc.empty()) return inspect_epc(a, std::move(graph).value(), shapes);
  tenet::passes::PassStats stats;
  const size_t imported_nodes = graph->nodes.size();
  auto model = tenet::cpu::compile_model(*graph, shapes, tenet::cpu::CompileOptions{}, &stats);
  if (!model.ok()) return fail(model.status());
  const auto& m = **model;
  std::printf("model: %s (opset %lld)\n", a.model.c_str(), static_cast<long long>(graph->opset));
  for (const auto& in : m.inputs()) std::printf("input:  %s %s %s\n", in.name.c_str(), tenet::dtype_name(in.dtype), tenet::shape_to_string(in.shape).c_str());
  for (const auto& out : m.outputs()) std::printf("output: %s %s %s\n", out.name.c_str(), tenet::dtype_name(out.dtype), tenet::shape_to_string(out.shape).c_str());
  std::printf("nodes: %zu imported, %zu after optimization (%d folded, %d identities removed, %d batch norms folded, "
              "%d activations fused, %d residual adds fused, %d GELUs fused, %d matmuls fused with scale/bias)\n",
              imported_nodes, m.graph().nodes.size(), stats.nodes_folded, stats.identities_removed, stats.batch_norms_folded,
              stats.activations_fused, stats.residual_adds_fused, stats.gelus_fused, stats.matmuls_fused);
  std::printf("\n%-5s %-36s %-18s %-14s %-8s %-12s %14s\n", "step", "node", "op", "kernel", "layout", "post-ops", "FLOPs");
  int64_t total_flops = 0;
  for (size_t i = 0; i < m.steps().size(); ++i) {
    const auto& s = m.steps()[i];
    total_flops += s.flops;
    std::string node = s.node.size() > 36 ? "..." + s.node.substr(s.node.size() - 33) : s.node;
    std::printf("%-5zu %-36s %-18s %-14s %-8s %-12s %14lld\n", i, node.c_str(), s.op_type.c_str(), s.kernel.c_str(),
                s.output_layout.c_str(), s.post_ops.c_str(), static_cast<long long>(s.flops));
  }
  std::printf("\ntotal: %.3f GFLOPs, parameters %zu bytes, scratchpad %zu bytes\n", static_cast<double>(total_flops) / 1e9,
              m.weight_bytes(), m.scratchpad_bytes());
  std::printf("\narena plan (greedy by size):\n%s", tenet::plan::format_plan(m.buffers(), m.arena_plan()).c_str());
  return 0;
}

}  // namespace

namespace tenet::cli {

CommandRegistration::CommandRegistration(CommandFactory factory) {
  registered_commands().push_back(std::move(factory));
}

namespace {
sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_signal_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

int wait_for_stop_signal() {
  const sigset_t set = stop_signal_set();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

int announce_and_serve(const std::string& ready_json, const std::function<void()>& stop) {
  std::printf("%s\n", ready_json.c_str());
  std::fflush(stdout);
  wait_for_stop_signal();
  stop();
  std::printf("{\"event\":\"stopped\"}\n");
  std::fflush(stdout);
  return 0;
}

std::vector<CommandFactory>& registered_commands() {
  static std::vector<CommandFactory> commands;
  return commands;
}

int fail(const Status& s) {
  std::fprintf(stderr, "tenet: error: %s\n", s.to_string().c_str());
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kNotFound ? 2 : 1;
}

}  // namespace tenet::cli

int main(int argc, char** argv) {
  CLI::App app{"tenet: confidential deep-learning inference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tenet 0.1.0");

  RunArgs run;
  CLI::App* run_cmd = app.add_subcommand("run", "Run an ONNX model on .npy inputs and write one .npy per output");
  run_cmd->add_option("model", run.model, "ONNX model file (opsets 11-17)")->required()->check(CLI::ExistingFile);
  run_cmd->add_option("--input", run.inputs, "NAME=FILE.npy for each model input")->required();
  run_cmd->add_option("--output-dir", run.output_dir, "Directory for <output name>.npy files")->required();
  run_cmd->add_option("--threads", run.threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  run_cmd->add_option("--bench", run.bench, "Also time N runs after warm-up; the last line of stdout is JSON")->check(CLI::Range(0, 1000000));
  run_cmd->add_option("--warmup", run.warmup, "Warm-up runs before --bench timing (default 5)")->check(CLI::Range(0, 100000));
  run_cmd->add_flag("--reference", run.reference, "Run every node with the plain reference kernels (slow; the oracle)");
  run_cmd->add_flag("--quiet", run.quiet, "Print only the final JSON line");
  run_cmd->add_option("--enclave", run.enclave,
                      "Run inside one enclave: sim (INSECURE; enclave memory is paged against an emulated EPC)")
      ->check(CLI::IsMember({"sim"}));
  run_cmd->add_option("--mode", run.mode, "tee (default: the whole model in the enclave) or hybrid (linear layers on --accelerator)")
      ->check(CLI::IsMember({"tee", "hybrid"}));
  run_cmd->add_option("--accelerator", run.accelerator, "With --mode hybrid: cpu (default), cuda, or unix:PATH (a `tenet accelerator`)");
  run_cmd->add_option("--verify-bits", run.verify_bits, "With --mode hybrid: Freivalds soundness in bits (default 40)")
      ->check(CLI::Range(1, 256));
  run_cmd->add_flag("--no-verify", run.no_verify, "With --mode hybrid: do not verify the accelerator's results (INSECURE)");
  run_cmd->add_option("--pipeline", run.pipeline_depth, "With --mode hybrid: requests in flight during --bench (default 1)")
      ->check(CLI::Range(1, 64));
  run_cmd->add_option("--masks", run.masks, "With --mode hybrid: unblinding terms precomputed per layer (default: warm-up + bench + 1)")
      ->check(CLI::Range(0, 100000));
  run_cmd->add_flag("--insecure-plain-accelerator", run.insecure_plain,
                    "With --mode hybrid: benchmark baseline, linear layers sent to the accelerator unblinded and unverified (INSECURE)");
  run_cmd->add_option("--slices", run.slices,
                      "With --mode hybrid: JSON manifest of private slices (TEESlice) added to MODEL, the public backbone; they run in the enclave")
      ->check(CLI::ExistingFile);
  run_cmd->add_option("--slice-key", run.slice_key, "With --slices: model key file of sealed (.tenet) slices (as `tenet seal` writes)")
      ->check(CLI::ExistingFile);
  run_cmd->add_option("--epc", run.epc, "EPC budget for --enclave sim, e.g. 93MiB (default, SGX1) or 64GiB");
  run_cmd->add_option("--memory", run.memory,
                      "With --enclave: planned (one activation arena, default) or naive (one buffer per activation)")
      ->check(CLI::IsMember({"planned", "naive"}));
  const char* overhead_help =
      "With planned memory: what loading streamed weights may add to a run, as a fraction of its predicted compute time; "
      "weights are kept resident only as far as needed to stay within it (0: keep as many as fit, the fastest plan)";
  run_cmd->add_option("--loading-overhead", run.loading_overhead, overhead_help)->check(CLI::Range(0.0, 100.0));

  InspectArgs inspect;
  CLI::App* inspect_cmd = app.add_subcommand("inspect", "Print a model's compiled nodes, FLOPs, parameter bytes and arena plan");
  inspect_cmd->add_option("model", inspect.model, "ONNX model file")->required()->check(CLI::ExistingFile);
  inspect_cmd->add_option("--input-shape", inspect.shapes, "NAME=1x3x224x224 (dynamic dims default to 1)");
  inspect_cmd->add_option("--epc", inspect.epc,
                          "Print the memory-bounded plan for this EPC budget (e.g. 93MiB): per-layer working set, resident or "
                          "streamed weights, ring, tiles, peak EPC and expected paging, vs naive mode");
  inspect_cmd->add_option("--loading-overhead", inspect.loading_overhead, overhead_help)->check(CLI::Range(0.0, 100.0));

  std::vector<tenet::cli::Command> commands;
  for (const auto& factory : tenet::cli::registered_commands()) commands.push_back(factory(app));
  // `tenet --help` lists one line per command; a command's whole description shows in its own --help.
  for (CLI::App* sub : app.get_subcommands({})) {
    const std::string text = sub->get_description();
    size_t end = text.find(". ");
    end = std::min(end, text.find(".\n"));
    if (text.size() > 100 && end != std::string::npos) {
      sub->footer(text);
      sub->description(text.substr(0, end + 1));
    }
  }

  CLI11_PARSE(app, argc, argv);
  for (const auto& c : commands) {
    if (c.app->parsed()) return c.action();
  }
  if (run_cmd->parsed()) return cmd_run(run);
  if (inspect_cmd->parsed()) return cmd_inspect(inspect);
  return 2;
}
