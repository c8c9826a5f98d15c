// Device kernels of the CUDA backend: im2col of field elements into fp64, and the exact mod-p
// reduction of fp64 accumulators (see cuda_accelerator.cc for why fp64 is exact).
#include "accel/cuda_kernels.h"

namespace tenet::accel::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void im2col_kernel(const uint32_t* x, double* cols, ConvGeometry g, int64_t total) {
  const int64_t pixels = g.ho * g.wo, kk = g.cin * g.kh * g.kw;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pix = i % pixels;
    const int64_t k = (i / pixels) % kk;
    const int64_t n = i / (pixels * kk);
    const int64_t kx = k % g.kw, ky = (k / g.kw) % g.kh, c = k / (g.kw * g.kh);
    const int64_t oy = pix / g.wo, ox = pix % g.wo;
    const int64_t iy = oy * g.sh - g.pt + ky * g.dh, ix = ox * g.sw - g.pl + kx * g.dw;
    const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
    cols[i] = inside ? static_cast<double>(x[((n * g.cin + c) * g.h + iy) * g.w + ix]) : 0.0;
  }
}

__global__ void to_double_kernel(const uint32_t* src, double* dst, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = static_cast<double>(src[i]);
  }
}

__global__ void reduce_kernel(const double* acc, uint32_t* y, int64_t count) {
  constexpr int64_t p = 2147483647;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t r = static_cast<int64_t>(acc[i]) % p;
    if (r < 0) r += p;
    y[i] = static_cast<uint32_t>(r);
  }
}

int blocks_for(int64_t count) {
  const int64_t b = (count + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 ? (b < 1 ? 1 : b) : 65535);
}

}  // namespace

cudaError_t launch_im2col(const uint32_t* x, double* cols, const ConvGeometry& g, cudaStream_t stream) {
  const int64_t total = g.images * g.cin * g.kh * g.kw * g.ho * g.wo;
  im2col_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, cols, g, total);
  return cudaGetLastError();
}

cudaError_t launch_to_double(const uint32_t* src, double* dst, int64_t count, cudaStream_t stream) {
  to_double_kernel<<<blocks_for(count), kThreads, 0, stream>>>(src, dst, count);
  return cudaGetLastError();
}

cudaError_t launch_reduce_mod_p(const double* acc, uint32_t* y, int64_t count, cudaStream_t stream) {
  reduce_kernel<<<blocks_for(count), kThreads, 0, stream>>>(acc, y, count);
  return cudaGetLastError();
}

}  // namespace tenet::accel::cuda
