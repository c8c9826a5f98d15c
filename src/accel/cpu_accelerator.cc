// The CPU backend of the untrusted accelerator: exact W·x mod p on oneDNN's integer kernels.
//
// Byte planes. A field element x < 2^31 is split into P planes of b bits, x = Σ_i 2^{b·i}·x_i,
// and each plane is multiplied by the int8 weights with an integer u8·s8→s32 kernel. The
// enclave-visible result is then y = Σ_i 2^{b·i}·acc_i mod p. |acc_i| ≤ K·255·127 < 2^30 for
// K ≤ kMaxReductionCount, so acc_i mod p is acc_i or acc_i + p, multiplying by 2^{b·i} mod p is a
// 31-bit rotation (2^31 ≡ 1), and the sum is reduced with Mersenne folds: 32-bit integer
// operations only (combine_planes; its AVX-512 form adds 2^30 to each plane instead of the sign
// fix and takes the constant back at the end).
//   * b = 8, P = 4 where the CPU has VNNI (or AMX): u8·s8 products are accumulated in int32.
//   * b = 7, P = 5 elsewhere: pre-VNNI kernels add pairs of u8·s8 products in a saturating int16
//     (vpmaddubsw); with 7-bit planes a pair is at most 2·127·127 = 32,258 < 2^15, so nothing
//     saturates. (Measured: with 8-bit planes oneDNN 2.6's AVX2/AVX-512 paths lose bits.)
// make_cpu_accelerator picks b from the ISA and then proves it on a canary GEMM with maximal
// operands; it refuses to start (kFailedPrecondition) if neither width is exact.
//
// Two implementations per convolution, in order; the GEMM is the fallback every layer can use.
//  1. Direct: oneDNN's int8 convolution primitive (u8 NHWC src, s8 weights reordered once per
//     layout, s32 NHWC dst), all planes in one call by stacking them along the batch: plane p of image i is
//     batch index p·nb + i.
//     oneDNN's int8 convolutions are not all exact: its non-VNNI kernels (jit_int8 on AVX2 or
//     AVX-512 without VNNI) saturate pairs of products in int16, and its GEMM-based and some jit
//     kernels convert int32 accumulators through fp32 even for s32 outputs, which rounds sums
//     above 2^24. The VNNI/AMX kernels (brgconv*, brdgmm_dw, jit:avx512_core_amx) accumulate in
//     int32 (vpdpbusd, tdpbusd) and store s32 unscaled. A layer uses the direct path only if
//       (a) the implementation oneDNN picks names a VNNI or AMX ISA and is not a GEMM or
//           reference kernel; the kernel, strides and dilations are square and no pad is as
//           wide as the kernel (fuzzing found oneDNN 2.6's AMX convolution crashing on output
//           rows of padding only, and wrong and writing out of bounds on a 1x4 kernel with
//           strides 3x2: outside what CNNs use, we do not go);
//       (b) a self-test at add_layer is bit-identical to reference_linear: the same kernel
//           configuration (channels, kernel, strides, dilations, pads, groups) on a small
//           spatial size, with every plane of every input at the plane maximum or one less and
//           weights ±127 or ±126 (full K, so every sum is as large as the layer's can be and not
//           a multiple of a power of two that fp32 would hold exactly), run both ways work items
//           run (below);
//       (c) for every work-item shape met at run time, at its first use: the implementation
//           oneDNN picks for it is the one that passed (a) and (b), and one run of it on random
//           plane values passes a Freivalds check of every output (shape_check_passes);
//     otherwise that run uses the GEMM. (b) proves the arithmetic (int16 pairs, fp32 conversion:
//     properties of the kernel, not of the spatial size) with maximal operands; (c) catches
//     shape-dependent indexing bugs, which fuzzing showed oneDNN 2.6 has.
//     Work items. Each plane's s32 output is 4x the bytes of the fp32 peer's, so the run is cut
//     into items small enough (kItemTargetBytes, or more where the weights are larger) that the
//     split input and the s32 output stay in L2 between the three passes: split (NCHW u32 → NHWC
//     u8 planes), convolution, combine (NHWC s32 planes → NCHW field elements). An item is a
//     chunk of whole images or a strip of output rows of one image, whose input rows carry their
//     own halo and top/bottom zero padding (one primitive per distinct strip shape, cached per
//     layer, reordered weights shared). With enough items they run in parallel, one OpenMP
//     thread each (oneDNN runs single-threaded inside a parallel region); else one after the
//     other on every thread. Split and combine transpose 16x16 blocks in AVX-512 registers.
//  2. GEMM (dnnl_gemm_u8s8s32, alpha 1, beta 0: integer all the way): im2col fused with the plane
//     split and the zero padding, then one GEMM per group:
//       cols [K_g·G, P·nb·Ho·Wo] (u8, one row per (c, ky, kx), one column per (plane, image, pixel))
//       acc  [P·nb·Ho·Wo, Cout] = colsᵀ · Wᵀ     (s32)
//     over chunks of nb images, so that workspaces stay bounded.
// Matrix multiplications always use the GEMM, all planes in one call (P·M rows).
// Workspaces (and oneDNN's scratchpads, in user mode) come from a pool and are reused across
// calls; run() is thread-safe (layers are immutable once added; oneDNN primitives are
// thread-safe to execute; the per-layer primitive cache is behind a mutex).
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <vector>

#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "accel/accelerator.h"
#include "accel/amx_conv.h"
#include "accel/cpu_accelerator.h"
#include "accel/plane_blocks.h"

