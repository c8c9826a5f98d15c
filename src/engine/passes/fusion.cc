// Graph rewrites that remove no-op nodes and fuse operator chains into one node (passes.h).
//
// Every pass works on a topologically sorted graph and keeps it sorted: a fused node takes the
// place of one of the nodes it replaces, chosen so that all its inputs are produced before it and
// all consumers of its outputs come after it. A fused node produces the *last* value of the chain
// it replaces, so that value keeps its id and name (and its place among the graph outputs); the
// intermediate values of the chain must have no other consumer and must not be graph outputs.
// Each pass reads producers/consumers once and keeps that index current through its own rewrites.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/passes/passes.h"

namespace tenet::passes {
namespace {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::PostOp;
using ir::Value;
using ir::ValueId;

// Producers and consumers of every value as they were when the pass started, updated by the
// pass's rewrites. Values created by a pass (new constants) lie beyond the index: they have no
// producer and their consumers are never queried.
struct GraphIndex {
  std::vector<int> producer;
  std::vector<std::vector<int>> consumers;
  std::vector<bool> is_output;

  explicit GraphIndex(const Graph& g)
      : producer(g.producers()), consumers(g.consumers()), is_output(g.values.size(), false) {
    for (ValueId id : g.outputs) is_output[static_cast<size_t>(id)] = true;
  }

