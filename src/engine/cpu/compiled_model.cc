#include "engine/cpu/compiled_model.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/safe_math.h"
#include "engine/cpu/kernel.h"

namespace tenet::cpu {

// A slot is one tensor in one layout: a graph value, or a reordered copy of one. Slots that are
// not constants get a buffer in the arena; an in-place output shares its input's buffer.
struct Slot {
  Layout layout;
  std::string name;
  const void* constant = nullptr;  // constants live outside the arena
  int root = -1;                   // slot whose buffer this one shares (in place), or -1
  int first_step = 0;
  int last_step = 0;
  int buffer = -1;
};

struct Step {
  std::unique_ptr<Kernel> kernel;
  std::vector<int> in_slots;   // -1 for absent inputs
  std::vector<int> out_slots;  // -1 for absent outputs
};

struct CompiledModel::Impl {
  ir::Graph graph;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<Slot> slots;
  std::vector<Step> steps;
  std::vector<int> input_slots;   // per graph input
  std::vector<int> output_slots;  // per graph output
  std::byte* arena = nullptr;
  std::byte* scratchpad = nullptr;

  ~Impl() {
    std::free(arena);
    std::free(scratchpad);
  }
};

CompiledModel::CompiledModel() : impl_(std::make_unique<Impl>()) {}
CompiledModel::~CompiledModel() = default;
const ir::Graph& CompiledModel::graph() const { return impl_->graph; }

namespace {

std::string post_ops_string(const std::vector<ir::PostOp>& post_ops) {
  std::string s;
  for (const auto& p : post_ops) {
    if (!s.empty()) s += "+";
    s += ir::post_op_name(p.kind);
  }
  return s;
}

}  // namespace

int64_t node_flops(const ir::Graph& g, const ir::Node& n) {
  auto shape = [&](size_t i) -> const Shape& { return g.value(n.inputs[i]).shape; };
  if (n.outputs.empty() || n.outputs[0] == ir::kNoValue) return 0;
  const Shape& out = g.value(n.outputs[0]).shape;
  const int64_t out_count = numel(out);
  if (n.op_type == "Conv" && n.inputs.size() >= 2) {
    const Shape& w = shape(1);
    int64_t per_out = 1;
    for (size_t i = 1; i < w.size(); ++i) per_out *= w[i];
    return 2 * out_count * per_out;
  }
  if ((n.op_type == "MatMul" || n.op_type == "Gemm") && n.inputs.size() >= 2 && !shape(0).empty()) {
    int64_t k = shape(0).back();
    if (n.op_type == "Gemm" && n.attr_int("transA", 0).value() != 0) k = shape(0).front();
    return 2 * out_count * k;
  }
  static const char* kMovement[] = {"Reshape", "Flatten", "Transpose", "Concat", "Gather", "Slice", "Split", "Squeeze",
                                    "Unsqueeze", "Identity", "Shape", "Constant", "Pad", "Expand", "Cast", "Dropout"};
  for (const char* m : kMovement) {
    if (n.op_type == m) return 0;
  }
  return out_count;
}

Result<std::unique_ptr<CompiledModel>> CompiledModel::compile(ir::Graph graph, const CompileOptions& options) {
  std::unique_ptr<CompiledModel> model(new CompiledModel());
  Impl& m = *model->impl_;
  m.graph = std::move(graph);
  const ir::Graph& g = m.graph;
  model->threads_ = options.threads > 0 ? options.threads : omp_get_num_procs();
  omp_set_num_threads(model->threads_);

  std::vector<int> value_slot(g.values.size(), -1);
  std::map<std::pair<int, std::string>, int> converted;  // (slot, layout key) -> reordered slot
  std::vector<int> last_consumer(g.values.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (ir::ValueId in : g.nodes[i].inputs) {
      if (in != ir::kNoValue) last_consumer[static_cast<size_t>(in)] = static_cast<int>(i);
    }
  }
  std::vector<bool> is_graph_output(g.values.size(), false);
  for (ir::ValueId o : g.outputs) is_graph_output[static_cast<size_t>(o)] = true;

  auto new_slot = [&](Layout layout, std::string name) {
    Slot s;
    s.layout = std::move(layout);
    s.name = std::move(name);
    m.slots.push_back(std::move(s));
    return static_cast<int>(m.slots.size() - 1);
  };

  for (ir::ValueId id : g.inputs) {
    const ir::Value& v = g.value(id);
    value_slot[static_cast<size_t>(id)] = new_slot(plain_layout(v.dtype, v.shape), v.name);
    m.input_slots.push_back(value_slot[static_cast<size_t>(id)]);
    model->inputs_.push_back({v.name, v.dtype, v.shape});
  }
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    if (!v.is_constant()) continue;
    int s = new_slot(plain_layout(v.dtype, v.shape), v.name);
    m.slots[static_cast<size_t>(s)].constant = v.constant.data();
    value_slot[i] = s;
    model->weight_bytes_ += v.constant.size_bytes();
  }

