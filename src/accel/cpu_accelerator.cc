// The CPU backend of the untrusted accelerator: exact W·x mod p on oneDNN's integer GEMM.
//
// Byte planes. A field element x < 2^31 is split into P planes of b bits, x = Σ_i 2^{b·i}·x_i,
// and each plane is multiplied by the int8 weights with oneDNN's u8·s8→s32 GEMM
// (dnnl_gemm_u8s8s32, alpha 1, beta 0: integer all the way). The enclave-visible result is then
// y = Σ_i 2^{b·i}·acc_i mod p, combined in int64 (|acc_i| ≤ K·255·127 < 2^31 for
// K ≤ kMaxReductionCount, so the sum stays below 2^56).
//   * b = 8, P = 4 where the CPU has VNNI (or AMX): u8·s8 products are accumulated in int32.
//   * b = 7, P = 5 elsewhere: pre-VNNI kernels add pairs of u8·s8 products in a saturating int16
//     (vpmaddubsw); with 7-bit planes a pair is at most 2·127·127 = 32,258 < 2^15, so nothing
//     saturates. (Measured: with 8-bit planes oneDNN 2.6's AVX2/AVX-512 paths lose bits.)
// make_cpu_accelerator picks b from the ISA and then proves it on a canary GEMM with maximal
// operands; it refuses to start (kFailedPrecondition) if neither width is exact.
//
// Why GEMM and not oneDNN's int8 convolution primitive: its non-brgemm kernels (jit_int8, the
// depthwise and pre-VNNI ones) convert int32 accumulators through fp32 even for s32 outputs, which
// rounds sums above 2^24; the GEMM never does. Convolution is therefore im2col (fused with the
// plane split and the zero padding) + one GEMM per group:
//   cols [K_g·G, P·nb·Ho·Wo] (u8, one row per (c, ky, kx), one column per (plane, image, pixel))
//   acc  [P·nb·Ho·Wo, Cout] = colsᵀ · Wᵀ     (s32)
// over chunks of nb images, so that workspaces stay bounded. Workspaces come from a pool and are
// reused across calls; run() is thread-safe (layers are immutable once added).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include "accel/accelerator.h"
#include "accel/cpu_accelerator.h"

namespace tenet::accel {
namespace {

// GEMM rows per chunk (plane × image × pixel): large enough for the GEMM to use every core,
// small enough that cols (rows·K bytes) and acc (rows·Cout·4 bytes) stay tens of MiB.
constexpr int64_t kTargetChunkRows = 1 << 15;
constexpr size_t kMaxLayers = 1 << 16;

inline uint32_t reduce_mod_p(int64_t v) {
  int64_t r = v % static_cast<int64_t>(kFieldPrime);
  if (r < 0) r += kFieldPrime;
  return static_cast<uint32_t>(r);
}

struct Planes {
  int bits = 8;
  int count = 4;
  uint32_t mask() const { return (1u << bits) - 1; }
};

Planes planes_for_bits(int bits) { return Planes{bits, (31 + bits - 1) / bits}; }

struct Workspace {
  std::vector<uint8_t> cols;
  std::vector<int32_t> acc;
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

class CpuAccelerator final : public Accelerator {
 public:
  CpuAccelerator(int threads, Planes planes) : threads_(threads), planes_(planes) {}

  std::string name() const override { return "cpu"; }

  Result<int32_t> add_layer(const LinearSpec& spec) override {
    TENET_RETURN_IF_ERROR(validate(spec));
    auto layer = std::make_shared<const LinearSpec>(spec);
    std::unique_lock lock(layers_mu_);
    if (layers_.size() >= kMaxLayers) return resource_exhausted("cpu accelerator: more than {} layers", kMaxLayers);
    layers_.push_back(std::move(layer));
    return static_cast<int32_t>(layers_.size() - 1);
  }

  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    std::shared_ptr<const LinearSpec> spec;
    {
      std::shared_lock lock(layers_mu_);
      if (layer < 0 || static_cast<size_t>(layer) >= layers_.size()) {
        return not_found("cpu accelerator: no layer {} ({} registered)", layer, layers_.size());
      }
      spec = layers_[static_cast<size_t>(layer)];
    }
    TENET_RETURN_IF_ERROR(check_run_arguments(*spec, input_shape, x, y));
    if (threads_ > 0) omp_set_num_threads(threads_);  // this calling thread's OpenMP teams
    std::unique_ptr<Workspace> ws = take_workspace();
    Status s = spec->kind == LinearSpec::Kind::kMatMul ? run_matmul(*spec, input_shape, x, y, *ws)
                                                       : run_conv(*spec, input_shape, x, y, *ws);
    give_workspace(std::move(ws));
    return s;
  }

  // y[m, :] for one chunk of rows: acc is [P·mb, Nout].
  Status run_matmul(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y,
                    Workspace& ws) const {
    const int64_t m_count = input_shape[0], k_count = spec.weight_shape[1], n_out = spec.weight_shape[0];
    const int64_t pc = planes_.count;
    const int64_t mb = std::clamp<int64_t>(kTargetChunkRows / pc, 1, m_count);
    ws.cols.resize(static_cast<size_t>(pc * mb * k_count));
    ws.acc.resize(static_cast<size_t>(pc * mb * n_out));
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
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = 0; o < n_out; ++o) {
          int64_t v = 0;
          for (int64_t p = 0; p < pc; ++p) v += int64_t{acc[(p * rows + r) * n_out + o]} << (p * bits);
          ys[r * n_out + o] = reduce_mod_p(v);
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
      // Combine planes; acc rows are pixels, y is channel-major: transpose in pixel tiles.
      const int32_t* acc = ws.acc.data();
      constexpr int64_t kTile = 64;
      const int64_t tiles = (pixels + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) collapse(2)
      for (int64_t i = 0; i < images; ++i) {
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t pix0 = t * kTile, pix1 = std::min(pixels, pix0 + kTile);
          uint32_t* y_img = y.data() + (n0 + i) * cout * pixels;
          for (int64_t co = 0; co < cout; ++co) {
            for (int64_t pix = pix0; pix < pix1; ++pix) {
              int64_t v = 0;
              for (int64_t p = 0; p < pc; ++p) {
                v += int64_t{acc[((p * images + i) * pixels + pix) * cout + co]} << (p * bits);
              }
              y_img[co * pixels + pix] = reduce_mod_p(v);
            }
          }
        }
      }
    }
    return ok_status();
  }

 private:
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

  const int threads_;
  const Planes planes_;
  mutable std::shared_mutex layers_mu_;
  std::vector<std::shared_ptr<const LinearSpec>> layers_;
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
  return std::unique_ptr<Accelerator>(std::make_unique<CpuAccelerator>(options.threads, planes_for_bits(bits)));
}

Result<std::unique_ptr<Accelerator>> make_cpu_accelerator(int threads) {
  CpuAcceleratorOptions options;
  options.threads = threads;
  return make_cpu_accelerator(options);
}

}  // namespace tenet::accel
