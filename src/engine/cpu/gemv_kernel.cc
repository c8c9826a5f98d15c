// y = W·x + b (then ReLU) for one input row: Gemm / MatMul nodes whose input has a single row and
// whose weight is constant. See kernel.h for why tenet has its own kernel here.
//
// The weight is kept as W[N][K] (one output per row, alpha folded in). Each output is one dot
// product in a fixed order (64 partial sums over k mod 64, added in a fixed tree, then the tail),
// computed by one thread start to end: the result of an output depends only on x and its row,
// never on how rows are split between threads or pieces. So execute() (whole weight, rows split
// over the team) and execute_pieces() (a piece of whole rows at a time, decrypted into a thread's
// L2-sized buffer right before use) give identical bits.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/x86_intrinsics.h"
#include "engine/cpu/kernel.h"

namespace tenet::cpu {
namespace {

constexpr int64_t kLanes = 64;
// Weight rows are prefetched 1 KiB ahead (alexnet's fc6 at batch 1 on 2 threads, 151 MB from
// DRAM: 6.5 ms with one row at a time, 5.3 ms with four rows and this prefetch; oneDNN 2.6's
// matmul 6.0 ms).
constexpr int64_t kPrefetchFloats = 256;
// Pieces of about this size: a thread's piece stays in its L2 between decryption and use.
constexpr uint64_t kPieceTarget = 256 * 1024;

float finish_dot(float* acc, float tail) {
  for (int64_t s = kLanes / 2; s >= 1; s /= 2) {
    for (int64_t j = 0; j < s; ++j) acc[j] += acc[j + s];
  }
  return acc[0] + tail;
}

// The portable form, and the AVX-512 form with the same order of additions. The AVX-512 form adds
// each product with a fused multiply-add (one rounding), as the sealed weight store's decrypting dot
// product does (crypto::aes128gcm_open_dot_from_untrusted), so the two give the same bits; the
// portable form rounds the product first. One form is picked per process, and every GemvKernel uses
// it for execute() and execute_pieces() alike. A row's result does not depend on which rows it is
// grouped with.
float dot_portable(const float* x, const float* w, int64_t k) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) {
      const float p = x[i + j] * w[i + j];
      acc[j] += p;
    }
  }
  float tail = 0.f;
  for (; i < k; ++i) {
    const float p = x[i] * w[i];
    tail += p;
  }
  return finish_dot(acc, tail);
}

// Four rows at once (four memory streams per thread, where one stream alone leaves DRAM
// bandwidth unused); each row's partial sums are formed in dot_portable's order.
__attribute__((target("avx512f"))) void dot4_avx512(const float* x, const float* w, int64_t k, int64_t rows, float* out) {
  __m512 acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16), x2 = _mm512_loadu_ps(x + i + 32),
                 x3 = _mm512_loadu_ps(x + i + 48);
    for (int64_t r = 0; r < rows; ++r) {
      const float* wr = w + r * k + i;
      _mm_prefetch(reinterpret_cast<const char*>(wr + kPrefetchFloats), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wr + kPrefetchFloats + 16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wr + kPrefetchFloats + 32), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wr + kPrefetchFloats + 48), _MM_HINT_T0);
      acc[r][0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(wr), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(wr + 16), acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(x2, _mm512_loadu_ps(wr + 32), acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(x3, _mm512_loadu_ps(wr + 48), acc[r][3]);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    alignas(64) float lanes[kLanes];
    for (int j = 0; j < 4; ++j) _mm512_store_ps(lanes + 16 * j, acc[r][j]);
    float tail = 0.f;
    for (int64_t t = i; t < k; ++t) {
      const float p = x[t] * w[r * k + t];
      tail += p;
    }
    out[r] = finish_dot(lanes, tail);
  }
}

void dot4_portable(const float* x, const float* w, int64_t k, int64_t rows, float* out) {
  for (int64_t r = 0; r < rows; ++r) out[r] = dot_portable(x, w + r * k, k);
}

// Dot products of x with `rows` (at most 4) consecutive rows of w.
using DotFn = void (*)(const float* x, const float* w, int64_t k, int64_t rows, float* out);

