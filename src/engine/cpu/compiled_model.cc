#include "engine/cpu/compiled_model.h"

#include "core/allocator.h"

#include <omp.h>

#include <algorithm>
#include <functional>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/safe_math.h"
#include "engine/cpu/kernel.h"
#include "engine/passes/passes.h"

namespace tenet::cpu {

// A slot is one tensor in one layout: a graph value, or a reordered copy of one. Slots that are
// not constants get a buffer in the arena; an in-place output or a view shares its input's
// buffer, and an input of an in-place concat is a part of the concat's buffer.
struct Slot {
  Layout layout;
  std::string name;
  ir::ValueId value = ir::kNoValue;  // the graph value whose data the slot holds (in any layout)
  const void* constant = nullptr;    // constants live outside the arena
  int root = -1;                     // slot whose buffer this one shares, or -1
  size_t offset_bytes = 0;           // where this slot starts in its root's bytes
  int first_step = 0;
  int last_step = 0;
  int buffer = -1;
};

struct Step {
  std::unique_ptr<Kernel> kernel;
  std::vector<int> in_slots;   // -1 for absent inputs
  std::vector<int> out_slots;  // -1 for absent outputs
  std::vector<size_t> streamed;  // indices into Impl::weights loaded into the ring before this step
  int pieces = -1;                // index into Impl::weights of a weight streamed in pieces, or -1
};

// A kernel-owned weight buffer moved out to the weight store at compile time.
struct StoredWeight {
  int step = 0;
  size_t index = 0;  // the kernel's owned weight index
  uint32_t id = 0;   // in the store
  uint64_t bytes = 0;
  bool streamed = false;
  std::shared_ptr<std::byte[]> resident;  // when loaded back to stay
  uint64_t piece_bytes = 0;  // > 0: the kernel can take it piece by piece (no ring slot needed)
  uint64_t resident_pieces = 0;  // of a weight streamed in pieces: the first ones, kept in `resident`
};

// Brings a run's streamed weights into the ring in execution order (weight_streaming.h). Entry j
// of the run goes to slot j mod D; the step that needs it acquires it and releases it after
// executing. In the background mode a loader thread works ahead of the steps, up to D entries,
// so that decryption overlaps computation (on machines with a core to spare beside the compute
// threads); inline, acquire() loads the entry itself, decrypting on the compute threads.
class RingLoader {
 public:
  struct Entry {
    uint32_t id;
    uint64_t bytes;
  };
  RingLoader(WeightStore& store, std::vector<std::shared_ptr<std::byte[]>>& ring, std::vector<Entry> schedule, bool background)
      : store_(store), ring_(ring), schedule_(std::move(schedule)) {
    if (background && !schedule_.empty()) thread_ = std::thread([this] { loop(); });
  }
  ~RingLoader() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool background() const { return thread_.joinable(); }

  void begin_run() {
    if (!background()) return;
    std::lock_guard lock(mu_);
    loaded_ = released_ = 0;
    failure_ = Status();
    cancel_ = false;
    ++run_;
    cv_.notify_all();
  }
  // Slot holding entry j once it is loaded.
  Result<std::byte*> acquire(size_t j) {
    std::byte* slot = ring_[j % ring_.size()].get();
    if (!background()) {
      TENET_RETURN_IF_ERROR(store_.get(schedule_[j].id, std::span(slot, schedule_[j].bytes)));
      return slot;
    }
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return loaded_ > j || !failure_.ok(); });
    if (loaded_ <= j) return failure_;
    return slot;
  }
  void release(size_t j) {
    if (!background()) return;
    std::lock_guard lock(mu_);
    released_ = j + 1;
    cv_.notify_all();
  }
  // Waits until the loader is idle (after a complete run, or cancelling an aborted one).
  void end_run() {
    if (!background()) return;
    std::unique_lock lock(mu_);
    cancel_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return idle_run_ == run_; });
  }

 private:
  void loop() {
    omp_set_num_threads(1);  // one core beside the compute threads
    uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return quit_ || run_ != seen; });
      if (quit_) return;
      seen = run_;
      for (size_t j = 0; j < schedule_.size(); ++j) {
        cv_.wait(lock, [&] { return quit_ || cancel_ || j < released_ + ring_.size(); });
        if (quit_) return;
        if (cancel_) break;
        lock.unlock();
        Status s = store_.get(schedule_[j].id, std::span(ring_[j % ring_.size()].get(), schedule_[j].bytes));
        lock.lock();
        if (!s.ok()) {
          failure_ = s;
          cv_.notify_all();
          break;
        }
        loaded_ = j + 1;
        cv_.notify_all();
      }
      idle_run_ = seen;
      cv_.notify_all();
    }
  }

  WeightStore& store_;
  std::vector<std::shared_ptr<std::byte[]>>& ring_;
  const std::vector<Entry> schedule_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t run_ = 0, idle_run_ = 0;
  size_t loaded_ = 0, released_ = 0;
  bool cancel_ = false, quit_ = false;
  Status failure_;
};

