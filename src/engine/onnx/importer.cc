#include "engine/onnx/importer.h"

#include <climits>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>

#include "core/safe_math.h"
#include "engine/onnx/proto_importer.h"
#include "engine/ops/op.h"

namespace tenet::onnx_import {
namespace {

// Copies a typed repeated field into tensor storage, checking the count first.
template <typename Dst, typename Field>
Status copy_typed(const Field& field, int64_t count, Tensor& t, const std::string& name) {
  if (field.size() != count) {
    return invalid_argument("initializer '{}' declares {} elements but holds {}", name, count, field.size());
  }
  Dst* dst = t.as<Dst>();
  for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<Dst>(field.Get(static_cast<int>(i)));
  return ok_status();
}

Result<Tensor> convert_tensor(const onnx::TensorProto& tp, const std::string& context) {
  const std::string name = tp.name().empty() ? context : tp.name();
  if (tp.data_location() == onnx::TensorProto::EXTERNAL || tp.external_data_size() > 0) {
    return unimplemented("tensor '{}' uses external data, which tenet does not load; re-export with the weights inside the model", name);
  }
  if (tp.has_segment()) return unimplemented("tensor '{}' is segmented, which tenet does not support", name);
  DType dtype = dtype_from_onnx(tp.data_type());
  if (dtype == DType::kUndefined) {
    return unimplemented("tensor '{}' has ONNX data type {}, which tenet does not support", name, tp.data_type());
  }
  if (tp.dims_size() > kMaxRank) return out_of_range("tensor '{}' has rank {} (max {})", name, tp.dims_size(), kMaxRank);
  Shape shape(tp.dims().begin(), tp.dims().end());
  // Sizes are checked against the data actually present before anything is allocated.
  auto bytes_or = byte_size(dtype, shape);
  if (!bytes_or.ok()) return bytes_or.status().with_context(fmt::format("tensor '{}'", name));
  const size_t want_bytes = bytes_or.value();
  const int64_t count = numel(shape);
  int64_t present = 0;
  if (tp.has_raw_data()) {
    if (tp.raw_data().size() != want_bytes) {
      return invalid_argument("tensor '{}' of {} {} needs {} bytes of raw data, has {}", name, dtype_name(dtype),
                              shape_to_string(shape), want_bytes, tp.raw_data().size());
    }
  } else {
    switch (dtype) {
      case DType::kFloat32: present = tp.float_data_size(); break;
      case DType::kFloat64: present = tp.double_data_size(); break;
      case DType::kInt64: present = tp.int64_data_size(); break;
      default: present = tp.int32_data_size(); break;
    }
    if (present != count) {
      return invalid_argument("initializer '{}' declares {} elements but holds {}", name, count, present);
    }
  }
  auto t_or = Tensor::zeros(dtype, shape);
  if (!t_or.ok()) return t_or.status().with_context(fmt::format("tensor '{}'", name));
  Tensor t = std::move(t_or).value();
  if (tp.has_raw_data()) {
    if (t.size_bytes()) std::memcpy(t.data(), tp.raw_data().data(), t.size_bytes());
    return t;
  }
  Status s;
  switch (dtype) {
    case DType::kFloat32: s = copy_typed<float>(tp.float_data(), count, t, name); break;
    case DType::kFloat64: s = copy_typed<double>(tp.double_data(), count, t, name); break;
    case DType::kInt64: s = copy_typed<int64_t>(tp.int64_data(), count, t, name); break;
    case DType::kInt32: s = copy_typed<int32_t>(tp.int32_data(), count, t, name); break;
    case DType::kInt16: s = copy_typed<int16_t>(tp.int32_data(), count, t, name); break;
    case DType::kInt8: s = copy_typed<int8_t>(tp.int32_data(), count, t, name); break;
    case DType::kUint8: s = copy_typed<uint8_t>(tp.int32_data(), count, t, name); break;
    case DType::kBool: s = copy_typed<uint8_t>(tp.int32_data(), count, t, name); break;
    case DType::kFloat16: s = copy_typed<uint16_t>(tp.int32_data(), count, t, name); break;
    default: return unimplemented("tensor '{}': dtype {} not supported", name, dtype_name(dtype));
  }
  TENET_RETURN_IF_ERROR(s);
  return t;
}

Result<ir::Attribute> convert_attribute(const onnx::AttributeProto& a, const ir::Node& node) {
  using A = onnx::AttributeProto;
  ir::Attribute out;
  switch (a.type()) {
    case A::FLOAT: out.value = a.f(); break;
    case A::INT: out.value = static_cast<int64_t>(a.i()); break;
    case A::STRING: out.value = a.s(); break;
    case A::FLOATS: out.value = std::vector<float>(a.floats().begin(), a.floats().end()); break;
    case A::INTS: out.value = std::vector<int64_t>(a.ints().begin(), a.ints().end()); break;
    case A::TENSOR: {
      auto t = convert_tensor(a.t(), node.name + "." + a.name());
      if (!t.ok()) return t.status().with_context(node.describe());
      out.value = std::move(t).value();
      break;
    }
    default:
      return unimplemented("{}: attribute '{}' has type {} (graphs, sparse tensors and type protos are not supported)",
                           node.describe(), a.name(), static_cast<int>(a.type()));
  }
  return out;
}

}  // namespace

class Importer {
 public:
  explicit Importer(const ImportOptions& options) {
    g_.constant_store = options.constant_store;
    g_.min_deferred_bytes = options.min_deferred_bytes;
  }