DotFn pick_dot() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? dot4_avx512 : dot4_portable;
}

struct GemvShape {
  int64_t n = 0, k = 0;
  bool trans_b = false;  // B is [N, K] (Gemm transB=1): rows are W's rows already
  float alpha = 1.f, beta = 1.f;
  bool relu = false;
};

// Whether the node is y = x·B (+ C) for one row x and a constant 2-D B, with at most a ReLU after.
bool match(const ir::Graph& g, const ir::Node& n, GemvShape* out) {
  const bool gemm = n.op_type == "Gemm";
  if (!gemm && n.op_type != "MatMul") return false;
  if (n.inputs.size() < 2 || n.inputs.size() > (gemm ? 3u : 2u) || n.outputs.size() != 1 || n.outputs[0] == ir::kNoValue) return false;
  if (n.post_ops.size() > 1 || (n.post_ops.size() == 1 && n.post_ops[0].kind != ir::PostOp::Kind::kRelu)) return false;
  const ir::ValueId a_id = n.input(0), b_id = n.input(1);
  if (a_id == ir::kNoValue || b_id == ir::kNoValue) return false;
  const ir::Value& a = g.value(a_id);
  const ir::Value& b = g.value(b_id);
  const ir::Value& y = g.value(n.outputs[0]);
  if (a.dtype != DType::kFloat32 || b.dtype != DType::kFloat32 || y.dtype != DType::kFloat32) return false;
  if (!b.is_constant() || b.shape.size() != 2 || a.shape.empty() || y.shape.empty()) return false;
  GemvShape s;
  if (gemm) {
    auto trans_a = n.attr_int("transA", 0);
    auto trans_b = n.attr_int("transB", 0);
    auto alpha = n.attr_float("alpha", 1.f);
    auto beta = n.attr_float("beta", 1.f);
    if (!trans_a.ok() || !trans_b.ok() || !alpha.ok() || !beta.ok() || *trans_a != 0 || a.shape.size() != 2) return false;
    s.trans_b = *trans_b != 0;
    s.alpha = *alpha;
    s.beta = *beta;
  }
  s.k = s.trans_b ? b.shape[1] : b.shape[0];
  s.n = s.trans_b ? b.shape[0] : b.shape[1];
  if (s.k <= 0 || s.n <= 0 || a.shape.back() != s.k || numel(a.shape) != s.k || numel(y.shape) != s.n || y.shape.back() != s.n) {
    return false;
  }
  if (gemm && n.inputs.size() == 3 && n.input(2) != ir::kNoValue) {
    const ir::Value& c = g.value(n.input(2));
    if (!c.is_constant() || c.dtype != DType::kFloat32) return false;
    const int64_t count = numel(c.shape);
    if (!(count == 1 || (count == s.n && c.shape.back() == s.n))) return false;
  }
  if (!std::isfinite(s.alpha) || !std::isfinite(s.beta)) return false;
  s.relu = n.post_ops.size() == 1;
  if (out) *out = s;
  return true;
}

class GemvKernel final : public Kernel {
 public:
  // `weight` [N, K] is either the graph's constant itself (already [N, K] with alpha 1: shared, not
  // copied, so a model does not hold it twice while it compiles) or a tensor of the kernel's own.
  GemvKernel(const GemvShape& s, Tensor weight, Tensor bias)
      : s_(s), weight_storage_(std::move(weight)), bias_storage_(std::move(bias)), dot_(pick_dot()) {
    weight_ = weight_storage_.as<float>();
    bias_ = bias_storage_.as<float>();
    const uint64_t row = static_cast<uint64_t>(s_.k) * sizeof(float);
    rows_per_piece_ = static_cast<int64_t>(std::max<uint64_t>(1, kPieceTarget / row));
  }
  const char* name() const override { return "tenet_gemv"; }

  Status bind(std::span<void* const> inputs, std::span<void* const> outputs, void* scratchpad) override {
    x_ = static_cast<const float*>(inputs[0]);
    y_ = static_cast<float*>(outputs[0]);
    if (x_ == nullptr || y_ == nullptr) return internal_error("tenet_gemv: input or output bound to no memory");
    return ok_status();
  }