  bool in_range(ValueId v) const { return v >= 0 && static_cast<size_t>(v) < producer.size(); }
  int producer_of(ValueId v) const { return in_range(v) ? producer[static_cast<size_t>(v)] : -1; }
  bool graph_output(ValueId v) const { return in_range(v) && is_output[static_cast<size_t>(v)]; }
  // True when `node` is the only consumer of `v` and `v` is not a graph output: the value can
  // disappear into a fused node.
  bool only_consumer(ValueId v, int node) const {
    if (!in_range(v) || is_output[static_cast<size_t>(v)]) return false;
    const auto& c = consumers[static_cast<size_t>(v)];
    return c.size() == 1 && c[0] == node;
  }
  bool unused(ValueId v) const {
    return !in_range(v) || (consumers[static_cast<size_t>(v)].empty() && !is_output[static_cast<size_t>(v)]);
  }
  void set_producer(ValueId v, int node) {
    if (in_range(v)) producer[static_cast<size_t>(v)] = node;
  }
  // Node `from` no longer reads `v`; node `to` does (to == -1: nobody new).
  void move_consumer(ValueId v, int from, int to) {
    if (!in_range(v)) return;
    auto& c = consumers[static_cast<size_t>(v)];
    c.erase(std::remove(c.begin(), c.end(), from), c.end());
    if (to >= 0 && std::find(c.begin(), c.end(), to) == c.end()) c.push_back(to);
  }
};

bool is_op(const Node& n, std::string_view op_type) {
  return !n.dead && n.domain.empty() && n.op_type == op_type;
}

bool is_float32(const Value& v) { return v.dtype == DType::kFloat32 && v.shape_known; }

// The value of a float32 constant with exactly one element (a scalar or a [1]-shaped tensor).
std::optional<double> scalar_constant(const Graph& g, ValueId id) {
  if (id == kNoValue) return std::nullopt;
  const Value& v = g.value(id);
  if (!v.is_constant() || v.constant.numel() != 1 || v.constant.dtype() != DType::kFloat32) return std::nullopt;
  return static_cast<double>(*v.constant.as<float>());
}

// Exporters write sqrt(2), 1/sqrt(2), 0.5 and 1 rounded to float32.
bool scalar_near(const Graph& g, ValueId id, double expected) {
  std::optional<double> v = scalar_constant(g, id);
  return v && std::abs(*v - expected) <= 1e-6 * std::abs(expected);
}

// A float32 constant with `count` elements, or nullptr.
const Tensor* float_constant(const Graph& g, ValueId id, int64_t count) {
  if (id == kNoValue) return nullptr;
  const Value& v = g.value(id);
  if (!v.is_constant() || v.constant.dtype() != DType::kFloat32 || v.constant.numel() != count) return nullptr;
  return &v.constant;
}

// The operand of a binary node that is not `operand` (either position); kNoValue if `operand` is
// not one of its two inputs.
ValueId other_operand(const Node& n, ValueId operand) {
  if (n.inputs.size() != 2) return kNoValue;
  if (n.inputs[0] == operand) return n.inputs[1];
  if (n.inputs[1] == operand) return n.inputs[0];
  return kNoValue;
}

// The only output of a node, or kNoValue when it has several (or none).
ValueId single_output(const Node& n) { return n.outputs.size() == 1 ? n.outputs[0] : kNoValue; }

// Passes leave the graph valid and topologically sorted; a violation is a bug in the pass.
Status check_result(const Graph& g, const char* pass) {
  Status s = g.validate();
  if (!s.ok()) return internal_error("{} left an invalid graph: {}", pass, s.message());
  std::vector<bool> available(g.values.size(), false);
  for (ValueId id : g.inputs) available[static_cast<size_t>(id)] = true;
  for (size_t i = 0; i < g.values.size(); ++i) available[i] = available[i] || g.values[i].is_constant();
  for (const Node& n : g.nodes) {
    for (ValueId id : n.inputs) {
      if (id != kNoValue && !available[static_cast<size_t>(id)]) {
        return internal_error("{} broke the topological order: {} uses '{}' before it is produced", pass,
                              n.describe(), g.value(id).name);
      }
    }
    for (ValueId id : n.outputs) {
      if (id != kNoValue) available[static_cast<size_t>(id)] = true;
    }
  }
  return ok_status();
}

// ---- eliminate_identities ----

// Identity, or Dropout in inference mode whose mask nobody reads. Returns false for a Dropout
// that runs in training mode (a training_mode input that is not a constant false).
bool is_removable_identity(const Graph& g, const GraphIndex& idx, const Node& n) {
  if (n.dead || !n.domain.empty() || n.inputs.empty() || n.inputs[0] == kNoValue || n.outputs.empty() ||
      n.outputs[0] == kNoValue) {
    return false;
  }
  if (n.op_type == "Identity") return n.inputs.size() == 1 && n.outputs.size() == 1;
  if (n.op_type != "Dropout") return false;
  for (size_t i = 1; i < n.outputs.size(); ++i) {
    if (n.outputs[i] != kNoValue && !idx.unused(n.outputs[i])) return false;
  }
  // Opset 12+: Dropout(data, ratio, training_mode); training_mode defaults to false.
  const ValueId training_mode = n.input(2);
  if (training_mode != kNoValue) {
    const Value& t = g.value(training_mode);
    if (!t.is_constant() || t.constant.numel() != 1 || t.constant.dtype() != DType::kBool) return false;
    if (*t.constant.as<bool>()) return false;
  }
  return true;
}

// ---- fuse_gelu ----

struct GeluMatch {
  ValueId x = kNoValue;
  ValueId y = kNoValue;
  std::vector<int> nodes;  // every node of the subgraph; the last one in topological order is last
};

// Matches the erf GELU around the Erf node `e`:
//   d = Div(x, sqrt 2) | Mul(x, 1/sqrt 2);  a = Add(Erf(d), 1)
// then one of
//   y = Mul(Mul(x, a), 0.5)     (torch.onnx)
//   y = Mul(Mul(x, 0.5), a)     (x * 0.5 * (1 + erf(...)) written out, e.g. BERT)
//   y = Mul(x, Mul(a, 0.5))
// with either operand order for the commutative ops.
std::optional<GeluMatch> match_gelu(const Graph& g, const GraphIndex& idx, int e) {
  const Node& erf = g.nodes[static_cast<size_t>(e)];
  if (erf.inputs.size() != 1 || single_output(erf) == kNoValue) return std::nullopt;
  GeluMatch m;

  const ValueId d = erf.inputs[0];
  const int div = idx.producer_of(d);
  if (div < 0 || !idx.only_consumer(d, e)) return std::nullopt;
  const Node& scale = g.nodes[static_cast<size_t>(div)];
  if (is_op(scale, "Div") && scale.inputs.size() == 2 && scalar_near(g, scale.inputs[1], std::sqrt(2.0))) {
    m.x = scale.inputs[0];
  } else if (is_op(scale, "Mul") && scale.inputs.size() == 2) {
    if (scalar_near(g, scale.inputs[1], std::sqrt(0.5))) {
      m.x = scale.inputs[0];
    } else if (scalar_near(g, scale.inputs[0], std::sqrt(0.5))) {
      m.x = scale.inputs[1];
    }
  }
  if (m.x == kNoValue || !is_float32(g.value(m.x))) return std::nullopt;

  // The single consumer of `v`, if it is a binary `op_type` node; `other` receives its other operand.
  auto next = [&](ValueId v, int from, std::string_view op_type, ValueId* other) -> int {
    if (v == kNoValue || !idx.in_range(v) || idx.graph_output(v)) return -1;
    const auto& c = idx.consumers[static_cast<size_t>(v)];
    if (c.size() != 1) return -1;
    const Node& n = g.nodes[static_cast<size_t>(c[0])];
    if (!is_op(n, op_type) || c[0] <= from) return -1;
    *other = other_operand(n, v);
    return *other == kNoValue ? -1 : c[0];
  };

  ValueId other = kNoValue;
  const int add = next(single_output(erf), e, "Add", &other);
  if (add < 0 || !scalar_near(g, other, 1.0)) return std::nullopt;
  const ValueId a = single_output(g.nodes[static_cast<size_t>(add)]);
  const int mul1 = next(a, add, "Mul", &other);
  if (mul1 < 0) return std::nullopt;
  const ValueId m1 = single_output(g.nodes[static_cast<size_t>(mul1)]);
  m.nodes = {div, e, add, mul1};

  if (other == m.x || scalar_near(g, other, 0.5)) {
    // Mul(x, a) * 0.5, or x * Mul(a, 0.5).
    const bool half_next = other == m.x;
    const int mul2 = next(m1, mul1, "Mul", &other);
    if (mul2 < 0) return std::nullopt;
    if (half_next ? !scalar_near(g, other, 0.5) : other != m.x) return std::nullopt;
    m.nodes.push_back(mul2);
    m.y = single_output(g.nodes[static_cast<size_t>(mul2)]);
  } else {
    // Mul(Mul(x, 0.5), a): the half product is computed from x on its own.
    const int half = idx.producer_of(other);
    if (half < 0 || !idx.only_consumer(other, mul1)) return std::nullopt;
    const Node& h = g.nodes[static_cast<size_t>(half)];
    if (!is_op(h, "Mul") || other_operand(h, m.x) == kNoValue || !scalar_near(g, other_operand(h, m.x), 0.5)) {
      return std::nullopt;
    }
    m.nodes.push_back(half);
    m.y = m1;
  }
  if (m.y == kNoValue) return std::nullopt;
  const Value& y = g.value(m.y);
  if (!is_float32(y) || y.shape != g.value(m.x).shape) return std::nullopt;  // no broadcast by the constants
  for (int n : m.nodes) {
    if (g.nodes[static_cast<size_t>(n)].outputs.size() != 1) return std::nullopt;
  }
  std::sort(m.nodes.begin(), m.nodes.end());
  return m;
}

// ---- fuse_activations ----

// The post-op an activation node becomes, or nullopt when it cannot be a post-op.
std::optional<PostOp> activation_post_op(const Graph& g, const Node& n) {
  if (n.dead || !n.domain.empty() || n.inputs.empty() || single_output(n) == kNoValue) return std::nullopt;
  if (n.op_type == "Relu" && n.inputs.size() == 1) return PostOp{PostOp::Kind::kRelu};
  if (n.op_type == "Sigmoid" && n.inputs.size() == 1) return PostOp{PostOp::Kind::kSigmoid};
  if (n.op_type == "HardSwish" && n.inputs.size() == 1) return PostOp{PostOp::Kind::kHardSwish};
  if (n.op_type == "HardSigmoid" && n.inputs.size() == 1) {
    Result<float> alpha = n.attr_float("alpha", 0.2f);
    Result<float> beta = n.attr_float("beta", 0.5f);
    if (!alpha.ok() || !beta.ok()) return std::nullopt;
    return PostOp{PostOp::Kind::kHardSigmoid, *alpha, *beta};
  }
  if (n.op_type == "Gelu" && n.inputs.size() == 1) {
    Result<std::string> approximate = n.attr_string("approximate", std::string("none"));
    if (!approximate.ok() || *approximate != "none") return std::nullopt;
    return PostOp{PostOp::Kind::kGeluErf};
  }
  if (n.op_type == "Clip" && n.inputs.size() <= 3) {
    // Opset 11+: bounds are optional inputs; opset 6: attributes min/max.
    float lo = -std::numeric_limits<float>::infinity();
    float hi = std::numeric_limits<float>::infinity();
    if (n.has_attr("min") || n.has_attr("max")) {
      if (n.inputs.size() != 1) return std::nullopt;
      Result<float> min_attr = n.attr_float("min", lo);
      Result<float> max_attr = n.attr_float("max", hi);
      if (!min_attr.ok() || !max_attr.ok()) return std::nullopt;
      lo = *min_attr;
      hi = *max_attr;
    }
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      if (n.inputs[i] == kNoValue) continue;
      const Tensor* bound = float_constant(g, n.inputs[i], 1);
      if (bound == nullptr) return std::nullopt;
      (i == 1 ? lo : hi) = *bound->as<float>();
    }
    return PostOp{PostOp::Kind::kClip, lo, hi};
  }
  return std::nullopt;
}

bool accepts_activation_post_op(const Node& n) {
  if (n.dead || !n.domain.empty()) return false;
  return n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "MatMul" || n.op_type == "FusedMatMul" ||
         n.op_type == "BatchNormalization" || n.op_type == "Add";
}

// ---- fuse_matmul_epilogue ----

// When operand `v` of node `mm` is Div(t, s), Mul(t, s) or Mul(s, t) with a scalar constant s,
// read by `mm` alone and of t's shape: the scale node and t, so that mm can read t and scale its
// product by the returned factor instead.
struct OperandScale {
  int node = -1;
  ValueId source = kNoValue;
  double factor = 1.0;
};
std::optional<OperandScale> operand_scale(const Graph& g, const GraphIndex& idx, ValueId v, int mm) {
  const int p = idx.producer_of(v);
  if (p < 0 || !idx.only_consumer(v, mm)) return std::nullopt;
  const Node& n = g.nodes[static_cast<size_t>(p)];
  if (n.inputs.size() != 2 || single_output(n) != v) return std::nullopt;
  OperandScale r{p, kNoValue, 1.0};
  if (is_op(n, "Div")) {
    const std::optional<double> s = scalar_constant(g, n.inputs[1]);
    if (!s || *s == 0.0 || !std::isfinite(1.0 / *s)) return std::nullopt;
    r.source = n.inputs[0];
    r.factor = 1.0 / *s;
  } else if (is_op(n, "Mul")) {
    for (int k = 0; k < 2 && r.source == kNoValue; ++k) {
      const std::optional<double> s = scalar_constant(g, n.inputs[static_cast<size_t>(k)]);
      if (s && std::isfinite(*s)) {
        r.source = n.inputs[static_cast<size_t>(1 - k)];
        r.factor = *s;
      }
    }
  }
  if (r.source == kNoValue || !is_float32(g.value(r.source)) || g.value(r.source).shape != g.value(v).shape) return std::nullopt;
  return r;
}

}  // namespace