namespace tenet::accel {
namespace {

using namespace plane_blocks;

// GEMM rows per chunk (plane × image × pixel): large enough for the GEMM to use every core,
// small enough that cols (rows·K bytes) and acc (rows·Cout·4 bytes) stay tens of MiB.
constexpr int64_t kTargetChunkRows = 1 << 15;
// Distinct work-item shapes whose primitives one layer caches (beyond: created per call).
constexpr size_t kMaxShapesPerLayer = 32;
constexpr size_t kMaxLayers = 1 << 16;

// Σ_i 2^{bits·i}·acc[i·plane_stride] mod p for |acc| < p (see the file comment): branch-free
// 32-bit operations, so loops over it vectorize.
template <int kBits>
inline uint32_t combine_planes(const int32_t* acc, size_t plane_stride) {
  constexpr int kCount = (31 + kBits - 1) / kBits;
  uint32_t sum = 0;
  for (int i = 0; i < kCount; ++i) {
    const int32_t a = acc[static_cast<size_t>(i) * plane_stride];
    uint32_t v = static_cast<uint32_t>(a) + (static_cast<uint32_t>(a >> 31) & kFieldPrime);  // [0, p)
    const int s = kBits * i;
    if (s != 0) v = ((v << s) | (v >> (31 - s))) & kFieldPrime;  // v·2^s mod p, still < p
    sum += v;                                                    // < 2p < 2^32
    sum = (sum & kFieldPrime) + (sum >> 31);                     // ≤ p
  }
  return sum == kFieldPrime ? 0 : sum;
}

struct Planes {
  int bits = 8;
  int count = 4;
  uint32_t mask() const { return (1u << bits) - 1; }
};

Planes planes_for_bits(int bits) { return Planes{bits, (31 + bits - 1) / bits}; }

// A 64-byte aligned, growable byte buffer (oneDNN's kernels prefer aligned src/dst/scratchpad).
class AlignedBuffer {
 public:
  uint8_t* get(size_t size) {
    if (size > capacity_) {
      const size_t rounded = (size + 63) / 64 * 64;
      data_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, rounded)));
      capacity_ = data_ ? rounded : 0;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t capacity_ = 0;
};

// The buffers one thread needs for one work item of the direct path.
struct ItemBuffers {
  AlignedBuffer src, dst, scratchpad;
};

struct Workspace {
  std::vector<uint8_t> cols;
  std::vector<int32_t> acc;
  std::vector<ItemBuffers> items;  // one per OpenMP thread
};

Status gemm(char transa, char transb, int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* b,
            int64_t ldb, int32_t* c, int64_t ldc) {
  const int32_t zero_offset = 0;
  const dnnl_status_t st =
      dnnl_gemm_u8s8s32(transa, transb, 'F', m, n, k, 1.0f, a, lda, 0, b, ldb, 0, 0.0f, c, ldc, &zero_offset);
  if (st != dnnl_success) {
    return internal_error("cpu accelerator: dnnl_gemm_u8s8s32 (M {}, N {}, K {}) failed with status {}", m, n, k,
                          static_cast<int>(st));
  }
  return ok_status();
}

// Condition (a) of the file comment: a VNNI/AMX kernel that is neither GEMM-based nor reference.
bool exact_kernel_name(std::string_view impl) {
  if (impl.find("gemm") != std::string_view::npos || impl.find("ref") != std::string_view::npos) return false;
  return impl.find("vnni") != std::string_view::npos || impl.find("amx") != std::string_view::npos;
}

// One oneDNN convolution for a (stacked batch, H, W): the primitive and its reordered weights.
struct DirectConv {
  std::string impl;
  dnnl::convolution_forward primitive;
  dnnl::memory weights;
  dnnl::memory::desc src_md, dst_md;
  size_t scratchpad_size = 0;
};

// The shape of one work item of the direct path: a stacked batch (P·images) of `h`×`w` inputs
// (a strip of input rows), with the strip's own top and bottom zero padding.
using ItemKey = std::array<int64_t, 5>;  // batch, h, w, pad top, pad bottom

// Creates the primitive for `key` (spec's kernel, strides, dilations, left/right pads) and
// reorders the weights (row-major [Cout, Cin/G, kh, kw]) into its preferred layout, or takes
// them from `reordered` (the layer's other primitives) where one has that layout already.
Result<std::shared_ptr<const DirectConv>> make_direct_conv(const dnnl::engine& engine, const LinearSpec& layer_spec,
                                                           const ItemKey& key,
                                                           const std::vector<dnnl::memory>& reordered = {}) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const auto [batch, h, w, pad_top, pad_bottom] = key;
  LinearSpec spec = layer_spec;
  spec.pads = {pad_top, layer_spec.pads[1], pad_bottom, layer_spec.pads[3]};
  std::span<const int8_t> weights = layer_spec.weights;
  TENET_ASSIGN_OR_RETURN(const Shape out, output_shape(spec, {batch, spec.weight_shape[1] * spec.group, h, w}));
  const int64_t cout = spec.weight_shape[0], cin_g = spec.weight_shape[1], kh = spec.weight_shape[2],
                kw = spec.weight_shape[3], group = spec.group;
  try {
    const dnnl::memory::desc src_md({batch, cin_g * group, h, w}, dt::u8, tag::nhwc);
    const dnnl::memory::desc dst_md({batch, cout, out[2], out[3]}, dt::s32, tag::nhwc);
    const dnnl::memory::dims wdims =
        group == 1 ? dnnl::memory::dims{cout, cin_g, kh, kw} : dnnl::memory::dims{group, cout / group, cin_g, kh, kw};
    const dnnl::memory::desc user_weights_md(wdims, dt::s8, group == 1 ? tag::oihw : tag::goihw);
    const dnnl::memory::desc any_weights_md(wdims, dt::s8, tag::any);
    const dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, any_weights_md, dst_md,
        {spec.strides[0], spec.strides[1]}, {spec.dilations[0] - 1, spec.dilations[1] - 1},
        {spec.pads[0], spec.pads[1]}, {spec.pads[2], spec.pads[3]});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);
    auto conv = std::make_shared<DirectConv>();
    conv->impl = pd.impl_info_str();
    conv->primitive = dnnl::convolution_forward(pd);
    conv->src_md = src_md;
    conv->dst_md = dst_md;
    conv->scratchpad_size = pd.scratchpad_desc().get_size();
    for (const dnnl::memory& m : reordered) {
      if (m.get_desc() == pd.weights_desc()) {
        conv->weights = m;
        return std::shared_ptr<const DirectConv>(std::move(conv));
      }
    }
    conv->weights = dnnl::memory(pd.weights_desc(), engine);
    dnnl::memory user_weights(user_weights_md, engine, const_cast<int8_t*>(weights.data()));
    dnnl::stream stream(engine);
    dnnl::reorder(user_weights, conv->weights).execute(stream, user_weights, conv->weights);
    stream.wait();
    return std::shared_ptr<const DirectConv>(std::move(conv));
  } catch (const dnnl::error& e) {
    return internal_error("cpu accelerator: oneDNN int8 convolution {} x [{}, {}, {}, {}]: {}",
                          shape_to_string(spec.weight_shape), batch, cin_g * group, h, w, e.what());
  }
}

