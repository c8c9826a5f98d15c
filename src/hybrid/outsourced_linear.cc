// Outsourced linear kernels and the state they share (see outsourced_linear.h).
#include "hybrid/outsourced_linear.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cfloat>
#include <cmath>
#include <cstring>

#include <omp.h>

#include "crypto/crypto.h"
#include "engine/cpu/compiled_model.h"
#include "engine/ops/op.h"
#include "hybrid/field.h"
#include "hybrid/pad_prg.h"
#include "hybrid/trusted_linear.h"

namespace tenet::hybrid {
namespace {

using Clock = std::chrono::steady_clock;
using KernelPtr = std::unique_ptr<cpu::Kernel>;
// Element-wise loops over more elements than this use the enclave's OpenMP threads.
constexpr int64_t kParallelCount = int64_t{1} << 15;
// Pad words made at a time on the request path: 16 KiB, in L1 while they blind the input.
constexpr int64_t kPadStep = 4096;

int64_t ns_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

const ir::Value* input_value(const cpu::KernelInputs& in, size_t i) {
  const ir::ValueId id = in.node.input(i);
  return id == ir::kNoValue ? nullptr : &in.graph.value(id);
}

bool has_sum(const ir::Node& n) {
  return std::any_of(n.post_ops.begin(), n.post_ops.end(), [](const ir::PostOp& p) { return p.kind == ir::PostOp::Kind::kSum; });
}

bool all_finite(const Tensor& t) {
  const float* p = t.as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(p[i])) return false;
  }
  return true;
}

std::vector<int64_t> ints_or(const ir::Node& n, const char* key, std::vector<int64_t> fallback) {
  auto r = n.attr_ints(key, fallback);
  return r.ok() ? r.value() : fallback;
}

// Fills spec's strides, dilations and pads from a Conv node (honouring auto_pad), false when the
// node uses something the accelerator does not support.
bool conv_geometry(const ir::Node& n, const Shape& x, const Shape& y, const Shape& w, accel::LinearSpec& spec) {
  const std::vector<int64_t> strides = ints_or(n, "strides", {1, 1});
  const std::vector<int64_t> dilations = ints_or(n, "dilations", {1, 1});
  const std::vector<int64_t> pads = ints_or(n, "pads", {0, 0, 0, 0});
  const Result<std::string> auto_pad_attr = n.attr_string("auto_pad", std::string("NOTSET"));
  if (!auto_pad_attr.ok()) return false;
  const std::string& auto_pad = *auto_pad_attr;
  if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4) return false;
  for (int d = 0; d < 2; ++d) {
    const auto i = static_cast<size_t>(d);
    spec.strides[i] = strides[i];
    spec.dilations[i] = dilations[i];
    const int64_t extent = (w[2 + i] - 1) * dilations[i] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t total = std::max<int64_t>(0, (y[2 + i] - 1) * strides[i] + extent - x[2 + i]);
      const int64_t small = total / 2;
      spec.pads[i] = auto_pad == "SAME_UPPER" ? small : total - small;
      spec.pads[i + 2] = total - spec.pads[i];
    } else if (auto_pad == "VALID") {
      spec.pads[i] = spec.pads[i + 2] = 0;
    } else if (auto_pad == "NOTSET") {
      spec.pads[i] = pads[i];
      spec.pads[i + 2] = pads[i + 2];
    } else {
      return false;
    }
  }
  return true;
}

class OutsourcedKernel final : public cpu::Kernel {
 public:
  OutsourcedKernel(HybridRuntime* runtime, const OutsourcedLayer* layer)
      : runtime_(runtime), layer_(layer), prg_(runtime->pad_key()),
        src_count_(static_cast<size_t>(numel(layer->src_shape))),
        dst_count_(static_cast<size_t>(numel(layer->dst_shape))) {
    const int64_t per_image = static_cast<int64_t>(src_count_) / layer->images;
    chunks_per_image_ = std::max<int64_t>(1, (per_image + kParallelCount - 1) / kParallelCount);
    chunk_max_.assign(static_cast<size_t>(layer->images * chunks_per_image_), 0u);
    x_scales_.assign(static_cast<size_t>(layer->images), 1.f);
    // The request's field buffers (blinded input, pad, product, W·r) live in the compiled model's
    // scratchpad, which every step of an instance shares one after another: one set sized for the
    // largest layer that stays warm in cache from layer to layer, instead of four cold buffers per
    // layer (resnet50: 160 MB of them).
    scratchpad_bytes = 2 * padded_bytes(src_count_) + 2 * padded_bytes(dst_count_);
  }
  const char* name() const override { return "hybrid_outsourced"; }