Status eliminate_identities(Graph& g, PassStats& stats) {
  GraphIndex idx(g);
  // rename[v] != kNoValue: every use of v reads rename[v] instead (chains are followed).
  std::vector<ValueId> rename(g.values.size(), kNoValue);
  auto resolve = [&](ValueId v) {
    while (v != kNoValue && rename[static_cast<size_t>(v)] != kNoValue) v = rename[static_cast<size_t>(v)];
    return v;
  };
  std::vector<bool> is_input(g.values.size(), false);
  for (ValueId id : g.inputs) is_input[static_cast<size_t>(id)] = true;

  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (!is_removable_identity(g, idx, n)) continue;
    const ValueId x = resolve(n.inputs[0]);
    const ValueId y = n.outputs[0];
    n.inputs[0] = x;
    if (!idx.graph_output(y)) {
      rename[static_cast<size_t>(y)] = x;
    } else {
      // y keeps its name as a graph output: x's producer writes y directly and x's readers read y.
      // Not possible when x is a graph input, an initializer or itself a graph output; then the
      // node stays (the runtime copies).
      const int p = idx.producer_of(x);
      if (p < 0 || is_input[static_cast<size_t>(x)] || g.value(x).is_constant() || idx.graph_output(x)) continue;
      Node& producer = g.nodes[static_cast<size_t>(p)];
      std::replace(producer.outputs.begin(), producer.outputs.end(), x, y);
      idx.set_producer(y, p);
      rename[static_cast<size_t>(x)] = y;
    }
    n.dead = true;
    ++stats.identities_removed;
  }
  for (Node& n : g.nodes) {
    if (n.dead) continue;
    for (ValueId& in : n.inputs) in = resolve(in);
  }
  g.compact();
  return check_result(g, "eliminate_identities");
}

