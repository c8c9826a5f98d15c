#include "engine/ir/graph.h"

#include <cstring>
#include <queue>

namespace tenet::ir {

const char* post_op_name(PostOp::Kind kind) {
  switch (kind) {
    case PostOp::Kind::kSum: return "sum";
    case PostOp::Kind::kRelu: return "relu";
    case PostOp::Kind::kClip: return "clip";
    case PostOp::Kind::kSigmoid: return "sigmoid";
    case PostOp::Kind::kHardSigmoid: return "hardsigmoid";
    case PostOp::Kind::kHardSwish: return "hardswish";
    case PostOp::Kind::kGeluErf: return "gelu_erf";
    case PostOp::Kind::kSwish: return "swish";
  }
  return "?";
}

std::string Node::describe() const {
  return fmt::format("node '{}' ({})", name, op_type);
}

namespace {
template <typename T>
Result<T> get_attr(const Node& n, const std::string& key, std::optional<T> fallback, const char* type_name) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end()) {
    if (fallback) return *fallback;
    return invalid_argument("{}: required attribute '{}' is missing", n.describe(), key);
  }
  if (const T* v = std::get_if<T>(&it->second.value)) return *v;
  return invalid_argument("{}: attribute '{}' is not of type {}", n.describe(), key, type_name);
}
}  // namespace

Result<int64_t> Node::attr_int(const std::string& key, std::optional<int64_t> fallback) const {
  return get_attr<int64_t>(*this, key, fallback, "int");
}
Result<float> Node::attr_float(const std::string& key, std::optional<float> fallback) const {
  return get_attr<float>(*this, key, fallback, "float");
}
Result<std::string> Node::attr_string(const std::string& key, std::optional<std::string> fallback) const {
  return get_attr<std::string>(*this, key, std::move(fallback), "string");
}
Result<std::vector<int64_t>> Node::attr_ints(const std::string& key, std::optional<std::vector<int64_t>> fallback) const {
  return get_attr<std::vector<int64_t>>(*this, key, std::move(fallback), "ints");
}
Result<std::vector<float>> Node::attr_floats(const std::string& key, std::optional<std::vector<float>> fallback) const {
  return get_attr<std::vector<float>>(*this, key, std::move(fallback), "floats");
}
Result<Tensor> Node::attr_tensor(const std::string& key) const {
  return get_attr<Tensor>(*this, key, std::nullopt, "tensor");
}

ValueId Graph::add_value(Value v) {
  values.push_back(std::move(v));
  return static_cast<ValueId>(values.size() - 1);
}

ValueId Graph::add_constant(std::string vname, Tensor t) {
  Value v;
  v.name = std::move(vname);
  v.dtype = t.dtype();
  v.shape = t.shape();
  v.shape_known = true;
  v.constant = std::move(t);
  return add_value(std::move(v));
}

size_t Value::constant_bytes() const {
  if (constant.defined()) return constant.size_bytes();
  if (!deferred) return 0;
  Result<size_t> b = byte_size(dtype, shape);
  return b.ok() ? *b : 0;
}

Result<ValueId> Graph::add_constant_deferrable(std::string vname, Tensor t) {
  const bool defer = defers(t.size_bytes());
  const ValueId id = add_constant(std::move(vname), std::move(t));
  if (defer) TENET_RETURN_IF_ERROR(defer_constant(id));
  return id;
}

Result<ValueId> Graph::add_deferred_constant(std::string vname, DType dtype, Shape vshape, std::span<const std::byte> bytes) {
  TENET_ASSIGN_OR_RETURN(const size_t want, byte_size(dtype, vshape));
  if (want != bytes.size()) return internal_error("deferred constant '{}': {} bytes for {} expected", vname, bytes.size(), want);
  return add_deferred_constant_from(std::move(vname), dtype, std::move(vshape), [bytes](uint64_t offset, std::span<std::byte> dst) {
    std::memcpy(dst.data(), bytes.data() + offset, dst.size());
    return ok_status();
  });
}

Result<uint32_t> ConstantStore::put_constant_from(uint64_t size, const Filler& fill) {
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  TENET_RETURN_IF_ERROR(fill(0, bytes));
  return put_constant(bytes);
}

Result<ValueId> Graph::add_deferred_constant_from(std::string vname, DType dtype, Shape vshape, const ConstantStore::Filler& fill) {
  if (constant_store == nullptr) return internal_error("deferred constant '{}' without a constant store", vname);
  TENET_ASSIGN_OR_RETURN(const size_t want, byte_size(dtype, vshape));
  Value v;
  v.name = std::move(vname);
  v.dtype = dtype;
  v.shape = std::move(vshape);
  v.shape_known = true;
  v.deferred = true;
  TENET_ASSIGN_OR_RETURN(v.deferred_id, constant_store->put_constant_from(want, fill));
  return add_value(std::move(v));
}