struct CompiledModel::Impl {
  ir::Graph graph;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<Slot> slots;
  std::vector<Step> steps;
  std::vector<int> input_slots;   // per graph input
  std::vector<int> output_slots;  // per graph output
  std::vector<std::byte*> input_data, output_data;  // their addresses, set once planned
  // From tenet::buffer_allocator(): the C heap, or the EPC heap inside a sim enclave.
  std::shared_ptr<std::byte[]> arena_storage, scratchpad_storage;
  std::byte* arena = nullptr;
  std::byte* scratchpad = nullptr;
  size_t arena_bytes = 0;
  size_t scratchpad_bytes = 0;
  // Weight streaming (weight_streaming.h).
  std::shared_ptr<WeightStore> store;
  std::vector<StoredWeight> weights;
  std::vector<std::shared_ptr<std::byte[]>> ring;
  std::vector<std::pair<size_t, size_t>> step_schedule;  // per step: [first, last) entries of the run's schedule
  std::unique_ptr<RingLoader> loader;
  std::shared_ptr<std::byte[]> piece_scratch;  // per-thread buffers (StreamingPlan::piece_buffer_bytes) for weights streamed in pieces
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

// Where each part of a concatenation starts in the output's bytes when every part, in the
// output's layout (`tag` undef: plain), is one contiguous block of the output: all dims before
// the axis are 1 and, in a channel-blocked format (nChw8c, ...), every part but the last covers
// whole channel blocks. Empty when the parts are not contiguous blocks (e.g. nhwc, or batch > 1).
std::vector<size_t> concat_part_offsets(const Shape& out, int64_t axis, std::span<const Shape> parts,
                                        dnnl::memory::format_tag tag) {
  int64_t block = 1;
  if (tag == dnnl::memory::format_tag::nChw4c) block = 4;
  else if (tag == dnnl::memory::format_tag::nChw8c) block = 8;
  else if (tag == dnnl::memory::format_tag::nChw16c) block = 16;
  else if (tag != dnnl::memory::format_tag::undef) return {};
  if (block > 1 && axis != 1) return {};
  const auto a = static_cast<size_t>(axis);
  for (size_t d = 0; d < a; ++d) {
    if (out[d] != 1) return {};
  }
  const int64_t inner = numel(std::span(out).subspan(a + 1));
  std::vector<size_t> offsets;
  int64_t at = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i + 1 < parts.size() && parts[i][a] % block != 0) return {};
    offsets.push_back(static_cast<size_t>(at * inner) * sizeof(float));
    at += parts[i][a];
  }
  return offsets;
}

// True when two float32 layouts of one shape put every element at the same byte (nhwc and
// nChw8c are plain when H = W = 1 and C is a multiple of 8: a pooled feature vector), so that a
// conversion between them is a view. Checked by reordering the element indices once.
bool same_bytes(const Layout& a, const Layout& b, dnnl::engine& engine) {
  if (a.dtype != DType::kFloat32 || b.dtype != DType::kFloat32 || a.shape != b.shape) return false;
  const int64_t count = numel(a.shape);
  // Indices above 2^24 are not exact in float32.
  if (a.size_bytes() != b.size_bytes() || a.size_bytes() != static_cast<size_t>(count) * sizeof(float) || count > (int64_t{1} << 24)) {
    return false;
  }
  std::vector<float> src(static_cast<size_t>(count)), dst(static_cast<size_t>(count));
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
  dnnl::memory src_mem(a.md, engine, src.data()), dst_mem(b.md, engine, dst.data());
  dnnl::stream stream(engine);
  dnnl::reorder(src_mem, dst_mem).execute(stream, src_mem, dst_mem);
  stream.wait();
  return src == dst;
}