Status fold_batch_norm(Graph& g, PassStats& stats) {
  GraphIndex idx(g);
  for (size_t j = 0; j < g.nodes.size(); ++j) {
    Node& bn = g.nodes[j];
    if (!is_op(bn, "BatchNormalization") || bn.inputs.size() != 5 || bn.outputs.empty()) continue;
    // Inference form only: one output (training-mode outputs, if declared, must be unused).
    bool extra_outputs_used = false;
    for (size_t k = 1; k < bn.outputs.size(); ++k) {
      extra_outputs_used = extra_outputs_used || (bn.outputs[k] != kNoValue && !idx.unused(bn.outputs[k]));
    }
    Result<int64_t> training_mode = bn.attr_int("training_mode", 0);
    Result<float> epsilon = bn.attr_float("epsilon", 1e-5f);
    if (extra_outputs_used || !training_mode.ok() || *training_mode != 0 || !epsilon.ok()) continue;

    const ValueId x = bn.inputs[0];
    const ValueId y = bn.outputs[0];
    const int p = idx.producer_of(x);
    if (p < 0 || y == kNoValue || !idx.only_consumer(x, static_cast<int>(j))) continue;
    Node& conv = g.nodes[static_cast<size_t>(p)];
    // A post-op applies before BN would; folding BN into the weights would move it past the post-op.
    if (!is_op(conv, "Conv") || !conv.post_ops.empty() || single_output(conv) != x || conv.inputs.size() < 2 ||
        conv.inputs.size() > 3) {
      continue;
    }
    const Value& w_value = g.value(conv.inputs[1]);
    if (!w_value.is_constant() || w_value.dtype != DType::kFloat32 || w_value.shape.size() < 3) continue;
    const std::string w_name = w_value.name;
    const int64_t out_channels = w_value.shape[0];
    if (out_channels <= 0 || !is_float32(g.value(x)) || !is_float32(g.value(y)) || g.value(x).shape != g.value(y).shape ||
        g.value(x).shape.size() < 2 || g.value(x).shape[1] != out_channels) {
      continue;
    }
    const ValueId b_id = conv.input(2);
    const Tensor* b = b_id == kNoValue ? nullptr : float_constant(g, b_id, out_channels);
    const Tensor* scale = float_constant(g, bn.inputs[1], out_channels);
    const Tensor* shift = float_constant(g, bn.inputs[2], out_channels);
    const Tensor* mean = float_constant(g, bn.inputs[3], out_channels);
    const Tensor* var = float_constant(g, bn.inputs[4], out_channels);
    if ((b_id != kNoValue && b == nullptr) || !scale || !shift || !mean || !var) continue;
    // A deferred weight (ir/graph.h) is read back for the fold; the folded one goes back deferred.
    TENET_ASSIGN_OR_RETURN(const Tensor w, g.load_constant(conv.inputs[1]));

    // y = (conv(x) - mean) * scale / sqrt(var + eps) + B, per output channel m:
    //   w'[m] = w[m] * s[m],  b'[m] = (b[m] - mean[m]) * s[m] + B[m],  s = scale / sqrt(var + eps).
    TENET_ASSIGN_OR_RETURN(Tensor w_folded, Tensor::zeros(DType::kFloat32, w.shape()));
    TENET_ASSIGN_OR_RETURN(Tensor b_folded, Tensor::zeros(DType::kFloat32, Shape{out_channels}));
    const int64_t per_channel = w.numel() / out_channels;
    for (int64_t m = 0; m < out_channels; ++m) {
      const double s = static_cast<double>(scale->as<float>()[m]) /
                       std::sqrt(static_cast<double>(var->as<float>()[m]) + static_cast<double>(*epsilon));
      const float* src = w.as<float>() + m * per_channel;
      float* dst = w_folded.as<float>() + m * per_channel;
      for (int64_t k = 0; k < per_channel; ++k) dst[k] = static_cast<float>(static_cast<double>(src[k]) * s);
      const double bias = b ? static_cast<double>(b->as<float>()[m]) : 0.0;
      b_folded.as<float>()[m] = static_cast<float>((bias - mean->as<float>()[m]) * s + shift->as<float>()[m]);
    }
    // New constants: the originals may be shared with other nodes.
    TENET_ASSIGN_OR_RETURN(const ValueId w_new, g.add_constant_deferrable(g.unique_name(w_name + "_bn_folded"), std::move(w_folded)));
    const ValueId b_new = g.add_constant(g.unique_name(bn.name + "_bias_folded"), std::move(b_folded));
    conv.inputs.resize(3);
    conv.inputs[1] = w_new;
    conv.inputs[2] = b_new;
    conv.outputs[0] = y;
    idx.set_producer(y, p);
    bn.dead = true;
    ++stats.batch_norms_folded;
  }
  g.compact();
  return check_result(g, "fold_batch_norm");
}