  Result<ir::Graph> run(const onnx::ModelProto& model) {
    TENET_RETURN_IF_ERROR(begin(model));
    for (const auto& init : model.graph().initializer()) TENET_RETURN_IF_ERROR(add_initializer(init));
    return finish(model);
  }

  Status begin(const onnx::ModelProto& model) {
    if (model.ir_version() > kMaxIrVersion) {
      return unimplemented("model IR version {} is newer than the {} tenet supports", model.ir_version(), kMaxIrVersion);
    }
    int64_t opset = -1;
    for (const auto& imp : model.opset_import()) {
      if (imp.domain().empty() || imp.domain() == "ai.onnx") opset = imp.version();
    }
    if (opset < 0) {
      if (model.opset_import_size() == 0) opset = kMinOpset;  // IR < 3 models carry no opset import
      else return invalid_argument("model imports no opset of the default ONNX domain");
    }
    if (opset < kMinOpset || opset > kMaxOpset) {
      return unimplemented("model uses ONNX opset {}; tenet supports opsets {} to {}", opset, kMinOpset, kMaxOpset);
    }
    g_.opset = opset;
    const onnx::GraphProto& gp = model.graph();
    g_.name = gp.name();
    if (gp.sparse_initializer_size() > 0) return unimplemented("sparse initializers are not supported");
    return ok_status();
  }

  // With a constant store, a large initializer is deferred as soon as it is read: its raw bytes go
  // straight into the store (no Tensor at all), others through one converted Tensor, freed right
  // after. So the graph never holds the model's weights, and at most one at a time exists in
  // memory that the engine allocator counts.
  Status add_initializer(const onnx::TensorProto& init) {
    if (init.name().empty()) return invalid_argument("an initializer has no name");
    if (by_name_.count(init.name())) return invalid_argument("initializer '{}' is defined twice", init.name());
    const DType dtype = dtype_from_onnx(init.data_type());
    const bool plain = init.data_location() != onnx::TensorProto::EXTERNAL && init.external_data_size() == 0 &&
                       !init.has_segment() && dtype != DType::kUndefined && init.dims_size() <= kMaxRank;
    if (plain && init.has_raw_data() && g_.defers(init.raw_data().size())) {
      // ONNX raw data is little-endian, the engine's byte order (convert_tensor copies it as is).
      Shape shape(init.dims().begin(), init.dims().end());
      auto bytes = byte_size(dtype, shape);
      if (bytes.ok() && *bytes == init.raw_data().size()) {
        TENET_ASSIGN_OR_RETURN(by_name_[init.name()],
                               g_.add_deferred_constant(init.name(), dtype, std::move(shape),
                                                        std::as_bytes(std::span(init.raw_data().data(), init.raw_data().size()))));
        return ok_status();
      }
    }
    auto t = convert_tensor(init, init.name());
    if (!t.ok()) return t.status();
    TENET_ASSIGN_OR_RETURN(by_name_[init.name()], g_.add_constant_deferrable(init.name(), std::move(t).value()));
    return ok_status();
  }