  Status bind(std::span<void* const> inputs, std::span<void* const> outputs, void* scratchpad) override {
    if (scratchpad == nullptr) return internal_error("{}: no scratchpad", layer_->node_name);
    auto* at = static_cast<std::byte*>(scratchpad);
    auto carve = [&at](size_t count) {
      std::span<uint32_t> s(reinterpret_cast<uint32_t*>(at), count);
      at += padded_bytes(count);
      return s;
    };
    blinded_ = carve(src_count_);
    pad_ = carve(src_count_);
    result_ = carve(dst_count_);
    unblind_ = carve(dst_count_);
    src_ = static_cast<const float*>(inputs[0]);
    residual_ = layer_->has_sum ? static_cast<const float*>(inputs.back()) : nullptr;
    dst_ = static_cast<float*>(outputs[0]);
    if (!src_ || !dst_ || (layer_->has_sum && !residual_)) return internal_error("{}: unbound buffers", layer_->node_name);
    return ok_status();
  }

  // The secrets of a request in the kernel's buffers, the pad r and W·r (which with the
  // accelerator's W·(x + r) would give W·x), live in the instance's scratchpad, which
  // HybridModel::run wipes after every request together with the activations (one wipe of the
  // largest layer's buffers instead of one per layer). blinded_ and result_ hold what the
  // accelerator saw and returned.
  Status execute(dnnl::stream&) override { return run_once(); }

 private:
  Status fail_layer(Status s) const {
    return Status(s.code(), fmt::format("hybrid layer '{}' (#{}): {}", layer_->node_name, layer_->index, s.message()));
  }