Status fuse_gelu(Graph& g, PassStats& stats) {
  GraphIndex idx(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!is_op(g.nodes[i], "Erf")) continue;
    std::optional<GeluMatch> m = match_gelu(g, idx, static_cast<int>(i));
    if (!m) continue;
    bool any_dead = false;
    for (int n : m->nodes) any_dead = any_dead || g.nodes[static_cast<size_t>(n)].dead;
    if (any_dead) continue;

    // x is read by the subgraph's first node, so the last node's slot is a valid place for Gelu.
    const int last = m->nodes.back();
    Node gelu;
    const std::string& erf_name = g.nodes[i].name;
    gelu.name = erf_name.ends_with("Erf") ? erf_name.substr(0, erf_name.size() - 3) + "Gelu" : erf_name + "/Gelu";
    gelu.op_type = "Gelu";
    gelu.inputs = {m->x};
    gelu.outputs = {m->y};
    gelu.attrs["approximate"] = ir::Attribute{std::string("none")};
    for (int n : m->nodes) {
      for (ValueId in : g.nodes[static_cast<size_t>(n)].inputs) idx.move_consumer(in, n, -1);
      g.nodes[static_cast<size_t>(n)].dead = true;
    }
    g.nodes[static_cast<size_t>(last)] = std::move(gelu);
    idx.move_consumer(m->x, -1, last);
    idx.set_producer(m->y, last);
    ++stats.gelus_fused;
  }
  g.compact();
  return check_result(g, "fuse_gelu");
}