Status Graph::defer_constant(ValueId id) {
  Value& v = value(id);
  if (constant_store == nullptr) return internal_error("deferring '{}' without a constant store", v.name);
  if (!v.deferred) {
    if (!v.constant.defined()) return internal_error("deferring '{}', which is not a constant", v.name);
    TENET_ASSIGN_OR_RETURN(v.deferred_id, constant_store->put_constant(std::span(static_cast<const std::byte*>(v.constant.data()),
                                                                                   v.constant.size_bytes())));
    v.deferred = true;
  }
  v.constant = Tensor();
  return ok_status();
}

Result<Tensor> Graph::load_constant(ValueId id) const {
  const Value& v = value(id);
  if (v.constant.defined()) return v.constant;
  if (!v.deferred) return internal_error("'{}' is not a constant", v.name);
  TENET_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(v.dtype, v.shape));
  TENET_RETURN_IF_ERROR(read_constant(id, 0, std::span(static_cast<std::byte*>(t.data()), t.size_bytes())));
  return t;
}

Status Graph::read_constant(ValueId id, uint64_t offset, std::span<std::byte> dst) const {
  const Value& v = value(id);
  if (offset + dst.size() > v.constant_bytes()) {
    return internal_error("reading bytes [{}, {}) of constant '{}' of {} bytes", offset, offset + dst.size(), v.name, v.constant_bytes());
  }
  if (v.constant.defined()) {
    std::memcpy(dst.data(), static_cast<const std::byte*>(v.constant.data()) + offset, dst.size());
    return ok_status();
  }
  if (constant_store == nullptr) return internal_error("deferred constant '{}' without a constant store", v.name);
  Status s = constant_store->get_constant(v.deferred_id, v.constant_bytes(), offset, dst);
  if (!s.ok()) return s.with_context(fmt::format("loading constant '{}'", v.name));
  return ok_status();
}

Status Graph::materialize(ValueId id) {
  if (value(id).constant.defined()) return ok_status();
  TENET_ASSIGN_OR_RETURN(Tensor t, load_constant(id));
  value(id).constant = std::move(t);
  return ok_status();
}

void Graph::drop_materialized(ValueId id) {
  if (value(id).deferred) value(id).constant = Tensor();
}

std::string Graph::unique_name(const std::string& base) {
  if (name_counter_.empty()) {
    for (const Value& v : values) name_counter_[v.name] = 0;
  }
  std::string candidate = base;
  while (name_counter_.count(candidate)) {
    candidate = fmt::format("{}__{}", base, ++name_counter_[base]);
  }
  name_counter_[candidate] = 0;
  return candidate;
}

std::vector<int> Graph::producers() const {
  std::vector<int> p(values.size(), -1);
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].dead) continue;
    for (ValueId o : nodes[i].outputs) {
      if (o != kNoValue) p[static_cast<size_t>(o)] = static_cast<int>(i);
    }
  }
  return p;
}

std::vector<std::vector<int>> Graph::consumers() const {
  std::vector<std::vector<int>> c(values.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].dead) continue;
    for (ValueId in : nodes[i].inputs) {
      if (in != kNoValue) {
        auto& list = c[static_cast<size_t>(in)];
        if (list.empty() || list.back() != static_cast<int>(i)) list.push_back(static_cast<int>(i));
      }
    }
  }
  return c;
}

Status Graph::validate() const {
  const auto nv = static_cast<ValueId>(values.size());
  std::vector<int> produced(values.size(), 0);
  for (const Node& n : nodes) {
    if (n.dead) continue;
    for (ValueId id : n.inputs) {
      if (id != kNoValue && (id < 0 || id >= nv)) return internal_error("{} references value id {} out of range", n.describe(), id);
    }
    for (ValueId id : n.outputs) {
      if (id == kNoValue) continue;
      if (id < 0 || id >= nv) return internal_error("{} produces value id {} out of range", n.describe(), id);
      if (++produced[static_cast<size_t>(id)] > 1) {
        return invalid_argument("value '{}' is produced by more than one node", values[static_cast<size_t>(id)].name);
      }
      if (values[static_cast<size_t>(id)].is_constant()) {
        return invalid_argument("{} writes to '{}', which is an initializer", n.describe(), values[static_cast<size_t>(id)].name);
      }
    }
  }
  std::vector<bool> is_input(values.size(), false);
  for (ValueId id : inputs) {
    if (id < 0 || id >= nv) return internal_error("graph input id {} out of range", id);
    is_input[static_cast<size_t>(id)] = true;
  }
  auto has_source = [&](ValueId id) {
    const auto i = static_cast<size_t>(id);
    return produced[i] > 0 || is_input[i] || values[i].is_constant();
  };
  for (const Node& n : nodes) {
    if (n.dead) continue;
    for (ValueId id : n.inputs) {
      if (id != kNoValue && !has_source(id)) {
        return invalid_argument("{} uses '{}', which no node produces and which is neither a graph input nor an initializer",
                                n.describe(), values[static_cast<size_t>(id)].name);
      }
    }
  }
  for (ValueId id : outputs) {
    if (id < 0 || id >= nv) return internal_error("graph output id {} out of range", id);
    if (!has_source(id)) return invalid_argument("graph output '{}' is never produced", values[static_cast<size_t>(id)].name);
  }
  return ok_status();
}