  Status run_once() {
    RuntimeCounters& counters = runtime_->counters();
    const OutsourcedLayer& L = *layer_;
    const size_t src_count = blinded_.size(), dst_count = result_.size();
    counters.layer_calls.fetch_add(1, std::memory_order_relaxed);

    // 1-2. Quantize and blind, with one scale per image (RuntimeOptions::images): the largest
    // |x| of each image's block, over chunks of it in parallel.
    auto t0 = Clock::now();
    const float* src = src_;
    const int64_t images = L.images, per_image = static_cast<int64_t>(src_count) / images, cpi = chunks_per_image_;
    // A partial batch (ActiveImages): only its first `active` images are quantized, blinded, sent,
    // checked and unblinded; the rest of dst is zero (padding, whose outputs the caller drops).
    int64_t active = images;
    if (images > 1) {
      const int64_t a = ActiveImages::current();
      if (a >= 1 && a < images) active = a;
    }
    const size_t src_active = src_count / static_cast<size_t>(images) * static_cast<size_t>(active);
    const size_t dst_active = dst_count / static_cast<size_t>(images) * static_cast<size_t>(active);
    const int64_t tasks = active * cpi;
    uint32_t* chunk_max = chunk_max_.data();
#pragma omp parallel for if (static_cast<int64_t>(src_active) > kParallelCount)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t off = (t % cpi) * kParallelCount;
      chunk_max[t] = max_abs_bits(src + (t / cpi) * per_image + off, std::min(kParallelCount, per_image - off));
    }
    for (int64_t i = 0; i < active; ++i) {
      uint32_t max_bits = 0;
      for (int64_t c = 0; c < cpi; ++c) max_bits = std::max(max_bits, chunk_max[i * cpi + c]);
      if (max_bits >= 0x7f800000u) return fail_layer(invalid_argument("non-finite activation in the layer's input"));
      float max_abs;
      std::memcpy(&max_abs, &max_bits, sizeof(max_abs));
      x_scales_[static_cast<size_t>(i)] = scale_for_max(max_abs);
    }
    MaskVault& vault = *runtime_->vault();
    const bool blind = !runtime_->options().insecure_no_blinding;
    bool inline_mask = false;
    std::optional<uint64_t> counter = blind ? vault.take_ready(L.index) : std::optional<uint64_t>(0);
    if (!blind) {
      std::fill(pad_.begin(), pad_.end(), 0u);
    } else if (!counter) {
      if (!runtime_->options().allow_inline_masks) {
        return fail_layer(failed_precondition("no precomputed unblinding terms left (precompute more)"));
      }
      counter = vault.new_counter(L.index);
      inline_mask = true;
    }
    const float* x_scales = x_scales_.data();
    uint32_t* blinded = blinded_.data();
    // The pad is the whole pad's words, whose W·r term was computed over all images; a partial
    // batch uses its first images' part, the rest is never sent. Where only the blinding needs it
    // (a precomputed W·r), each task makes its words kPadStep at a time in an L1 buffer and blinds
    // with them there (PadPrg::generate_range). In the rare case (2^-31 per word) that a word is
    // p, which the pad replaces by a later word, and where the pad itself is needed (an inline
    // W·r; no blinding), the whole pad is made first, as generate() makes it for W·r.
    bool whole_pad = !blind || inline_mask;
    if (!whole_pad) {
      std::atomic<bool> rejected{false}, failed{false};
      Status range_error;
#pragma omp parallel for if (static_cast<int64_t>(src_active) > kParallelCount)
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t at = (t / cpi) * per_image + (t % cpi) * kParallelCount;
        const int64_t count = std::min(kParallelCount, per_image - (t % cpi) * kParallelCount);
        alignas(64) uint32_t words[kPadStep];
        for (int64_t done = 0; done < count && !failed; done += kPadStep) {
          const auto n = static_cast<size_t>(std::min(kPadStep, count - done));
          Result<bool> any_p = prg_.generate_range(L.index, *counter, static_cast<uint64_t>(at + done), std::span(words, n));
          if (!any_p.ok()) {
            if (!failed.exchange(true)) range_error = any_p.status();
            break;
          }
          if (*any_p) rejected = true;
          quantize_blind(src + at + done, static_cast<int64_t>(n), 1.f / x_scales[t / cpi], words, blinded + at + done);
        }
        crypto::secure_wipe(words, sizeof(words));
      }
      if (failed) {
        (void)vault.retire(L.index, *counter);
        return fail_layer(range_error);
      }
      whole_pad = rejected;
    }
    if (whole_pad) {
      Status ps = blind ? prg_.generate(L.index, *counter, pad_) : ok_status();
      if (!ps.ok()) {
        (void)vault.retire(L.index, *counter);
        return fail_layer(ps);
      }
      const uint32_t* pad = pad_.data();
#pragma omp parallel for if (static_cast<int64_t>(src_active) > kParallelCount)
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t at = (t / cpi) * per_image + (t % cpi) * kParallelCount;
        quantize_blind(src + at, std::min(kParallelCount, per_image - (t % cpi) * kParallelCount), 1.f / x_scales[t / cpi],
                       pad + at, blinded + at);
      }
    }
    counters.quantize_blind_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);

    // 3. The untrusted product.
    t0 = Clock::now();
    Shape shape = L.src_shape;
    shape[0] = shape[0] / images * active;
    const std::span<const uint32_t> blinded_part = std::span<const uint32_t>(blinded_).first(src_active);
    const std::span<uint32_t> result_part = result_.first(dst_active), unblind_part = unblind_.first(dst_active);
    Status as = runtime_->options().accelerator->run(L.accel_handle, shape, blinded_part, result_part);
    counters.accelerator_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
    if (!as.ok()) {
      (void)vault.retire(L.index, *counter);
      return fail_layer(Status(as.code(), "the accelerator failed: " + as.message()));
    }

    // 4. Well-formed (every value < p; with verification, checked in Freivalds' pass over the
    // result), then Freivalds.
    t0 = Clock::now();
    const auto outside_field = [&] {
      (void)vault.retire(L.index, *counter);
      counters.verification_failures.fetch_add(1, std::memory_order_relaxed);
      return fail_layer(data_loss("the accelerator returned values outside Z_p; the request is refused"));
    };
    if (L.check.repetitions() == 0 && !accel::all_field_elements(result_part)) return outside_field();
    if (L.check.repetitions() > 0) {
      counters.verifications.fetch_add(1, std::memory_order_relaxed);
      const int bad = L.check.first_failure(blinded_part, result_part);
      if (bad == FreivaldsCheck::kOutsideField) {
        counters.verify_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
        return outside_field();
      }
      if (bad >= 0) {
        (void)vault.retire(L.index, *counter);
        counters.verification_failures.fetch_add(1, std::memory_order_relaxed);
        counters.verify_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
        return fail_layer(data_loss("the accelerator's result failed Freivalds verification (repetition {} of {}); the request is "
                                    "refused",
                                    bad + 1, L.check.repetitions()));
      }
    }
    counters.verify_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);

    // Steps 5-6 act on dst as [rows, channels, inner]: conv [N, Cout, Ho·Wo], matmul [M, Nout, 1];
    // with the post-ops Sum and Relu fused where they come first.
    using PostKind = ir::PostOp::Kind;
    const auto& post = L.post_ops;
    const bool fused_sum = !post.empty() && post[0].kind == PostKind::kSum && residual_ != nullptr;
    const size_t after_sum = fused_sum ? 1 : 0;
    const bool fused_relu = post.size() > after_sum && post[after_sum].kind == PostKind::kRelu;
    const size_t fused = after_sum + (fused_relu ? 1 : 0);
    const float* residual = fused_sum ? residual_ : nullptr;
    const int64_t channels = L.dst_shape[1];
    const int64_t inner = L.spec.kind == accel::LinearSpec::Kind::kConv2d ? L.positions : 1;
    const int64_t rows = static_cast<int64_t>(dst_count) / (channels * inner);
    const int64_t rows_per_image = rows / images;  // images divides dimension 0, hence rows
    const int64_t rows_active = rows_per_image * active;
    // Step 6 for dst elements [a, b) with u = W·r for them: subtract, lift, dequantize with the
    // element's image and channel scales, add the bias, then the fused Sum and Relu.
    const auto unblind_range = [&](int64_t a, int64_t b, const uint32_t* u) {
      while (a < b) {
        const int64_t plane = a / inner, end = std::min(b, (plane + 1) * inner);
        const int64_t r = plane / channels, ch = plane % channels;
        const float scale = x_scales[r / rows_per_image] * L.weight_scales[static_cast<size_t>(ch)];
        const float bias = L.bias.empty() ? 0.f : L.bias[static_cast<size_t>(ch)];
        unblind_dequantize(result_.data() + a, u, end - a, scale, bias, residual == nullptr ? nullptr : residual + a, fused_relu,
                           dst_ + a);
        u += end - a;
        a = end;
      }
    };

    // 5. Unblind with W·r. A precomputed term of a convolution, on a request that runs its
    // outputs on one thread, is decrypted kPadStep words at a time and step 6 runs on each piece
    // while it is in L1 (MaskVault::consume_pieces): W·r is never written out whole, and this
    // step's time then includes step 6's. If the term does not authenticate, dst holds values of
    // it; the layer fails, so the request does, and its activations are wiped.
    t0 = Clock::now();
    const bool parallel_out = static_cast<int64_t>(dst_active) > kParallelCount && omp_get_max_threads() > 1;
    const bool in_pieces = blind && !inline_mask && inner > 1 && !parallel_out;
    if (!blind) {
      std::fill(unblind_.begin(), unblind_.end(), 0u);
    } else if (inline_mask) {
      // W·r of the first images is the first images' part of W·r (conv and matmul act per row).
      Status ts = runtime_->options().trusted->run(L.trusted_handle, shape, std::span<const uint32_t>(pad_).first(src_active),
                                                   unblind_part);
      Status rs = vault.retire(L.index, *counter);
      if (!ts.ok()) return fail_layer(ts);
      if (!rs.ok()) return fail_layer(rs);
      counters.masks_inline.fetch_add(1, std::memory_order_relaxed);
    } else if (in_pieces) {
      const auto active_end = static_cast<int64_t>(dst_active);
      Status cs = vault.consume_pieces(L.index, *counter, dst_count, kPadStep, [&](size_t offset, std::span<const uint32_t> u) {
        const auto a = static_cast<int64_t>(offset);
        const int64_t b = std::min(a + static_cast<int64_t>(u.size()), active_end);
        if (a < b) unblind_range(a, b, u.data());
      });
      if (!cs.ok()) return fail_layer(cs);
      counters.masks_consumed.fetch_add(1, std::memory_order_relaxed);
    } else {
      Status cs = vault.consume(L.index, *counter, unblind_);
      if (!cs.ok()) return fail_layer(cs);
      counters.masks_consumed.fetch_add(1, std::memory_order_relaxed);
    }
    counters.unblind_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);

    // 6. (Unless done with step 5.) Subtract W·r, lift, dequantize, add the bias, and the post-ops
    // Sum and Relu (one pass); any other post-ops after it.
    t0 = Clock::now();
    if (!in_pieces) {
#pragma omp parallel for collapse(2) if (static_cast<int64_t>(dst_active) > kParallelCount)
      for (int64_t r = 0; r < rows_active; ++r) {
        for (int64_t ch = 0; ch < channels; ++ch) {
          const int64_t base = (r * channels + ch) * inner;
          unblind_range(base, base + inner, unblind_.data() + base);
        }
      }
    }
    if (dst_active < dst_count) std::memset(dst_ + dst_active, 0, (dst_count - dst_active) * sizeof(float));
    if (post.size() > fused) {
      ops::apply_post_ops(std::span(post).subspan(fused), dst_, static_cast<int64_t>(dst_active), residual_);
    }
    counters.dequantize_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
    return ok_status();
  }

  HybridRuntime* runtime_;
  const OutsourcedLayer* layer_;
  PadPrg prg_;
  static size_t padded_bytes(size_t count) { return (count * sizeof(uint32_t) + 63) / 64 * 64; }

  size_t src_count_, dst_count_;
  int64_t chunks_per_image_ = 1;
  std::vector<uint32_t> chunk_max_;  // largest |x| bits per (image, chunk)
  std::vector<float> x_scales_;      // per image
  std::span<uint32_t> blinded_, pad_, result_, unblind_;  // in the scratchpad (bind)
  const float* src_ = nullptr;
  const float* residual_ = nullptr;
  float* dst_ = nullptr;
};

