// The CUDA backend's device kernels (cuda_kernels.cu), behind a plain C++ interface so that
// nvcc compiles only these kernels and the backend itself (cuda_accelerator.cc) is host C++.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace tenet::accel::cuda {

struct ConvGeometry {
  int64_t images, cin, h, w;      // input [images, cin, h, w]
  int64_t kh, kw, ho, wo;         // kernel and output spatial sizes
  int64_t sh, sw, dh, dw, pt, pl; // strides, dilations, top/left pads
};

// cols[n][k][pix] = x[n, c, iy, ix] (0 in the padding) as double, k = (c, ky, kx).
cudaError_t launch_im2col(const uint32_t* x, double* cols, const ConvGeometry& g, cudaStream_t stream);
// dst[i] = double(src[i]).
cudaError_t launch_to_double(const uint32_t* src, double* dst, int64_t count, cudaStream_t stream);
// y[i] = exact integer acc[i] reduced mod 2^31-1 (|acc| < 2^53, so the double is an integer).
cudaError_t launch_reduce_mod_p(const double* acc, uint32_t* y, int64_t count, cudaStream_t stream);

}  // namespace tenet::accel::cuda
