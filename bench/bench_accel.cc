// bench_accel: the CPU accelerator's exact int8 W·x mod p against oneDNN fp32 on the same layer.
//
// For ResNet-50 layer shapes (torchvision v1.5: stride on the 3x3) at batch N, prints the median
// time of oneDNN's fp32 convolution / inner product with the layouts it prefers (weights reordered
// ahead, activations already blocked: the fp32 peer's best case) and of the CPU accelerator's run
// (NCHW field elements in and out, planes split and combined), both with the im2col + GEMM path
// only ("gemm") and with the direct int8 convolution where its self-test passes ("auto"), the
// path "auto" took, the time add_layer took there (its self-test), and the ratios to fp32.
// Every run's output is compared between the two accelerators.
// Usage: bench_accel [batch=4] [repetitions=5] [threads=0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "accel/accelerator.h"
#include "accel/cpu_accelerator.h"

namespace {

using tenet::accel::LinearSpec;
using Clock = std::chrono::steady_clock;

struct Layer {
  const char* name;
  LinearSpec::Kind kind;
  int64_t cin, cout, k, stride, pad, hw;  // matmul: cin = K, cout = Nout
};

template <typename F>
double median_ms(int reps, F&& f) {
  f();  // warm-up (primitive creation, first-touch of workspaces)
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double fp32_ms(const Layer& l, int64_t batch, int reps) {
  using namespace dnnl;
  using dt = memory::data_type;
  using tag = memory::format_tag;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  if (l.kind == LinearSpec::Kind::kMatMul) {
    memory::desc src({batch, l.cin}, dt::f32, tag::any), wei({l.cout, l.cin}, dt::f32, tag::any),
        dst({batch, l.cout}, dt::f32, tag::any);
    inner_product_forward::primitive_desc pd({prop_kind::forward_inference, src, wei, dst}, eng);
    memory sm(pd.src_desc(), eng), wm(pd.weights_desc(), eng), dm(pd.dst_desc(), eng);
    inner_product_forward p(pd);
    return median_ms(reps, [&] {
      p.execute(s, {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dm}});
      s.wait();
    });
  }
  const int64_t ho = (l.hw + 2 * l.pad - l.k) / l.stride + 1;
  memory::desc src({batch, l.cin, l.hw, l.hw}, dt::f32, tag::any), wei({l.cout, l.cin, l.k, l.k}, dt::f32, tag::any),
      dst({batch, l.cout, ho, ho}, dt::f32, tag::any);
  convolution_forward::primitive_desc pd({prop_kind::forward_inference, algorithm::convolution_direct, src, wei, dst,
                                          {l.stride, l.stride}, {l.pad, l.pad}, {l.pad, l.pad}},
                                         eng);
  memory sm(pd.src_desc(), eng), wm(pd.weights_desc(), eng), dm(pd.dst_desc(), eng);
  convolution_forward p(pd);
  return median_ms(reps, [&] {
    p.execute(s, {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dm}});
    s.wait();
  });
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 4;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 0;
  if (batch < 1 || reps < 1 || threads < 0) {
    std::fprintf(stderr, "usage: bench_accel [batch>=1] [repetitions>=1] [threads>=0]\n");
    return 2;
  }
  tenet::accel::CpuAcceleratorOptions options;
  options.threads = threads;
  auto acc = tenet::accel::make_cpu_accelerator(options);
  options.direct_conv = false;
  options.amx_conv = false;
  auto gemm_acc = tenet::accel::make_cpu_accelerator(options);
  if (!acc.ok() || !gemm_acc.ok()) {
    std::fprintf(stderr, "bench_accel: %s\n", (acc.ok() ? gemm_acc.status() : acc.status()).to_string().c_str());
    return 1;
  }
  const Layer layers[] = {
      {"conv1 7x7/2 3->64 @224", LinearSpec::Kind::kConv2d, 3, 64, 7, 2, 3, 224},
      {"res2 1x1 64->64 @56", LinearSpec::Kind::kConv2d, 64, 64, 1, 1, 0, 56},
      {"res2 3x3 64->64 @56", LinearSpec::Kind::kConv2d, 64, 64, 3, 1, 1, 56},
      {"res2 1x1 64->256 @56", LinearSpec::Kind::kConv2d, 64, 256, 1, 1, 0, 56},
      {"res3 3x3/2 128->128 @56", LinearSpec::Kind::kConv2d, 128, 128, 3, 2, 1, 56},
      {"res3 1x1 128->512 @28", LinearSpec::Kind::kConv2d, 128, 512, 1, 1, 0, 28},
      {"res4 3x3 256->256 @14", LinearSpec::Kind::kConv2d, 256, 256, 3, 1, 1, 14},
      {"res4 1x1 1024->256 @14", LinearSpec::Kind::kConv2d, 1024, 256, 1, 1, 0, 14},
      {"res5 3x3 512->512 @7", LinearSpec::Kind::kConv2d, 512, 512, 3, 1, 1, 7},
      {"res5 1x1 2048->512 @7", LinearSpec::Kind::kConv2d, 2048, 512, 1, 1, 0, 7},
      {"fc 2048->1000", LinearSpec::Kind::kMatMul, 2048, 1000, 1, 1, 0, 1},
  };
  std::mt19937_64 rng(1);
  std::printf("batch %lld, median of %d, %s accelerator, oneDNN fp32 peer\n", static_cast<long long>(batch), reps,
              (*acc)->name().c_str());
  std::printf("%-26s %7s %9s %9s %9s %7s %7s %9s  %s\n", "layer", "GMAC", "fp32 ms", "gemm ms", "auto ms",
              "gemm/f", "auto/f", "add ms", "auto path");
  double total_fp32 = 0, total_gemm = 0, total_int8 = 0;
  for (const Layer& l : layers) {
    LinearSpec spec;
    spec.kind = l.kind;
    tenet::Shape in;
    if (l.kind == LinearSpec::Kind::kMatMul) {
      spec.weight_shape = {l.cout, l.cin};
      in = {batch, l.cin};
    } else {
      spec.weight_shape = {l.cout, l.cin, l.k, l.k};
      spec.strides = {l.stride, l.stride};
      spec.pads = {l.pad, l.pad, l.pad, l.pad};
      in = {batch, l.cin, l.hw, l.hw};
    }
    std::uniform_int_distribution<int> w(-127, 127);
    spec.weights.resize(static_cast<size_t>(tenet::numel(spec.weight_shape)));
    for (int8_t& v : spec.weights) v = static_cast<int8_t>(w(rng));
    const tenet::Shape out = tenet::accel::output_shape(spec, in).value();
    std::uniform_int_distribution<uint32_t> u(0, tenet::accel::kFieldPrime - 1);
    std::vector<uint32_t> x(static_cast<size_t>(tenet::numel(in))), y(static_cast<size_t>(tenet::numel(out)));
    for (uint32_t& v : x) v = u(rng);
    const auto t_add = Clock::now();
    const int32_t id = (*acc)->add_layer(spec).value();
    const double add_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_add).count();
    const int32_t gemm_id = (*gemm_acc)->add_layer(spec).value();
    std::vector<uint32_t> y_gemm(y.size());
    bool ok = true;
    const double int8_ms = median_ms(reps, [&] { ok = ok && (*acc)->run(id, in, x, y).ok(); });
    const double gemm_ms = median_ms(reps, [&] { ok = ok && (*gemm_acc)->run(gemm_id, in, x, y_gemm).ok(); });
    const double f32_ms = fp32_ms(l, batch, reps);
    if (!ok || y != y_gemm) {
      std::fprintf(stderr, "bench_accel: %s on %s\n", ok ? "gemm and auto paths differ" : "run failed", l.name);
      return 1;
    }
    const double gmac = static_cast<double>(tenet::numel(out)) * static_cast<double>(tenet::numel(spec.weight_shape)) /
                        static_cast<double>(spec.weight_shape[0]) / 1e9;
    total_fp32 += f32_ms;
    total_gemm += gemm_ms;
    total_int8 += int8_ms;
    const std::string path = tenet::accel::cpu_layer_path(**acc, id).value();
    std::printf("%-26s %7.3f %9.2f %9.2f %9.2f %6.2fx %6.2fx %9.1f  %s\n", l.name, gmac, f32_ms, gemm_ms, int8_ms,
                gemm_ms / f32_ms, int8_ms / f32_ms, add_ms, path.c_str());
  }
  std::printf("%-26s %7s %9.2f %9.2f %9.2f %6.2fx %6.2fx\n", "total", "", total_fp32, total_gemm, total_int8,
              total_gemm / total_fp32, total_int8 / total_fp32);
  return 0;
}