Status fuse_matmul_epilogue(Graph& g, PassStats& stats) {
  GraphIndex idx(g);
  for (size_t j = 0; j < g.nodes.size(); ++j) {
    const int mm = static_cast<int>(j);
    if (!is_op(g.nodes[j], "MatMul") || g.nodes[j].inputs.size() != 2 || !g.nodes[j].post_ops.empty()) continue;
    const ValueId y = single_output(g.nodes[j]);
    if (y == kNoValue || !is_float32(g.value(y))) continue;
    bool fused = false;
    double alpha = 1.0;
    for (size_t k = 0; k < 2; ++k) {
      const std::optional<OperandScale> scale = operand_scale(g, idx, g.nodes[j].inputs[k], mm);
      if (!scale) continue;
      Node& scale_node = g.nodes[static_cast<size_t>(scale->node)];
      for (ValueId in : scale_node.inputs) idx.move_consumer(in, scale->node, -1);
      scale_node.dead = true;
      g.nodes[j].inputs[k] = scale->source;
      idx.move_consumer(scale->source, -1, mm);
      alpha *= scale->factor;
      fused = true;
    }
    // A bias: the only consumer of y is Add(y, C) (either order) with a constant C that does not
    // widen y's shape. The fused node stays in the MatMul's place and produces the Add's output.
    const auto& readers = idx.consumers[static_cast<size_t>(y)];
    if (!idx.graph_output(y) && readers.size() == 1) {
      Node& add = g.nodes[static_cast<size_t>(readers[0])];
      const ValueId bias = other_operand(add, y);
      const ValueId sum = single_output(add);
      if (is_op(add, "Add") && bias != kNoValue && bias != y && g.value(bias).is_constant() && is_float32(g.value(bias)) &&
          sum != kNoValue && is_float32(g.value(sum)) && g.value(sum).shape == g.value(y).shape) {
        for (ValueId in : add.inputs) idx.move_consumer(in, readers[0], -1);
        add.dead = true;
        g.nodes[j].inputs.push_back(bias);
        g.nodes[j].outputs[0] = sum;
        idx.set_producer(sum, mm);
        fused = true;
      }
    }
    if (!fused) continue;
    Node& n = g.nodes[j];
    n.op_type = "FusedMatMul";
    if (alpha != 1.0) n.attrs["alpha"] = ir::Attribute{static_cast<float>(alpha)};
    ++stats.matmuls_fused;
  }
  g.compact();
  return check_result(g, "fuse_matmul_epilogue");
}

