#include <algorithm>

#include "engine/passes/passes.h"

namespace tenet::passes {
namespace {

// The pads of a foldable Pad node as [begin_h, begin_w, end_h, end_w], or false.
bool spatial_zero_pads(const ir::Graph& g, const ir::Node& pad, std::vector<int64_t>& out) {
  if (pad.op_type != "Pad" || pad.inputs.size() < 2 || pad.outputs.size() != 1) return false;
  auto mode = pad.attr_string("mode", std::string("constant"));
  if (!mode.ok() || mode.value() != "constant") return false;
  const ir::Value& x = g.value(pad.inputs[0]);
  if (x.dtype != DType::kFloat32 || x.shape.size() != 4) return false;
  const ir::Value& pads = g.value(pad.inputs[1]);
  if (!pads.is_constant() || pads.constant.numel() != 8) return false;
  if (pad.inputs.size() > 2 && pad.inputs[2] != ir::kNoValue) {
    const ir::Value& value = g.value(pad.inputs[2]);
    if (!value.is_constant() || value.constant.numel() != 1 || value.dtype != DType::kFloat32 ||
        value.constant.as<float>()[0] != 0.f) {
      return false;
    }
  }
  if (pad.inputs.size() > 3 && pad.inputs[3] != ir::kNoValue) return false;  // axes input (opset 18)
  std::vector<int64_t> p = pads.constant.to_int64_vector();  // [b0, b1, b2, b3, e0, e1, e2, e3]
  if (p[0] || p[1] || p[4] || p[5]) return false;
  if (std::any_of(p.begin(), p.end(), [](int64_t v) { return v < 0; })) return false;
  out = {p[2], p[3], p[6], p[7]};
  return true;
}

}  // namespace

Status fold_pads(ir::Graph& g, PassStats& stats) {
  const auto consumers = g.consumers();
  std::vector<bool> is_output(g.values.size(), false);
  for (ir::ValueId o : g.outputs) is_output[static_cast<size_t>(o)] = true;
  for (ir::Node& pad : g.nodes) {
    std::vector<int64_t> p;
    if (pad.dead || !spatial_zero_pads(g, pad, p)) continue;
    const ir::ValueId src = pad.inputs[0], dst = pad.outputs[0];
    if (is_output[static_cast<size_t>(dst)]) continue;
    const bool all_zero = std::all_of(p.begin(), p.end(), [](int64_t v) { return v == 0; });
    const auto& users = consumers[static_cast<size_t>(dst)];
    if (!all_zero) {
      if (users.size() != 1) continue;
      ir::Node& c = g.nodes[static_cast<size_t>(users[0])];
      if (c.inputs.empty() || c.inputs[0] != dst) continue;
      if (std::count(c.inputs.begin(), c.inputs.end(), dst) != 1) continue;
      const bool conv = c.op_type == "Conv";
      const bool avg = c.op_type == "AveragePool";
      if (!conv && !avg) continue;
      auto include_pad = c.attr_int("count_include_pad", 0);
      if (!include_pad.ok()) continue;
      if (c.attr_string("auto_pad", std::string("NOTSET")).ok() &&
          c.attr_string("auto_pad", std::string("NOTSET")).value() != "NOTSET") {
        continue;
      }
      auto existing = c.attr_ints("pads", std::vector<int64_t>{0, 0, 0, 0});
      if (!existing.ok() || existing.value().size() != 4) continue;
      std::vector<int64_t> merged = existing.value();
      const bool own_pads_zero = std::all_of(merged.begin(), merged.end(), [](int64_t v) { return v == 0; });
      // The Pad's zeros are real elements for the pool: folding them is exact when the pool counts
      // padding, or has none of its own and is switched to counting it.
      if (avg && include_pad.value() == 0 && !own_pads_zero) continue;
      if (avg) c.attrs["count_include_pad"] = ir::Attribute{int64_t{1}};
      for (size_t i = 0; i < 4; ++i) merged[i] += p[i];
      c.attrs["pads"] = ir::Attribute{merged};
    }
    g.replace_all_uses(dst, src);
    pad.dead = true;
    ++stats.pads_folded;
  }
  g.compact();
  return ok_status();
}

}  // namespace tenet::passes