  Status execute(dnnl::stream&) override {
    if (weight_ == nullptr) return internal_error("tenet_gemv: the weight is not in memory");
    const int64_t groups = (s_.n + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; ++g) compute_rows(4 * g, std::min<int64_t>(4, s_.n - 4 * g), weight_ + 4 * g * s_.k);
    return ok_status();
  }

  size_t owned_weight_count() const override { return 2; }
  std::span<std::byte> owned_weight(size_t i) override {
    if (i == 0) return {reinterpret_cast<std::byte*>(weight_), static_cast<size_t>(s_.n * s_.k) * sizeof(float)};
    return {reinterpret_cast<std::byte*>(bias_), static_cast<size_t>(s_.n) * sizeof(float)};
  }
  void set_owned_weight_data(size_t i, void* data) override {
    (i == 0 ? weight_ : bias_) = static_cast<float*>(data);
  }
  void release_owned_weight(size_t i) override {
    (i == 0 ? weight_storage_ : bias_storage_) = Tensor();
    (i == 0 ? weight_ : bias_) = nullptr;
  }
  bool reads_input(size_t i) const override { return i == 0; }
  int owned_weight_input(size_t i) const override { return i == 0 && shares_input_ ? 1 : -1; }
  bool shares_input_ = false;

  uint64_t weight_piece_bytes(size_t i) const override {
    return i == 0 ? static_cast<uint64_t>(rows_per_piece_ * s_.k) * sizeof(float) : 0;
  }
  size_t pieces_scratch_bytes(size_t i, int threads) const override {
    return static_cast<size_t>(weight_piece_bytes(i)) * static_cast<size_t>(std::max(threads, 1));
  }

  // Pieces are dealt to threads like rows in execute(). A thread has the store compute a piece's
  // partial sums as it decrypts it (`dot`: the sums are dot_'s lanes, so the bits are the same), or
  // has the piece decrypted into its part of `scratch` (or finds it resident) and computes that
  // piece's rows while they are in its L2.
  Status execute_pieces(dnnl::stream&, size_t i, const PieceLoader& load, const PieceDot& dot, std::span<std::byte> scratch) override {
    if (i != 0) return invalid_argument("tenet_gemv: weight {} is not streamed in pieces", i);
    if (bias_ == nullptr) return internal_error("tenet_gemv: the bias is not in memory");
    const uint64_t piece_bytes = weight_piece_bytes(0);
    const int64_t pieces = (s_.n + rows_per_piece_ - 1) / rows_per_piece_;
    int64_t failed = -1;
    Status failure;
#pragma omp parallel
    {
      const auto t = static_cast<size_t>(omp_get_thread_num());
      std::span<std::byte> buf;
      if ((t + 1) * piece_bytes <= scratch.size()) buf = scratch.subspan(t * piece_bytes, piece_bytes);
#pragma omp for schedule(static)
      for (int64_t p = 0; p < pieces; ++p) {
        const int64_t first = p * rows_per_piece_, rows = std::min(rows_per_piece_, s_.n - first);
        Status error;
        if (buf.empty()) {
          error = internal_error("tenet_gemv: no scratch for thread {}", t);
        } else {
          // rows·64 lanes fit the piece's buffer: a row has k >= 64 floats whenever dot applies.
          const std::span<float> lanes(reinterpret_cast<float*>(buf.data()), static_cast<size_t>(rows * kLanes));
          Result<bool> fused = dot && s_.k % kLanes == 0 ? dot(static_cast<uint64_t>(p), x_, s_.k, lanes) : Result<bool>(false);
          if (fused.ok() && *fused) {
            for (int64_t r = 0; r < rows; ++r) store_row(first + r, finish_dot(lanes.data() + r * kLanes, 0.f));
            continue;
          }
          Result<const std::byte*> bytes =
              fused.ok() ? load(static_cast<uint64_t>(p), buf.first(static_cast<size_t>(rows * s_.k) * sizeof(float)))
                         : Result<const std::byte*>(fused.status());
          if (bytes.ok()) {
            const auto* w = reinterpret_cast<const float*>(*bytes);
            for (int64_t r = 0; r < rows; r += 4) compute_rows(first + r, std::min<int64_t>(4, rows - r), w + r * s_.k);
            continue;
          }
          error = bytes.status();
        }
#pragma omp critical(tenet_gemv_failure)
        if (failed < 0 || p < failed) {
          failed = p;
          failure = error;
        }
      }
      if (!buf.empty()) explicit_bzero(buf.data(), buf.size());
    }
    if (failed >= 0) {
      std::memset(y_, 0, static_cast<size_t>(s_.n) * sizeof(float));
      return failure;
    }
    return ok_status();
  }

