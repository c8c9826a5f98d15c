// tenet's graph IR: what the ONNX importer produces, the passes rewrite, and the compiler lowers.
//
// A Graph owns Values (tensors: graph inputs, initializers/constants, intermediates) and Nodes
// (operators). Values are addressed by ValueId, an index into Graph::values; nodes refer to their
// inputs and outputs by id, with kNoValue for an omitted optional input. A Value with a defined
// `constant` is an initializer or a folded constant. Shapes are concrete once bind_input_shapes()
// and shape inference have run (tenet compiles per input shape, as XNNPACK's reshape step does).
//
// Fusion passes attach PostOps to a node (Conv + Add + Relu -> one Conv with {sum, relu});
// the residual operand of a `sum` post-op is appended to the node's inputs.
//
// Deferred constants (bounded loading, weight_streaming.h): a graph may carry a ConstantStore, a
// place outside the bounded memory (in an enclave: sealed untrusted memory). A large constant can
// then live there instead of in Value::constant: the Value is "deferred" (is_constant() stays
// true; dtype and shape are known) and its bytes are read back on demand, by load_constant() or
// read_constant(). `constant` may hold a materialized copy beside the deferred entry (a cache the
// compiler drops again once the kernels that needed it have taken their copies). So the graph
// never needs all of a model's weights in memory at once: the importer defers each large
// initializer as it converts it, the passes that rewrite a constant put the result back deferred,
// and the compiler materializes a node's constants only while it builds that node's kernel.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace tenet::ir {

using ValueId = int32_t;
inline constexpr ValueId kNoValue = -1;

struct Attribute {
  std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>, Tensor> value;
};

// Storage for deferred constants, outside the bounded memory (cpu::WeightStore implements it).
// The size from which a weight lives outside memory the engine counts: deferred while a model
// loads (Graph::min_deferred_bytes, onnx_import::ImportOptions) and streamed while it runs
// (cpu::StreamingOptions::min_streamed_bytes). Below it, a weight's per-load cost dominates
// (biases, BN parameters, shapes), and passes read such constants freely.
inline constexpr uint64_t kMinDeferredBytes = 64 * 1024;

class ConstantStore {
 public:
  virtual ~ConstantStore() = default;
  // Copies `data` in; the caller frees its buffer afterwards.
  virtual Result<uint32_t> put_constant(std::span<const std::byte> data) = 0;
  // An entry of `size` bytes that `fill(offset, dst)` writes in order of offset, piece by piece
  // (a sealed package's parts of one weight). This default assembles it in memory first; a store
  // that keeps its own pieces need not.
  using Filler = std::function<Status(uint64_t offset, std::span<std::byte> dst)>;
  virtual Result<uint32_t> put_constant_from(uint64_t size, const Filler& fill);
  // Bytes [offset, offset + dst.size()) of an entry of `entry_bytes` bytes, checked to be the
  // bytes that were put.
  virtual Status get_constant(uint32_t id, uint64_t entry_bytes, uint64_t offset, std::span<std::byte> dst) = 0;
};

struct Value {
  std::string name;
  DType dtype = DType::kUndefined;
  Shape shape;               // valid when shape_known
  bool shape_known = false;
  Tensor constant;           // defined for initializers and folded constants held in memory
  // A deferred constant: its bytes are entry `deferred_id` of the graph's constant_store;
  // `constant` is then either undefined or a materialized copy of them.
  bool deferred = false;
  uint32_t deferred_id = 0;
  bool is_constant() const { return constant.defined() || deferred; }
  // Bytes of a constant's data, held or deferred.
  size_t constant_bytes() const;
};

// An operation fused into the epilogue of a node (oneDNN post-ops).
struct PostOp {
  enum class Kind {
    kSum,          // dst += residual (the node's last input)
    kRelu,         // max(x, 0)
    kClip,         // min(max(x, alpha), beta)
    kSigmoid,      // 1 / (1 + exp(-x))
    kHardSigmoid,  // max(0, min(1, alpha * x + beta))
    kHardSwish,    // x * max(0, min(1, x / 6 + 1 / 2))
    kGeluErf,      // 0.5 x (1 + erf(x / sqrt 2))
    kSwish,        // x * sigmoid(x) (SiLU)
  };
  Kind kind;
  float alpha = 0.f;
  float beta = 0.f;
};
const char* post_op_name(PostOp::Kind kind);

