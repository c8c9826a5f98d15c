// libFuzzer target: the ONNX importer and shape inference/constant folding over hostile models.
// Anything may be rejected; nothing may crash, hang, or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>

#include "engine/onnx/importer.h"
#include "engine/passes/shape_inference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto g = tenet::onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  if (!g.ok()) return 0;
  // Bind dynamic dims to small sizes and run the compile-time passes (attribute checks, shape
  // inference, folding through the reference kernels).
  std::map<std::string, tenet::Shape> shapes;
  for (tenet::ir::ValueId id : g->inputs) {
    tenet::Shape s = g->value(id).shape;
    for (int64_t& d : s) d = d < 0 ? 2 : d;
    int64_t n = 0;
    if (!tenet::element_count(s).ok()) return 0;
    n = tenet::element_count(s).value();
    if (n > (int64_t{1} << 22)) return 0;
    shapes[g->value(id).name] = s;
  }
  tenet::passes::PassStats stats;
  (void)tenet::passes::prepare_graph(*g, shapes, tenet::passes::OptimizeOptions{}, stats);
  return 0;
}
