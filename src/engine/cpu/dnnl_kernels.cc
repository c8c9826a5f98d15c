// oneDNN-backed kernels: convolution, pooling, eltwise, binary, concat, batch/layer norm,
// matmul/Gemm, softmax, and layout reorders. Weights are reordered once, at build time, into the
// layout oneDNN prefers; activations keep the blocked layouts oneDNN picks across consecutive ops.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "core/allocator.h"
#include "engine/cpu/kernel.h"
#include "engine/ops/op.h"

namespace tenet::cpu {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using KernelPtr = std::unique_ptr<Kernel>;

// A memory object over a buffer from tenet::buffer_allocator() (so that, in a sim enclave, kernel-
// owned weights count against the EPC). The kernel keeps `storage` alive with the memory.
struct OwnedMemory {
  memory mem;
  std::shared_ptr<std::byte[]> storage;
};

// Where a primitive argument's memory comes from when the kernel is bound.
struct ArgBinding {
  enum class Source { kInput, kOutput, kOwned, kScratchpad };
  int arg;
  Source source;
  int index;  // node input/output index, or index into owned memories
  memory::desc md;
  size_t offset_bytes = 0;  // where the argument starts in the input's or output's buffer
};

class DnnlKernel : public Kernel {
 public:
  DnnlKernel(const char* name, dnnl::engine engine) : name_(name), engine_(std::move(engine)) {}
  const char* name() const override { return name_; }

  Status bind(std::span<void* const> inputs, std::span<void* const> outputs, void* scratchpad) override {
    args_.clear();
    for (const ArgBinding& b : bindings_) {
      void* ptr = nullptr;
      switch (b.source) {
        case ArgBinding::Source::kInput: ptr = inputs[static_cast<size_t>(b.index)]; break;
        case ArgBinding::Source::kOutput: ptr = outputs[static_cast<size_t>(b.index)]; break;
        case ArgBinding::Source::kScratchpad: ptr = scratchpad; break;
        case ArgBinding::Source::kOwned: args_.emplace(b.arg, owned_[static_cast<size_t>(b.index)]); continue;
      }
      if (ptr == nullptr) return internal_error("{}: argument {} bound to no memory", name_, b.arg);
      args_.emplace(b.arg, memory(b.md, engine_, static_cast<std::byte*>(ptr) + b.offset_bytes));
    }
    return ok_status();
  }

  Status execute(dnnl::stream& stream) override {
    try {
      primitive_.execute(stream, args_);
    } catch (const dnnl::error& e) {
      return internal_error("{}: oneDNN execution failed: {}", name_, e.what());
    }
    return ok_status();
  }

  void set_primitive(dnnl::primitive p, const memory::desc& scratchpad_md) {
    primitive_ = std::move(p);
    scratchpad_bytes = scratchpad_md.get_size();
    if (scratchpad_bytes > 0) bindings_.push_back({DNNL_ARG_SCRATCHPAD, ArgBinding::Source::kScratchpad, 0, scratchpad_md});
  }
  void bind_input(int arg, int index, const memory::desc& md, size_t offset_bytes = 0) {
    bindings_.push_back({arg, ArgBinding::Source::kInput, index, md, offset_bytes});
  }
  void bind_output(int arg, int index, const memory::desc& md) { bindings_.push_back({arg, ArgBinding::Source::kOutput, index, md}); }
  void bind_owned(int arg, OwnedMemory m) {
    owned_storage_.push_back(std::move(m.storage));
    owned_.push_back(std::move(m.mem));
    bindings_.push_back({arg, ArgBinding::Source::kOwned, static_cast<int>(owned_.size() - 1), owned_.back().get_desc()});
  }
  dnnl::engine& engine() { return engine_; }

  size_t owned_weight_count() const override { return owned_.size(); }
  std::span<std::byte> owned_weight(size_t i) override {
    return {static_cast<std::byte*>(owned_[i].get_data_handle()), owned_[i].get_desc().get_size()};
  }
  // owned_[i] and the copy in args_ share one oneDNN memory object, so the new handle is seen
  // by the next execute().
  void set_owned_weight_data(size_t i, void* data) override { owned_[i].set_data_handle(data); }
  void release_owned_weight(size_t i) override {
    owned_storage_[i].reset();
    owned_[i].set_data_handle(nullptr);
  }
  bool reads_input(size_t i) const override {
    return std::any_of(bindings_.begin(), bindings_.end(), [&](const ArgBinding& b) {
      return b.source == ArgBinding::Source::kInput && static_cast<size_t>(b.index) == i;
    });
  }

 private:
  const char* name_;
  dnnl::engine engine_;
  dnnl::primitive primitive_;
  std::vector<ArgBinding> bindings_;
  std::vector<memory> owned_;
  std::vector<std::shared_ptr<std::byte[]>> owned_storage_;
  std::unordered_map<int, memory> args_;
};

dnnl::primitive_attr base_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Maps the node's post-ops onto oneDNN's; false if one has no oneDNN equivalent.
bool to_dnnl_post_ops(const std::vector<ir::PostOp>& post_ops, dnnl::post_ops& po, bool allow_sum) {
  for (const ir::PostOp& p : post_ops) {
    switch (p.kind) {
      case ir::PostOp::Kind::kSum:
        if (!allow_sum) return false;
        po.append_sum(1.f);
        break;
      case ir::PostOp::Kind::kRelu: po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f); break;
      case ir::PostOp::Kind::kClip: {
        const float lo = std::max(p.alpha, -FLT_MAX), hi = std::min(p.beta, FLT_MAX);
        po.append_eltwise(1.f, algorithm::eltwise_clip_v2, lo, hi);
        break;
      }
      case ir::PostOp::Kind::kSigmoid: po.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f); break;
      case ir::PostOp::Kind::kHardSigmoid:
        po.append_eltwise(1.f, algorithm::eltwise_linear, p.alpha, p.beta);
        po.append_eltwise(1.f, algorithm::eltwise_clip_v2, 0.f, 1.f);
        break;
      case ir::PostOp::Kind::kHardSwish: po.append_eltwise(1.f, algorithm::eltwise_hardswish, 0.f, 0.f); break;
      case ir::PostOp::Kind::kGeluErf: po.append_eltwise(1.f, algorithm::eltwise_gelu_erf, 0.f, 0.f); break;
      case ir::PostOp::Kind::kSwish: po.append_eltwise(1.f, algorithm::eltwise_swish, 1.f, 0.f); break;
    }
  }
  return true;
}