// Executes `conv` on src/dst buffers laid out as its descriptors say; scratchpad from `ws`.
Status execute_direct_conv(const dnnl::engine& engine, const DirectConv& conv, uint8_t* src, int32_t* dst,
                           AlignedBuffer& scratchpad_buffer) {
  try {
    dnnl::stream stream(engine);
    dnnl::memory src_mem(conv.src_md, engine, src), dst_mem(conv.dst_md, engine, dst);
    dnnl::memory scratchpad(dnnl::memory::desc({static_cast<int64_t>(conv.scratchpad_size)},
                                               dnnl::memory::data_type::u8, dnnl::memory::format_tag::a),
                            engine, scratchpad_buffer.get(std::max<size_t>(conv.scratchpad_size, 64)));
    conv.primitive.execute(stream, {{DNNL_ARG_SRC, src_mem},
                                    {DNNL_ARG_WEIGHTS, conv.weights},
                                    {DNNL_ARG_DST, dst_mem},
                                    {DNNL_ARG_SCRATCHPAD, scratchpad}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return internal_error("cpu accelerator: executing {} failed: {}", conv.impl, e.what());
  }
  return ok_status();
}


// A registered layer. `direct_impl` is the oneDNN implementation that passed the self-test
// (empty: GEMM only); `cache` holds one primitive per work-item shape (null: that shape gets
// another implementation or fails its check, so runs that need it use the GEMM).
// A layer's direct-path state: its primitives per work-item shape, and what checking a new shape
// needs (see shape_check_passes): random channel coefficients c (one per output channel) and the
// weights folded with them per group, cᵀW mod p ([G, K_g]).
struct ConvCache {
  std::mutex mu;
  std::map<ItemKey, std::shared_ptr<const DirectConv>> convs;
  std::vector<uint32_t> channel_coeffs;
  std::vector<uint32_t> folded_weights;

  // Draws c and folds the weights: once per layer that uses the direct path.
  void prepare_checks(const LinearSpec& spec) {
    const int64_t cout = spec.weight_shape[0], group = spec.group, cout_g = cout / group;
    const int64_t k_g = numel(spec.weight_shape) / cout;
    std::mt19937_64 rng(0x7e4e7);  // oneDNN's bugs are not adversarial: a fixed seed will do
    std::uniform_int_distribution<uint32_t> coeff(1, kFieldPrime - 1);
    channel_coeffs.resize(static_cast<size_t>(cout));
    for (uint32_t& c : channel_coeffs) c = coeff(rng);
    folded_weights.assign(static_cast<size_t>(group * k_g), 0);
    for (int64_t g = 0; g < group; ++g) {
      for (int64_t k = 0; k < k_g; ++k) {
        int64_t sum = 0;  // |c·w| < 2^38, reduced every term
        for (int64_t o = g * cout_g; o < (g + 1) * cout_g; ++o) {
          sum = (sum + int64_t{channel_coeffs[static_cast<size_t>(o)]} * spec.weights[static_cast<size_t>(o * k_g + k)]) %
                kFieldPrime;
        }
        folded_weights[static_cast<size_t>(g * k_g + k)] = static_cast<uint32_t>(sum < 0 ? sum + kFieldPrime : sum);
      }
    }
  }
};

// Condition (c) of the file comment: runs `conv` (a work-item shape `key` of `spec`) once on
// random plane values up to `top` and checks every output pixel of every group against the folded
// weights: Σ_o c_o·dst[o] ≡ Σ_k (cᵀW)[k]·patch[k] (mod p). A wrong output value escapes with
// probability at most 1/p (Freivalds 1977, over the channel dimension); the cost is
// pixels·(Cout + K), about 1/Cout of the convolution's.
bool shape_check_passes(const dnnl::engine& engine, const LinearSpec& spec, const ConvCache& cache,
                        const DirectConv& conv, const ItemKey& key, uint32_t top) {
  const auto [batch, h, w, pad_top, pad_bottom] = key;
  const int64_t cout = spec.weight_shape[0], cin_g = spec.weight_shape[1], kh = spec.weight_shape[2],
                kw = spec.weight_shape[3], group = spec.group, cout_g = cout / group, cin = cin_g * group;
  const int64_t k_g = cin_g * kh * kw;
  LinearSpec item_spec = spec;
  item_spec.pads = {pad_top, spec.pads[1], pad_bottom, spec.pads[3]};
  auto out = output_shape(item_spec, {batch, cin, h, w});
  if (!out.ok()) return false;
  const int64_t ho = (*out)[2], wo = (*out)[3];
  AlignedBuffer src_buffer, dst_buffer, scratchpad;
  uint8_t* src = src_buffer.get(static_cast<size_t>(batch * h * w * cin));
  int32_t* dst = reinterpret_cast<int32_t*>(dst_buffer.get(static_cast<size_t>(batch * ho * wo * cout) * 4));
  if (src == nullptr || dst == nullptr) return false;
  std::mt19937_64 rng(static_cast<uint64_t>(batch * 1000003 + h * 1009 + w));
  for (int64_t i = 0; i < batch * h * w * cin; ++i) {
    const uint64_t r = rng();
    src[i] = static_cast<uint8_t>(r % 4 == 0 ? top : (r >> 8) % (top + 1));
  }
  if (!execute_direct_conv(engine, conv, src, dst, scratchpad).ok()) return false;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oy = 0; oy < ho; ++oy) {
      for (int64_t ox = 0; ox < wo; ++ox) {
        const int32_t* d = dst + ((n * ho + oy) * wo + ox) * cout;
        for (int64_t g = 0; g < group; ++g) {
          uint64_t lhs = 0;
          for (int64_t o = g * cout_g; o < (g + 1) * cout_g; ++o) {
            const int64_t v = d[o] < 0 ? int64_t{d[o]} + kFieldPrime : d[o];
            lhs = (lhs + uint64_t{cache.channel_coeffs[static_cast<size_t>(o)]} * static_cast<uint64_t>(v)) % kFieldPrime;
          }
          uint64_t rhs = 0;  // < K·2^31·2^8 ≤ 2^54
          const uint32_t* fw = cache.folded_weights.data() + g * k_g;
          for (int64_t c = 0; c < cin_g; ++c) {
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = oy * spec.strides[0] - pad_top + ky * spec.dilations[0];
              if (iy < 0 || iy >= h) continue;
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t ix = ox * spec.strides[1] - spec.pads[1] + kx * spec.dilations[1];
                if (ix < 0 || ix >= w) continue;
                rhs += uint64_t{fw[(c * kh + ky) * kw + kx]} * src[((n * h + iy) * w + ix) * cin + g * cin_g + c];
              }
            }
          }
          if (lhs != rhs % kFieldPrime) return false;
        }
      }
    }
  }
  return true;
}

