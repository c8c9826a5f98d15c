// Slice manifests and their composition with the backbone (see slices.h).
#include "hybrid/slices.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/onnx/importer.h"
#include "engine/passes/passes.h"
#include "engine/passes/shape_inference.h"
#include "seal/package.h"

namespace tenet::hybrid {
namespace {

using json = nlohmann::json;

bool valid_slice_name(const std::string& s) {
  if (s.empty() || s.size() > kMaxSliceNameBytes) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Printable or UTF-8, no control characters (a NUL would cut paths and names short).
bool valid_text(const std::string& s, size_t max_bytes) {
  if (s.empty() || s.size() > max_bytes) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Deepest bracket nesting outside strings; stops counting past `limit`.
int json_depth(std::string_view text, int limit) {
  int depth = 0, worst = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
      if (worst > limit) return worst;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}

Result<std::string> string_field(const json& obj, const char* key, size_t index, const std::string& who, size_t max_bytes) {
  auto it = obj.find(key);
  if (it == obj.end()) return invalid_argument("slice manifest: slices[{}]{}: missing \"{}\"", index, who, key);
  if (!it->is_string()) return invalid_argument("slice manifest: slices[{}]{}: \"{}\" must be a string", index, who, key);
  const std::string& s = it->get_ref<const std::string&>();
  if (!valid_text(s, max_bytes)) {
    return invalid_argument("slice manifest: slices[{}]{}: \"{}\" must be 1..{} bytes without control characters", index, who, key, max_bytes);
  }
  return s;
}

bool starts_with_package_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[8] = {};
  if (!f.read(magic, sizeof(magic))) return false;
  return std::memcmp(magic, "TENETPKG", sizeof(magic)) == 0;
}

std::map<std::string, ir::ValueId> values_by_name(const ir::Graph& g) {
  std::map<std::string, ir::ValueId> out;
  for (size_t i = 0; i < g.values.size(); ++i) out.emplace(g.values[i].name, static_cast<ir::ValueId>(i));
  return out;
}

// True when `to` is `from` or is computed (transitively) from it.
bool reaches(const ir::Graph& g, const std::vector<std::vector<int>>& consumers, ir::ValueId from, ir::ValueId to) {
  std::vector<bool> seen(g.values.size(), false);
  std::deque<ir::ValueId> queue{from};
  seen[static_cast<size_t>(from)] = true;
  while (!queue.empty()) {
    const ir::ValueId v = queue.front();
    queue.pop_front();
    if (v == to) return true;
    for (int n : consumers[static_cast<size_t>(v)]) {
      for (ir::ValueId o : g.nodes[static_cast<size_t>(n)].outputs) {
        if (o != ir::kNoValue && !seen[static_cast<size_t>(o)]) {
          seen[static_cast<size_t>(o)] = true;
          queue.push_back(o);
        }
      }
    }
  }
  return false;
}

// Names unique in the composed graph (values and nodes have separate name spaces).
class NameSet {
 public:
  void add(const std::string& s) { used_.insert(s); }
  std::string fresh(const std::string& base) {
    std::string candidate = base;
    for (int i = 1; used_.count(candidate); ++i) candidate = base + "#" + std::to_string(i);
    used_.insert(candidate);
    return candidate;
  }

 private:
  std::set<std::string> used_;
};

// The one runtime input and the one output of a slice graph.
Status check_slice_interface(const LoadedSlice& s) {
  if (s.graph.inputs.size() != 1) {
    return invalid_argument("slice '{}': its graph must have exactly one input (h_p), it has {}", s.spec.name, s.graph.inputs.size());
  }
  if (s.graph.outputs.size() != 1) {
    return invalid_argument("slice '{}': its graph must have exactly one output, it has {}", s.spec.name, s.graph.outputs.size());
  }
  return ok_status();
}

}  // namespace

std::string slice_prefix(const std::string& name) { return "slice." + name + "/"; }

Result<SliceManifest> parse_slice_manifest(std::string_view text) {
  if (text.size() > kMaxSliceManifestBytes) {
    return invalid_argument("slice manifest: {} bytes, more than the limit of {}", text.size(), kMaxSliceManifestBytes);
  }
  if (json_depth(text, kMaxSliceManifestDepth) > kMaxSliceManifestDepth) {
    return invalid_argument("slice manifest: JSON nested deeper than {} levels", kMaxSliceManifestDepth);
  }
  // JSON objects with a repeated key are refused (nlohmann would keep the last one silently, so
  // that {"alpha": 0.1, "alpha": 5} would mean whatever the last writer wanted).
  std::vector<std::set<std::string>> keys;
  std::string duplicate_key;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: keys.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() && !keys.back().insert(parsed.get<std::string>()).second && duplicate_key.empty()) {
          duplicate_key = parsed.get<std::string>();
        }
        break;
      default: break;
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument("slice manifest: not valid JSON");
  if (!duplicate_key.empty()) return invalid_argument("slice manifest: key \"{}\" repeated in one object", duplicate_key.substr(0, 64));
  if (!j.is_object()) return invalid_argument("slice manifest: the top level must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "version" && it.key() != "slices") {
      return invalid_argument("slice manifest: unknown key \"{}\" (expected \"version\", \"slices\")", it.key().substr(0, 64));
    }
  }
  if (j.contains("version")) {
    const json& v = j["version"];
    if (!v.is_number_integer() || v.get<int64_t>() != 1) return invalid_argument("slice manifest: \"version\" must be 1");
  }
  if (!j.contains("slices") || !j["slices"].is_array()) return invalid_argument("slice manifest: \"slices\" must be an array");
  const json& arr = j["slices"];
  if (arr.empty() || arr.size() > kMaxSlices) {
    return invalid_argument("slice manifest: {} slices; expected 1..{}", arr.size(), kMaxSlices);
  }
  SliceManifest m;
  std::set<std::string> names;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& e = arr[i];
    if (!e.is_object()) return invalid_argument("slice manifest: slices[{}] must be an object", i);
    for (auto it = e.begin(); it != e.end(); ++it) {
      static const std::set<std::string> kKeys{"name", "model", "input", "add_to", "alpha"};
      if (!kKeys.count(it.key())) {
        return invalid_argument("slice manifest: slices[{}]: unknown key \"{}\" (expected name, model, input, add_to, alpha)", i,
                                it.key().substr(0, 64));
      }
    }
    SliceSpec s;
    TENET_ASSIGN_OR_RETURN(s.name, string_field(e, "name", i, "", kMaxSliceNameBytes));
    if (!valid_slice_name(s.name)) {
      return invalid_argument("slice manifest: slices[{}]: name must be 1..{} characters of [A-Za-z0-9_.-]", i, kMaxSliceNameBytes);
    }
    const std::string who = " ('" + s.name + "')";
    if (!names.insert(s.name).second) return invalid_argument("slice manifest: slice name '{}' used twice", s.name);
    TENET_ASSIGN_OR_RETURN(s.model, string_field(e, "model", i, who, kMaxSlicePathBytes));
    TENET_ASSIGN_OR_RETURN(s.input, string_field(e, "input", i, who, kMaxSliceValueNameBytes));
    TENET_ASSIGN_OR_RETURN(s.add_to, string_field(e, "add_to", i, who, kMaxSliceValueNameBytes));
    auto alpha = e.find("alpha");
    if (alpha == e.end()) return invalid_argument("slice manifest: slices[{}]{}: missing \"alpha\"", i, who);
    if (!alpha->is_number()) return invalid_argument("slice manifest: slices[{}]{}: \"alpha\" must be a number", i, who);
    const double a = alpha->get<double>();
    if (!std::isfinite(a) || a < 0.0 || a > 1.0) return invalid_argument("slice manifest: slices[{}]{}: alpha {} outside [0, 1]", i, who, a);
    s.alpha = static_cast<float>(a);
    m.slices.push_back(std::move(s));
  }
  return m;
}