bool has_sum(const ir::Node& n) {
  return std::any_of(n.post_ops.begin(), n.post_ops.end(), [](const ir::PostOp& p) { return p.kind == ir::PostOp::Kind::kSum; });
}

const ir::Value* input_value(const KernelInputs& in, size_t i) {
  ir::ValueId id = in.node.input(i);
  return id == ir::kNoValue ? nullptr : &in.graph.value(id);
}
const ir::Value& output_value(const KernelInputs& in, size_t i) { return in.graph.value(in.node.outputs[i]); }

bool all_float(const KernelInputs& in) {
  for (size_t i = 0; i < in.node.inputs.size(); ++i) {
    const ir::Value* v = input_value(in, i);
    if (v && v->dtype != DType::kFloat32) return false;
  }
  for (ir::ValueId o : in.node.outputs) {
    if (o != ir::kNoValue && in.graph.value(o).dtype != DType::kFloat32) return false;
  }
  return true;
}

Layout layout_of(const Shape& shape, const memory::desc& md) {
  Layout l;
  l.dtype = DType::kFloat32;
  l.shape = shape;
  l.md = md;
  return l;
}

// Copies a constant tensor (plain) into a new oneDNN memory of layout `dst_md`.
OwnedMemory allocate_memory(const memory::desc& md, dnnl::engine& eng) {
  OwnedMemory m;
  m.storage = allocate_buffer(md.get_size());
  if (!m.storage) throw std::bad_alloc();
  m.mem = memory(md, eng, m.storage.get());
  return m;
}

OwnedMemory reorder_constant(const Tensor& t, const memory::desc& src_md, const memory::desc& dst_md, dnnl::engine& eng) {
  memory src(src_md, eng, const_cast<void*>(t.data()));
  OwnedMemory out = allocate_memory(dst_md, eng);
  memory& dst = out.mem;
  dnnl::stream s(eng);
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  return out;
}

OwnedMemory owned_copy(const float* data, const memory::desc& md, dnnl::engine& eng) {
  OwnedMemory m = allocate_memory(md, eng);
  std::memcpy(m.mem.get_data_handle(), data, md.get_size());
  return m;
}

std::vector<int64_t> ints_or(const ir::Node& n, const char* key, std::vector<int64_t> fallback) {
  auto r = n.attr_ints(key, fallback);
  return r.ok() ? r.value() : fallback;
}

// Explicit begin/end pads for a 2-D window op, honouring auto_pad, from the inferred output size.
void window_pads(const ir::Node& n, const Shape& in, const Shape& out, const std::vector<int64_t>& kernel,
                 const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations, memory::dims& pad_l,
                 memory::dims& pad_r) {
  std::vector<int64_t> pads = ints_or(n, "pads", {0, 0, 0, 0});
  std::string auto_pad = n.attr_string("auto_pad", std::string("NOTSET")).value();
  pad_l.assign(2, 0);
  pad_r.assign(2, 0);
  for (int d = 0; d < 2; ++d) {
    const int64_t extent = (kernel[d] - 1) * dilations[d] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t total = std::max<int64_t>(0, (out[2 + d] - 1) * strides[d] + extent - in[2 + d]);
      const int64_t small = total / 2;
      pad_l[d] = auto_pad == "SAME_UPPER" ? small : total - small;
      pad_r[d] = total - pad_l[d];
    } else if (auto_pad == "VALID") {
      pad_l[d] = pad_r[d] = 0;
    } else {
      pad_l[d] = pads.size() == 4 ? pads[d] : 0;
      pad_r[d] = pads.size() == 4 ? pads[2 + d] : 0;
    }
    // ceil_mode (pooling) adds implicit padding at the end: make the right pad produce the
    // inferred output size exactly, as oneDNN requires.
    const int64_t needed = (out[2 + d] - 1) * strides[d] + extent - in[2 + d] - pad_l[d];
    if (needed > pad_r[d]) pad_r[d] = needed;
  }
}