  Status add_initializer_from(const onnx::TensorProto& header, uint64_t bytes, const ir::ConstantStore::Filler& fill) {
    const std::string& name = header.name();
    if (name.empty()) return invalid_argument("an initializer has no name");
    if (by_name_.count(name)) return invalid_argument("initializer '{}' is defined twice", name);
    const DType dtype = dtype_from_onnx(header.data_type());
    if (dtype == DType::kUndefined || dtype == DType::kBool) {
      return invalid_argument("initializer '{}': data type {} cannot come in parts", name, header.data_type());
    }
    if (header.dims_size() > kMaxRank || header.has_segment()) return invalid_argument("initializer '{}': bad header", name);
    if (header.has_raw_data() || header.float_data_size() > 0 || header.int32_data_size() > 0 || header.int64_data_size() > 0 ||
        header.double_data_size() > 0 || header.uint64_data_size() > 0 || header.string_data_size() > 0) {
      return invalid_argument("initializer '{}' comes in parts but also carries data", name);
    }
    Shape shape;
    for (int64_t d : header.dims()) {
      if (d < 0) return invalid_argument("initializer '{}' has a negative dimension", name);
      shape.push_back(d);
    }
    TENET_ASSIGN_OR_RETURN(const size_t want, byte_size(dtype, shape));
    if (want != bytes) return invalid_argument("initializer '{}' is {} bytes in parts; its type and shape make {}", name, bytes, want);
    if (g_.defers(bytes)) {
      TENET_ASSIGN_OR_RETURN(by_name_[name], g_.add_deferred_constant_from(name, dtype, std::move(shape), fill));
      return ok_status();
    }
    TENET_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(dtype, std::move(shape)));
    if (bytes > 0) TENET_RETURN_IF_ERROR(fill(0, std::span(static_cast<std::byte*>(t.data()), t.size_bytes())));
    TENET_ASSIGN_OR_RETURN(by_name_[name], g_.add_constant_deferrable(name, std::move(t)));
    return ok_status();
  }

  Result<ir::Graph> finish(const onnx::ModelProto& model) {
    const onnx::GraphProto& gp = model.graph();
    for (const auto& in : gp.input()) {
      if (by_name_.count(in.name())) continue;  // an initializer listed as input (IR < 4 style)
      if (in.name().empty()) return invalid_argument("a graph input has no name");
      TENET_ASSIGN_OR_RETURN(ir::Value v, convert_value_info(in));
      ir::ValueId id = g_.add_value(std::move(v));
      by_name_[in.name()] = id;
      g_.inputs.push_back(id);
    }
    int index = 0;
    for (const auto& np : gp.node()) {
      TENET_RETURN_IF_ERROR(add_node(np, index++));
    }
    for (const auto& out : gp.output()) {
      auto it = by_name_.find(out.name());
      if (it == by_name_.end()) return invalid_argument("graph output '{}' is not produced by any node", out.name());
      g_.outputs.push_back(it->second);
    }
    if (g_.outputs.empty()) return invalid_argument("model has no outputs");
    TENET_RETURN_IF_ERROR(g_.topo_sort());
    return std::move(g_);
  }

 private:
  Result<ir::Value> convert_value_info(const onnx::ValueInfoProto& vi) {
    ir::Value v;
    v.name = vi.name();
    if (!vi.type().has_tensor_type()) return unimplemented("graph input '{}' is not a tensor", vi.name());
    const auto& tt = vi.type().tensor_type();
    v.dtype = dtype_from_onnx(tt.elem_type());
    if (v.dtype == DType::kUndefined) {
      return unimplemented("graph input '{}' has ONNX element type {}, which tenet does not support", vi.name(), tt.elem_type());
    }
    if (tt.has_shape()) {
      if (tt.shape().dim_size() > kMaxRank) return out_of_range("graph input '{}' has rank {}", vi.name(), tt.shape().dim_size());
      for (const auto& d : tt.shape().dim()) {
        if (d.has_dim_value()) {
          if (d.dim_value() < 0) return invalid_argument("graph input '{}' has a negative dimension", vi.name());
          v.shape.push_back(d.dim_value());
        } else {
          v.shape.push_back(-1);  // dim_param or unknown: bound at compile time
        }
      }
    } else {
      return unimplemented("graph input '{}' declares no shape", vi.name());
    }
    v.shape_known = false;
    return v;
  }

  ir::ValueId value_for(const std::string& name) {
    auto it = by_name_.find(name);
    if (it != by_name_.end()) return it->second;
    ir::Value v;
    v.name = name;
    ir::ValueId id = g_.add_value(std::move(v));
    by_name_[name] = id;
    return id;
  }