Status fuse_residual_add(Graph& g, PassStats& stats) {
  GraphIndex idx(g);
  for (size_t j = 0; j < g.nodes.size(); ++j) {
    const Node& add = g.nodes[j];
    if (!is_op(add, "Add") || add.inputs.size() != 2 || single_output(add) == kNoValue) continue;
    const ValueId y = add.outputs[0];
    if (!is_float32(g.value(y))) continue;

    // Either operand may come from the Conv; prefer the later Conv, whose residual is then
    // already computed at the Conv's place.
    int best = -1;
    ValueId conv_out = kNoValue;
    ValueId residual = kNoValue;
    for (int k = 0; k < 2; ++k) {
      const ValueId c = add.inputs[static_cast<size_t>(k)];
      const ValueId other = add.inputs[static_cast<size_t>(1 - k)];
      const int p = idx.producer_of(c);
      if (p < 0 || c == other || !idx.only_consumer(c, static_cast<int>(j))) continue;
      const Node& conv = g.nodes[static_cast<size_t>(p)];
      if (!(is_op(conv, "Conv") || is_op(conv, "MatMul") || is_op(conv, "FusedMatMul")) || !conv.post_ops.empty() ||
          single_output(conv) != c || conv.inputs.size() < 2 || conv.inputs.size() > 3) {
        continue;
      }
      const Value& cv = g.value(c);
      const Value& ov = g.value(other);
      if (!is_float32(cv) || !is_float32(ov) || cv.shape != ov.shape || cv.shape != g.value(y).shape) continue;
      if (p > best) {
        best = p;
        conv_out = c;
        residual = other;
      }
    }
    if (best < 0) continue;

    // The fused Conv must come after the residual's producer: stay in place when it already does,
    // else take the Add's place (the Conv's own inputs are all produced before its old place).
    const int residual_producer = idx.producer_of(residual);
    const int at = residual_producer < best ? best : static_cast<int>(j);
    Node fused = std::move(g.nodes[static_cast<size_t>(best)]);
    g.nodes[static_cast<size_t>(best)] = Node{};
    g.nodes[static_cast<size_t>(best)].dead = true;
    g.nodes[j].dead = true;
    idx.move_consumer(conv_out, static_cast<int>(j), -1);
    idx.move_consumer(residual, static_cast<int>(j), at);
    if (at != best) {
      for (ValueId in : fused.inputs) idx.move_consumer(in, best, at);
    }
    // The residual is the last input; an absent bias keeps its slot so the residual is not read as one.
    // MatMul has no bias input: it becomes a FusedMatMul, whose third input is the optional bias.
    if (fused.op_type == "MatMul") fused.op_type = "FusedMatMul";
    fused.inputs.resize(3, kNoValue);
    fused.inputs.push_back(residual);
    fused.post_ops.push_back(PostOp{PostOp::Kind::kSum});
    fused.outputs[0] = y;
    g.nodes[static_cast<size_t>(at)] = std::move(fused);
    idx.set_producer(y, at);
    ++stats.residual_adds_fused;
  }
  g.compact();
  return check_result(g, "fuse_residual_add");
}