// ---------------------------------------------------------------------------------------------
Result<std::unique_ptr<Kernel>> make_conv(KernelInputs& in) {
  const ir::Node& n = in.node;
  const ir::Value* x = input_value(in, 0);
  const ir::Value* w = input_value(in, 1);
  const ir::Value* b = input_value(in, 2);
  const ir::Value& y = output_value(in, 0);
  if (!all_float(in) || x->shape.size() != 4 || !w->is_constant() || (b && !b->is_constant())) return KernelPtr{};
  const bool sum = has_sum(n);
  if (sum && n.inputs.size() != 4) return KernelPtr{};
  const int64_t group = n.attr_int("group", 1).value();
  const int64_t oc = w->shape[0], icg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
  std::vector<int64_t> strides = ints_or(n, "strides", {1, 1});
  std::vector<int64_t> dilations = ints_or(n, "dilations", {1, 1});
  memory::dims pad_l, pad_r;
  window_pads(n, x->shape, y.shape, {kh, kw}, strides, dilations, pad_l, pad_r);

  memory::desc w_plain = group == 1
      ? memory::desc({oc, icg, kh, kw}, dt::f32, tag::oihw)
      : memory::desc({group, oc / group, icg, kh, kw}, dt::f32, tag::goihw);
  memory::desc w_any = group == 1 ? memory::desc({oc, icg, kh, kw}, dt::f32, tag::any)
                                  : memory::desc({group, oc / group, icg, kh, kw}, dt::f32, tag::any);
  memory::desc b_md({oc}, dt::f32, tag::x);
  memory::desc src_any(to_dims(x->shape), dt::f32, tag::any);
  memory::desc dst_any(to_dims(y.shape), dt::f32, tag::any);

  dnnl::primitive_attr attr = base_attr();
  dnnl::post_ops po;
  if (!to_dnnl_post_ops(n.post_ops, po, /*allow_sum=*/true)) return KernelPtr{};
  attr.set_post_ops(po);
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, algorithm::convolution_direct, src_any, w_any,
                                       b ? b_md : memory::desc(), dst_any, memory::dims{strides[0], strides[1]},
                                       memory::dims{dilations[0] - 1, dilations[1] - 1}, pad_l, pad_r);
  dnnl::convolution_forward::primitive_desc pd(desc, attr, in.engine);
  // oneDNN picks the activation layout per convolution; where its pick differs from the input's
  // named layout (grouped convs choose nChw8c among nhwc ones on AVX-512), a JIT implementation
  // on the input's layout saves the reorders into and out of the pick.
  const tag have = blocked_tag(in.input_layouts[0]);
  if (have != tag::undef && !(pd.src_desc() == in.input_layouts[0].md)) {
    try {
      memory::desc src_md(to_dims(x->shape), dt::f32, have), dst_md(to_dims(y.shape), dt::f32, have);
      dnnl::convolution_forward::desc same(dnnl::prop_kind::forward_inference, algorithm::convolution_direct, src_md, w_any,
                                           b ? b_md : memory::desc(), dst_md, memory::dims{strides[0], strides[1]},
                                           memory::dims{dilations[0] - 1, dilations[1] - 1}, pad_l, pad_r);
      dnnl::convolution_forward::primitive_desc candidate(same, attr, in.engine);
      const std::string_view impl = candidate.impl_info_str();
      if (impl.starts_with("jit") || impl.starts_with("brg")) pd = candidate;
    } catch (const dnnl::error&) {
      // No implementation on the input's layout: keep oneDNN's pick.
    }
  }

  auto k = std::make_unique<DnnlKernel>("dnnl_conv", in.engine);
  k->required_inputs.resize(n.inputs.size());
  k->required_inputs[0] = layout_of(x->shape, pd.src_desc());
  k->required_inputs[1] = plain_layout(DType::kFloat32, w->shape);  // constant, consumed at build time
  if (b) k->required_inputs[2] = plain_layout(DType::kFloat32, b->shape);
  k->outputs = {layout_of(y.shape, pd.dst_desc())};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC, 0, pd.src_desc());
  k->bind_owned(DNNL_ARG_WEIGHTS, reorder_constant(w->constant, w_plain, pd.weights_desc(), in.engine));
  if (b) k->bind_owned(DNNL_ARG_BIAS, owned_copy(b->constant.as<float>(), b_md, in.engine));
  if (sum) {
    k->required_inputs[3] = k->outputs[0];
    k->in_place[0] = 3;  // dst starts as the residual: oneDNN's sum post-op accumulates into dst
  }
  k->bind_output(DNNL_ARG_DST, 0, pd.dst_desc());
  k->set_primitive(dnnl::convolution_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

Result<std::unique_ptr<Kernel>> make_pool(KernelInputs& in) {
  const ir::Node& n = in.node;
  const ir::Value* x = input_value(in, 0);
  const ir::Value& y = output_value(in, 0);
  if (!all_float(in) || x->shape.size() != 4 || !n.post_ops.empty()) return KernelPtr{};
  if (n.outputs.size() > 1 && n.outputs[1] != ir::kNoValue) return KernelPtr{};
  std::vector<int64_t> kernel, strides, dilations;
  algorithm alg;
  memory::dims pad_l{0, 0}, pad_r{0, 0};
  if (n.op_type == "GlobalAveragePool") {
    kernel = {x->shape[2], x->shape[3]};
    strides = {1, 1};
    dilations = {1, 1};
    alg = algorithm::pooling_avg_exclude_padding;
  } else {
    kernel = ints_or(n, "kernel_shape", {});
    if (kernel.size() != 2) return KernelPtr{};
    strides = ints_or(n, "strides", {1, 1});
    dilations = ints_or(n, "dilations", {1, 1});
    window_pads(n, x->shape, y.shape, kernel, strides, dilations, pad_l, pad_r);
    if (n.op_type == "MaxPool") {
      if (n.attr_int("storage_order", 0).value() != 0) return KernelPtr{};
      alg = algorithm::pooling_max;
    } else {
      const bool include = n.attr_int("count_include_pad", 0).value() != 0;
      // With ceil_mode, ONNX counts explicit padding but not the implicit overhang; oneDNN would
      // count both, so that case goes to the reference.
      if (include && n.attr_int("ceil_mode", 0).value() != 0) return KernelPtr{};
      alg = include ? algorithm::pooling_avg_include_padding : algorithm::pooling_avg_exclude_padding;
    }
  }
  const memory::desc& src_md = in.input_layouts[0].md;
  memory::desc dst_any(to_dims(y.shape), dt::f32, tag::any);
  dnnl::pooling_v2_forward::desc desc(dnnl::prop_kind::forward_inference, alg, src_md, dst_any,
                                      memory::dims{strides[0], strides[1]}, memory::dims{kernel[0], kernel[1]},
                                      memory::dims{dilations[0] - 1, dilations[1] - 1}, pad_l, pad_r);
  dnnl::pooling_v2_forward::primitive_desc pd(desc, base_attr(), in.engine);
  auto k = std::make_unique<DnnlKernel>("dnnl_pool", in.engine);
  k->required_inputs = {in.input_layouts[0]};
  k->outputs = {layout_of(y.shape, pd.dst_desc())};
  k->in_place = {-1};
  if (n.outputs.size() > 1) {
    k->outputs.push_back(Layout{});
    k->in_place.push_back(-1);
  }
  k->bind_input(DNNL_ARG_SRC, 0, src_md);
  k->bind_output(DNNL_ARG_DST, 0, pd.dst_desc());
  k->set_primitive(dnnl::pooling_v2_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

// ReduceMean over the spatial dims of a 4-D tensor (torchvision's x.mean([2, 3])) is a global
// average pooling; the result is written plain, which is also the [N, C] layout without keepdims.
Result<std::unique_ptr<Kernel>> make_reduce_mean(KernelInputs& in) {
  const ir::Node& n = in.node;
  const ir::Value* x = input_value(in, 0);
  const ir::Value& y = output_value(in, 0);
  if (!all_float(in) || !n.post_ops.empty() || n.inputs.size() != 1 || x->shape.size() != 4) return KernelPtr{};
  std::vector<int64_t> axes = ints_or(n, "axes", {});
  for (int64_t& a : axes) a = a < 0 ? a + 4 : a;
  std::sort(axes.begin(), axes.end());
  if (axes != std::vector<int64_t>{2, 3}) return KernelPtr{};
  const memory::desc& src_md = in.input_layouts[0].md;
  const memory::desc dst_md = plain_md({x->shape[0], x->shape[1], 1, 1});
  dnnl::pooling_v2_forward::desc desc(dnnl::prop_kind::forward_inference, algorithm::pooling_avg_exclude_padding, src_md, dst_md,
                                      memory::dims{1, 1}, memory::dims{x->shape[2], x->shape[3]}, memory::dims{0, 0},
                                      memory::dims{0, 0}, memory::dims{0, 0});
  dnnl::pooling_v2_forward::primitive_desc pd(desc, base_attr(), in.engine);
  auto k = std::make_unique<DnnlKernel>("dnnl_pool", in.engine);
  k->required_inputs = {in.input_layouts[0]};
  k->outputs = {plain_layout(DType::kFloat32, y.shape)};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC, 0, src_md);
  k->bind_output(DNNL_ARG_DST, 0, dst_md);
  k->set_primitive(dnnl::pooling_v2_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

Result<std::unique_ptr<Kernel>> make_eltwise(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in) || !n.post_ops.empty()) return KernelPtr{};
  if (n.outputs.size() != 1) return KernelPtr{};
  algorithm alg;
  float alpha = 0.f, beta = 0.f;
  const std::string& op = n.op_type;
  if (op == "Relu") alg = algorithm::eltwise_relu;
  else if (op == "Sigmoid") alg = algorithm::eltwise_logistic;
  else if (op == "Tanh") alg = algorithm::eltwise_tanh;
  else if (op == "HardSwish") alg = algorithm::eltwise_hardswish;
  else if (op == "Sqrt") alg = algorithm::eltwise_sqrt;
  else if (op == "Exp") alg = algorithm::eltwise_exp;
  else if (op == "Abs") alg = algorithm::eltwise_abs;
  else if (op == "Neg") { alg = algorithm::eltwise_linear; alpha = -1.f; }
  else if (op == "Gelu") {
    const std::string approx = n.attr_string("approximate", std::string("none")).value();
    alg = approx == "tanh" ? algorithm::eltwise_gelu_tanh : algorithm::eltwise_gelu_erf;
  } else if (op == "Clip") {
    const ir::Value* lo = input_value(in, 1);
    const ir::Value* hi = input_value(in, 2);
    if ((lo && !lo->is_constant()) || (hi && !hi->is_constant())) return KernelPtr{};
    alg = algorithm::eltwise_clip_v2;
    alpha = lo ? lo->constant.as<float>()[0] : -FLT_MAX;
    beta = hi ? hi->constant.as<float>()[0] : FLT_MAX;
  } else {
    return KernelPtr{};
  }
  const ir::Value* x = input_value(in, 0);
  const memory::desc& md = in.input_layouts[0].md;
  dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_inference, alg, md, alpha, beta);
  dnnl::eltwise_forward::primitive_desc pd(desc, base_attr(), in.engine);
  auto k = std::make_unique<DnnlKernel>("dnnl_eltwise", in.engine);
  k->required_inputs.resize(n.inputs.size());
  k->required_inputs[0] = in.input_layouts[0];
  for (size_t i = 1; i < n.inputs.size(); ++i) k->required_inputs[i] = in.input_layouts[i];
  k->outputs = {layout_of(x->shape, pd.dst_desc())};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC, 0, md);
  k->bind_output(DNNL_ARG_DST, 0, pd.dst_desc());
  k->set_primitive(dnnl::eltwise_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

Shape pad_rank(const Shape& s, size_t rank) {
  Shape out(rank - s.size(), 1);
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

Result<std::unique_ptr<Kernel>> make_binary(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in) || n.inputs.size() != 2) return KernelPtr{};
  algorithm alg;
  bool commutative = true;
  const std::string& op = n.op_type;
  if (op == "Add") alg = algorithm::binary_add;
  else if (op == "Mul") alg = algorithm::binary_mul;
  else if (op == "Max") alg = algorithm::binary_max;
  else if (op == "Min") alg = algorithm::binary_min;
  else if (op == "Sub") { alg = algorithm::binary_sub; commutative = false; }
  else if (op == "Div") { alg = algorithm::binary_div; commutative = false; }
  else return KernelPtr{};
  const ir::Value& y = output_value(in, 0);
  const size_t rank = y.shape.size();
  if (rank == 0 || rank > 6) return KernelPtr{};
  int first = 0;
  Shape a = pad_rank(input_value(in, 0)->shape, rank), b = pad_rank(input_value(in, 1)->shape, rank);
  if (a != y.shape) {
    if (!commutative || b != y.shape) return KernelPtr{};
    first = 1;
    std::swap(a, b);
  }
  const int second = 1 - first;
  const Layout& l0 = in.input_layouts[static_cast<size_t>(first)];
  const Shape& b_orig = input_value(in, static_cast<size_t>(second))->shape;
  dnnl::primitive_attr attr = base_attr();
  dnnl::post_ops po;
  if (!to_dnnl_post_ops(n.post_ops, po, /*allow_sum=*/false)) return KernelPtr{};
  attr.set_post_ops(po);
  // The layouts of src0 (= dst) and src1 the primitive runs on. A broadcast operand (an SE
  // block's [N, C, 1, 1] scale) in src0's blocked format keeps oneDNN on its JIT path for the
  // blocks its ISA handles (nChw16c on AVX-512); for others (nChw8c there, from grouped convs) a
  // plain src1, or else src0 in nhwc, does, where the reference implementation is 100x slower.
  struct Variant {
    Layout req0, req1;
    memory::desc src0_md, src1_md;
  };
  auto variant = [&](const Layout& want0, bool blocked_src1) {
    Variant v;
    v.req0 = want0.shape.size() == rank ? want0 : plain_layout(DType::kFloat32, want0.shape);
    v.src0_md = v.req0.shape.size() == rank ? v.req0.md : plain_md(a);
    if (b == y.shape && b_orig.size() == rank) {
      v.req1 = layout_of(b_orig, v.src0_md);
      v.src1_md = v.src0_md;
    } else if (blocked_src1 && b_orig.size() == rank && blocked_tag(v.req0) != tag::undef) {
      v.req1 = tagged_layout(b_orig, blocked_tag(v.req0));
      v.src1_md = v.req1.md;
    } else {
      v.req1 = plain_layout(DType::kFloat32, b_orig);
      v.src1_md = plain_md(b);
    }
    return v;
  };
  std::vector<Variant> variants = {variant(l0, true), variant(l0, false)};
  const tag t0 = blocked_tag(l0);
  if (rank == 4 && t0 != tag::undef && t0 != tag::nhwc) variants.push_back(variant(tagged_layout(l0.shape, tag::nhwc), false));
  std::optional<dnnl::binary::primitive_desc> chosen;
  Variant v;
  for (const Variant& candidate : variants) {
    try {
      dnnl::binary::primitive_desc pd(dnnl::binary::desc(alg, candidate.src0_md, candidate.src1_md, candidate.src0_md), attr, in.engine);
      const bool reference = std::string_view(pd.impl_info_str()).starts_with("ref");
      if (!chosen || !reference) {
        chosen = pd;
        v = candidate;
      }
      if (!reference) break;
    } catch (const dnnl::error&) {
      // This variant has no implementation; try the next.
    }
  }
  if (!chosen) return KernelPtr{};
  const dnnl::binary::primitive_desc& pd = *chosen;
  const Layout& req0 = v.req0;
  const Layout& req1 = v.req1;
  const memory::desc& src0_md = v.src0_md;
  const memory::desc& src1_md = v.src1_md;
  auto k = std::make_unique<DnnlKernel>("dnnl_binary", in.engine);
  k->required_inputs.resize(2);
  k->required_inputs[static_cast<size_t>(first)] = req0;
  k->required_inputs[static_cast<size_t>(second)] = req1;
  k->outputs = {req0.shape.size() == rank ? layout_of(y.shape, src0_md) : plain_layout(DType::kFloat32, y.shape)};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC_0, first, src0_md);
  k->bind_input(DNNL_ARG_SRC_1, second, src1_md);
  k->bind_output(DNNL_ARG_DST, 0, src0_md);
  k->set_primitive(dnnl::binary(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

Result<std::unique_ptr<Kernel>> make_concat(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in) || !n.post_ops.empty()) return KernelPtr{};
  const ir::Value& y = output_value(in, 0);
  const auto rank = static_cast<int64_t>(y.shape.size());
  int64_t axis = n.attr_int("axis", 0).value();
  if (axis < 0) axis += rank;
  if (rank == 0 || axis < 0 || axis >= rank) return KernelPtr{};
  // Concatenate in the first named blocked format among the inputs (converting the others), so
  // that one plain input does not push the rest of the network out of blocked layouts.
  tag target = tag::undef;
  for (const Layout& l : in.input_layouts) {
    if (target == tag::undef) target = blocked_tag(l);
  }
  std::vector<memory::desc> srcs;
  auto k = std::make_unique<DnnlKernel>("dnnl_concat", in.engine);
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const Shape& s = in.input_layouts[i].shape;
    Layout l = target != tag::undef ? tagged_layout(s, target) : plain_layout(DType::kFloat32, s);
    if (numel(l.shape) == 0) return KernelPtr{};
    srcs.push_back(l.md);
    k->required_inputs.push_back(l);
  }
  memory::desc dst_md = target != tag::undef ? memory::desc(to_dims(y.shape), dt::f32, target) : plain_md(y.shape);
  dnnl::concat::primitive_desc pd(dst_md, static_cast<int>(axis), srcs, in.engine, base_attr());
  k->outputs = {layout_of(y.shape, pd.dst_desc())};
  k->in_place = {-1};
  for (size_t i = 0; i < srcs.size(); ++i) k->bind_input(DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), static_cast<int>(i), srcs[i]);
  k->bind_output(DNNL_ARG_DST, 0, pd.dst_desc());
  k->set_primitive(dnnl::concat(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

// Data movement as one oneDNN reorder from a strided view of the input to the plain output; the
// reorder's JIT kernels are much faster than the reference's element-by-element index walk.
KernelPtr strided_copy_kernel(KernelInputs& in, const std::vector<int64_t>& src_strides, int64_t src_offset) {
  const ir::Value& y = output_value(in, 0);
  if (y.shape.empty() || y.shape.size() > DNNL_MAX_NDIMS || numel(y.shape) == 0) return nullptr;
  // oneDNN strides are non-negative (a reversing Slice stays on the reference).
  if (std::any_of(src_strides.begin(), src_strides.end(), [](int64_t s) { return s < 0; })) return nullptr;
  memory::desc src_md(to_dims(y.shape), dt::f32, memory::dims(src_strides.begin(), src_strides.end()));
  memory::desc dst_md = plain_md(y.shape);
  dnnl::reorder::primitive_desc pd(in.engine, src_md, in.engine, dst_md, base_attr());
  auto k = std::make_unique<DnnlKernel>("dnnl_reorder", in.engine);
  k->required_inputs.resize(in.node.inputs.size());
  for (size_t i = 0; i < in.node.inputs.size(); ++i) {
    const ir::Value* v = input_value(in, i);
    if (v) k->required_inputs[i] = plain_layout(v->dtype, v->shape);
  }
  k->outputs = {plain_layout(DType::kFloat32, y.shape)};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC, 0, src_md, static_cast<size_t>(src_offset) * sizeof(float));
  k->bind_output(DNNL_ARG_DST, 0, dst_md);
  k->set_primitive(dnnl::reorder(pd), pd.scratchpad_desc());
  return k;
}

Result<std::unique_ptr<Kernel>> make_transpose(KernelInputs& in) {
  const ir::Node& n = in.node;
  const ir::Value* x = input_value(in, 0);
  if (!all_float(in) || !n.post_ops.empty() || x->shape.empty()) return KernelPtr{};
  const size_t rank = x->shape.size();
  std::vector<int64_t> reversed(rank);
  for (size_t i = 0; i < rank; ++i) reversed[i] = static_cast<int64_t>(rank - 1 - i);
  const std::vector<int64_t> perm = ints_or(n, "perm", reversed);
  if (perm.size() != rank) return KernelPtr{};
  const std::vector<int64_t> in_strides = row_major_strides(x->shape);
  std::vector<int64_t> strides(rank);
  for (size_t i = 0; i < rank; ++i) strides[i] = in_strides[static_cast<size_t>(perm[i])];
  return strided_copy_kernel(in, strides, 0);
}

Result<std::unique_ptr<Kernel>> make_slice(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (n.inputs.empty() || !n.post_ops.empty() || output_value(in, 0).dtype != DType::kFloat32) return KernelPtr{};
  std::vector<ConstTensorView> params(n.inputs.size());
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const ir::Value* v = input_value(in, i);
    if (v == nullptr) continue;
    if (i > 0 && !v->is_constant()) return KernelPtr{};
    params[i] = i == 0 ? ConstTensorView{v->dtype, v->shape, nullptr} : v->constant.view();
  }
  if (params[0].dtype != DType::kFloat32) return KernelPtr{};
  TENET_ASSIGN_OR_RETURN(const ops::StridedWindow w, ops::slice_window(n, params));
  return strided_copy_kernel(in, w.strides, w.offset);
}