Result<SliceManifest> read_slice_manifest_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return not_found("slice manifest '{}': no such file", path);
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return not_found("slice manifest '{}': {}", path, ec.message());
  if (size > kMaxSliceManifestBytes) {
    return invalid_argument("slice manifest '{}': {} bytes, more than the limit of {}", path, size, kMaxSliceManifestBytes);
  }
  std::ifstream f(path, std::ios::binary);
  // Read at most the limit plus one byte, whatever the size said (the file may grow meanwhile).
  std::string text(kMaxSliceManifestBytes + 1, '\0');
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (f.bad()) return not_found("slice manifest '{}': read error", path);
  text.resize(static_cast<size_t>(f.gcount()));
  auto m = parse_slice_manifest(text);
  if (!m.ok()) return m.status().with_context(path);
  return m;
}

Result<std::vector<LoadedSlice>> load_slices(const SliceManifest& manifest, const std::string& base_dir,
                                             const seal::SecretBytes* model_key) {
  std::vector<LoadedSlice> out;
  for (const SliceSpec& spec : manifest.slices) {
    std::filesystem::path p(spec.model);
    if (p.is_relative() && !base_dir.empty()) p = std::filesystem::path(base_dir) / p;
    const std::string path = p.string();
    const std::string who = fmt::format("slice '{}' ({})", spec.name, path);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) return not_found("{}: no such file", who);
    LoadedSlice s;
    s.spec = spec;
    s.sealed = spec.model.ends_with(".tenet") || starts_with_package_magic(path);
    if (s.sealed) {
      if (model_key == nullptr) return invalid_argument("{}: a sealed package needs the model key (--slice-key FILE)", who);
      auto reader = seal::PackageReader::open(path);
      if (!reader.ok()) return reader.status().with_context(who);
      auto g = reader->load_graph(model_key->view());
      if (!g.ok()) return g.status().with_context(who);
      s.graph = std::move(g).value();
    } else {
      auto g = onnx_import::import_model_file(path);
      if (!g.ok()) return g.status().with_context(who);
      s.graph = std::move(g).value();
    }
    TENET_RETURN_IF_ERROR(check_slice_interface(s));
    out.push_back(std::move(s));
  }
  return out;
}