// A Transpose that only moves dims of size 1 keeps every element at its row-major offset (at
// batch 1, BERT's [seq, batch, d] <-> [batch, seq, d] transposes): the bytes do not move.
bool is_reshaping_transpose(const ir::Graph& g, const ir::Node& n) {
  if (n.op_type != "Transpose" || n.inputs.size() != 1 || n.inputs[0] == ir::kNoValue) return false;
  const Shape& x = g.value(n.inputs[0]).shape;
  std::vector<int64_t> reversed(x.size());
  for (size_t i = 0; i < x.size(); ++i) reversed[i] = static_cast<int64_t>(x.size() - 1 - i);
  Result<std::vector<int64_t>> perm = n.attr_ints("perm", reversed);
  if (!perm.ok() || perm->size() != x.size()) return false;
  int64_t last = -1;
  for (int64_t p : *perm) {
    if (x[static_cast<size_t>(p)] == 1) continue;
    if (p < last) return false;
    last = p;
  }
  return true;
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
  if ((n.op_type == "MatMul" || n.op_type == "FusedMatMul" || n.op_type == "Gemm") && n.inputs.size() >= 2 && !shape(0).empty()) {
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

  auto new_slot = [&](Layout layout, std::string name, ir::ValueId value) {
    Slot s;
    s.layout = std::move(layout);
    s.name = std::move(name);
    s.value = value;
    m.slots.push_back(std::move(s));
    return static_cast<int>(m.slots.size() - 1);
  };

  for (ir::ValueId id : g.inputs) {
    const ir::Value& v = g.value(id);
    value_slot[static_cast<size_t>(id)] = new_slot(plain_layout(v.dtype, v.shape), v.name, id);
    m.input_slots.push_back(value_slot[static_cast<size_t>(id)]);
    model->inputs_.push_back({v.name, v.dtype, v.shape});
  }
  // A deferred constant (ir/graph.h) not in memory: its slot is a constant slot with this address
  // until the constant is materialized; no step reads a constant through it at run time (those
  // that would are materialized for good below).
  static const std::byte kNotInMemory{};
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    if (!v.is_constant()) continue;
    int s = new_slot(plain_layout(v.dtype, v.shape), v.name, static_cast<ir::ValueId>(i));
    m.slots[static_cast<size_t>(s)].constant = v.constant.defined() ? v.constant.data() : &kNotInMemory;
    value_slot[i] = s;
    model->weight_bytes_ += v.constant_bytes();
  }
  // Materializes a deferred constant: its bytes are read back from the graph's constant store.
  auto materialize = [&](ir::ValueId v) -> Status {
    TENET_RETURN_IF_ERROR(m.graph.materialize(v));
    m.slots[static_cast<size_t>(value_slot[static_cast<size_t>(v)])].constant = m.graph.value(v).constant.data();
    return ok_status();
  };

  auto add_step = [&](std::unique_ptr<Kernel> k, std::vector<int> ins, std::vector<int> outs, StepInfo info) {
    m.steps.push_back(Step{std::move(k), std::move(ins), std::move(outs), {}});
    model->step_info_.push_back(std::move(info));
  };
  // Returns a slot holding `slot`'s tensor in `want`: a view when the bytes are already right,
  // else the output of a new reorder step.
  auto convert = [&](int slot, const Layout& want) -> Result<int> {
    const Layout have = m.slots[static_cast<size_t>(slot)].layout;
    if (have == want) return slot;
    const std::string key = want.describe() + shape_to_string(want.shape);
    auto it = converted.find({slot, key});
    if (it != converted.end() && m.slots[static_cast<size_t>(it->second)].layout == want) return it->second;
    const std::string name = m.slots[static_cast<size_t>(slot)].name;
    const bool view = !m.slots[static_cast<size_t>(slot)].constant && same_bytes(have, want, m.engine);
    std::unique_ptr<Kernel> k;
    if (!view) {
      TENET_ASSIGN_OR_RETURN(k, make_reorder_kernel(have, want, m.engine));
    }
    const int out = new_slot(want, name + "@" + want.describe(), m.slots[static_cast<size_t>(slot)].value);
    if (view) {
      m.slots[static_cast<size_t>(out)].root = slot;
    } else {
      add_step(std::move(k), {slot}, {out}, StepInfo{"reorder " + name, "Reorder", "dnnl_reorder", want.describe(), "", 0, 0, 0});
    }
    converted[{slot, key}] = out;
    return out;
  };

  auto root_of = [&](int s) {
    while (m.slots[static_cast<size_t>(s)].root >= 0) s = m.slots[static_cast<size_t>(s)].root;
    return s;
  };
  // True when no value stored in `slot`'s buffer (in any layout: a reordered copy is read again
  // by later consumers that want the same layout) is read after node `ni` or handed out at the
  // end, so the buffer may be overwritten in place at `ni`.
  auto buffer_dies_at = [&](int slot, size_t ni) {
    const int root = root_of(slot);
    if (m.slots[static_cast<size_t>(root)].constant) return false;
    if (std::find(m.input_slots.begin(), m.input_slots.end(), root) != m.input_slots.end()) return false;
    for (size_t s = 0; s < m.slots.size(); ++s) {
      const auto v = static_cast<size_t>(m.slots[s].value);
      if (m.slots[s].value == ir::kNoValue || root_of(static_cast<int>(s)) != root) continue;
      if (is_graph_output[v] || last_consumer[v] > static_cast<int>(ni)) return false;
    }
    return true;
  };
  // In-place concat roots and their parts in order (slots whose root is the concat's slot).
  std::map<int, std::vector<int>> concat_parts;
  // A slot that may become a part of an in-place concat: it owns its buffer (it is not a view or
  // an in-place output) and is written by a step (not a graph input or a constant).
  auto owns_buffer = [&](int s) {
    const Slot& slot = m.slots[static_cast<size_t>(s)];
    return slot.root < 0 && !slot.constant && std::find(m.input_slots.begin(), m.input_slots.end(), s) == m.input_slots.end();
  };
  // Concat without a copy: when every input is one contiguous block of the output
  // (concat_part_offsets), the output gets the buffer and every input slot becomes a part of it,
  // so the producers write straight into the output and the Concat runs no step. Inputs that are
  // the parts of an earlier in-place concat, in the same order, join as that whole concat
  // (DenseNet's growing concats then share one buffer per dense block). False: not possible here;
  // the Concat then runs as a kernel.
  auto concat_in_place = [&](const ir::Node& node) -> Result<bool> {
    if (node.op_type != "Concat" || !node.post_ops.empty() || node.outputs.size() != 1 || node.outputs[0] == ir::kNoValue) {
      return false;
    }
    const ir::Value& y = g.value(node.outputs[0]);
    if (y.dtype != DType::kFloat32 || y.shape.empty()) return false;
    int64_t axis = node.attr_int("axis", 0).value();
    if (axis < 0) axis += static_cast<int64_t>(y.shape.size());
    // The layout the concat kernel would use (make_concat): the first named blocked format.
    dnnl::memory::format_tag tag = dnnl::memory::format_tag::undef;
    for (ir::ValueId in : node.inputs) {
      if (in == ir::kNoValue) return false;
      if (tag == dnnl::memory::format_tag::undef) tag = blocked_tag(m.slots[static_cast<size_t>(value_slot[static_cast<size_t>(in)])].layout);
    }
    auto layout_for = [&](const Shape& s) {
      return tag == dnnl::memory::format_tag::undef ? plain_layout(DType::kFloat32, s) : tagged_layout(s, tag);
    };
    std::vector<Shape> in_shapes;
    for (ir::ValueId in : node.inputs) in_shapes.push_back(g.value(in).shape);
    if (concat_part_offsets(y.shape, axis, in_shapes, tag).empty()) return false;
    std::vector<int> ins;
    for (ir::ValueId in : node.inputs) {
      TENET_ASSIGN_OR_RETURN(int s, convert(value_slot[static_cast<size_t>(in)], layout_for(g.value(in).shape)));
      ins.push_back(s);
    }
    std::vector<int> parts;
    std::vector<Shape> part_shapes;
    for (size_t i = 0; i < ins.size();) {
      const int root = root_of(ins[i]);
      auto group = concat_parts.find(root);
      if (root != ins[i] && group != concat_parts.end() && owns_buffer(root) && i + group->second.size() <= ins.size() &&
          std::equal(group->second.begin(), group->second.end(), ins.begin() + static_cast<std::ptrdiff_t>(i))) {
        parts.push_back(root);
        i += group->second.size();
      } else if (owns_buffer(ins[i]) && std::find(parts.begin(), parts.end(), ins[i]) == parts.end()) {
        parts.push_back(ins[i]);
        ++i;
      } else {
        return false;
      }
      part_shapes.push_back(m.slots[static_cast<size_t>(parts.back())].layout.shape);
      if (!(m.slots[static_cast<size_t>(parts.back())].layout == layout_for(part_shapes.back()))) return false;
    }
    const std::vector<size_t> offsets = concat_part_offsets(y.shape, axis, part_shapes, tag);
    if (offsets.empty()) return false;
    const int out = new_slot(layout_for(y.shape), y.name, node.outputs[0]);
    for (size_t i = 0; i < parts.size(); ++i) {
      m.slots[static_cast<size_t>(parts[i])].root = out;
      m.slots[static_cast<size_t>(parts[i])].offset_bytes = offsets[i];
    }
    concat_parts[out] = ins;
    value_slot[static_cast<size_t>(node.outputs[0])] = out;
    return true;
  };
  // Reshape-like ops on plain tensors move no bytes: their output is a view of the input buffer.
  static const char* kViewOps[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"};

  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const ir::Node& node = g.nodes[ni];
    // Bounded loading: the deferred constants this node reads are materialized while its steps are
    // built (the kernel copies or reorders them into its own weights) and dropped again right
    // after, unless a step reads one at run time through its address (a reorder of a constant, a
    // reference kernel, a view): that one stays, as a held constant. A tenet_gemv weight the kernel
    // would share as is (gemv_shares_weight) is not materialized when weights stream: it goes from
    // the constant store to the weight store piece by piece below.
    const size_t steps_before = m.steps.size();
    const bool gemv_from_store = options.streaming.store && !options.reference_only && !options.kernel_override &&
                                 node.inputs.size() >= 2 && node.inputs[1] != ir::kNoValue &&
                                 g.value(node.inputs[1]).constant_bytes() >= options.streaming.min_streamed_bytes &&
                                 gemv_shares_weight(g, node);
    std::vector<ir::ValueId> materialized;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const ir::ValueId v = node.inputs[i];
      if (v == ir::kNoValue || !g.value(v).deferred || g.value(v).constant.defined()) continue;
      if (gemv_from_store && i == 1 && std::count(node.inputs.begin(), node.inputs.end(), v) == 1) continue;
      TENET_RETURN_IF_ERROR(materialize(v));
      materialized.push_back(v);
    }
    auto drop_materialized = [&] {
      for (ir::ValueId v : materialized) {
        const void* data = g.value(v).constant.data();
        bool read = false;
        for (size_t st = steps_before; st < m.steps.size(); ++st) {
          const Step& step = m.steps[st];
          for (size_t i = 0; i < step.in_slots.size(); ++i) {
            if (step.in_slots[i] >= 0 && m.slots[static_cast<size_t>(step.in_slots[i])].constant == data && step.kernel->reads_input(i)) {
              read = true;
            }
          }
        }
        if (read) {
          m.graph.value(v).deferred = false;  // held from now on
        } else {
          m.graph.drop_materialized(v);
          m.slots[static_cast<size_t>(value_slot[static_cast<size_t>(v)])].constant = &kNotInMemory;
        }
      }
    };
    const bool is_view = node.post_ops.empty() && node.outputs.size() == 1 && node.outputs[0] != ir::kNoValue &&
                         !node.inputs.empty() && node.inputs[0] != ir::kNoValue &&
                         (std::any_of(std::begin(kViewOps), std::end(kViewOps), [&](const char* op) { return node.op_type == op; }) ||
                          is_reshaping_transpose(g, node));
    if (is_view) {
      const ir::Value& src_v = g.value(node.inputs[0]);
      const ir::Value& dst_v = g.value(node.outputs[0]);
      if (src_v.dtype == dst_v.dtype && numel(src_v.shape) == numel(dst_v.shape)) {
        TENET_ASSIGN_OR_RETURN(int src, convert(value_slot[static_cast<size_t>(node.inputs[0])], plain_layout(src_v.dtype, src_v.shape)));
        const int out = new_slot(plain_layout(dst_v.dtype, dst_v.shape), dst_v.name, node.outputs[0]);
        if (m.slots[static_cast<size_t>(src)].constant) {
          m.slots[static_cast<size_t>(out)].constant = m.slots[static_cast<size_t>(src)].constant;
          // Read through the view at run time: a materialized constant stays, held.
          for (ir::ValueId v : materialized) m.graph.value(v).deferred = false;
          materialized.clear();
        } else {
          m.slots[static_cast<size_t>(out)].root = src;
        }
        value_slot[static_cast<size_t>(node.outputs[0])] = out;
        drop_materialized();
        continue;
      }
    }
    if (!options.reference_only) {
      TENET_ASSIGN_OR_RETURN(const bool in_place, concat_in_place(node));
      if (in_place) {
        drop_materialized();
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
    if (options.kernel_override) {
      TENET_ASSIGN_OR_RETURN(kernel, options.kernel_override(kin));
    }
    if (!kernel && !options.reference_only) {
      TENET_ASSIGN_OR_RETURN(kernel, make_gemv_kernel(kin));
    }
    if (!kernel && !options.reference_only) {
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
      outs[o] = new_slot(kernel->outputs[o], v.name, node.outputs[o]);
      value_slot[static_cast<size_t>(node.outputs[o])] = outs[o];
      const int k = kernel->in_place[o];
      if (k < 0) continue;
      // The output must start as input k's bytes (oneDNN's sum post-op). Share the buffer when
      // nothing reads input k after this node; otherwise work on a copy.
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
        int tmp = new_slot(l, m.slots[static_cast<size_t>(src)].name + "@copy", m.slots[static_cast<size_t>(src)].value);
        add_step(std::move(copy), {src}, {tmp}, StepInfo{"copy " + m.slots[static_cast<size_t>(src)].name, "Copy", "dnnl_reorder", l.describe(), "", 0, 0, 0});
        src = tmp;
        ins[static_cast<size_t>(k)] = tmp;
      }
      m.slots[static_cast<size_t>(outs[o])].root = src;
    }
    StepInfo info{node.name, node.op_type, kernel->name(),
                  kernel->outputs.empty() ? "" : kernel->outputs[0].describe(), post_ops_string(node.post_ops),
                  node_flops(g, node), 0, 0};
    add_step(std::move(kernel), std::move(ins), std::move(outs), std::move(info));
    if (options.streaming.store) {
      // Move the kernel's large weights out now, so that its copies never accumulate.
      Kernel& k = *m.steps.back().kernel;
      for (size_t w = 0; w < k.owned_weight_count(); ++w) {
        const std::span<std::byte> bytes = k.owned_weight(w);
        if (bytes.size() < options.streaming.min_streamed_bytes) continue;
        const uint64_t piece = k.weight_piece_bytes(w);
        uint32_t id = 0;
        const int shared = k.owned_weight_input(w);
        if (bytes.data() == nullptr && shared >= 0 && static_cast<size_t>(shared) < node.inputs.size()) {
          // A deferred constant the kernel shares as is (gemv_from_store): copied from store to
          // store one piece at a time, never whole in memory.
          const ir::ValueId v = node.inputs[static_cast<size_t>(shared)];
          TENET_ASSIGN_OR_RETURN(id, options.streaming.store->put_from(bytes.size(), piece, [&](uint64_t off, std::span<std::byte> dst) {
                                   return m.graph.read_constant(v, off, dst);
                                 }));
        } else {
          if (bytes.data() == nullptr) return internal_error("{}: kernel weight {} is not in memory", node.describe(), w);
          TENET_ASSIGN_OR_RETURN(id, options.streaming.store->put(bytes, piece));
        }
        k.release_owned_weight(w);
        m.weights.push_back(StoredWeight{static_cast<int>(m.steps.size() - 1), w, id, bytes.size(), false, nullptr, piece});
      }
      // A constant the kernel copied and nothing later reads is dropped now, so that the graph's
      // copies shrink while the kernels' copies move out (plan_streaming drops the rest).
      const std::vector<int>& bound = m.steps.back().in_slots;
      for (size_t i = 0; i < node.inputs.size() && i < bound.size(); ++i) {
        const ir::ValueId v = node.inputs[i];
        if (v == ir::kNoValue || bound[i] < 0 || !m.slots[static_cast<size_t>(bound[i])].constant) continue;
        if (last_consumer[static_cast<size_t>(v)] != static_cast<int>(ni) || is_graph_output[static_cast<size_t>(v)] ||
            k.reads_input(i) || std::count(node.inputs.begin(), node.inputs.end(), v) != 1) {
          continue;
        }
        m.graph.value(v).constant = Tensor();
      }
    }
    drop_materialized();
  }

  // Graph outputs are handed out plain.
  for (ir::ValueId o : g.outputs) {
    const ir::Value& v = g.value(o);
    if (v.deferred) {  // a constant output: read by the conversion (or the caller) at run time
      TENET_RETURN_IF_ERROR(materialize(o));
      m.graph.value(o).deferred = false;
    }
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
  // Buffers: one per root slot, live from the first step that writes or reads any slot in it to
  // the last (the parts of an in-place concat are written before their root is ever read).
  auto offset_in_buffer = [&](int s) {
    size_t offset = 0;
    for (; s >= 0; s = m.slots[static_cast<size_t>(s)].root) offset += m.slots[static_cast<size_t>(s)].offset_bytes;
    return offset;
  };
  for (size_t i = 0; i < m.slots.size(); ++i) {
    if (m.slots[i].constant || m.slots[i].root >= 0) continue;
    m.slots[i].buffer = static_cast<int>(model->buffers_.size());
    model->buffers_.push_back({0, INT_MAX, -1, m.slots[i].name});
  }
  for (size_t i = 0; i < m.slots.size(); ++i) {
    Slot& s = m.slots[i];
    if (s.constant) continue;
    s.buffer = m.slots[static_cast<size_t>(root_of(static_cast<int>(i)))].buffer;
    plan::BufferRequest& b = model->buffers_[static_cast<size_t>(s.buffer)];
    b.size_bytes = std::max(b.size_bytes, offset_in_buffer(static_cast<int>(i)) + s.layout.size_bytes());
    if (s.first_step < 0 && s.last_step < 0) continue;
    b.first_step = std::min(b.first_step, s.first_step >= 0 ? s.first_step : s.last_step);
    b.last_step = std::max({b.last_step, s.first_step, s.last_step});
  }
  for (plan::BufferRequest& b : model->buffers_) {
    if (b.last_step < 0) b.first_step = b.last_step = 0;  // never touched
  }
  model->arena_plan_ = options.no_buffer_reuse ? plan::plan_without_reuse(model->buffers_)
                                               : plan::plan_greedy_by_size(model->buffers_);
  TENET_RETURN_IF_ERROR(plan::verify_plan(model->buffers_, model->arena_plan_));

  const size_t arena_bytes = align_up(std::max<size_t>(model->arena_plan_.peak_bytes, 64), 64);
  m.arena_storage = allocate_buffer(arena_bytes);
  m.arena = m.arena_storage.get();
  if (!m.arena) return resource_exhausted("cannot allocate an arena of {} bytes", arena_bytes);
  m.arena_bytes = arena_bytes;
  for (const Step& st : m.steps) model->scratchpad_bytes_ = std::max(model->scratchpad_bytes_, st.kernel->scratchpad_bytes);
  const size_t scratch_bytes = align_up(std::max<size_t>(model->scratchpad_bytes_, 64), 64);
  m.scratchpad_storage = allocate_buffer(scratch_bytes);
  m.scratchpad = m.scratchpad_storage.get();
  if (!m.scratchpad) return resource_exhausted("cannot allocate a scratchpad of {} bytes", scratch_bytes);
  m.scratchpad_bytes = scratch_bytes;

  auto address = [&](int s) -> void* {
    if (s < 0) return nullptr;
    const Slot& slot = m.slots[static_cast<size_t>(s)];
    if (slot.constant) return const_cast<void*>(slot.constant);
    return m.arena + model->arena_plan_.offsets[static_cast<size_t>(slot.buffer)] + offset_in_buffer(s);
  };
  for (int s : m.input_slots) m.input_data.push_back(static_cast<std::byte*>(address(s)));
  for (int s : m.output_slots) m.output_data.push_back(static_cast<std::byte*>(address(s)));
  for (Step& st : m.steps) {
    std::vector<void*> ins, outs;
    for (int s : st.in_slots) ins.push_back(address(s));
    for (int s : st.out_slots) outs.push_back(address(s));
    TENET_RETURN_IF_ERROR(st.kernel->bind(ins, outs, m.scratchpad));
  }
  // A kernel weight inside a graph constant's storage is that constant, shared (tenet_gemv's [N, K]
  // weight), not a copy: memory accounting must not count it twice.
  std::vector<std::span<const std::byte>> constants;
  for (const ir::Value& v : m.graph.values) {
    if (v.constant.defined()) constants.emplace_back(static_cast<const std::byte*>(v.constant.data()), v.constant.size_bytes());
  }
  auto is_constant_storage = [&constants](std::span<const std::byte> b) {
    return b.data() != nullptr && std::any_of(constants.begin(), constants.end(), [&b](std::span<const std::byte> c) {
             return std::less_equal<>()(c.data(), b.data()) && std::less_equal<>()(b.data() + b.size(), c.data() + c.size());
           });
  };
  for (size_t i = 0; i < m.steps.size(); ++i) {
    StepInfo& info = model->step_info_[i];
    for (const std::vector<int>* slots : {&m.steps[i].in_slots, &m.steps[i].out_slots}) {
      for (int s : *slots) {
        if (s >= 0 && !m.slots[static_cast<size_t>(s)].constant) info.activation_bytes += m.slots[static_cast<size_t>(s)].layout.size_bytes();
      }
    }
    for (size_t w = 0; w < m.steps[i].kernel->owned_weight_count(); ++w) {
      const std::span<std::byte> b = m.steps[i].kernel->owned_weight(w);
      info.weight_bytes += b.size();
      if (is_constant_storage(b)) info.shared_weight_bytes += b.size();
    }
  }
  if (options.streaming.store) TENET_RETURN_IF_ERROR(model->plan_streaming(options.streaming));
  return model;
}

Status CompiledModel::plan_streaming(const StreamingOptions& o) {
  Impl& m = *impl_;
  StreamingPlan& plan = streaming_plan_;
  plan.enabled = true;
  plan.budget_bytes = o.budget_bytes;
  plan.arena_bytes = m.arena_bytes;
  plan.scratchpad_bytes = m.scratchpad_bytes;
  m.store = o.store;

  // Graph constants that some step still reads through its bound address stay; the others (the
  // weights every kernel copied) are dropped from the graph, and freed unless the caller still
  // holds them.
  std::vector<const void*> read;
  for (const Step& st : m.steps) {
    for (size_t i = 0; i < st.in_slots.size(); ++i) {
      const int s = st.in_slots[i];
      if (s >= 0 && m.slots[static_cast<size_t>(s)].constant && st.kernel->reads_input(i)) {
        read.push_back(m.slots[static_cast<size_t>(s)].constant);
      }
    }
  }
  std::sort(read.begin(), read.end());
  for (ir::Value& v : m.graph.values) {
    if (!v.is_constant()) continue;
    if (v.constant.defined() && std::binary_search(read.begin(), read.end(), static_cast<const void*>(v.constant.data()))) {
      plan.constant_bytes += v.constant.size_bytes();
    } else {
      v.constant = Tensor();
    }
    v.deferred = false;
  }
  // The deferred constants' store (bounded loading) is not read again: the kernels have their
  // weights. Released here unless the caller still holds it.
  m.graph.constant_store.reset();
  for (const Step& st : m.steps) {
    for (size_t w = 0; w < st.kernel->owned_weight_count(); ++w) {
      const std::span<std::byte> b = st.kernel->owned_weight(w);
      if (b.data() != nullptr) plan.resident_weight_bytes += b.size();  // small ones, never stored
    }
  }

  // Resident or streamed (see weight_streaming.h): stream the largest, keep the rest smallest first.
  const uint64_t fixed = plan.arena_bytes + plan.scratchpad_bytes + plan.constant_bytes + plan.resident_weight_bytes;
  uint64_t total = 0;
  std::vector<size_t> order(m.weights.size());
  for (size_t i = 0; i < m.weights.size(); ++i) {
    order[i] = i;
    total += m.weights[i].bytes;
  }
  if (fixed > o.budget_bytes) {
    return resource_exhausted("the model needs {} bytes resident (arena {}, scratchpad {}, small weights and constants {}) "
                              "beyond a budget of {} bytes",
                              fixed, plan.arena_bytes, plan.scratchpad_bytes, plan.constant_bytes + plan.resident_weight_bytes,
                              o.budget_bytes);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return m.weights[a].bytes < m.weights[b].bytes; });
  // The loading-overhead bound: what may stream is what loads within max_loading_overhead of the
  // predicted compute time; the rest is worth keeping resident. That is the cap: no more is kept
  // (the EPC is shared), and less where the budget holds less.
  uint64_t resident_cap = UINT64_MAX;
  double streamed_byte_s = 0;
  if (o.max_loading_overhead > 0 && total > 0) {
    double flops = 0;
    for (const StepInfo& si : step_info_) flops += static_cast<double>(si.flops);
    const double f = fp32_flops_per_second(threads_), d = o.store->load_bytes_per_second(threads_);
    if (f > 0 && d > 0) {
      const double compute_s = flops / f;
      streamed_byte_s = 1.0 / d;
      const double may_stream = o.max_loading_overhead * compute_s * d;
      resident_cap = may_stream >= static_cast<double>(total) ? 0 : total - static_cast<uint64_t>(may_stream);
      plan.max_loading_overhead = o.max_loading_overhead;
      plan.predicted_compute_ms = compute_s * 1e3;
      plan.resident_cap_bytes = resident_cap;
    }
  }
  // What streaming needs beside the resident weights: a ring slot per weight a step loads whole
  // (sized for the largest), and a piece buffer per thread for weights taken in pieces. Which
  // weights stream depends on the room left, and the room on those buffers: start from none and
  // grow them until the placement needs no more.
  struct Buffers {
    int slots = 0;
    uint64_t slot_bytes = 0;
    uint64_t piece_scratch = 0;
    uint64_t bytes() const { return slot_bytes * static_cast<uint64_t>(slots) + piece_scratch; }
  } buffers;
  // Smallest first: once one does not fit, none after it does. The first that does not fit keeps
  // as many of its leading pieces resident as the room left holds, if it streams in pieces.
  auto place = [&](uint64_t room) {
    for (size_t i : order) {
      StoredWeight& w = m.weights[i];
      w.streamed = w.bytes > room;
      w.resident_pieces = w.streamed && w.piece_bytes > 0 ? room / w.piece_bytes : 0;
      room = w.streamed ? 0 : room - w.bytes;
    }
  };
  auto needed_buffers = [&](int slots_wanted) {
    Buffers b;
    std::vector<int> per_step(m.steps.size(), 0);
    for (const StoredWeight& w : m.weights) {
      if (!w.streamed) continue;
      if (w.piece_bytes > 0) {
        b.piece_scratch = std::max<uint64_t>(
            b.piece_scratch, m.steps[static_cast<size_t>(w.step)].kernel->pieces_scratch_bytes(w.index, threads_));
      } else {
        ++per_step[static_cast<size_t>(w.step)];
        b.slot_bytes = std::max(b.slot_bytes, align_up(w.bytes, 64));
      }
    }
    const int needed = per_step.empty() ? 0 : *std::max_element(per_step.begin(), per_step.end());
    b.slots = needed == 0 ? 0 : std::max(slots_wanted, needed);
    return std::make_pair(b, needed);
  };
  const uint64_t room_all = o.budget_bytes - fixed;
  if (total > std::min(room_all, resident_cap)) {
    for (int round = 0; round < 64; ++round) {
      if (buffers.bytes() > room_all) break;
      place(std::min(room_all - buffers.bytes(), resident_cap));
      auto [want, needed] = needed_buffers(o.ring_slots);
      // A tight budget gives up prefetching depth before it gives up: the fewest slots a step needs.
      if (want.bytes() > room_all) want.slots = needed;
      if (want.slots <= buffers.slots && want.slot_bytes <= buffers.slot_bytes && want.piece_scratch <= buffers.piece_scratch) break;
      buffers.slots = std::max(buffers.slots, want.slots);
      buffers.slot_bytes = std::max(buffers.slot_bytes, want.slot_bytes);
      buffers.piece_scratch = std::max(buffers.piece_scratch, want.piece_scratch);
    }
    if (buffers.bytes() > room_all) {
      return resource_exhausted("streaming buffers of {} bytes ({} ring slots of {} bytes, {} bytes of piece buffers) do not fit the {} "
                                "bytes left of a budget of {} (tile the layer, or raise the budget)",
                                buffers.bytes(), buffers.slots, buffers.slot_bytes, buffers.piece_scratch, room_all, o.budget_bytes);
    }
  } else {
    place(room_all);
  }
  if (auto [want, needed] = needed_buffers(o.ring_slots);
      (needed > 0 && (needed > buffers.slots || want.slot_bytes > buffers.slot_bytes)) || want.piece_scratch > buffers.piece_scratch) {
    return internal_error("weight streaming: the plan's buffers did not settle");
  }
  plan.ring_slots = buffers.slots;
  plan.ring_slot_bytes = buffers.slots > 0 ? buffers.slot_bytes : 0;
  plan.piece_buffer_bytes = buffers.piece_scratch;
  for (size_t i = 0; i < m.weights.size(); ++i) {
    StoredWeight& w = m.weights[i];
    Kernel& k = *m.steps[static_cast<size_t>(w.step)].kernel;
    plan.placements.push_back({w.step, w.index, w.bytes, w.streamed, w.streamed && w.piece_bytes > 0, w.resident_pieces * w.piece_bytes});
    if (w.streamed) {
      Step& st = m.steps[static_cast<size_t>(w.step)];
      if (w.piece_bytes > 0) {
        st.pieces = static_cast<int>(i);
        const uint64_t kept = w.resident_pieces * w.piece_bytes;
        if (kept > 0) {
          w.resident = allocate_buffer(kept);
          if (!w.resident) return resource_exhausted("cannot allocate {} bytes for resident pieces", kept);
          for (uint64_t p = 0; p < w.resident_pieces; ++p) {
            TENET_RETURN_IF_ERROR(m.store->get_piece(w.id, p, std::span(w.resident.get() + p * w.piece_bytes, w.piece_bytes)));
          }
          plan.resident_weight_bytes += kept;
        }
        plan.streamed_weight_bytes += w.bytes - kept;
        plan.streamed_in_pieces_bytes += w.bytes - kept;
      } else {
        plan.streamed_weight_bytes += w.bytes;
        st.streamed.push_back(i);
      }
      continue;
    }
    w.resident = allocate_buffer(w.bytes);
    if (!w.resident) return resource_exhausted("cannot allocate {} bytes for a resident weight", w.bytes);
    TENET_RETURN_IF_ERROR(m.store->get(w.id, std::span(w.resident.get(), w.bytes)));
    k.set_owned_weight_data(w.index, w.resident.get());
    plan.resident_weight_bytes += w.bytes;
  }
  for (int i = 0; i < plan.ring_slots; ++i) {
    m.ring.push_back(allocate_buffer(plan.ring_slot_bytes));
    if (!m.ring.back()) return resource_exhausted("cannot allocate a ring slot of {} bytes", plan.ring_slot_bytes);
  }
  if (plan.piece_buffer_bytes > 0) {
    m.piece_scratch = allocate_buffer(plan.piece_buffer_bytes);
    if (!m.piece_scratch) return resource_exhausted("cannot allocate {} bytes of piece buffers", plan.piece_buffer_bytes);
  }
  std::vector<RingLoader::Entry> schedule;
  for (Step& st : m.steps) {
    m.step_schedule.emplace_back(schedule.size(), schedule.size() + st.streamed.size());
    for (size_t w : st.streamed) schedule.push_back({m.weights[w].id, m.weights[w].bytes});
  }
  // Prefetch in the background when a core is left beside the compute threads.
  plan.background_loading = o.prefetch == StreamingOptions::Prefetch::kBackground ||
                            (o.prefetch == StreamingOptions::Prefetch::kAuto && omp_get_num_procs() > threads_);
  if (!schedule.empty()) m.loader = std::make_unique<RingLoader>(*m.store, m.ring, std::move(schedule), plan.background_loading);
  plan.planned_peak_bytes = plan.arena_bytes + plan.scratchpad_bytes + plan.constant_bytes + plan.resident_weight_bytes +
                            plan.ring_slot_bytes * static_cast<uint64_t>(plan.ring_slots) + plan.piece_buffer_bytes;
  if (plan.max_loading_overhead > 0) {
    plan.predicted_loading_ms = static_cast<double>(plan.streamed_weight_bytes) * streamed_byte_s * 1e3;
  }
  return ok_status();
}

