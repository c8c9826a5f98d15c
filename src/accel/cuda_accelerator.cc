// The CUDA backend of the untrusted accelerator, built as a loadable module
// (libtenet_accel_cuda.so, next to the tenet binary) only where the CUDA toolkit is found and not
// in sanitizer or fuzz builds; cuda_loader.cc loads it on first use. A module rather than a link
// dependency: linking CUDA's runtime libraries into every tenet binary put ~100 KiB of their
// static TLS on every thread, more than small-stack server threads (civetweb's) can take.
//
// Exact in fp64: inputs are integers < 2^31, weights integers in [-127, 127], so every product
// and every partial sum of a reduction of K ≤ kMaxReductionCount terms is an integer of magnitude
// ≤ K·127·(2^31-1) < 2^53, which fp64 represents exactly whatever the summation order — cuBLAS
// DGEMM (FP64 tensor cores on H100) therefore returns the exact integer product, and a kernel
// reduces it mod p (cuda_kernels.cu). Convolution is im2col on the GPU + one strided-batched DGEMM
// per group (batch = images), giving y in NCHW directly.
//
// Thread safety: weights are uploaded once per layer (as fp64) and never change; each run takes
// a context (stream, cuBLAS handle, device workspaces) from a pool, so concurrent runs overlap
// on the GPU.
#ifdef TENET_HAVE_CUDA

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "accel/accelerator.h"
#include "accel/cuda_kernels.h"

namespace tenet::accel {
namespace {

constexpr size_t kMaxLayers = 1 << 16;
constexpr int64_t kMaxColsElements = int64_t{1} << 25;  // 256 MiB of fp64 im2col per chunk

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return ok_status();
  return internal_error("cuda accelerator: {}: {}", what, cudaGetErrorString(e));
}
Status cublas_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return ok_status();
  return internal_error("cuda accelerator: {}: cuBLAS status {}", what, static_cast<int>(s));
}

// A device buffer that grows, never shrinks.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  Status reserve(size_t n) {
    if (n <= count) return ok_status();
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    count = 0;
    TENET_RETURN_IF_ERROR(cuda_status(cudaMalloc(&ptr, n * sizeof(T)), "cudaMalloc"));
    count = n;
    return ok_status();
  }
};

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  DeviceBuffer<uint32_t> x, y;
  DeviceBuffer<double> cols, acc;
  ~Context() {
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
  }
};

struct Layer {
  LinearSpec spec;  // weights dropped after upload
  DeviceBuffer<double> weights;
};

class CudaAccelerator final : public Accelerator {
 public:
  explicit CudaAccelerator(int device) : device_(device) {}

  std::string name() const override { return "cuda"; }

