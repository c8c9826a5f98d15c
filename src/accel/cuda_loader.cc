// make_cuda_accelerator where tenet is built without the CUDA toolkit (or in sanitizer/fuzz
// builds): the backend exists in the interface, but not in this binary.
#include "accel/accelerator.h"

#ifndef TENET_HAVE_CUDA
namespace tenet::accel {
Result<std::unique_ptr<Accelerator>> make_cuda_accelerator(int device) {
  return unimplemented("cuda accelerator: this tenet was built without CUDA (no toolkit found, or TENET_CUDA=OFF)");
}
}  // namespace tenet::accel
#endif
