// Options of the CPU backend beyond accelerator.h's make_cpu_accelerator(threads): tests force the
// plane width to exercise both the VNNI (8-bit) and the pre-VNNI (7-bit) decompositions, switch
// the direct-convolution fast path off, and simulate a failing per-layer self-test.
#pragma once

#include <memory>
#include <string>

#include "accel/accelerator.h"

namespace tenet::accel {

struct CpuAcceleratorOptions {
  int threads = 0;     // OpenMP threads per run (0: oneDNN's default, all cores)
  int plane_bits = 0;  // 0: pick from the ISA (8 with VNNI/AMX, else 7); 7 or 8 to force
  // Convolutions on oneDNN's int8 convolution primitive where its kernel is VNNI/AMX and passes
  // the layer's self-test (cpu_accelerator.cc); false: always im2col + GEMM.
  bool direct_conv = true;
  // Convolutions on tenet's AMX kernel (amx_conv.h) where it applies (stride 1, one group, Cin a
  // multiple of 64, Cout of 32, 8-bit planes) and its self-test passes; before oneDNN's.
  bool amx_conv = true;
  // Tests only: every direct-convolution self-test reports a mismatch, so every layer must fall
  // back to im2col + GEMM.
  bool fail_self_test_for_testing = false;
  // Tests only: the check of every new work-item shape at run time fails (after the self-test
  // passed), so every run must fall back to im2col + GEMM.
  bool fail_shape_check_for_testing = false;
};

// kFailedPrecondition when the requested (or every) plane width fails the exactness canary.
Result<std::unique_ptr<Accelerator>> make_cpu_accelerator(const CpuAcceleratorOptions& options);

// How a CPU accelerator runs layer `layer`: "gemm" (im2col + u8·s8 GEMM per plane) or
// "direct(<oneDNN implementation>)". kInvalidArgument when `accelerator` is not a CPU
// accelerator, kNotFound for an unknown layer. For tests and benchmarks.
Result<std::string> cpu_layer_path(const Accelerator& accelerator, int32_t layer);

}  // namespace tenet::accel