  auto add_step = [&](std::unique_ptr<Kernel> k, std::vector<int> ins, std::vector<int> outs, StepInfo info) {
    m.steps.push_back(Step{std::move(k), std::move(ins), std::move(outs)});
    model->step_info_.push_back(std::move(info));
  };
  // Returns a slot holding `slot`'s tensor in `want`, adding a reorder step if needed.
  auto convert = [&](int slot, const Layout& want) -> Result<int> {
    const Layout& have = m.slots[static_cast<size_t>(slot)].layout;
    if (have == want) return slot;
    const std::string key = want.describe() + shape_to_string(want.shape);
    auto it = converted.find({slot, key});
    if (it != converted.end() && m.slots[static_cast<size_t>(it->second)].layout == want) return it->second;
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> k, make_reorder_kernel(have, want, m.engine));
    const std::string name = m.slots[static_cast<size_t>(slot)].name + "@" + want.describe();
    int out = new_slot(want, name);
    add_step(std::move(k), {slot}, {out}, StepInfo{"reorder " + m.slots[static_cast<size_t>(slot)].name, "Reorder", "dnnl_reorder", want.describe(), "", 0});
    converted[{slot, key}] = out;
    return out;
  };

  auto root_of = [&](int s) {
    while (m.slots[static_cast<size_t>(s)].root >= 0) s = m.slots[static_cast<size_t>(s)].root;
    return s;
  };
  // True when no value stored in `slot`'s buffer is read after node `ni` or handed out at the end,
  // so the buffer may be overwritten in place at `ni`.
  auto buffer_dies_at = [&](int slot, size_t ni) {
    const int root = root_of(slot);
    if (m.slots[static_cast<size_t>(root)].constant) return false;
    if (std::find(m.input_slots.begin(), m.input_slots.end(), root) != m.input_slots.end()) return false;
    for (size_t v = 0; v < g.values.size(); ++v) {
      if (value_slot[v] < 0 || root_of(value_slot[v]) != root) continue;
      if (is_graph_output[v] || last_consumer[v] > static_cast<int>(ni)) return false;
    }
    return true;
  };
  // Reshape-like ops on plain tensors move no bytes: their output is a view of the input buffer.
  static const char* kViewOps[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"};

  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const ir::Node& node = g.nodes[ni];
    const bool is_view = node.post_ops.empty() && node.outputs.size() == 1 && node.outputs[0] != ir::kNoValue &&
                         !node.inputs.empty() && node.inputs[0] != ir::kNoValue &&
                         std::any_of(std::begin(kViewOps), std::end(kViewOps), [&](const char* op) { return node.op_type == op; });
    if (is_view) {
      const ir::Value& src_v = g.value(node.inputs[0]);
      const ir::Value& dst_v = g.value(node.outputs[0]);
      if (src_v.dtype == dst_v.dtype && numel(src_v.shape) == numel(dst_v.shape)) {
        TENET_ASSIGN_OR_RETURN(int src, convert(value_slot[static_cast<size_t>(node.inputs[0])], plain_layout(src_v.dtype, src_v.shape)));
        const int out = new_slot(plain_layout(dst_v.dtype, dst_v.shape), dst_v.name);
        if (m.slots[static_cast<size_t>(src)].constant) {
          m.slots[static_cast<size_t>(out)].constant = m.slots[static_cast<size_t>(src)].constant;
        } else {
          m.slots[static_cast<size_t>(out)].root = src;
        }
        value_slot[static_cast<size_t>(node.outputs[0])] = out;
        continue;
      }
    }
    KernelInputs kin{g, node, {}, m.engine};
    for (ir::ValueId in : node.inputs) {
      if (in == ir::kNoValue) {
        kin.input_layouts.push_back(Layout{});
        continue;
      }
      const int s = value_slot[static_cast<size_t>(in)];
      if (s < 0) return internal_error("{}: input '{}' has no slot", node.describe(), g.value(in).name);
      kin.input_layouts.push_back(m.slots[static_cast<size_t>(s)].layout);
    }
    std::unique_ptr<Kernel> kernel;
    if (!options.reference_only) {
      TENET_ASSIGN_OR_RETURN(kernel, make_dnnl_kernel(kin));
    }
    if (!kernel) {
      TENET_ASSIGN_OR_RETURN(kernel, make_reference_kernel(kin));
    }
    if (kernel->required_inputs.size() != node.inputs.size() || kernel->outputs.size() != node.outputs.size() ||
        kernel->in_place.size() != node.outputs.size()) {
      return internal_error("{}: kernel {} has a wrong arity", node.describe(), kernel->name());
    }
    std::vector<int> ins(node.inputs.size(), -1);
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i] == ir::kNoValue) continue;
      const int s = value_slot[static_cast<size_t>(node.inputs[i])];
      TENET_ASSIGN_OR_RETURN(ins[i], convert(s, kernel->required_inputs[i]));
    }
    std::vector<int> outs(node.outputs.size(), -1);
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      if (node.outputs[o] == ir::kNoValue) continue;
      const ir::Value& v = g.value(node.outputs[o]);
      outs[o] = new_slot(kernel->outputs[o], v.name);
      value_slot[static_cast<size_t>(node.outputs[o])] = outs[o];
      const int k = kernel->in_place[o];
      if (k < 0) continue;
      // The output must start as input k's bytes (oneDNN's sum post-op). Share the buffer when
      // nothing reads input k after this node; otherwise work on a copy.
      const ir::ValueId src_value = node.inputs[static_cast<size_t>(k)];
      int src = ins[static_cast<size_t>(k)];
      // Another input of this node in the same buffer (Add(Conv(x), x)) must not be overwritten.
      bool used_elsewhere_here = false;
      for (size_t j = 0; j < ins.size(); ++j) {
        if (j != static_cast<size_t>(k) && ins[j] >= 0 && root_of(ins[j]) == root_of(src)) used_elsewhere_here = true;
      }
      const bool shareable = buffer_dies_at(src, ni) && !used_elsewhere_here;
      if (!shareable) {
        Layout l = m.slots[static_cast<size_t>(src)].layout;
        // A plain reorder with identical layouts is a copy.
        TENET_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> copy, make_reorder_kernel(l, l, m.engine));
        int tmp = new_slot(l, m.slots[static_cast<size_t>(src)].name + "@copy");
        add_step(std::move(copy), {src}, {tmp}, StepInfo{"copy " + m.slots[static_cast<size_t>(src)].name, "Copy", "dnnl_reorder", l.describe(), "", 0});
        src = tmp;
        ins[static_cast<size_t>(k)] = tmp;
      }
      m.slots[static_cast<size_t>(outs[o])].root = src;
    }
    StepInfo info{node.name, node.op_type, kernel->name(),
                  kernel->outputs.empty() ? "" : kernel->outputs[0].describe(), post_ops_string(node.post_ops),
                  node_flops(g, node)};
    add_step(std::move(kernel), std::move(ins), std::move(outs), std::move(info));
  }

  // Graph outputs are handed out plain.
  for (ir::ValueId o : g.outputs) {
    const ir::Value& v = g.value(o);
    int s = value_slot[static_cast<size_t>(o)];
    if (s < 0) return internal_error("graph output '{}' has no slot", v.name);
    TENET_ASSIGN_OR_RETURN(s, convert(s, plain_layout(v.dtype, v.shape)));
    m.output_slots.push_back(s);
    model->outputs_.push_back({v.name, v.dtype, v.shape});
  }

  // Lifetimes: from the producing step to the last reading step; inputs from step 0, outputs to the end.
  const int end_step = static_cast<int>(m.steps.size());
  for (Slot& s : m.slots) s.first_step = s.last_step = -1;
  for (int s : m.input_slots) m.slots[static_cast<size_t>(s)].first_step = 0;
  for (int i = 0; i < end_step; ++i) {
    for (int s : m.steps[static_cast<size_t>(i)].out_slots) {
      if (s >= 0 && m.slots[static_cast<size_t>(s)].first_step < 0) m.slots[static_cast<size_t>(s)].first_step = i;
    }
    for (int s : m.steps[static_cast<size_t>(i)].in_slots) {
      if (s >= 0) m.slots[static_cast<size_t>(s)].last_step = i;
    }
  }
  for (int s : m.output_slots) m.slots[static_cast<size_t>(s)].last_step = end_step;
  // Buffers: one per root slot; in-place slots and views extend their root's lifetime.
  for (size_t i = 0; i < m.slots.size(); ++i) {
    Slot& s = m.slots[i];
    if (s.constant) continue;
    if (s.first_step < 0) s.first_step = 0;
    if (s.last_step < s.first_step) s.last_step = s.first_step;
  }
  for (size_t i = 0; i < m.slots.size(); ++i) {
    if (m.slots[i].constant || m.slots[i].root >= 0) continue;
    m.slots[i].buffer = static_cast<int>(model->buffers_.size());
    model->buffers_.push_back({m.slots[i].layout.size_bytes(), m.slots[i].first_step, m.slots[i].last_step, m.slots[i].name});
  }
  for (size_t i = 0; i < m.slots.size(); ++i) {
    if (m.slots[i].constant || m.slots[i].root < 0) continue;
    Slot& root = m.slots[static_cast<size_t>(root_of(static_cast<int>(i)))];
    plan::BufferRequest& b = model->buffers_[static_cast<size_t>(root.buffer)];
    b.size_bytes = std::max(b.size_bytes, m.slots[i].layout.size_bytes());
    // A view or in-place output is produced after its root, so only its last use matters.
    b.last_step = std::max(b.last_step, m.slots[i].last_step);
    m.slots[i].buffer = root.buffer;
  }
  model->arena_plan_ = plan::plan_greedy_by_size(model->buffers_);
  TENET_RETURN_IF_ERROR(plan::verify_plan(model->buffers_, model->arena_plan_));

  const size_t arena_bytes = align_up(std::max<size_t>(model->arena_plan_.peak_bytes, 64), 64);
  m.arena = static_cast<std::byte*>(std::aligned_alloc(64, arena_bytes));
  if (!m.arena) return resource_exhausted("cannot allocate an arena of {} bytes", arena_bytes);
  std::memset(m.arena, 0, arena_bytes);
  for (const Step& st : m.steps) model->scratchpad_bytes_ = std::max(model->scratchpad_bytes_, st.kernel->scratchpad_bytes);
  const size_t scratch_bytes = align_up(std::max<size_t>(model->scratchpad_bytes_, 64), 64);
  m.scratchpad = static_cast<std::byte*>(std::aligned_alloc(64, scratch_bytes));
  if (!m.scratchpad) return resource_exhausted("cannot allocate a scratchpad of {} bytes", scratch_bytes);

  auto address = [&](int s) -> void* {
    if (s < 0) return nullptr;
    const Slot& slot = m.slots[static_cast<size_t>(s)];
    if (slot.constant) return const_cast<void*>(slot.constant);
    return m.arena + model->arena_plan_.offsets[static_cast<size_t>(slot.buffer)];
  };
  for (Step& st : m.steps) {
    std::vector<void*> ins, outs;
    for (int s : st.in_slots) ins.push_back(address(s));
    for (int s : st.out_slots) outs.push_back(address(s));
    TENET_RETURN_IF_ERROR(st.kernel->bind(ins, outs, m.scratchpad));
  }
  return model;
}