  Result<int32_t> add_layer(const LinearSpec& spec) override {
    TENET_RETURN_IF_ERROR(validate(spec));
    TENET_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device_), "cudaSetDevice"));
    auto layer = std::make_shared<Layer>();
    layer->spec = spec;
    std::vector<double> w(spec.weights.begin(), spec.weights.end());
    layer->spec.weights.clear();
    TENET_RETURN_IF_ERROR(layer->weights.reserve(w.size()));
    TENET_RETURN_IF_ERROR(cuda_status(cudaMemcpy(layer->weights.ptr, w.data(), w.size() * sizeof(double), cudaMemcpyHostToDevice),
                                      "uploading weights"));
    std::unique_lock lock(layers_mu_);
    if (layers_.size() >= kMaxLayers) return resource_exhausted("cuda accelerator: more than {} layers", kMaxLayers);
    layers_.push_back(std::move(layer));
    return static_cast<int32_t>(layers_.size() - 1);
  }

  Status run(int32_t id, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    std::shared_ptr<const Layer> layer;
    {
      std::shared_lock lock(layers_mu_);
      if (id < 0 || static_cast<size_t>(id) >= layers_.size()) {
        return not_found("cuda accelerator: no layer {} ({} registered)", id, layers_.size());
      }
      layer = layers_[static_cast<size_t>(id)];
    }
    TENET_RETURN_IF_ERROR(check_run_arguments(layer->spec, input_shape, x, y));
    TENET_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device_), "cudaSetDevice"));
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<Context> ctx, take_context());
    Status s = layer->spec.kind == LinearSpec::Kind::kMatMul ? run_matmul(*layer, input_shape, x, y, *ctx)
                                                             : run_conv(*layer, input_shape, x, y, *ctx);
    if (s.ok()) s = cuda_status(cudaStreamSynchronize(ctx->stream), "running the layer");
    give_context(std::move(ctx));
    return s;
  }

 private:
  Status run_matmul(const Layer& l, const Shape& in, std::span<const uint32_t> x, std::span<uint32_t> y, Context& c) {
    const int64_t m = in[0], k = l.spec.weight_shape[1], n = l.spec.weight_shape[0];
    TENET_RETURN_IF_ERROR(c.x.reserve(x.size()));
    TENET_RETURN_IF_ERROR(c.y.reserve(y.size()));
    TENET_RETURN_IF_ERROR(c.cols.reserve(x.size()));
    TENET_RETURN_IF_ERROR(c.acc.reserve(y.size()));
    TENET_RETURN_IF_ERROR(cuda_status(
        cudaMemcpyAsync(c.x.ptr, x.data(), x.size_bytes(), cudaMemcpyHostToDevice, c.stream), "copying x"));
    TENET_RETURN_IF_ERROR(cuda_status(cuda::launch_to_double(c.x.ptr, c.cols.ptr, static_cast<int64_t>(x.size()), c.stream),
                                      "converting x"));
    // Column-major view: yᵀ [n × m] = W [n × k] · xᵀ [k × m]; W is stored as Wᵀ [k × n].
    const double one = 1.0, zero = 0.0;
    TENET_RETURN_IF_ERROR(cublas_status(cublasDgemm(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                                    static_cast<int>(m), static_cast<int>(k), &one, l.weights.ptr,
                                                    static_cast<int>(k), c.cols.ptr, static_cast<int>(k), &zero,
                                                    c.acc.ptr, static_cast<int>(n)),
                                        "DGEMM"));
    return finish(c, y);
  }

  Status run_conv(const Layer& l, const Shape& in, std::span<const uint32_t> x, std::span<uint32_t> y, Context& c) {
    const LinearSpec& s = l.spec;
    const Shape out = output_shape(s, in).value();
    cuda::ConvGeometry g{in[0], in[1], in[2], in[3], s.weight_shape[2], s.weight_shape[3], out[2], out[3],
                         s.strides[0], s.strides[1], s.dilations[0], s.dilations[1], s.pads[0], s.pads[1]};
    const int64_t pixels = g.ho * g.wo, k_all = g.cin * g.kh * g.kw;
    const int64_t cout = s.weight_shape[0], cout_g = cout / s.group, k_g = k_all / s.group;
    const int64_t per_image = k_all * pixels;
    const int64_t chunk = std::clamp<int64_t>(kMaxColsElements / per_image, 1, g.images);
    TENET_RETURN_IF_ERROR(c.x.reserve(x.size()));
    TENET_RETURN_IF_ERROR(c.y.reserve(y.size()));
    TENET_RETURN_IF_ERROR(c.cols.reserve(static_cast<size_t>(chunk * per_image)));
    TENET_RETURN_IF_ERROR(c.acc.reserve(y.size()));
    TENET_RETURN_IF_ERROR(cuda_status(
        cudaMemcpyAsync(c.x.ptr, x.data(), x.size_bytes(), cudaMemcpyHostToDevice, c.stream), "copying x"));
    const double one = 1.0, zero = 0.0;
    for (int64_t n0 = 0; n0 < g.images; n0 += chunk) {
      cuda::ConvGeometry part = g;
      part.images = std::min(chunk, g.images - n0);
      TENET_RETURN_IF_ERROR(cuda_status(cuda::launch_im2col(c.x.ptr + n0 * g.cin * g.h * g.w, c.cols.ptr, part, c.stream),
                                        "im2col"));
      double* acc = c.acc.ptr + n0 * cout * pixels;
      for (int64_t grp = 0; grp < s.group; ++grp) {
        // Per image, column-major: out_g [pixels × cout_g] = cols_g [pixels × k_g] · W_gᵀ [k_g × cout_g].
        TENET_RETURN_IF_ERROR(cublas_status(
            cublasDgemmStridedBatched(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(pixels),
                                      static_cast<int>(cout_g), static_cast<int>(k_g), &one,
                                      c.cols.ptr + grp * k_g * pixels, static_cast<int>(pixels), per_image,
                                      l.weights.ptr + grp * cout_g * k_g, static_cast<int>(k_g), 0, &zero,
                                      acc + grp * cout_g * pixels, static_cast<int>(pixels), cout * pixels,
                                      static_cast<int>(part.images)),
            "strided-batched DGEMM"));
      }
    }
    return finish(c, y);
  }

  Status finish(Context& c, std::span<uint32_t> y) {
    TENET_RETURN_IF_ERROR(cuda_status(cuda::launch_reduce_mod_p(c.acc.ptr, c.y.ptr, static_cast<int64_t>(y.size()), c.stream),
                                      "reducing mod p"));
    return cuda_status(cudaMemcpyAsync(y.data(), c.y.ptr, y.size_bytes(), cudaMemcpyDeviceToHost, c.stream), "copying y");
  }

  Result<std::unique_ptr<Context>> take_context() {
    {
      std::lock_guard lock(pool_mu_);
      if (!pool_.empty()) {
        std::unique_ptr<Context> c = std::move(pool_.back());
        pool_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<Context>();
    TENET_RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "creating a stream"));
    TENET_RETURN_IF_ERROR(cublas_status(cublasCreate(&c->blas), "cublasCreate"));
    TENET_RETURN_IF_ERROR(cublas_status(cublasSetStream(c->blas, c->stream), "cublasSetStream"));
    // Exactness needs true fp64 (no emulated or reduced-precision math modes).
    TENET_RETURN_IF_ERROR(cublas_status(cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode"));
    return c;
  }
  void give_context(std::unique_ptr<Context> c) {
    std::lock_guard lock(pool_mu_);
    pool_.push_back(std::move(c));
  }

  const int device_;
  std::shared_mutex layers_mu_;
  std::vector<std::shared_ptr<Layer>> layers_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Context>> pool_;
};

}  // namespace

Result<std::unique_ptr<Accelerator>> create_cuda_accelerator(int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    return failed_precondition("cuda accelerator: no CUDA device ({})",
                               e == cudaSuccess ? "device count is 0" : cudaGetErrorString(e));
  }
  if (device < 0 || device >= count) {
    return failed_precondition("cuda accelerator: device {} does not exist ({} present)", device, count);
  }
  return std::unique_ptr<Accelerator>(std::make_unique<CudaAccelerator>(device));
}

}  // namespace tenet::accel

// The module's one entry point, looked up by cuda_loader.cc with dlsym.
extern "C" __attribute__((visibility("default"))) void tenet_accel_cuda_create(
    int device, tenet::Result<std::unique_ptr<tenet::accel::Accelerator>>* out) {
  *out = tenet::accel::create_cuda_accelerator(device);
}

#endif  // TENET_HAVE_CUDA
