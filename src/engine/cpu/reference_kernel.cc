// The fallback for nodes no faster kernel claims: the operator table's plain reference
// implementation over plain buffers in the arena.
#include "engine/cpu/kernel.h"
#include "engine/ops/op.h"

namespace tenet::cpu {
namespace {

class ReferenceKernel : public Kernel {
 public:
  ReferenceKernel(const ops::OpSchema* schema, ir::Node node) : schema_(schema), node_(std::move(node)) {}
  const char* name() const override { return "reference"; }

  Status bind(std::span<void* const> inputs, std::span<void* const> outputs, void* /*scratchpad*/) override {
    in_views_.assign(required_inputs.size(), ConstTensorView{});
    for (size_t i = 0; i < required_inputs.size(); ++i) {
      if (required_inputs[i].dtype == DType::kUndefined) continue;
      in_views_[i] = ConstTensorView{required_inputs[i].dtype, required_inputs[i].shape, inputs[i]};
    }
    out_views_.assign(outputs.size(), TensorView{});
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (this->outputs[i].dtype == DType::kUndefined) continue;
      out_views_[i] = TensorView{this->outputs[i].dtype, this->outputs[i].shape, outputs[i]};
    }
    return ok_status();
  }

  Status execute(dnnl::stream& /*stream*/) override { return schema_->reference(node_, in_views_, out_views_); }

 private:
  const ops::OpSchema* schema_;
  ir::Node node_;
  std::vector<ConstTensorView> in_views_;
  std::vector<TensorView> out_views_;
};

}  // namespace

Result<std::unique_ptr<Kernel>> make_reference_kernel(KernelInputs& in) {
  const ops::OpSchema* schema = ops::find_op(in.node.op_type, in.graph.opset);
  if (schema == nullptr) {
    return unimplemented("{}: operator '{}' at opset {} is not supported", in.node.describe(), in.node.op_type, in.graph.opset);
  }
  auto k = std::make_unique<ReferenceKernel>(schema, in.node);
  k->required_inputs.resize(in.node.inputs.size());
  for (size_t i = 0; i < in.node.inputs.size(); ++i) {
    if (in.node.inputs[i] == ir::kNoValue) continue;
    const ir::Value& v = in.graph.value(in.node.inputs[i]);
    k->required_inputs[i] = plain_layout(v.dtype, v.shape);
  }
  for (ir::ValueId o : in.node.outputs) {
    if (o == ir::kNoValue) {
      k->outputs.push_back(Layout{});
    } else {
      const ir::Value& v = in.graph.value(o);
      k->outputs.push_back(plain_layout(v.dtype, v.shape));
    }
    k->in_place.push_back(-1);
  }
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace tenet::cpu