thread_local int64_t t_active_images = 0;

}  // namespace

ActiveImages::ActiveImages(int64_t n) : previous_(t_active_images) { t_active_images = n; }
ActiveImages::~ActiveImages() { t_active_images = previous_; }
int64_t ActiveImages::current() { return t_active_images; }

HybridRuntime::HybridRuntime(RuntimeOptions options) : options_(std::move(options)) {
  if (!options_.trusted) options_.trusted = std::make_shared<ExactLinear>();
  // Keys generated inside the enclave; they never leave it. A CSPRNG failure leaves them zero
  // and finalize() reports it.
  (void)crypto::random_bytes(pad_key_);
  (void)crypto::random_bytes(vault_key_);
}

HybridRuntime::~HybridRuntime() {
  crypto::secure_wipe(pad_key_.data(), pad_key_.size());
  crypto::secure_wipe(vault_key_.data(), vault_key_.size());
}

bool HybridRuntime::outsources(const std::string& node_name) const { return by_name_.count(node_name) != 0; }

Result<std::unique_ptr<OutsourcedLayer>> HybridRuntime::build_layer(cpu::KernelInputs& in) {
  const ir::Node& n = in.node;
  const bool conv = n.op_type == "Conv";
  const bool gemm = n.op_type == "Gemm";
  const bool fused = n.op_type == "FusedMatMul";
  if (!conv && !gemm && !fused && n.op_type != "MatMul") return std::unique_ptr<OutsourcedLayer>{};
  if (n.outputs.size() != 1 || n.outputs[0] == ir::kNoValue) return std::unique_ptr<OutsourcedLayer>{};
  const ir::Value* x = input_value(in, 0);
  const ir::Value* w = input_value(in, 1);
  const ir::Value& y = in.graph.value(n.outputs[0]);
  if (!x || !w || !w->is_constant() || x->dtype != DType::kFloat32 || w->dtype != DType::kFloat32 || y.dtype != DType::kFloat32) {
    return std::unique_ptr<OutsourcedLayer>{};
  }
  const bool sum = has_sum(n);
  if (sum && (n.inputs.size() != 4 || n.inputs[3] == ir::kNoValue || in.graph.value(n.inputs[3]).shape != y.shape)) {
    return std::unique_ptr<OutsourcedLayer>{};
  }
  const ir::Value* b = (conv || gemm || fused) ? input_value(in, 2) : nullptr;
  if (b && (!b->is_constant() || b->dtype != DType::kFloat32)) return std::unique_ptr<OutsourcedLayer>{};
  if (!all_finite(w->constant) || (b && !all_finite(b->constant))) return std::unique_ptr<OutsourcedLayer>{};

  auto L = std::make_unique<OutsourcedLayer>();
  L->node_name = n.name;
  L->post_ops = n.post_ops;
  L->has_sum = sum;
  L->flops = cpu::node_flops(in.graph, n);
  accel::LinearSpec& spec = L->spec;
  std::vector<float> wf;  // weights as [Cout, K] rows
  float alpha = 1.f;
  if (conv) {
    if (x->shape.size() != 4 || w->shape.size() != 4 || y.shape.size() != 4) return std::unique_ptr<OutsourcedLayer>{};
    spec.kind = accel::LinearSpec::Kind::kConv2d;
    spec.weight_shape = w->shape;
    TENET_ASSIGN_OR_RETURN(spec.group, n.attr_int("group", 1));
    if (!conv_geometry(n, x->shape, y.shape, w->shape, spec)) return std::unique_ptr<OutsourcedLayer>{};
    wf.assign(w->constant.as<float>(), w->constant.as<float>() + w->constant.numel());
    L->src_shape = x->shape;
    L->positions = y.shape[2] * y.shape[3];
    if (b && b->constant.numel() != w->shape[0]) return std::unique_ptr<OutsourcedLayer>{};
    if (b) L->bias.assign(b->constant.as<float>(), b->constant.as<float>() + b->constant.numel());
  } else {
    // y[..., N] = alpha · A[..., K] · B[K, N] (+ bias): W = B^T, rows = all leading dims of A.
    if (x->shape.size() < 2 || w->shape.size() != 2 || y.shape.size() != x->shape.size()) return std::unique_ptr<OutsourcedLayer>{};
    bool trans_b = false;
    float beta = 1.f;
    if (gemm) {
      TENET_ASSIGN_OR_RETURN(const int64_t trans_a, n.attr_int("transA", 0));
      TENET_ASSIGN_OR_RETURN(const int64_t tb, n.attr_int("transB", 0));
      if (trans_a != 0) return std::unique_ptr<OutsourcedLayer>{};
      trans_b = tb != 0;
      TENET_ASSIGN_OR_RETURN(alpha, n.attr_float("alpha", 1.f));
      TENET_ASSIGN_OR_RETURN(beta, n.attr_float("beta", 1.f));
    } else if (fused) {
      TENET_ASSIGN_OR_RETURN(alpha, n.attr_float("alpha", 1.f));
    }
    const int64_t k = trans_b ? w->shape[1] : w->shape[0];
    const int64_t nout = trans_b ? w->shape[0] : w->shape[1];
    if (x->shape.back() != k || y.shape.back() != nout || !std::isfinite(alpha) || !std::isfinite(beta)) {
      return std::unique_ptr<OutsourcedLayer>{};
    }
    Shape lead_x(x->shape.begin(), x->shape.end() - 1), lead_y(y.shape.begin(), y.shape.end() - 1);
    if (lead_x != lead_y) return std::unique_ptr<OutsourcedLayer>{};
    spec.kind = accel::LinearSpec::Kind::kMatMul;
    spec.weight_shape = {nout, k};
    const float* bd = w->constant.as<float>();
    wf.resize(static_cast<size_t>(nout * k));
    for (int64_t o = 0; o < nout; ++o) {
      for (int64_t i = 0; i < k; ++i) wf[static_cast<size_t>(o * k + i)] = trans_b ? bd[o * k + i] : bd[i * nout + o];
    }
    L->src_shape = {numel(x->shape) / k, k};
    if (b) {
      const int64_t count = b->constant.numel();
      const float* bv = b->constant.as<float>();
      if (count == nout && b->shape.back() == nout) {
        L->bias.assign(bv, bv + nout);
      } else if (count == 1) {
        L->bias.assign(static_cast<size_t>(nout), bv[0]);
      } else {
        return std::unique_ptr<OutsourcedLayer>{};
      }
      if (gemm) {
        for (float& v : L->bias) v *= beta;
      }
    }
  }
  // Per-image scales (RuntimeOptions::images): dimension 0 must split into whole images.
  if (options_.images > 1) {
    if (x->shape[0] % options_.images != 0) return std::unique_ptr<OutsourcedLayer>{};
    L->images = options_.images;
  }
  const int64_t cout = spec.weight_shape[0];
  const int64_t row = numel(spec.weight_shape) / cout;
  // Exactness (field.h) and the limits every accelerator backend enforces.
  if (reduction_length(spec) > std::min<int64_t>(kMaxExactReduction, accel::kMaxReductionCount) || row <= 0 ||
      numel(spec.weight_shape) > accel::kMaxWeightCount || numel(L->src_shape) > accel::kMaxRunCount ||
      numel(y.shape) > accel::kMaxRunCount) {
    return std::unique_ptr<OutsourcedLayer>{};
  }
  QuantizedWeights q = quantize_rows(wf, cout, row);
  spec.weights = std::move(q.values);
  L->weight_scales = std::move(q.scales);
  for (float& s : L->weight_scales) s *= alpha;
  auto dst = linear_output_shape(spec, L->src_shape);
  if (!dst.ok()) return std::unique_ptr<OutsourcedLayer>{};
  L->dst_shape = *dst;
  if (numel(L->dst_shape) != numel(y.shape) || (conv && L->dst_shape != y.shape)) return std::unique_ptr<OutsourcedLayer>{};
  return L;
}