Result<std::unique_ptr<Kernel>> make_batch_norm(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in) || n.outputs.size() != 1) return KernelPtr{};
  const ir::Value* x = input_value(in, 0);
  if (x->shape.size() < 2 || x->shape.size() > 5) return KernelPtr{};
  for (size_t i = 1; i < 5; ++i) {
    const ir::Value* p = input_value(in, i);
    if (!p || !p->is_constant()) return KernelPtr{};
  }
  auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
               dnnl::normalization_flags::use_shift;
  for (const ir::PostOp& p : n.post_ops) {
    if (p.kind != ir::PostOp::Kind::kRelu || n.post_ops.size() != 1) return KernelPtr{};
    flags = flags | dnnl::normalization_flags::fuse_norm_relu;
  }
  const float eps = n.attr_float("epsilon", 1e-5f).value();
  const memory::desc& md = in.input_layouts[0].md;
  dnnl::batch_normalization_forward::desc desc(dnnl::prop_kind::forward_inference, md, eps, flags);
  dnnl::batch_normalization_forward::primitive_desc pd(desc, base_attr(), in.engine);
  const int64_t c = x->shape[1];
  memory::desc c_md({c}, dt::f32, tag::x);
  auto k = std::make_unique<DnnlKernel>("dnnl_batch_norm", in.engine);
  k->required_inputs.resize(n.inputs.size());
  k->required_inputs[0] = in.input_layouts[0];
  for (size_t i = 1; i < n.inputs.size(); ++i) k->required_inputs[i] = in.input_layouts[i];
  k->outputs = {layout_of(x->shape, pd.dst_desc())};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC, 0, md);
  k->bind_owned(DNNL_ARG_SCALE, owned_copy(input_value(in, 1)->constant.as<float>(), c_md, in.engine));
  k->bind_owned(DNNL_ARG_SHIFT, owned_copy(input_value(in, 2)->constant.as<float>(), c_md, in.engine));
  k->bind_owned(DNNL_ARG_MEAN, owned_copy(input_value(in, 3)->constant.as<float>(), c_md, in.engine));
  k->bind_owned(DNNL_ARG_VARIANCE, owned_copy(input_value(in, 4)->constant.as<float>(), c_md, in.engine));
  k->bind_output(DNNL_ARG_DST, 0, pd.dst_desc());
  k->set_primitive(dnnl::batch_normalization_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

// MatMul (numpy semantics, rank >= 2), FusedMatMul and Gemm, with a constant B packed at build
// time. A sum post-op (FusedMatMul + residual Add) accumulates into dst, which starts as the
// residual (the node's last input, shared in place).
Result<std::unique_ptr<Kernel>> make_matmul(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in)) return KernelPtr{};
  const bool gemm = n.op_type == "Gemm";
  const bool fused = n.op_type == "FusedMatMul";
  const bool sum = has_sum(n);
  const ir::Value* a = input_value(in, 0);
  const ir::Value* b = input_value(in, 1);
  const ir::Value* c = gemm || fused ? input_value(in, 2) : nullptr;
  const ir::Value& y = output_value(in, 0);
  if (a->shape.size() < 2 || b->shape.size() < 2) return KernelPtr{};
  if (sum && n.inputs.size() != 4) return KernelPtr{};
  const size_t rank = y.shape.size();
  if (rank > 6) return KernelPtr{};
  float alpha = 1.f, beta = 1.f;
  bool trans_a = false, trans_b = false;
  if (gemm) {
    alpha = n.attr_float("alpha", 1.f).value();
    beta = n.attr_float("beta", 1.f).value();
    trans_a = n.attr_int("transA", 0).value() != 0;
    trans_b = n.attr_int("transB", 0).value() != 0;
  } else if (fused) {
    alpha = n.attr_float("alpha", 1.f).value();
  }
  if (c && !c->is_constant()) return KernelPtr{};
  Shape a_shape = pad_rank(a->shape, rank), b_shape = pad_rank(b->shape, rank);
  const int64_t m = y.shape[rank - 2], nn = y.shape[rank - 1];
  const int64_t k_dim = trans_a ? a_shape[rank - 2] : a_shape[rank - 1];
  // Strided descriptors express transposes without copies.
  auto matrix_md = [&](const Shape& s, bool transposed) {
    Shape logical = s;
    std::vector<int64_t> strides = row_major_strides(s);
    if (transposed) {
      std::swap(logical[rank - 2], logical[rank - 1]);
      std::swap(strides[rank - 2], strides[rank - 1]);
    }
    return memory::desc(to_dims(logical), dt::f32, memory::dims(strides.begin(), strides.end()));
  };
  memory::desc a_md = matrix_md(a_shape, trans_a);
  memory::desc b_md = matrix_md(b_shape, trans_b);
  Shape b_logical = b_shape;
  if (trans_b) std::swap(b_logical[rank - 2], b_logical[rank - 1]);
  memory::desc dst_md = plain_md(y.shape);
  memory::desc bias_md;
  std::vector<float> bias;
  if (c) {
    Shape cs = c->shape;
    const int64_t count = numel(cs);
    if (count == nn && cs.back() == nn) {
      bias.assign(c->constant.as<float>(), c->constant.as<float>() + nn);
    } else if (count == 1) {
      bias.assign(static_cast<size_t>(nn), c->constant.as<float>()[0]);
    } else {
      return KernelPtr{};
    }
    for (float& v : bias) v *= beta;
    Shape bs(rank, 1);
    bs[rank - 1] = nn;
    bias_md = plain_md(bs);
  }
  (void)m;
  (void)k_dim;
  const bool const_b = b->is_constant();
  // x[..., M, K] . W[K, N] with a constant 2-D W is one [batch*M, K] . [K, N] product: oneDNN's
  // 2-D GEMM path is faster than its batched one with a broadcast weight.
  if (const_b && b->shape.size() == 2 && !trans_a && !trans_b && rank > 2 && input_value(in, 0)->shape.size() == rank) {
    const int64_t rows = numel(a->shape) / a->shape.back();
    a_md = plain_md({rows, a->shape.back()});
    b_md = plain_md(b->shape);
    b_logical = b->shape;
    dst_md = plain_md({rows, nn});
    if (!bias.empty()) bias_md = plain_md({1, nn});
  }
  // alpha is folded into constant weights. Otherwise it is oneDNN's output scale, which also
  // scales the bias (dst = alpha * (A.B + bias)): the bias is divided by alpha to compensate.
  Tensor b_data = b->constant;
  dnnl::primitive_attr attr = base_attr();
  if (const_b && alpha != 1.f) {
    b_data = b->constant.clone();
    for (int64_t i = 0; i < b_data.numel(); ++i) b_data.as<float>()[i] *= alpha;
  } else if (alpha != 1.f) {
    if (alpha == 0.f || !std::isfinite(alpha)) return KernelPtr{};
    for (float& v : bias) v /= alpha;
    attr.set_output_scales(0, {alpha});
  }
  memory::desc b_use = const_b ? memory::desc(to_dims(b_logical), dt::f32, tag::any) : b_md;
  dnnl::post_ops po;
  if (!to_dnnl_post_ops(n.post_ops, po, /*allow_sum=*/true)) return KernelPtr{};
  attr.set_post_ops(po);
  dnnl::matmul::desc desc = bias.empty() ? dnnl::matmul::desc(a_md, b_use, dst_md) : dnnl::matmul::desc(a_md, b_use, bias_md, dst_md);
  dnnl::matmul::primitive_desc pd(desc, attr, in.engine);
  auto k = std::make_unique<DnnlKernel>(gemm ? "dnnl_gemm" : "dnnl_matmul", in.engine);
  k->required_inputs.resize(n.inputs.size());
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const ir::Value* v = input_value(in, i);
    if (v) k->required_inputs[i] = plain_layout(v->dtype, v->shape);
  }
  k->outputs = {plain_layout(DType::kFloat32, y.shape)};
  k->in_place = {sum ? 3 : -1};
  k->bind_input(DNNL_ARG_SRC, 0, a_md);
  if (const_b) {
    k->bind_owned(DNNL_ARG_WEIGHTS, reorder_constant(b_data, b_md, pd.weights_desc(), in.engine));
  } else {
    k->bind_input(DNNL_ARG_WEIGHTS, 1, b_md);
  }
  if (!bias.empty()) k->bind_owned(DNNL_ARG_BIAS, owned_copy(bias.data(), bias_md, in.engine));
  k->bind_output(DNNL_ARG_DST, 0, dst_md);
  k->set_primitive(dnnl::matmul(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

Result<std::unique_ptr<Kernel>> make_softmax(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in) || !n.post_ops.empty()) return KernelPtr{};
  const ir::Value* x = input_value(in, 0);
  const auto rank = static_cast<int64_t>(x->shape.size());
  if (rank == 0) return KernelPtr{};
  int64_t axis = n.attr_int("axis", in.graph.opset >= 13 ? -1 : 1).value();
  if (axis < 0) axis += rank;
  // Before opset 13, Softmax flattens at `axis`; that equals the per-axis form only for the last axis.
  if (axis != rank - 1 && in.graph.opset < 13) return KernelPtr{};
  if (axis < 0 || axis >= rank) return KernelPtr{};
  memory::desc md = plain_md(x->shape);
  dnnl::softmax_v2_forward::desc desc(dnnl::prop_kind::forward_inference, algorithm::softmax_accurate, md, md,
                                      static_cast<int>(axis));
  dnnl::softmax_v2_forward::primitive_desc pd(desc, base_attr(), in.engine);
  auto k = std::make_unique<DnnlKernel>("dnnl_softmax", in.engine);
  k->required_inputs = {plain_layout(DType::kFloat32, x->shape)};
  k->outputs = {plain_layout(DType::kFloat32, x->shape)};
  k->in_place = {-1};
  k->bind_input(DNNL_ARG_SRC, 0, md);
  k->bind_output(DNNL_ARG_DST, 0, md);
  k->set_primitive(dnnl::softmax_v2_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

Result<std::unique_ptr<Kernel>> make_layer_norm(KernelInputs& in) {
  const ir::Node& n = in.node;
  if (!all_float(in) || !n.post_ops.empty()) return KernelPtr{};
  for (size_t i = 1; i < n.outputs.size(); ++i) {
    if (n.outputs[i] != ir::kNoValue) return KernelPtr{};
  }
  const ir::Value* x = input_value(in, 0);
  const ir::Value* scale = input_value(in, 1);
  const ir::Value* bias = input_value(in, 2);
  const auto rank = static_cast<int64_t>(x->shape.size());
  int64_t axis = n.attr_int("axis", -1).value();
  if (axis < 0) axis += rank;
  if (rank < 2 || axis != rank - 1 || !scale || !scale->is_constant() || (bias && !bias->is_constant())) return KernelPtr{};
  const int64_t c = x->shape.back();
  if (numel(scale->shape) != c || (bias && numel(bias->shape) != c)) return KernelPtr{};
  const float eps = n.attr_float("epsilon", 1e-5f).value();
  memory::desc md = plain_md(x->shape);
  auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  dnnl::layer_normalization_forward::desc desc(dnnl::prop_kind::forward_inference, md, eps, flags);
  dnnl::layer_normalization_forward::primitive_desc pd(desc, base_attr(), in.engine);
  memory::desc c_md({c}, dt::f32, tag::x);
  std::vector<float> shift(static_cast<size_t>(c), 0.f);
  if (bias) shift.assign(bias->constant.as<float>(), bias->constant.as<float>() + c);
  auto k = std::make_unique<DnnlKernel>("dnnl_layer_norm", in.engine);
  k->required_inputs.resize(n.inputs.size());
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const ir::Value* v = input_value(in, i);
    if (v) k->required_inputs[i] = plain_layout(v->dtype, v->shape);
  }
  k->outputs.resize(n.outputs.size());
  k->outputs[0] = plain_layout(DType::kFloat32, x->shape);
  k->in_place.assign(n.outputs.size(), -1);
  k->bind_input(DNNL_ARG_SRC, 0, md);
  k->bind_owned(DNNL_ARG_SCALE, owned_copy(scale->constant.as<float>(), c_md, in.engine));
  k->bind_owned(DNNL_ARG_SHIFT, owned_copy(shift.data(), c_md, in.engine));
  k->bind_output(DNNL_ARG_DST, 0, md);
  k->set_primitive(dnnl::layer_normalization_forward(pd), pd.scratchpad_desc());
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

Result<std::unique_ptr<Kernel>> make_dnnl_kernel(KernelInputs& in) {
  using Factory = Result<std::unique_ptr<Kernel>> (*)(KernelInputs&);
  static const std::unordered_map<std::string, Factory> kFactories = {
      {"Conv", make_conv},           {"MaxPool", make_pool},     {"AveragePool", make_pool},
      {"GlobalAveragePool", make_pool}, {"Relu", make_eltwise},  {"Sigmoid", make_eltwise},
      {"Tanh", make_eltwise},        {"HardSwish", make_eltwise}, {"Sqrt", make_eltwise},
      {"Exp", make_eltwise},         {"Abs", make_eltwise},      {"Neg", make_eltwise},
      {"Gelu", make_eltwise},        {"Clip", make_eltwise},     {"Add", make_binary},
      {"Sub", make_binary},          {"Mul", make_binary},       {"Div", make_binary},
      {"Max", make_binary},          {"Min", make_binary},       {"Concat", make_concat},
      {"BatchNormalization", make_batch_norm}, {"MatMul", make_matmul}, {"Gemm", make_matmul},
      {"FusedMatMul", make_matmul},
      {"Softmax", make_softmax},     {"LayerNormalization", make_layer_norm},
      {"Transpose", make_transpose}, {"Slice", make_slice},   {"ReduceMean", make_reduce_mean},
  };
  auto it = kFactories.find(in.node.op_type);
  if (it == kFactories.end()) return KernelPtr{};
  try {
    return it->second(in);
  } catch (const dnnl::error& e) {
    // oneDNN has no implementation for this configuration: let the next kernel in the list try.
    return KernelPtr{};
  } catch (const std::bad_alloc&) {
    // No memory for reordered weights (e.g. an exhausted enclave heap): the reference kernel
    // needs none; if memory is short for it too, compilation reports it.
    return KernelPtr{};
  }
}

Result<std::unique_ptr<Kernel>> make_reorder_kernel(const Layout& src, const Layout& dst, dnnl::engine& engine) {
  if (src.dtype != DType::kFloat32 || dst.dtype != DType::kFloat32 || src.shape != dst.shape) {
    return internal_error("reorder between {} {} and {} {} is not supported", dtype_name(src.dtype), shape_to_string(src.shape),
                          dtype_name(dst.dtype), shape_to_string(dst.shape));
  }
  try {
    dnnl::reorder::primitive_desc pd(engine, src.md, engine, dst.md, base_attr());
    auto k = std::make_unique<DnnlKernel>("dnnl_reorder", engine);
    k->required_inputs = {src};
    k->outputs = {dst};
    k->in_place = {-1};
    k->bind_input(DNNL_ARG_SRC, 0, src.md);
    k->bind_output(DNNL_ARG_DST, 0, dst.md);
    k->set_primitive(dnnl::reorder(pd), pd.scratchpad_desc());
    return std::unique_ptr<Kernel>(std::move(k));
  } catch (const dnnl::error& e) {
    return internal_error("oneDNN cannot reorder {} to {}: {}", src.describe(), dst.describe(), e.what());
  }
}

}  // namespace tenet::cpu