Result<ComposedModel> compose_slices(const ir::Graph& backbone, const std::vector<LoadedSlice>& slices,
                                     const std::map<std::string, Shape>& input_shapes) {
  if (slices.size() > kMaxSlices) return invalid_argument("{} slices; at most {}", slices.size(), kMaxSlices);
  // Shapes of the backbone's values, on a copy (inference folds constants and drops nodes).
  ir::Graph probe = backbone;
  passes::PassStats pass_stats;
  {
    Status s = passes::bind_input_shapes(probe, input_shapes);
    if (s.ok()) s = probe.topo_sort();
    if (s.ok()) s = passes::infer_shapes_and_fold(probe, pass_stats);
    if (!s.ok()) return s.with_context("backbone");
  }
  const std::map<std::string, ir::ValueId> probe_ids = values_by_name(probe);

  ComposedModel out;
  out.graph = backbone;
  ir::Graph& g = out.graph;
  const std::map<std::string, ir::ValueId> ids = values_by_name(g);
  const std::vector<int> producers = g.producers();
  const std::vector<std::vector<int>> consumers = g.consumers();
  NameSet value_names, node_names;
  for (const ir::Value& v : g.values) value_names.add(v.name);
  for (const ir::Node& n : g.nodes) node_names.add(n.name);

  std::set<std::string> seen_names;
  for (const LoadedSlice& s : slices) {
    const SliceSpec& spec = s.spec;
    if (!valid_slice_name(spec.name)) return invalid_argument("slice name '{}' is not 1..{} characters of [A-Za-z0-9_.-]", spec.name.substr(0, 64), kMaxSliceNameBytes);
    if (!seen_names.insert(spec.name).second) return invalid_argument("slice name '{}' used twice", spec.name);
    if (!(spec.alpha >= 0.f && spec.alpha <= 1.f)) return invalid_argument("slice '{}': alpha {} outside [0, 1]", spec.name, spec.alpha);
    TENET_RETURN_IF_ERROR(check_slice_interface(s));
    if (s.graph.opset != backbone.opset) {
      return invalid_argument("slice '{}': ONNX opset {} differs from the backbone's {} (export both with one opset)", spec.name, s.graph.opset,
                              backbone.opset);
    }
    auto hp = ids.find(spec.input);
    if (hp == ids.end()) return invalid_argument("slice '{}': input '{}' is not a value of the backbone", spec.name, spec.input);
    auto hl = ids.find(spec.add_to);
    if (hl == ids.end()) return invalid_argument("slice '{}': add_to '{}' is not a value of the backbone", spec.name, spec.add_to);
    if (g.value(hl->second).is_constant() || producers[static_cast<size_t>(hl->second)] < 0) {
      return invalid_argument("slice '{}': add_to '{}' is not computed by a backbone node (a graph input or a constant)", spec.name, spec.add_to);
    }
    if (reaches(g, consumers, hl->second, hp->second)) {
      return invalid_argument("slice '{}': input '{}' is computed from add_to '{}': the slice would form a cycle", spec.name, spec.input,
                              spec.add_to);
    }
    // Types and shapes: the slice run on h_p's shape must produce exactly h_l's.
    auto php = probe_ids.find(spec.input);
    auto phl = probe_ids.find(spec.add_to);
    if (php == probe_ids.end() || phl == probe_ids.end()) return internal_error("slice '{}': backbone value lost in shape inference", spec.name);
    const ir::Value& vp = probe.value(php->second);
    const ir::Value& vl = probe.value(phl->second);
    if (!vp.shape_known || !vl.shape_known) return invalid_argument("slice '{}': backbone shapes of '{}' / '{}' unknown", spec.name, spec.input, spec.add_to);
    if (vp.dtype != DType::kFloat32 || vl.dtype != DType::kFloat32) {
      return invalid_argument("slice '{}': input '{}' ({}) and add_to '{}' ({}) must be float32", spec.name, spec.input, dtype_name(vp.dtype),
                              spec.add_to, dtype_name(vl.dtype));
    }
    ir::Graph sp = s.graph;
    {
      const std::string in_name = sp.value(sp.inputs[0]).name;
      Status st = passes::bind_input_shapes(sp, {{in_name, vp.shape}});
      if (st.ok()) st = sp.topo_sort();
      if (st.ok()) st = passes::infer_shapes_and_fold(sp, pass_stats);
      if (!st.ok()) {
        return st.with_context(fmt::format("slice '{}' on input '{}' {}", spec.name, spec.input, shape_to_string(vp.shape)));
      }
    }
    const ir::Value& so = sp.value(sp.outputs[0]);
    if (so.dtype != DType::kFloat32 || !so.shape_known || so.shape != vl.shape) {
      return invalid_argument("slice '{}': output {} {} does not match add_to '{}' {} {}", spec.name, dtype_name(so.dtype),
                              so.shape_known ? shape_to_string(so.shape) : "[?]", spec.add_to, dtype_name(vl.dtype), shape_to_string(vl.shape));
    }
  }

  // Splice. Each h_l that receives slices keeps its value id (so every reader, graph outputs
  // included, reads the sum); its backbone producer now writes `<h_l>/backbone` instead, and a
  // chain of Adds (manifest order) writes h_l.
  std::map<ir::ValueId, ir::ValueId> sum_so_far;  // h_l -> the partial sum to add the next slice to
  std::map<ir::ValueId, size_t> remaining;         // h_l -> slices still to add
  for (const LoadedSlice& s : slices) ++remaining[ids.at(s.spec.add_to)];
  for (auto& [hl, count] : remaining) {
    ir::Value pre = g.value(hl);
    pre.name = value_names.fresh(pre.name + "/backbone");
    const ir::ValueId pre_id = g.add_value(std::move(pre));
    for (ir::ValueId& o : g.nodes[static_cast<size_t>(producers[static_cast<size_t>(hl)])].outputs) {
      if (o == hl) o = pre_id;
    }
    sum_so_far[hl] = pre_id;
  }
  for (const LoadedSlice& s : slices) {
    const std::string prefix = slice_prefix(s.spec.name);
    const ir::Graph& sg = s.graph;
    const ir::ValueId hp = ids.at(s.spec.input);
    const ir::ValueId hl = ids.at(s.spec.add_to);
    std::vector<ir::ValueId> map(sg.values.size(), ir::kNoValue);
    map[static_cast<size_t>(sg.inputs[0])] = hp;
    auto mapped = [&](ir::ValueId v) -> ir::ValueId {
      if (v == ir::kNoValue) return v;
      ir::ValueId& m = map[static_cast<size_t>(v)];
      if (m == ir::kNoValue) {
        ir::Value nv = sg.value(v);
        nv.name = value_names.fresh(prefix + nv.name);
        m = g.add_value(std::move(nv));
      }
      return m;
    };
    for (size_t i = 0; i < sg.nodes.size(); ++i) {
      const ir::Node& sn = sg.nodes[i];
      if (sn.dead) continue;
      ir::Node n = sn;
      n.name = node_names.fresh(prefix + (sn.name.empty() ? fmt::format("{}_{}", sn.op_type, i) : sn.name));
      for (ir::ValueId& v : n.inputs) v = mapped(v);
      for (ir::ValueId& v : n.outputs) v = mapped(v);
      out.private_nodes.insert(n.name);
      g.nodes.push_back(std::move(n));
    }
    ir::ValueId term = mapped(sg.outputs[0]);
    const ir::Value out_value = g.value(term);
    if (s.spec.alpha != 1.f) {
      const ir::ValueId alpha = g.add_constant(value_names.fresh(prefix + "alpha"), Tensor::from_vector<float>(Shape{}, std::vector<float>{s.spec.alpha}));
      ir::Value scaled = out_value;
      scaled.constant = Tensor();
      scaled.name = value_names.fresh(prefix + "scaled");
      const ir::ValueId scaled_id = g.add_value(std::move(scaled));
      ir::Node mul;
      mul.name = node_names.fresh(prefix + "alpha_mul");
      mul.op_type = "Mul";
      mul.inputs = {term, alpha};
      mul.outputs = {scaled_id};
      out.private_nodes.insert(mul.name);
      g.nodes.push_back(std::move(mul));
      term = scaled_id;
    }
    ir::ValueId sum = hl;
    if (--remaining[hl] > 0) {
      ir::Value partial = g.value(hl);
      partial.name = value_names.fresh(prefix + "partial_sum");
      sum = g.add_value(std::move(partial));
    }
    ir::Node add;
    add.name = node_names.fresh(prefix + "attach");
    add.op_type = "Add";
    add.inputs = {sum_so_far[hl], term};
    add.outputs = {sum};
    out.private_nodes.insert(add.name);
    g.nodes.push_back(std::move(add));
    sum_so_far[hl] = sum;
    out.slice_names.push_back(s.spec.name);
  }
  // Cycles across slices (one slice's input computed from another's add_to, and back).
  Status sorted = g.topo_sort();
  if (!sorted.ok()) return invalid_argument("the slices form a cycle (a slice's input is computed from a slice output): {}", sorted.message());
  TENET_RETURN_IF_ERROR(g.validate());
  return out;
}

}  // namespace tenet::hybrid