Status CompiledModel::run(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs) {
  Impl& m = *impl_;
  if (inputs.size() != inputs_.size()) {
    return invalid_argument("the model takes {} inputs, {} were given", inputs_.size(), inputs.size());
  }
  auto address = [&](int s) -> std::byte* {
    const Slot& slot = m.slots[static_cast<size_t>(s)];
    if (slot.constant) return static_cast<std::byte*>(const_cast<void*>(slot.constant));
    return m.arena + arena_plan_.offsets[static_cast<size_t>(slot.buffer)];
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorInfo& info = inputs_[i];
    if (inputs[i].dtype != info.dtype || inputs[i].shape != info.shape) {
      return invalid_argument("input '{}' must be {} {}, got {} {}", info.name, dtype_name(info.dtype), shape_to_string(info.shape),
                              dtype_name(inputs[i].dtype), shape_to_string(inputs[i].shape));
    }
    std::memcpy(address(m.input_slots[i]), inputs[i].data, inputs[i].size_bytes());
  }
  omp_set_num_threads(threads_);
  for (size_t i = 0; i < m.steps.size(); ++i) {
    Status s = m.steps[i].kernel->execute(m.stream);
    if (!s.ok()) return s.with_context(fmt::format("step {} ({})", i, step_info_[i].node));
  }
  m.stream.wait();
  outputs.resize(outputs_.size());
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (!outputs[i].defined() || outputs[i].dtype() != outputs_[i].dtype || outputs[i].shape() != outputs_[i].shape) {
      TENET_ASSIGN_OR_RETURN(outputs[i], Tensor::zeros(outputs_[i].dtype, outputs_[i].shape));
    }
    std::memcpy(outputs[i].data(), address(m.output_slots[i]), outputs[i].size_bytes());
  }
  return ok_status();
}

Result<std::unique_ptr<CompiledModel>> compile_model(const ir::Graph& imported, const std::map<std::string, Shape>& input_shapes,
                                                     const CompileOptions& options, passes::PassStats* stats) {
  ir::Graph g = imported;
  passes::PassStats local;
  TENET_RETURN_IF_ERROR(passes::prepare_graph(g, input_shapes, options.optimize, stats ? *stats : local));
  return CompiledModel::compile(std::move(g), options);
}

}  // namespace tenet::cpu
