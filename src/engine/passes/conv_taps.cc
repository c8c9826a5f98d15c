#include <algorithm>
#include <cstring>

#include "core/conv_taps.h"
#include "engine/passes/passes.h"

namespace tenet::passes {

Status crop_dead_conv_taps(ir::Graph& g, PassStats& stats) {
  for (ir::Node& conv : g.nodes) {
    if (conv.dead || conv.op_type != "Conv" || !conv.domain.empty() || conv.inputs.size() < 2 || conv.outputs.size() != 1) {
      continue;
    }
    const ir::Value& x = g.value(conv.inputs[0]);
    const ir::Value& y = g.value(conv.outputs[0]);
    const ir::Value& w = g.value(conv.inputs[1]);
    if (!x.shape_known || !y.shape_known || x.shape.size() != 4 || y.shape.size() != 4) continue;
    if (!w.is_constant() || w.dtype != DType::kFloat32 || w.shape.size() != 4) continue;
    auto auto_pad = conv.attr_string("auto_pad", std::string("NOTSET"));
    auto pads = conv.attr_ints("pads", std::vector<int64_t>{0, 0, 0, 0});
    auto strides = conv.attr_ints("strides", std::vector<int64_t>{1, 1});
    auto dilations = conv.attr_ints("dilations", std::vector<int64_t>{1, 1});
    if (!auto_pad.ok() || *auto_pad != "NOTSET" || !pads.ok() || pads->size() != 4 || !strides.ok() || strides->size() != 2 ||
        !dilations.ok() || dilations->size() != 2) {
      continue;
    }
    const Shape ws = w.shape;
    std::optional<LiveTaps> taps[2];
    bool ok = true;
    for (size_t d = 0; d < 2 && ok; ++d) {
      const int64_t in = x.shape[2 + d], out = y.shape[2 + d];
      ok = in > 0 && out > 0 && (*strides)[d] > 0 && (*dilations)[d] > 0;
      if (ok) taps[d] = live_taps(in, ws[2 + d], (*strides)[d], (*dilations)[d], (*pads)[d], out);
      ok = ok && taps[d].has_value();
    }
    if (!ok || (!taps[0]->cropped(ws[2]) && !taps[1]->cropped(ws[3]))) continue;

    const int64_t rows = ws[0] * ws[1], kh = ws[2], kw = ws[3];
    const int64_t ch = taps[0]->last - taps[0]->first + 1, cw = taps[1]->last - taps[1]->first + 1;
    TENET_ASSIGN_OR_RETURN(Tensor cropped, Tensor::zeros(DType::kFloat32, Shape{ws[0], ws[1], ch, cw}));
    // A deferred weight (ir/graph.h) is read back; the cropped one goes back deferred if large.
    TENET_ASSIGN_OR_RETURN(const Tensor whole, g.load_constant(conv.inputs[1]));
    const float* src = whole.as<float>();
    float* dst = cropped.as<float>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t ky = 0; ky < ch; ++ky) {
        std::memcpy(dst + (r * ch + ky) * cw, src + (r * kh + taps[0]->first + ky) * kw + taps[1]->first,
                    static_cast<size_t>(cw) * sizeof(float));
      }
    }
    // A new constant: the original may be shared with other nodes (compact() drops it otherwise).
    const std::string name = g.unique_name(w.name + "_cropped");
    TENET_ASSIGN_OR_RETURN(conv.inputs[1], g.add_constant_deferrable(name, std::move(cropped)));
    conv.attrs["pads"] = ir::Attribute{std::vector<int64_t>{taps[0]->pad_begin, taps[1]->pad_begin, taps[0]->pad_end, taps[1]->pad_end}};
    conv.attrs["kernel_shape"] = ir::Attribute{std::vector<int64_t>{ch, cw}};
    ++stats.conv_taps_cropped;
  }
  g.compact();
  return ok_status();
}

}  // namespace tenet::passes