  Status add_node(const onnx::NodeProto& np, int index) {
    ir::Node n;
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.name = np.name().empty() ? fmt::format("{}_{}", np.op_type(), index) : np.name();
    if (!n.domain.empty()) {
      return unimplemented("{}: operator domain '{}' is not supported (only the default ONNX domain)", n.describe(), n.domain);
    }
    if (ops::find_op(n.op_type, g_.opset) == nullptr) {
      return unimplemented("{}: operator '{}' at opset {} is not supported by tenet", n.describe(), n.op_type, g_.opset);
    }
    for (const auto& a : np.attribute()) {
      if (a.name().empty()) return invalid_argument("{}: an attribute has no name", n.describe());
      if (n.attrs.count(a.name())) return invalid_argument("{}: attribute '{}' given twice", n.describe(), a.name());
      if (!a.ref_attr_name().empty()) return unimplemented("{}: attribute references are not supported", n.describe());
      TENET_ASSIGN_OR_RETURN(ir::Attribute attr, convert_attribute(a, n));
      n.attrs[a.name()] = std::move(attr);
    }
    for (const auto& in : np.input()) n.inputs.push_back(in.empty() ? ir::kNoValue : value_for(in));
    for (const auto& out : np.output()) {
      if (out.empty()) {
        n.outputs.push_back(ir::kNoValue);
        continue;
      }
      auto it = by_name_.find(out);
      if (it != by_name_.end() && (produced_.count(out) || g_.value(it->second).is_constant() ||
                                   std::find(g_.inputs.begin(), g_.inputs.end(), it->second) != g_.inputs.end())) {
        return invalid_argument("{}: output '{}' is already defined elsewhere", n.describe(), out);
      }
      produced_[out] = true;
      n.outputs.push_back(value_for(out));
    }
    g_.nodes.push_back(std::move(n));
    return ok_status();
  }

  ir::Graph g_;
  std::unordered_map<std::string, ir::ValueId> by_name_;
  std::unordered_map<std::string, bool> produced_;
};

ModelImporter::ModelImporter(const ImportOptions& options) : impl_(std::make_unique<Importer>(options)) {}
ModelImporter::~ModelImporter() = default;
Status ModelImporter::begin(const onnx::ModelProto& model) { return impl_->begin(model); }
Status ModelImporter::add_initializer(const onnx::TensorProto& init) { return impl_->add_initializer(init); }
Status ModelImporter::add_initializer_from(const onnx::TensorProto& header, uint64_t bytes, const ir::ConstantStore::Filler& fill) {
  return impl_->add_initializer_from(header, bytes, fill);
}
Result<ir::Graph> ModelImporter::finish(const onnx::ModelProto& model) { return impl_->finish(model); }

Result<ir::Graph> import_model_bytes(std::span<const std::byte> bytes, const ImportOptions& options) {
  if (bytes.size() > kMaxModelBytes) return out_of_range("model is {} bytes; the limit is 2 GiB", bytes.size());
  onnx::ModelProto model;
  google::protobuf::io::CodedInputStream stream(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                static_cast<int>(bytes.size()));
  stream.SetTotalBytesLimit(INT_MAX);
  stream.SetRecursionLimit(64);
  if (!model.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
    return data_loss("not a valid ONNX model: the protobuf is truncated or corrupted");
  }
  return Importer(options).run(model);
}

Result<ir::Graph> import_model_file(const std::string& path, const ImportOptions& options) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return not_found("cannot open model file '{}'", path);
  const std::streamoff size = f.tellg();
  if (size < 0) return invalid_argument("cannot read model file '{}'", path);
  if (static_cast<size_t>(size) > kMaxModelBytes) return out_of_range("model file '{}' is {} bytes; the limit is 2 GiB", path, size);
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(bytes.data()), size)) return data_loss("cannot read model file '{}'", path);
  // The file's bytes and the parsed protobuf are in ordinary host memory, not in memory the engine
  // allocator counts (an enclave's EPC heap); with a constant store the converted weights never all
  // exist at once (Importer::add_initializer). Good enough for the benchmark CLI; a sealed package
  // (seal::PackageReader) is imported chunk by chunk instead.
  auto g = import_model_bytes(bytes, options);
  if (!g.ok()) return g.status().with_context(path);
  return g;
}

}  // namespace tenet::onnx_import
