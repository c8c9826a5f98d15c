// make_cuda_accelerator: loads the CUDA backend module (cuda_accelerator.cc, built as
// libtenet_accel_cuda.so where the toolkit is found) on first use, from $TENET_ACCEL_CUDA_MODULE
// or the directory of the running executable. The module resolves tenet's own symbols against the
// executable that loads it (linked with exported symbols). Without the module: kUnimplemented.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "accel/accelerator.h"

namespace tenet::accel {
namespace {

using CreateFn = void (*)(int, Result<std::unique_ptr<Accelerator>>*);

Result<CreateFn> load_module() {
  static std::mutex mu;
  static CreateFn create = nullptr;
  static std::string error;
  std::lock_guard lock(mu);
  if (create) return create;
  std::string path;
  if (const char* env = std::getenv("TENET_ACCEL_CUDA_MODULE"); env && *env) {
    path = env;
  } else {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return unimplemented("cuda accelerator: cannot locate the running executable: {}", ec.message());
    path = (exe.parent_path() / "libtenet_accel_cuda.so").string();
    if (!std::filesystem::exists(path, ec)) {
      return unimplemented("cuda accelerator: this tenet was built without CUDA (no toolkit found, or TENET_CUDA=OFF): no {}",
                           path);
    }
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return failed_precondition("cuda accelerator: cannot load {}: {}", path, dlerror());
  auto* fn = reinterpret_cast<CreateFn>(dlsym(handle, "tenet_accel_cuda_create"));
  if (!fn) return failed_precondition("cuda accelerator: {} has no entry point: {}", path, dlerror());
  create = fn;  // the module stays loaded for the process's life
  return create;
}

}  // namespace

Result<std::unique_ptr<Accelerator>> make_cuda_accelerator(int device) {
  TENET_ASSIGN_OR_RETURN(CreateFn create, load_module());
  Result<std::unique_ptr<Accelerator>> out = failed_precondition("cuda accelerator: the module returned nothing");
  create(device, &out);
  return out;
}

}  // namespace tenet::accel