struct Layer {
  explicit Layer(const LinearSpec& s) : spec(s) {}
  LinearSpec spec;
  std::unique_ptr<const AmxPlaneConv> amx;  // tenet's AMX kernel where it applies (amx_conv.h)
  std::string direct_impl;                  // else oneDNN's direct convolution, where exact
  mutable ConvCache cache;
  // A convolution's runs on inputs whose size leaves some kernel taps in padding only go to the
  // layer without them (crop_dead_taps), built on first use: per input height and width, that
  // layer, or null when every tap is live.
  mutable std::mutex cropped_mu;
  mutable std::map<std::pair<int64_t, int64_t>, std::shared_ptr<const Layer>> cropped;
};

// How the direct path cuts a run into work items: chunks of `images` whole images, or strips of
// `strip_rows` output rows of one image, each small enough for the split input and the planes'
// s32 output to stay in a core's L2 between the three passes (split, convolution, combine).
// `nested`: items run in parallel, one thread each (oneDNN then runs single-threaded inside);
// otherwise one after the other, each on every thread.
struct ItemPlan {
  int64_t images = 1;
  int64_t strip_rows = 1;
  bool nested = false;
};

// Work-item bytes: L2-sized, or larger where the weights are (every item reads all of them).
constexpr int64_t kItemTargetBytes = int64_t{1} << 20;

ItemPlan plan_items(const LinearSpec& spec, const Shape& input_shape, const Shape& out, int64_t plane_count,
                    int threads) {
  const int64_t batch = input_shape[0], cin = input_shape[1], h = input_shape[2], w = input_shape[3];
  const int64_t cout = spec.weight_shape[0], ho = out[2], wo = out[3];
  const int64_t target = std::max<int64_t>(kItemTargetBytes, 4 * static_cast<int64_t>(spec.weights.size()));
  const int64_t image_bytes = plane_count * (ho * wo * cout * 4 + h * w * cin);
  ItemPlan plan;
  if (image_bytes <= target) {
    plan.images = std::clamp<int64_t>(target / image_bytes, 1, batch);
    plan.strip_rows = ho;
  } else {
    const int64_t row_bytes = plane_count * (wo * cout * 4 + spec.strides[0] * w * cin);
    plan.strip_rows = std::clamp<int64_t>(target / row_bytes, 1, ho);
  }
  const int64_t items = (batch + plan.images - 1) / plan.images * ((ho + plan.strip_rows - 1) / plan.strip_rows);
  plan.nested = threads > 1 && items >= 2 * threads;
  return plan;
}

class CpuAccelerator final : public Accelerator {
 public:
  CpuAccelerator(const CpuAcceleratorOptions& options, Planes planes)
      : options_(options), planes_(planes), engine_(dnnl::engine::kind::cpu, 0) {}

  std::string name() const override { return "cpu"; }