// Mul(x, Sigmoid(x)) in either operand order, where x is read by these two nodes alone and
// nothing widens: the index of the Sigmoid node, so that both can become a swish post-op of x's
// producer. (EfficientNet's SiLU, exported as Sigmoid + Mul.)
std::optional<int> swish_sigmoid(const Graph& g, const GraphIndex& idx, int mul) {
  const Node& n = g.nodes[static_cast<size_t>(mul)];
  if (!is_op(n, "Mul") || n.inputs.size() != 2 || single_output(n) == kNoValue) return std::nullopt;
  for (int k = 0; k < 2; ++k) {
    const ValueId s = n.inputs[static_cast<size_t>(k)];
    const ValueId x = n.inputs[static_cast<size_t>(1 - k)];
    const int sig = idx.producer_of(s);
    if (sig < 0 || !idx.only_consumer(s, mul) || !idx.in_range(x) || idx.graph_output(x)) continue;
    const Node& sn = g.nodes[static_cast<size_t>(sig)];
    if (!is_op(sn, "Sigmoid") || sn.inputs.size() != 1 || sn.inputs[0] != x || single_output(sn) != s) continue;
    const auto& readers = idx.consumers[static_cast<size_t>(x)];
    if (readers.size() != 2 || std::find(readers.begin(), readers.end(), sig) == readers.end()) continue;
    const Shape& shape = g.value(x).shape;
    if (!is_float32(g.value(x)) || g.value(s).shape != shape || g.value(single_output(n)).shape != shape) continue;
    return sig;
  }
  return std::nullopt;
}

Status fuse_activations(Graph& g, PassStats& stats) {
  GraphIndex idx(g);
  for (size_t j = 0; j < g.nodes.size(); ++j) {
    if (std::optional<int> sig = swish_sigmoid(g, idx, static_cast<int>(j))) {
      Node& sigmoid = g.nodes[static_cast<size_t>(*sig)];
      const ValueId x = sigmoid.inputs[0];
      const int p = idx.producer_of(x);
      if (p >= 0 && accepts_activation_post_op(g.nodes[static_cast<size_t>(p)]) && single_output(g.nodes[static_cast<size_t>(p)]) == x) {
        Node& mul = g.nodes[j];
        Node& producer = g.nodes[static_cast<size_t>(p)];
        producer.post_ops.push_back(PostOp{PostOp::Kind::kSwish});
        producer.outputs[0] = mul.outputs[0];
        idx.set_producer(mul.outputs[0], p);
        for (ValueId in : mul.inputs) idx.move_consumer(in, static_cast<int>(j), -1);
        idx.move_consumer(x, *sig, -1);
        sigmoid.dead = true;
        mul.dead = true;
        ++stats.activations_fused;
        continue;
      }
    }
    Node& act = g.nodes[j];
    std::optional<PostOp> post_op = activation_post_op(g, act);
    if (!post_op) continue;
    const ValueId x = act.inputs[0];
    const ValueId y = act.outputs[0];
    const int p = idx.producer_of(x);
    if (p < 0 || !idx.only_consumer(x, static_cast<int>(j))) continue;
    Node& producer = g.nodes[static_cast<size_t>(p)];
    if (!accepts_activation_post_op(producer) || single_output(producer) != x) continue;
    const Value& xv = g.value(x);
    const Value& yv = g.value(y);
    if (!is_float32(xv) || !is_float32(yv) || xv.shape != yv.shape) continue;

    producer.post_ops.push_back(*post_op);
    producer.outputs[0] = y;
    idx.set_producer(y, p);
    for (ValueId in : act.inputs) idx.move_consumer(in, static_cast<int>(j), -1);
    act.dead = true;
    ++stats.activations_fused;
  }
  g.compact();
  return check_result(g, "fuse_activations");
}

}  // namespace tenet::passes