Result<std::unique_ptr<cpu::Kernel>> HybridRuntime::make_kernel(cpu::KernelInputs& in) {
  OutsourcedLayer* layer = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_name_.find(in.node.name);
    if (it != by_name_.end()) {
      layer = it->second;
    } else if (declined_.count(in.node.name) || options_.private_nodes.count(in.node.name)) {
      return KernelPtr{};
    }
  }
  if (!layer) {
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<OutsourcedLayer> built, build_layer(in));
    if (!built || built->flops < options_.min_flops) {
      std::lock_guard<std::mutex> lock(mu_);
      declined_[in.node.name] = true;
      return KernelPtr{};
    }
    Result<int32_t> handle = options_.accelerator->add_layer(built->spec);
    if (!handle.ok()) return handle.status().with_context(fmt::format("hybrid: registering {} on the accelerator", in.node.describe()));
    built->accel_handle = *handle;
    TENET_ASSIGN_OR_RETURN(built->trusted_handle, options_.trusted->add_layer(built->spec));
    TENET_ASSIGN_OR_RETURN(built->check, FreivaldsCheck::create(built->spec, built->src_shape, options_.repetitions));
    std::lock_guard<std::mutex> lock(mu_);
    built->index = static_cast<uint32_t>(layers_.size());
    layer = built.get();
    by_name_[in.node.name] = layer;
    layers_.push_back(std::move(built));
  }
  auto k = std::make_unique<OutsourcedKernel>(this, layer);
  k->required_inputs.resize(in.node.inputs.size());
  for (size_t i = 0; i < in.node.inputs.size(); ++i) {
    const ir::Value* v = input_value(in, i);
    if (v) k->required_inputs[i] = cpu::plain_layout(v->dtype, v->shape);
  }
  const ir::Value& y = in.graph.value(in.node.outputs[0]);
  k->outputs = {cpu::plain_layout(DType::kFloat32, y.shape)};
  k->in_place = {-1};
  return std::unique_ptr<cpu::Kernel>(std::move(k));
}

