// Options of the CPU backend beyond accelerator.h's make_cpu_accelerator(threads): tests force the
// plane width to exercise both the VNNI (8-bit) and the pre-VNNI (7-bit) decompositions.
#pragma once

#include <memory>

#include "accel/accelerator.h"

namespace tenet::accel {

struct CpuAcceleratorOptions {
  int threads = 0;     // OpenMP threads per run (0: oneDNN's default, all cores)
  int plane_bits = 0;  // 0: pick from the ISA (8 with VNNI/AMX, else 7); 7 or 8 to force
};

// kFailedPrecondition when the requested (or every) plane width fails the exactness canary.
Result<std::unique_ptr<Accelerator>> make_cpu_accelerator(const CpuAcceleratorOptions& options);

}  // namespace tenet::accel