 private:
  // Outputs [first, first + rows), rows <= 4, from their weight rows at `w`.
  void compute_rows(int64_t first, int64_t rows, const float* w) const {
    float d[4];
    dot_(x_, w, s_.k, rows, d);
    for (int64_t r = 0; r < rows; ++r) store_row(first + r, d[r]);
  }
  void store_row(int64_t row, float dot) const {
    const float v = dot + bias_[row];
    y_[row] = s_.relu ? std::max(v, 0.f) : v;
  }

  GemvShape s_;
  Tensor weight_storage_, bias_storage_;  // the weight may be the graph's constant: never written through weight_
  float* weight_ = nullptr;
  float* bias_ = nullptr;
  DotFn dot_;
  int64_t rows_per_piece_ = 1;
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

}  // namespace

bool gemv_applicable(const ir::Graph& g, const ir::Node& n) { return match(g, n, nullptr); }

bool gemv_shares_weight(const ir::Graph& g, const ir::Node& n) {
  GemvShape s;
  return match(g, n, &s) && s.trans_b && s.alpha == 1.f;
}

Result<std::unique_ptr<Kernel>> make_gemv_kernel(KernelInputs& in) {
  GemvShape s;
  if (!match(in.graph, in.node, &s)) return std::unique_ptr<Kernel>();
  const ir::Value& b = in.graph.value(in.node.input(1));
  Tensor weight;
  if (s.trans_b && s.alpha == 1.f) {
    // Shares the storage; undefined when b is a deferred constant not in memory: the compiler
    // then fills the weight store from the graph's constant store (gemv_shares_weight).
    weight = b.constant;
  } else {
    if (!b.constant.defined()) return internal_error("{}: the weight is not in memory", in.node.describe());
    TENET_ASSIGN_OR_RETURN(weight, Tensor::zeros(DType::kFloat32, {s.n, s.k}));
    float* w = weight.as<float>();
    const float* src = b.constant.as<float>();
    if (s.trans_b) {
      for (int64_t i = 0; i < s.n * s.k; ++i) w[i] = src[i] * s.alpha;
    } else {
      for (int64_t r = 0; r < s.n; ++r) {
        for (int64_t c = 0; c < s.k; ++c) w[r * s.k + c] = src[c * s.n + r] * s.alpha;
      }
    }
  }
  TENET_ASSIGN_OR_RETURN(Tensor bias, Tensor::zeros(DType::kFloat32, {s.n}));
  const ir::ValueId c_id = in.node.inputs.size() == 3 ? in.node.input(2) : ir::kNoValue;
  if (c_id != ir::kNoValue) {
    const ir::Value& c = in.graph.value(c_id);
    for (int64_t r = 0; r < s.n; ++r) bias.as<float>()[r] = s.beta * c.constant.as<float>()[numel(c.shape) == 1 ? 0 : r];
  }
  auto k = std::make_unique<GemvKernel>(s, std::move(weight), std::move(bias));
  k->shares_input_ = s.trans_b && s.alpha == 1.f;
  const ir::Value& a = in.graph.value(in.node.input(0));
  k->required_inputs.resize(in.node.inputs.size());
  k->required_inputs[0] = plain_layout(DType::kFloat32, a.shape);
  for (size_t i = 1; i < in.node.inputs.size(); ++i) {
    if (in.node.input(i) != ir::kNoValue) {
      const ir::Value& v = in.graph.value(in.node.input(i));
      k->required_inputs[i] = plain_layout(v.dtype, v.shape);
    }
  }
  k->outputs = {plain_layout(DType::kFloat32, in.graph.value(in.node.outputs[0]).shape)};
  k->in_place = {-1};
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace tenet::cpu