struct Node {
  std::string name;
  std::string op_type;  // ONNX op type, or a tenet-internal one (no domain prefix)
  std::string domain;   // "" for the default ONNX domain
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  std::map<std::string, Attribute> attrs;
  std::vector<PostOp> post_ops;
  bool dead = false;  // marked by passes; removed by Graph::compact()

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  // Typed attribute access; error names the node when the attribute has another type.
  Result<int64_t> attr_int(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const;
  Result<float> attr_float(const std::string& key, std::optional<float> fallback = std::nullopt) const;
  Result<std::string> attr_string(const std::string& key, std::optional<std::string> fallback = std::nullopt) const;
  Result<std::vector<int64_t>> attr_ints(const std::string& key,
                                         std::optional<std::vector<int64_t>> fallback = std::nullopt) const;
  Result<std::vector<float>> attr_floats(const std::string& key,
                                         std::optional<std::vector<float>> fallback = std::nullopt) const;
  Result<Tensor> attr_tensor(const std::string& key) const;
  // "node 'conv1' (Conv)" for error messages.
  std::string describe() const;
  // Number of inputs that are present (not kNoValue) counting from the front.
  ValueId input(size_t i) const { return i < inputs.size() ? inputs[i] : kNoValue; }
};

class Graph {
 public:
  std::string name;
  int64_t opset = 0;
  std::vector<Value> values;
  std::vector<Node> nodes;  // topological order after topo_sort()
  std::vector<ValueId> inputs;   // graph inputs fed at run time (initializers excluded)
  std::vector<ValueId> outputs;

  ValueId add_value(Value v);
  ValueId add_constant(std::string name, Tensor t);

  // Deferred constants (see the top of this file). Null: every constant is held in memory.
  std::shared_ptr<ConstantStore> constant_store;
  // Constants of at least this many bytes are deferred when there is a store (smaller ones, like
  // shapes, biases and BN parameters, stay held: passes read them freely).
  uint64_t min_deferred_bytes = kMinDeferredBytes;
  bool defers(uint64_t bytes) const { return constant_store != nullptr && bytes >= min_deferred_bytes; }
  // add_constant, deferring `t` (and freeing it) when defers(its size).
  Result<ValueId> add_constant_deferrable(std::string name, Tensor t);
  // A deferred constant straight from bytes (an importer's raw data), no Tensor in between.
  Result<ValueId> add_deferred_constant(std::string name, DType dtype, Shape shape, std::span<const std::byte> bytes);
  // The same from bytes produced in order (ConstantStore::put_constant_from).
  Result<ValueId> add_deferred_constant_from(std::string name, DType dtype, Shape shape, const ConstantStore::Filler& fill);
  // Moves a held constant into the store and frees it. Requires constant_store.
  Status defer_constant(ValueId id);
  // A constant's data: the held tensor (shared), or a fresh tensor read from the store.
  Result<Tensor> load_constant(ValueId id) const;
  // Bytes [offset, offset + dst.size()) of a constant's data, held or deferred.
  Status read_constant(ValueId id, uint64_t offset, std::span<std::byte> dst) const;
  // Keeps a materialized copy of a deferred constant in `constant` (a no-op when held).
  Status materialize(ValueId id);
  // Drops the materialized copy of a deferred constant (a no-op for a held one).
  void drop_materialized(ValueId id);
  Value& value(ValueId id) { return values[static_cast<size_t>(id)]; }
  const Value& value(ValueId id) const { return values[static_cast<size_t>(id)]; }
  // A fresh value name unique in the graph, derived from `base`.
  std::string unique_name(const std::string& base);

  // Orders nodes so that producers precede consumers; error on a cycle or on a value produced
  // twice or used without a producer (and not an input or constant).
  Status topo_sort();
  // For each value, the index of its producing node (or -1).
  std::vector<int> producers() const;
  // For each value, the indices of the nodes that consume it.
  std::vector<std::vector<int>> consumers() const;
  // Replaces every use of `from` (node inputs and graph outputs) by `to`.
  void replace_all_uses(ValueId from, ValueId to);
  // Marks nodes whose outputs reach no graph output as dead, then compacts.
  void remove_dead_nodes();
  // Drops dead nodes and values no node or graph output references (keeping graph inputs).
  void compact();
  // Sanity checks: ids in range, every used value has a source. Run after every pass in tests.
  Status validate() const;

  // Counts for reporting.
  size_t live_node_count() const;

 private:
  std::map<std::string, int> name_counter_;
};

}  // namespace tenet::ir