void CompiledModel::wipe_activations() {
  // explicit_bzero: a plain memset of memory that is not read again may be optimized away.
  if (impl_->arena) explicit_bzero(impl_->arena, impl_->arena_bytes);
  if (impl_->scratchpad) explicit_bzero(impl_->scratchpad, impl_->scratchpad_bytes);
}

Status CompiledModel::run(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs) {
  return run_steps(inputs, outputs, nullptr);
}

Status CompiledModel::run_profiled(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs,
                                   std::vector<double>& step_ms) {
  step_ms.resize(impl_->steps.size(), 0.0);
  return run_steps(inputs, outputs, &step_ms);
}

Status CompiledModel::run_steps(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs,
                                std::vector<double>* step_ms) {
  Impl& m = *impl_;
  if (inputs.size() != inputs_.size()) {
    return invalid_argument("the model takes {} inputs, {} were given", inputs_.size(), inputs.size());
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorInfo& info = inputs_[i];
    if (inputs[i].dtype != info.dtype || inputs[i].shape != info.shape) {
      return invalid_argument("input '{}' must be {} {}, got {} {}", info.name, dtype_name(info.dtype), shape_to_string(info.shape),
                              dtype_name(inputs[i].dtype), shape_to_string(inputs[i].shape));
    }
    std::memcpy(m.input_data[i], inputs[i].data, inputs[i].size_bytes());
  }
  omp_set_num_threads(threads_);
  if (m.loader) m.loader->begin_run();
  // However the run ends, the loader is idle afterwards.
  struct EndRun {
    RingLoader* l;
    ~EndRun() {
      if (l) l->end_run();
    }
  } end_run{m.loader.get()};
  for (size_t i = 0; i < m.steps.size(); ++i) {
    const auto start = step_ms ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    // This step's streamed weights, in ring slots (a step never needs more weights at once than
    // the ring has slots: plan_streaming sized it so).
    const auto [first, last] = m.loader ? m.step_schedule[i] : std::pair<size_t, size_t>{0, 0};
    for (size_t j = first; j < last; ++j) {
      Result<std::byte*> slot = m.loader->acquire(j);
      if (!slot.ok()) return slot.status().with_context(fmt::format("loading the weights of step {} ({})", i, step_info_[i].node));
      m.steps[i].kernel->set_owned_weight_data(m.weights[m.steps[i].streamed[j - first]].index, *slot);
    }
    Status s;
    if (m.steps[i].pieces >= 0) {
      // A weight taken piece by piece: each piece is decrypted by the thread that uses it, into
      // that thread's buffer, right before its rows are computed; the first resident_pieces
      // pieces stay in enclave memory (the room the budget had left).
      const StoredWeight& w = m.weights[static_cast<size_t>(m.steps[i].pieces)];
      WeightStore& store = *m.store;
      auto load = [&store, &w](uint64_t piece, std::span<std::byte> buffer) -> Result<const std::byte*> {
        if (piece < w.resident_pieces) return w.resident.get() + piece * w.piece_bytes;
        TENET_RETURN_IF_ERROR(store.get_piece(w.id, piece, buffer));
        return buffer.data();
      };
      auto dot = [&store, &w](uint64_t piece, const float* x, int64_t k, std::span<float> lanes) -> Result<bool> {
        if (piece < w.resident_pieces || !store.dots_pieces(k)) return false;
        TENET_RETURN_IF_ERROR(store.dot_piece(w.id, piece, x, k, lanes));
        return true;
      };
      s = m.steps[i].kernel->execute_pieces(m.stream, w.index, load, dot,
                                            std::span(m.piece_scratch.get(), streaming_plan_.piece_buffer_bytes));
      if (!s.ok()) return s.with_context(fmt::format("loading the weights of step {} ({}) piece by piece", i, step_info_[i].node));
    } else {
      s = m.steps[i].kernel->execute(m.stream);
    }
    if (last > first) {
      m.stream.wait();
      m.loader->release(last - 1);
    }
    if (!s.ok()) return s.with_context(fmt::format("step {} ({})", i, step_info_[i].node));
    if (step_ms) {
      m.stream.wait();
      (*step_ms)[i] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
  }
  m.stream.wait();
  outputs.resize(outputs_.size());
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (!outputs[i].defined() || outputs[i].dtype() != outputs_[i].dtype || outputs[i].shape() != outputs_[i].shape) {
      TENET_ASSIGN_OR_RETURN(outputs[i], Tensor::zeros(outputs_[i].dtype, outputs_[i].shape));
    }
    std::memcpy(outputs[i].data(), m.output_data[i], outputs[i].size_bytes());
  }
  return ok_status();
}

