// Per-step profile of one model in tenet: which kernels the time goes to.
//
//   g++ -std=c++20 -O2 -Isrc bench/profile_steps.cc BUILD/src/epc/libtenet_epc.a BUILD/libtenet_engine.a BUILD/libtenet_crypto.a \
//       BUILD/libtenet_core.a -ldnnl -lonnx -lonnx_proto -lprotobuf -lfmt -lssl -lcrypto -fopenmp -o /tmp/profile_steps
//   /tmp/profile_steps MODEL.onnx INPUT.npy [THREADS] [RUNS] [BUDGET_MIB]
//
// With BUDGET_MIB the model is compiled in planned memory (weight streaming from a sealed weight
// store, as `tenet run --enclave sim --memory planned` does, but outside any enclave): a step's
// time then includes loading its streamed weights.
//
// Prints every step with its median time over RUNS runs (after 5 warm-up runs; the median resists
// other processes on a shared machine), then the time per (op, kernel) pair, largest first. The
// steps are timed one by one (the stream is drained after each), so the total is slightly above
// `tenet run --bench`'s latency.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "core/npy.h"
#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "epc/sealed_weight_store.h"

int main(int argc, char** argv) {
  using namespace tenet;
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx INPUT.npy [THREADS] [RUNS]\n", argv[0]);
    return 2;
  }
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const int runs = argc > 4 ? std::atoi(argv[4]) : 50;
  auto graph = onnx_import::import_model_file(argv[1]);
  if (!graph.ok()) return std::fprintf(stderr, "%s\n", graph.status().to_string().c_str()), 1;
  auto input = read_npy(argv[2]);
  if (!input.ok()) return std::fprintf(stderr, "%s\n", input.status().to_string().c_str()), 1;
  const std::string input_name = graph->value(graph->inputs[0]).name;
  cpu::CompileOptions options;
  options.threads = threads;
  if (argc > 5) {
    auto store = epc::SealedWeightStore::create();
    if (!store.ok()) return std::fprintf(stderr, "%s\n", store.status().to_string().c_str()), 1;
    options.streaming.store = *store;
    options.streaming.budget_bytes = static_cast<uint64_t>(std::atof(argv[5]) * (1 << 20));
  }
  auto model = cpu::compile_model(*graph, {{input_name, input->shape()}}, options);
  if (!model.ok()) return std::fprintf(stderr, "%s\n", model.status().to_string().c_str()), 1;
  std::vector<ConstTensorView> feeds = {input->view()};
  std::vector<Tensor> outputs;
  const auto& steps = (*model)->steps();
  std::vector<std::vector<double>> samples(steps.size());
  for (int i = 0; i < 5 + runs; ++i) {
    std::vector<double> step_ms;
    if (Status s = (*model)->run_profiled(feeds, outputs, step_ms); !s.ok()) return std::fprintf(stderr, "%s\n", s.to_string().c_str()), 1;
    if (i < 5) continue;
    for (size_t j = 0; j < steps.size(); ++j) samples[j].push_back(step_ms[j]);
  }
  std::map<std::string, std::pair<double, int>> by_kernel;
  double total = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    std::nth_element(samples[i].begin(), samples[i].begin() + runs / 2, samples[i].end());
    const double ms = samples[i][static_cast<size_t>(runs / 2)];
    total += ms;
    std::printf("%4zu %-44.44s %-18s %-16s %-8s %-14s %8.4f\n", i, steps[i].node.c_str(), steps[i].op_type.c_str(),
                steps[i].kernel.c_str(), steps[i].output_layout.c_str(), steps[i].post_ops.c_str(), ms);
    auto& k = by_kernel[steps[i].op_type + " " + steps[i].kernel];
    k.first += ms;
    k.second += 1;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> sorted(by_kernel.begin(), by_kernel.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::printf("\n%-40s %6s %10s\n", "op kernel", "steps", "ms");
  for (const auto& [name, v] : sorted) std::printf("%-40s %6d %10.4f\n", name.c_str(), v.second, v.first);
  std::printf("%-40s %6zu %10.4f\n", "total", steps.size(), total);
  return 0;
}