Status HybridRuntime::finalize(HostMaskStore* store) {
  if (std::all_of(vault_key_.begin(), vault_key_.end(), [](uint8_t b) { return b == 0; })) {
    return internal_error("hybrid: the enclave's CSPRNG produced no key");
  }
  crypto::Sha256 h;
  h.update("tenet/hybrid/model/v1");
  for (const auto& L : layers_) {
    h.update(L->node_name);
    h.update(crypto::ByteSpan(reinterpret_cast<const uint8_t*>(L->spec.weights.data()), L->spec.weights.size()));
  }
  const crypto::Sha256Digest model_id = h.finish();
  vault_ = std::make_unique<MaskVault>(vault_key_, model_id, store);
  return ok_status();
}

Status HybridRuntime::precompute(int count) {
  if (!vault_) return failed_precondition("hybrid: precompute before the model is compiled");
  const auto t0 = Clock::now();
  PadPrg prg(pad_key_);
  for (const auto& L : layers_) {
    std::vector<uint32_t> r(static_cast<size_t>(numel(L->src_shape))), u(static_cast<size_t>(numel(L->dst_shape)));
    for (int i = 0; i < count; ++i) {
      const uint64_t c = vault_->new_counter(L->index);
      TENET_RETURN_IF_ERROR(prg.generate(L->index, c, r));
      TENET_RETURN_IF_ERROR(options_.trusted->run(L->trusted_handle, L->src_shape, r, u));
      TENET_RETURN_IF_ERROR(vault_->deposit(L->index, c, u));
      counters_.masks_precomputed.fetch_add(1, std::memory_order_relaxed);
    }
    crypto::secure_wipe(r);
    crypto::secure_wipe(u);
  }
  counters_.precompute_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
  return ok_status();
}

}  // namespace tenet::hybrid