Status Graph::topo_sort() {
  TENET_RETURN_IF_ERROR(validate());
  const std::vector<int> prod = producers();
  std::vector<int> indegree(nodes.size(), 0);
  std::vector<std::vector<int>> succ(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].dead) continue;
    for (ValueId in : nodes[i].inputs) {
      if (in == kNoValue) continue;
      int p = prod[static_cast<size_t>(in)];
      if (p >= 0) {
        succ[static_cast<size_t>(p)].push_back(static_cast<int>(i));
        ++indegree[i];
      }
    }
  }
  // Kahn's algorithm; a min-heap on the original index keeps the exporter's order where possible.
  std::priority_queue<int, std::vector<int>, std::greater<>> ready;
  size_t live = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].dead) continue;
    ++live;
    if (indegree[i] == 0) ready.push(static_cast<int>(i));
  }
  std::vector<int> order;
  order.reserve(live);
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int s : succ[static_cast<size_t>(i)]) {
      if (--indegree[static_cast<size_t>(s)] == 0) ready.push(s);
    }
  }
  if (order.size() != live) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!nodes[i].dead && indegree[i] > 0) {
        return invalid_argument("graph has a cycle through {}", nodes[i].describe());
      }
    }
  }
  std::vector<Node> sorted;
  sorted.reserve(order.size());
  for (int i : order) sorted.push_back(std::move(nodes[static_cast<size_t>(i)]));
  nodes = std::move(sorted);
  return ok_status();
}

void Graph::replace_all_uses(ValueId from, ValueId to) {
  for (Node& n : nodes) {
    for (ValueId& in : n.inputs) {
      if (in == from) in = to;
    }
  }
  for (ValueId& o : outputs) {
    if (o == from) o = to;
  }
}

void Graph::remove_dead_nodes() {
  const std::vector<int> prod = producers();
  std::vector<bool> live_node(nodes.size(), false);
  std::vector<int> stack;
  for (ValueId o : outputs) {
    int p = prod[static_cast<size_t>(o)];
    if (p >= 0 && !live_node[static_cast<size_t>(p)]) {
      live_node[static_cast<size_t>(p)] = true;
      stack.push_back(p);
    }
  }
  while (!stack.empty()) {
    int i = stack.back();
    stack.pop_back();
    for (ValueId in : nodes[static_cast<size_t>(i)].inputs) {
      if (in == kNoValue) continue;
      int p = prod[static_cast<size_t>(in)];
      if (p >= 0 && !live_node[static_cast<size_t>(p)]) {
        live_node[static_cast<size_t>(p)] = true;
        stack.push_back(p);
      }
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!live_node[i]) nodes[i].dead = true;
  }
  compact();
}

void Graph::compact() {
  std::vector<Node> kept;
  kept.reserve(nodes.size());
  for (Node& n : nodes) {
    if (!n.dead) kept.push_back(std::move(n));
  }
  nodes = std::move(kept);
  // Drop values nothing refers to, renumbering ids.
  std::vector<bool> used(values.size(), false);
  for (ValueId id : inputs) used[static_cast<size_t>(id)] = true;
  for (ValueId id : outputs) used[static_cast<size_t>(id)] = true;
  for (const Node& n : nodes) {
    for (ValueId id : n.inputs) if (id != kNoValue) used[static_cast<size_t>(id)] = true;
    for (ValueId id : n.outputs) if (id != kNoValue) used[static_cast<size_t>(id)] = true;
  }
  std::vector<ValueId> remap(values.size(), kNoValue);
  std::vector<Value> kept_values;
  for (size_t i = 0; i < values.size(); ++i) {
    if (used[i]) {
      remap[i] = static_cast<ValueId>(kept_values.size());
      kept_values.push_back(std::move(values[i]));
    }
  }
  values = std::move(kept_values);
  auto fix = [&](ValueId& id) {
    if (id != kNoValue) id = remap[static_cast<size_t>(id)];
  };
  for (ValueId& id : inputs) fix(id);
  for (ValueId& id : outputs) fix(id);
  for (Node& n : nodes) {
    for (ValueId& id : n.inputs) fix(id);
    for (ValueId& id : n.outputs) fix(id);
  }
}

size_t Graph::live_node_count() const {
  size_t n = 0;
  for (const Node& node : nodes) n += node.dead ? 0 : 1;
  return n;
}

}  // namespace tenet::ir