  Result<int32_t> add_layer(const LinearSpec& spec) override {
    TENET_RETURN_IF_ERROR(validate(spec));
    std::shared_ptr<Layer> layer = make_layer(spec);
    std::unique_lock lock(layers_mu_);
    if (layers_.size() >= kMaxLayers) return resource_exhausted("cpu accelerator: more than {} layers", kMaxLayers);
    layers_.push_back(std::move(layer));
    return static_cast<int32_t>(layers_.size() - 1);
  }

  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    TENET_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> l, find_layer(layer));
    TENET_RETURN_IF_ERROR(check_run_arguments(l->spec, input_shape, x, y));
    if (l->spec.kind == LinearSpec::Kind::kConv2d) {
      if (std::shared_ptr<const Layer> c = cropped_layer(*l, input_shape)) l = std::move(c);
    }
    const LinearSpec& spec = l->spec;
    if (options_.threads > 0) omp_set_num_threads(options_.threads);  // this calling thread's OpenMP teams
    std::unique_ptr<Workspace> ws = take_workspace();
    Status s = ok_status();
    if (spec.kind == LinearSpec::Kind::kMatMul) {
      s = run_matmul(spec, input_shape, x, y, *ws);
    } else {
      bool done = false;
      if (l->amx) {
        s = l->amx->run(input_shape, x.data(), y.data(), omp_get_max_threads());
        done = true;
      } else if (!l->direct_impl.empty()) {
        const Shape out = output_shape(spec, input_shape).value();  // checked by check_run_arguments
        const ItemPlan plan = plan_items(spec, input_shape, out, planes_.count, omp_get_max_threads());
        Result<bool> direct = run_direct_conv(spec, l->direct_impl, l->cache, plan, input_shape, x, y, *ws,
                                              options_.fail_shape_check_for_testing);
        if (direct.ok()) {
          done = *direct;
        } else {
          s = direct.status();
        }
      }
      if (s.ok() && !done) s = run_conv(spec, input_shape, x, y, *ws);
    }
    give_workspace(std::move(ws));
    return s;
  }

  Result<std::string> layer_path(int32_t layer) const {
    TENET_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> l, find_layer(layer));
    if (l->amx) return std::string("amx");
    return l->direct_impl.empty() ? std::string("gemm") : "direct(" + l->direct_impl + ")";
  }

 private:
  std::shared_ptr<Layer> make_layer(const LinearSpec& spec) const {
    auto layer = std::make_shared<Layer>(spec);
    if (spec.kind == LinearSpec::Kind::kConv2d) layer->amx = amx_self_test(spec);
    if (spec.kind == LinearSpec::Kind::kConv2d && !layer->amx && options_.direct_conv) layer->direct_impl = self_test(spec);
    if (!layer->direct_impl.empty()) layer->cache.prepare_checks(spec);
    return layer;
  }

  // The layer without the taps that inputs of this size meet only in padding, or null (see
  // Layer::cropped). Building one runs the direct path's self-test once, outside the lock.
  std::shared_ptr<const Layer> cropped_layer(const Layer& l, const Shape& input_shape) const {
    const std::pair<int64_t, int64_t> key{input_shape[2], input_shape[3]};
    {
      std::lock_guard lock(l.cropped_mu);
      if (auto it = l.cropped.find(key); it != l.cropped.end()) return it->second;
    }
    std::optional<LinearSpec> c = crop_dead_taps(l.spec, input_shape);
    std::shared_ptr<const Layer> made = c ? make_layer(*c) : nullptr;
    std::lock_guard lock(l.cropped_mu);
    if (l.cropped.size() < kMaxShapesPerLayer) l.cropped.emplace(key, made);
    return made;
  }

  Result<std::shared_ptr<const Layer>> find_layer(int32_t layer) const {
    std::shared_lock lock(layers_mu_);
    if (layer < 0 || static_cast<size_t>(layer) >= layers_.size()) {
      return not_found("cpu accelerator: no layer {} ({} registered)", layer, layers_.size());
    }
    return std::shared_ptr<const Layer>(layers_[static_cast<size_t>(layer)]);
  }

  // Conditions (a) and (b) of the file comment for a conv layer; returns the implementation that
  // passed, or "" (GEMM) when oneDNN has no exact kernel for it or a result differs. The test
  // runs the direct path twice: whole images with oneDNN's own threading, and one-row strips
  // (every top/middle/bottom padding case) in parallel, oneDNN single-threaded in each.
  std::string self_test(const LinearSpec& spec) const {
    // Found by fuzzing oneDNN 2.6 (AMX): padding as wide as the kernel (output rows of padding
    // only) crashes it, and a 1x4 kernel with strides 3x2 gives wrong sums at some heights and
    // corrupts memory. Square kernels, strides and dilations (every CNN we serve) fuzz clean;
    // other layers keep the GEMM.
    const int64_t ext_h = (spec.weight_shape[2] - 1) * spec.dilations[0] + 1;
    const int64_t ext_w = (spec.weight_shape[3] - 1) * spec.dilations[1] + 1;
    if (std::max(spec.pads[0], spec.pads[2]) >= ext_h || std::max(spec.pads[1], spec.pads[3]) >= ext_w) return "";
    if (spec.weight_shape[2] != spec.weight_shape[3] || spec.strides[0] != spec.strides[1] ||
        spec.dilations[0] != spec.dilations[1]) {
      return "";
    }
    std::optional<MaximalCase> c = maximal_case(spec);
    if (!c) return "";
    const LinearSpec& test = c->spec;
    const Shape& in = c->in;
    const std::vector<uint32_t>& x = c->x;
    const std::vector<uint32_t>& want = c->want;
    std::vector<uint32_t> got(want.size());
    auto whole = make_direct_conv(engine_, test, {planes_.count * in[0], in[2], in[3], spec.pads[0], spec.pads[2]});
    if (!whole.ok() || !exact_kernel_name((*whole)->impl)) return "";
    const std::string impl = (*whole)->impl;
    Workspace ws;
    ConvCache cache;
    cache.prepare_checks(test);
    ItemPlan plans[2];
    plans[0].strip_rows = c->out[2];
    plans[1].nested = true;
    for (const ItemPlan& plan : plans) {
      std::fill(got.begin(), got.end(), 0xDEADBEEFu);
      Result<bool> done = run_direct_conv(test, impl, cache, plan, in, x, got, ws);
      if (!done.ok() || !*done || got != want || options_.fail_self_test_for_testing) return "";
    }
    return impl;
  }

  // The self-tests' case for a conv layer: the same kernel configuration (channels, kernel,
  // strides, dilations, pads, groups) on a small input with at least 3x3 outputs (borders and
  // interior where the layer pads), weights ±127 or ±126 and every plane of every input at the
  // plane maximum or one less, so that every sum is as large as the layer's can be; `want` from
  // reference_linear. nullopt if the layer has no such case.
  struct MaximalCase {
    LinearSpec spec;
    Shape in, out;
    std::vector<uint32_t> x, want;
  };
  std::optional<MaximalCase> maximal_case(const LinearSpec& spec) const {
    const int64_t cout = spec.weight_shape[0], cin = spec.weight_shape[1] * spec.group;
    const auto extent = [&](int d) {
      return (spec.weight_shape[2 + d] - 1) * spec.dilations[static_cast<size_t>(d)] + 1 +
             2 * spec.strides[static_cast<size_t>(d)];
    };
    const Shape in = {1, cin, extent(0), extent(1)};
    auto out = output_shape(spec, in);
    if (!out.ok()) return std::nullopt;
    LinearSpec test = spec;
    const int64_t per_out = numel(spec.weight_shape) / cout;
    for (int64_t o = 0; o < cout; ++o) {
      const int sign = o % 2 == 0 ? 1 : -1;
      for (int64_t k = 0; k < per_out; ++k) {
        const int64_t i = o * per_out + k;
        test.weights[static_cast<size_t>(i)] = static_cast<int8_t>(sign * (i % 7 == 3 ? 126 : 127));
      }
    }
    // Every plane of every input at the plane maximum, or one less: x = Σ_p 2^{b·p}·v_p.
    const uint32_t top = planes_.mask();
    std::vector<uint32_t> x(static_cast<size_t>(numel(in)));
    for (size_t i = 0; i < x.size(); ++i) {
      uint32_t v = 0;
      for (int p = 0; p < planes_.count; ++p) {
        const uint32_t plane = std::min<uint32_t>(top - ((i + static_cast<size_t>(p)) % 5 == 2 ? 1 : 0),
                                                  (kFieldPrime >> (planes_.bits * p)) & top);
        v |= plane << (planes_.bits * p);
      }
      x[i] = std::min(v, kFieldPrime - 1);
    }
    std::vector<uint32_t> want(static_cast<size_t>(numel(*out)));
    if (!reference_linear(test, in, x, want).ok()) return std::nullopt;
    return MaximalCase{std::move(test), in, *out, std::move(x), std::move(want)};
  }

  // The AMX kernel for a conv layer (amx_conv.h), or null where it does not apply or its
  // self-test on the layer's maximal case (maximal_case) differs from the reference, on one
  // thread (whole images) and on two (strips of output rows).
  std::unique_ptr<const AmxPlaneConv> amx_self_test(const LinearSpec& spec) const {
    if (!options_.amx_conv || planes_.bits != 8 || !AmxPlaneConv::unsupported(spec).empty() || !AmxPlaneConv::available()) {
      return nullptr;
    }
    std::optional<MaximalCase> c = maximal_case(spec);
    if (!c) return nullptr;
    auto test = AmxPlaneConv::create(c->spec);
    if (!test.ok()) return nullptr;
    std::vector<uint32_t> got(c->want.size());
    for (int threads : {1, 2}) {
      std::fill(got.begin(), got.end(), 0xDEADBEEFu);
      if (!(*test)->run(c->in, c->x.data(), got.data(), threads).ok() || got != c->want ||
          options_.fail_self_test_for_testing) {
        return nullptr;
      }
    }
    auto made = AmxPlaneConv::create(spec);
    return made.ok() ? std::move(*made) : nullptr;
  }

  // The primitive for one work-item shape, from the cache; null when oneDNN picks another
  // implementation than `impl` for it (or none).
  std::shared_ptr<const DirectConv> direct_conv_for(const LinearSpec& spec, const std::string& impl, ConvCache& cache,
                                                    const ItemKey& key, bool fail_check) const {
    std::vector<dnnl::memory> reordered;
    {
      std::lock_guard lock(cache.mu);
      auto it = cache.convs.find(key);
      if (it != cache.convs.end()) return it->second;
      for (const auto& [k, c] : cache.convs) {
        if (c) reordered.push_back(c->weights);
      }
    }
    auto made = make_direct_conv(engine_, spec, key, reordered);
    std::shared_ptr<const DirectConv> conv =
        made.ok() && (*made)->impl == impl && !fail_check &&
                shape_check_passes(engine_, spec, cache, **made, key, planes_.mask())
            ? *made
            : nullptr;
    std::lock_guard lock(cache.mu);
    if (cache.convs.size() < kMaxShapesPerLayer) cache.convs.emplace(key, conv);
    return conv;
  }

  // The direct path (file comment, 1.) for `plan`; false (nothing written) when some work item's
  // shape gets another implementation than `impl`.
  // `fail_checks`: fail_shape_check_for_testing for a layer's runs, false in its self-test.
  Result<bool> run_direct_conv(const LinearSpec& spec, const std::string& impl, ConvCache& cache, const ItemPlan& plan,
                               const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y,
                               Workspace& ws, bool fail_checks = false) const {
    const Shape out = output_shape(spec, input_shape).value();
    const int64_t batch = input_shape[0], cin = input_shape[1], h = input_shape[2], w = input_shape[3];
    const int64_t cout = spec.weight_shape[0], ho = out[2], wo = out[3], hw = h * w, pixels = ho * wo;
    const int64_t sh = spec.strides[0], pt = spec.pads[0], extent = (spec.weight_shape[2] - 1) * spec.dilations[0] + 1;
    const int64_t pc = planes_.count;
    const int64_t chunks = (batch + plan.images - 1) / plan.images, strips = (ho + plan.strip_rows - 1) / plan.strip_rows;
    struct Item {
      int64_t n0, images, oy0, oy1, iy0, iy1;
      const DirectConv* conv;
    };
    std::vector<Item> items;
    items.reserve(static_cast<size_t>(chunks * strips));
    std::map<ItemKey, std::shared_ptr<const DirectConv>> convs;  // keeps this run's primitives alive
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t s = 0; s < strips; ++s) {
        Item item;
        item.n0 = c * plan.images;
        item.images = std::min(plan.images, batch - item.n0);
        item.oy0 = s * plan.strip_rows;
        item.oy1 = std::min(ho, item.oy0 + plan.strip_rows);
        const int64_t start = item.oy0 * sh - pt, end = (item.oy1 - 1) * sh - pt + extent;
        item.iy0 = std::max<int64_t>(start, 0);
        item.iy1 = std::min(end, h);
        if (item.iy1 <= item.iy0) return false;  // a strip of padding only
        const ItemKey key{pc * item.images, item.iy1 - item.iy0, w, item.iy0 - start, end - item.iy1};
        auto it = convs.find(key);
        if (it == convs.end()) it = convs.emplace(key, direct_conv_for(spec, impl, cache, key, fail_checks)).first;
        if (!it->second) return false;
        item.conv = it->second.get();
        items.push_back(item);
      }
    }
    const int threads = omp_get_max_threads();
    if (ws.items.size() < static_cast<size_t>(threads)) ws.items.resize(static_cast<size_t>(threads));
    const bool inner_parallel = !plan.nested;
    std::atomic<bool> failed{false};
    std::vector<Status> errors(static_cast<size_t>(threads));
    const auto run_item = [&](const Item& item, ItemBuffers& buffers, Status& error) {
      const int64_t rows_in = item.iy1 - item.iy0, rows_out = item.oy1 - item.oy0;
      uint8_t* src = buffers.src.get(static_cast<size_t>(pc * item.images * rows_in * w * cin));
      int32_t* dst = reinterpret_cast<int32_t*>(
          buffers.dst.get(static_cast<size_t>(pc * item.images * rows_out * wo * cout) * sizeof(int32_t)));
      if (src == nullptr || dst == nullptr) {
        error = resource_exhausted("cpu accelerator: workspace allocation failed");
        failed = true;
        return;
      }
      split_to_nhwc(x.data() + item.n0 * cin * hw + item.iy0 * w, item.images, cin, rows_in * w, hw, cin * hw, src,
                    inner_parallel);
      Status s = execute_direct_conv(engine_, *item.conv, src, dst, buffers.scratchpad);
      if (!s.ok()) {
        error = std::move(s);
        failed = true;
        return;
      }
      uint32_t* y_item = y.data() + item.n0 * cout * pixels + item.oy0 * wo;
      if (planes_.bits == 8) {
        combine_from_nhwc<8>(dst, item.images, cout, rows_out * wo, y_item, pixels, cout * pixels, inner_parallel);
      } else {
        combine_from_nhwc<7>(dst, item.images, cout, rows_out * wo, y_item, pixels, cout * pixels, inner_parallel);
      }
    };
    if (plan.nested) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (size_t i = 0; i < items.size(); ++i) {
        const int t = omp_get_thread_num();
        if (!failed) run_item(items[i], ws.items[static_cast<size_t>(t)], errors[static_cast<size_t>(t)]);
      }
    } else {
      for (const Item& item : items) {
        if (!failed) run_item(item, ws.items[0], errors[0]);
      }
    }
    for (Status& e : errors) TENET_RETURN_IF_ERROR(e);
    return true;
  }

  // x [images, C, pix_count] (strided NCHW) → src [P·images, pix_count, C] (NHWC; plane p of
  // image i at batch index p·images + i).
  void split_to_nhwc(const uint32_t* x, int64_t images, int64_t c_count, int64_t pix_count, int64_t x_chan_stride,
                     int64_t x_image_stride, uint8_t* src, bool parallel) const {
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    const int64_t tiles = (pix_count + kBlock - 1) / kBlock, pc = planes_.count;
    const int bits = planes_.bits;
    const uint32_t mask = planes_.mask();
    const size_t plane_stride = static_cast<size_t>(images * pix_count * c_count);
#pragma omp parallel for schedule(static) collapse(2) if (parallel)
    for (int64_t i = 0; i < images; ++i) {
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t pix0 = t * kBlock, len = std::min(kBlock, pix_count - pix0);
        const uint32_t* x_tile = x + i * x_image_stride + pix0;
        uint8_t* dst = src + (i * pix_count + pix0) * c_count;
        int64_t c0 = 0;
        if (avx512 && len == kBlock) {
          for (; c0 + kBlock <= c_count; c0 += kBlock) {
            split_block_avx512(x_tile + c0 * x_chan_stride, x_chan_stride, bits, static_cast<int>(pc), dst + c0,
                               plane_stride, c_count);
          }
        }
        for (int64_t p = 0; p < pc; ++p) {
          const int shift = static_cast<int>(p) * bits;
          uint8_t* dst_p = dst + static_cast<size_t>(p) * plane_stride;
          for (int64_t c = c0; c < c_count; ++c) {
            const uint32_t* row = x_tile + c * x_chan_stride;
            for (int64_t k = 0; k < len; ++k) dst_p[k * c_count + c] = static_cast<uint8_t>((row[k] >> shift) & mask);
          }
        }
      }
    }
  }

  // dst [P·images, pix_count, Cout] (s32 NHWC) → y [images, Cout, pix_count] (strided NCHW),
  // planes combined: 16-pixel tiles, 16 channels at a time in AVX-512 registers where the CPU
  // has it.
  template <int kBits>
  static void combine_from_nhwc(const int32_t* dst, int64_t images, int64_t cout, int64_t pix_count, uint32_t* y,
                                int64_t y_chan_stride, int64_t y_image_stride, bool parallel) {
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    const int64_t pix_tiles = (pix_count + kBlock - 1) / kBlock;
    const size_t plane_stride = static_cast<size_t>(images * pix_count * cout);
#pragma omp parallel for schedule(static) collapse(2) if (parallel)
    for (int64_t i = 0; i < images; ++i) {
      for (int64_t t = 0; t < pix_tiles; ++t) {
        const int64_t pix0 = t * kBlock, plen = std::min(kBlock, pix_count - pix0);
        const int32_t* acc = dst + (i * pix_count + pix0) * cout;
        uint32_t* y_tile = y + i * y_image_stride + pix0;
        int64_t c0 = 0;
        if (avx512 && plen == kBlock) {
          for (; c0 + kBlock <= cout; c0 += kBlock) {
            combine_block_avx512<kBits>(acc + c0, cout, plane_stride, y_tile + c0 * y_chan_stride, y_chan_stride);
          }
        }
        for (int64_t c = c0; c < cout; ++c) {
          for (int64_t k = 0; k < plen; ++k) {
            y_tile[c * y_chan_stride + k] = combine_planes<kBits>(acc + k * cout + c, plane_stride);
          }
        }
      }
    }
  }

  // y[m, :] for one chunk of rows: acc is [P·mb, Nout].
  Status run_matmul(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y,
                    Workspace& ws) const {
    const int64_t m_count = input_shape[0], k_count = spec.weight_shape[1], n_out = spec.weight_shape[0];
    const int64_t pc = planes_.count;
    const int64_t mb = std::clamp<int64_t>(kTargetChunkRows / pc, 1, m_count);
    ws.cols.resize(std::max(ws.cols.size(), static_cast<size_t>(pc * mb * k_count)));
    ws.acc.resize(std::max(ws.acc.size(), static_cast<size_t>(pc * mb * n_out)));
    const int bits = planes_.bits;
    const uint32_t mask = planes_.mask();
    for (int64_t m0 = 0; m0 < m_count; m0 += mb) {
      const int64_t rows = std::min(mb, m_count - m0);
      uint8_t* cols = ws.cols.data();
      const uint32_t* xs = x.data() + m0 * k_count;
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t p = 0; p < pc; ++p) {
          uint8_t* dst = cols + (p * rows + r) * k_count;
          const uint32_t* src = xs + r * k_count;
          const int shift = static_cast<int>(p) * bits;
          for (int64_t k = 0; k < k_count; ++k) dst[k] = static_cast<uint8_t>((src[k] >> shift) & mask);
        }
      }
      TENET_RETURN_IF_ERROR(gemm('N', 'T', pc * rows, n_out, k_count, cols, k_count, spec.weights.data(), k_count,
                                 ws.acc.data(), n_out));
      const int32_t* acc = ws.acc.data();
      uint32_t* ys = y.data() + m0 * n_out;
      const size_t plane_stride = static_cast<size_t>(rows * n_out);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t* a = acc + r * n_out;
        uint32_t* yr = ys + r * n_out;
        if (bits == 8) {
          for (int64_t o = 0; o < n_out; ++o) yr[o] = combine_planes<8>(a + o, plane_stride);
        } else {
          for (int64_t o = 0; o < n_out; ++o) yr[o] = combine_planes<7>(a + o, plane_stride);
        }
      }
    }
    return ok_status();
  }

  Status run_conv(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y,
                  Workspace& ws) const {
    const Shape out = output_shape(spec, input_shape).value();  // checked by check_run_arguments
    const int64_t batch = input_shape[0], cin = input_shape[1], h = input_shape[2], w = input_shape[3];
    const int64_t cout = spec.weight_shape[0], cin_g = spec.weight_shape[1];
    const int64_t kh = spec.weight_shape[2], kw = spec.weight_shape[3];
    const int64_t ho = out[2], wo = out[3], pixels = ho * wo;
    const int64_t group = spec.group, cout_g = cout / group;
    const int64_t k_g = cin_g * kh * kw, k_all = cin * kh * kw;
    const int64_t pc = planes_.count;
    const int64_t nb = std::clamp<int64_t>(kTargetChunkRows / (pc * pixels), 1, batch);
    const int bits = planes_.bits;
    const uint32_t mask = planes_.mask();
    const int64_t sh = spec.strides[0], sw = spec.strides[1], dh = spec.dilations[0], dw = spec.dilations[1];
    const int64_t pt = spec.pads[0], pl = spec.pads[1];
    for (int64_t n0 = 0; n0 < batch; n0 += nb) {
      const int64_t images = std::min(nb, batch - n0);
      const int64_t rows = pc * images * pixels;  // GEMM M: (plane, image, pixel)
      ws.cols.resize(static_cast<size_t>(std::max(ws.cols.size(), static_cast<size_t>(k_all * rows))));
      ws.acc.resize(static_cast<size_t>(std::max(ws.acc.size(), static_cast<size_t>(rows * cout))));
      uint8_t* cols = ws.cols.data();
      // im2col + plane split: row (c, ky, kx) of cols, columns (p, image, oy, ox).
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < k_all; ++k) {
        const int64_t c = k / (kh * kw), ky = (k / kw) % kh, kx = k % kw;
        uint8_t* row = cols + k * rows;
        for (int64_t i = 0; i < images; ++i) {
          const uint32_t* plane_in = x.data() + ((n0 + i) * cin + c) * h * w;
          for (int64_t oy = 0; oy < ho; ++oy) {
            const int64_t iy = oy * sh - pt + ky * dh;
            const int64_t col0 = i * pixels + oy * wo;
            if (iy < 0 || iy >= h) {
              for (int64_t p = 0; p < pc; ++p) std::memset(row + p * images * pixels + col0, 0, static_cast<size_t>(wo));
              continue;
            }
            const uint32_t* in_row = plane_in + iy * w;
            for (int64_t ox = 0; ox < wo; ++ox) {
              const int64_t ix = ox * sw - pl + kx * dw;
              const uint32_t v = (ix >= 0 && ix < w) ? in_row[ix] : 0;
              for (int64_t p = 0; p < pc; ++p) {
                row[p * images * pixels + col0 + ox] = static_cast<uint8_t>((v >> (p * bits)) & mask);
              }
            }
          }
        }
      }
      for (int64_t g = 0; g < group; ++g) {
        TENET_RETURN_IF_ERROR(gemm('T', 'T', rows, cout_g, k_g, cols + g * k_g * rows, rows,
                                   spec.weights.data() + g * cout_g * k_g, k_g, ws.acc.data() + g * cout_g, cout));
      }
      // acc is [P, images·pixels, Cout]: the NHWC layout of the direct path.
      if (bits == 8) {
        combine_from_nhwc<8>(ws.acc.data(), images, cout, pixels, y.data() + n0 * cout * pixels, pixels, cout * pixels,
                             true);
      } else {
        combine_from_nhwc<7>(ws.acc.data(), images, cout, pixels, y.data() + n0 * cout * pixels, pixels, cout * pixels,
                             true);
      }
    }
    return ok_status();
  }

  std::unique_ptr<Workspace> take_workspace() {
    std::lock_guard lock(pool_mu_);
    if (pool_.empty()) return std::make_unique<Workspace>();
    std::unique_ptr<Workspace> ws = std::move(pool_.back());
    pool_.pop_back();
    return ws;
  }
  void give_workspace(std::unique_ptr<Workspace> ws) {
    std::lock_guard lock(pool_mu_);
    pool_.push_back(std::move(ws));
  }

  const CpuAcceleratorOptions options_;
  const Planes planes_;
  const dnnl::engine engine_;
  mutable std::shared_mutex layers_mu_;
  std::vector<std::shared_ptr<const Layer>> layers_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Workspace>> pool_;
};