Result<std::unique_ptr<CompiledModel>> compile_model(ir::Graph&& imported, const std::map<std::string, Shape>& input_shapes,
                                                     const CompileOptions& options, passes::PassStats* stats) {
  ir::Graph g = std::move(imported);
  passes::PassStats local;
  passes::PassStats& st = stats ? *stats : local;
  TENET_RETURN_IF_ERROR(passes::prepare_graph(g, input_shapes, options.optimize, st));
  int tiled = 0;
  if (options.streaming.store) {
    // Tiling only matters when weights will stream: when they all fit beside a ring, every one
    // stays resident and tiles would only add steps.
    uint64_t weights = 0;
    for (const ir::Value& v : g.values) weights += v.constant_bytes();
    const uint64_t slot = ring_slot_target_bytes(options.streaming.budget_bytes, options.streaming.ring_slots);
    if (weights + slot * static_cast<uint64_t>(options.streaming.ring_slots) > options.streaming.budget_bytes) {
      // Matrix-vector products stream piece by piece (no ring slot): they are not tiled.
      TENET_ASSIGN_OR_RETURN(tiled, passes::tile_linear_outputs(g, slot, [&g, &options](const ir::Node& n) {
                               return !options.reference_only && gemv_applicable(g, n);
                             }));
    }
  }
  TENET_ASSIGN_OR_RETURN(auto model, CompiledModel::compile(std::move(g), options));
  model->streaming_plan_.tiled_layers = tiled;
  return model;
}

Result<std::unique_ptr<CompiledModel>> compile_model(const ir::Graph& imported, const std::map<std::string, Shape>& input_shapes,
                                                     const CompileOptions& options, passes::PassStats* stats) {
  ir::Graph g = imported;
  return compile_model(std::move(g), input_shapes, options, stats);
}

uint64_t ring_slot_target_bytes(uint64_t budget_bytes, int ring_slots) {
  return budget_bytes / 4 / static_cast<uint64_t>(std::max(ring_slots, 1));
}

}  // namespace tenet::cpu
