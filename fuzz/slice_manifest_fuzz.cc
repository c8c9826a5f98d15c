// libFuzzer target for TEESlice slice manifests (hybrid/slices.h), outside input that names the
// private slices and where they attach to the public backbone.
//
// The input is manifest text. Beyond "no crash, no sanitizer report": whatever the parser accepts
// must satisfy its contract (1..kMaxSlices slices, unique valid names, alpha in [0, 1]), and is
// then composed with a fixed backbone x -> Relu -> a -> Relu -> b -> Relu -> y (every slice a
// Relu on [1, 4]), which must either fail cleanly or give a graph that validates, whose private
// nodes are exactly the slice nodes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "hybrid/slices.h"

namespace {

using tenet::ir::Graph;
using tenet::ir::Node;
using tenet::ir::Value;

tenet::ir::ValueId add(Graph& g, const char* name) {
  Value v;
  v.name = name;
  v.dtype = tenet::DType::kFloat32;
  v.shape = {1, 4};
  v.shape_known = true;
  return g.add_value(std::move(v));
}

Graph relu_chain(std::initializer_list<const char*> names) {
  Graph g;
  g.opset = 17;
  std::vector<tenet::ir::ValueId> ids;
  for (const char* n : names) ids.push_back(add(g, n));
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    Node n;
    n.name = std::string("relu") + std::to_string(i);
    n.op_type = "Relu";
    n.inputs = {ids[i]};
    n.outputs = {ids[i + 1]};
    g.nodes.push_back(std::move(n));
  }
  g.inputs = {ids.front()};
  g.outputs = {ids.back()};
  return g;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = tenet::hybrid::parse_slice_manifest(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!m.ok()) return 0;
  if (m->slices.empty() || m->slices.size() > tenet::hybrid::kMaxSlices) std::abort();
  std::set<std::string> names;
  for (const auto& s : m->slices) {
    if (!names.insert(s.name).second) std::abort();
    if (!(s.alpha >= 0.f && s.alpha <= 1.f)) std::abort();
    if (s.name.empty() || s.model.empty() || s.input.empty() || s.add_to.empty()) std::abort();
  }
  static const Graph backbone = relu_chain({"x", "a", "b", "y"});
  static const Graph slice_graph = relu_chain({"in", "out"});
  std::vector<tenet::hybrid::LoadedSlice> slices;
  for (const auto& s : m->slices) slices.push_back({s, slice_graph, false});
  auto composed = tenet::hybrid::compose_slices(backbone, slices, {{"x", {1, 4}}});
  if (!composed.ok()) return 0;
  if (!composed->graph.validate().ok()) std::abort();
  size_t from_slices = 0;
  for (const Node& n : composed->graph.nodes) {
    const bool is_slice = n.name.rfind("slice.", 0) == 0;
    from_slices += is_slice;
    if (is_slice != (composed->private_nodes.count(n.name) != 0)) std::abort();
  }
  if (from_slices != composed->private_nodes.size()) std::abort();
  return 0;
}