bool cpu_has_vnni() {
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const auto has = [isa](dnnl_cpu_isa_t want) { return (isa & want) == static_cast<unsigned>(want); };
  return has(dnnl_cpu_isa_avx512_core_vnni) || has(dnnl_cpu_isa_avx2_vnni);
}

// A GEMM whose every pair of products saturates int16 and whose sums exceed 2^24: exact only if
// the plane width is safe for this CPU's kernels.
bool canary_exact(int bits) {
  constexpr int64_t m = 48, n = 32, k = kMaxReductionCount / 4;
  const uint8_t top = static_cast<uint8_t>((1u << bits) - 1);
  std::vector<uint8_t> a(static_cast<size_t>(m * k));
  std::vector<int8_t> b(static_cast<size_t>(k * n));
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(top - i % 3);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<int8_t>(i % 11 == 0 ? -127 : 127 - static_cast<int>(i % 5));
  std::vector<int32_t> c(static_cast<size_t>(m * n));
  if (!gemm('N', 'N', m, n, k, a.data(), k, b.data(), n, c.data(), n).ok()) return false;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t t = 0; t < k; ++t) acc += int64_t{a[static_cast<size_t>(i * k + t)]} * b[static_cast<size_t>(t * n + j)];
      if (acc != c[static_cast<size_t>(i * n + j)]) return false;
    }
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<Accelerator>> make_cpu_accelerator(const CpuAcceleratorOptions& options) {
  if (options.threads < 0) return invalid_argument("cpu accelerator: threads must be >= 0, got {}", options.threads);
  if (options.plane_bits != 0 && options.plane_bits != 7 && options.plane_bits != 8) {
    return invalid_argument("cpu accelerator: plane_bits must be 0 (auto), 7 or 8, got {}", options.plane_bits);
  }
  int bits = options.plane_bits;
  if (bits == 0) {
    static const int auto_bits = [] {
      if (cpu_has_vnni() && canary_exact(8)) return 8;
      return canary_exact(7) ? 7 : 0;
    }();
    bits = auto_bits;
    if (bits == 0) {
      return failed_precondition("cpu accelerator: oneDNN's u8·s8 GEMM is not exact on this CPU (canary failed)");
    }
  } else if (!canary_exact(bits)) {
    return failed_precondition("cpu accelerator: {}-bit planes are not exact on this CPU (canary failed)", bits);
  }
  try {
    return std::unique_ptr<Accelerator>(std::make_unique<CpuAccelerator>(options, planes_for_bits(bits)));
  } catch (const dnnl::error& e) {
    return internal_error("cpu accelerator: oneDNN CPU engine: {}", e.what());
  }
}

Result<std::unique_ptr<Accelerator>> make_cpu_accelerator(int threads) {
  CpuAcceleratorOptions options;
  options.threads = threads;
  return make_cpu_accelerator(options);
}

Result<std::string> cpu_layer_path(const Accelerator& accelerator, int32_t layer) {
  const auto* cpu = dynamic_cast<const CpuAccelerator*>(&accelerator);
  if (cpu == nullptr) return invalid_argument("cpu_layer_path: {} is not a CPU accelerator", accelerator.name());
  return cpu->layer_path(layer);
}

}  // namespace tenet::accel
