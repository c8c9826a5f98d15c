#include "serving/kserve_rest.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "core/safe_math.h"
#include "crypto/crypto.h"

namespace tenet::serving {

namespace dom = simdjson::dom;

namespace {

// ---- parsing helpers ----

Status json_error(const char* what, simdjson::error_code e) {
  return invalid_argument("malformed request JSON ({}): {}", what, simdjson::error_message(e));
}

Result<std::string_view> get_string(dom::element e, const char* field) {
  std::string_view s;
  if (e.get_string().get(s)) return invalid_argument("'{}' must be a string", field);
  return s;
}

Result<bool> get_bool_param(dom::element e, const char* field) {
  bool b = false;
  if (e.get_bool().get(b)) return invalid_argument("parameter '{}' must be a boolean", field);
  return b;
}

Result<Shape> parse_shape(dom::element e, std::string_view input) {
  dom::array arr;
  if (e.get_array().get(arr)) return invalid_argument("input '{}': 'shape' must be an array of integers", printable(input));
  Shape shape;
  for (dom::element d : arr) {
    if (shape.size() >= static_cast<size_t>(kMaxRank)) {
      return invalid_argument("input '{}': rank exceeds {}", printable(input), kMaxRank);
    }
    int64_t v = 0;
    if (d.get_int64().get(v) || v < 0) {
      return invalid_argument("input '{}': shape dimensions must be non-negative integers", printable(input));
    }
    shape.push_back(v);
  }
  int64_t count = 0;
  if (!checked_element_count(shape, &count)) {
    return invalid_argument("input '{}': shape {} has too many elements (limit {})", printable(input), shape_to_string(shape),
                            kMaxTensorElements);
  }
  return shape;
}

// Writes JSON scalars of `dtype` into `dst`, flattening nested arrays (row-major).
class JsonTensorWriter {
 public:
  JsonTensorWriter(DType dtype, void* dst, int64_t expected, std::string_view input)
      : dtype_(dtype), dst_(static_cast<std::byte*>(dst)), expected_(expected), input_(input) {}

  Status write(dom::element e, int depth = 0) {
    if (e.type() == dom::element_type::ARRAY) {
      if (depth > kMaxRank) return invalid_argument("input '{}': 'data' is nested deeper than the rank limit", printable(input_));
      dom::array arr;
      if (e.get_array().get(arr)) return type_error("numbers or arrays");
      for (dom::element child : arr) TENET_RETURN_IF_ERROR(write(child, depth + 1));
      return ok_status();
    }
    if (count_ >= expected_) return count_error();
    TENET_RETURN_IF_ERROR(write_scalar(e));
    ++count_;
    return ok_status();
  }
  int64_t count() const { return count_; }
  Status count_error() const {
    return invalid_argument("input '{}': 'data' holds more or fewer elements than the shape's {}", printable(input_), expected_);
  }

 private:
  template <typename T>
  void put(T v) {
    std::memcpy(dst_ + static_cast<size_t>(count_) * sizeof(T), &v, sizeof(T));
  }
  Status type_error(const char* want) const {
    return invalid_argument("input '{}': 'data' elements must be {}", printable(input_), want);
  }
  template <typename T>
  Status put_int(dom::element e) {
    int64_t v = 0;
    if (e.get_int64().get(v) || v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        v > static_cast<int64_t>(std::numeric_limits<T>::max())) {
      return type_error("integers in the datatype's range");
    }
    put<T>(static_cast<T>(v));
    return ok_status();
  }
  Status number(dom::element e, double* out) const {
    if (e.get_double().get(*out)) return type_error("numbers");
    return ok_status();
  }
  Status write_scalar(dom::element e) {
    switch (dtype_) {
      case DType::kFloat32: {
        double d = 0;
        TENET_RETURN_IF_ERROR(number(e, &d));
        if (!(std::fabs(d) <= static_cast<double>(std::numeric_limits<float>::max()))) return type_error("numbers in FP32 range");
        put<float>(static_cast<float>(d));
        return ok_status();
      }
      case DType::kFloat64: {
        double d = 0;
        TENET_RETURN_IF_ERROR(number(e, &d));
        put<double>(d);
        return ok_status();
      }
      case DType::kInt8: return put_int<int8_t>(e);
      case DType::kUint8: {
        int64_t v = 0;
        if (e.get_int64().get(v) || v < 0 || v > 255) return type_error("integers in 0..255");
        put<uint8_t>(static_cast<uint8_t>(v));
        return ok_status();
      }
      case DType::kInt16: return put_int<int16_t>(e);
      case DType::kInt32: return put_int<int32_t>(e);
      case DType::kInt64: return put_int<int64_t>(e);
      case DType::kBool: {
        bool b = false;
        if (e.get_bool().get(b)) return type_error("booleans");
        put<uint8_t>(b ? 1 : 0);
        return ok_status();
      }
      default: return invalid_argument("input '{}': datatype has no JSON form; send it as binary data", printable(input_));
    }
  }

  DType dtype_;
  std::byte* dst_;
  int64_t expected_;
  int64_t count_ = 0;
  std::string_view input_;
};

// An input as declared in the JSON, before its data is attached.
struct PendingInput {
  InferInput input;
  std::optional<uint64_t> binary_size;
  std::optional<dom::element> json_data;
};

Result<PendingInput> parse_input(dom::element e, size_t body_size) {
  dom::object obj;
  if (e.get_object().get(obj)) return invalid_argument("each element of 'inputs' must be an object");
  PendingInput p;
  bool have_name = false, have_shape = false, have_dtype = false;
  std::string_view datatype;
  dom::element shape_el;
  for (auto field : obj) {
    if (field.key == "name") {
      TENET_ASSIGN_OR_RETURN(std::string_view n, get_string(field.value, "name"));
      p.input.name = std::string(n);
      have_name = true;
    } else if (field.key == "shape") {
      shape_el = field.value;
      have_shape = true;
    } else if (field.key == "datatype") {
      TENET_ASSIGN_OR_RETURN(datatype, get_string(field.value, "datatype"));
      have_dtype = true;
    } else if (field.key == "data") {
      p.json_data = field.value;
    } else if (field.key == "parameters") {
      dom::object params;
      if (field.value.get_object().get(params)) return invalid_argument("input 'parameters' must be an object");
      for (auto param : params) {
        if (param.key == "binary_data_size") {
          uint64_t size = 0;
          if (param.value.get_uint64().get(size)) return invalid_argument("'binary_data_size' must be a non-negative integer");
          p.binary_size = size;
        } else if (param.key == "shared_memory_region") {
          return unimplemented("shared memory inputs are not supported");
        }
      }
    }
  }
  if (!have_name) return invalid_argument("an input has no 'name'");
  if (!have_shape) return invalid_argument("input '{}' has no 'shape'", printable(p.input.name));
  if (!have_dtype) return invalid_argument("input '{}' has no 'datatype'", printable(p.input.name));
  p.input.dtype = dtype_from_kserve(datatype);
  if (p.input.dtype == DType::kUndefined) {
    return invalid_argument("input '{}': datatype '{}' is not supported (BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, FP32, FP64)",
                            printable(p.input.name), printable(datatype));
  }
  TENET_ASSIGN_OR_RETURN(p.input.shape, parse_shape(shape_el, p.input.name));
  if (p.binary_size && p.json_data) {
    return invalid_argument("input '{}' has both 'data' and 'binary_data_size'", printable(p.input.name));
  }
  if (!p.binary_size && !p.json_data) return invalid_argument("input '{}' has no 'data'", printable(p.input.name));
  if (p.json_data && numel(p.input.shape) > static_cast<int64_t>(body_size)) {
    return invalid_argument("input '{}': shape {} needs more elements than the request body can hold", printable(p.input.name),
                            shape_to_string(p.input.shape));
  }
  return p;
}

Result<RequestedOutput> parse_output(dom::element e) {
  dom::object obj;
  if (e.get_object().get(obj)) return invalid_argument("each element of 'outputs' must be an object");
  RequestedOutput out;
  bool have_name = false;
  for (auto field : obj) {
    if (field.key == "name") {
      TENET_ASSIGN_OR_RETURN(std::string_view n, get_string(field.value, "name"));
      out.name = std::string(n);
      have_name = true;
    } else if (field.key == "parameters") {
      dom::object params;
      if (field.value.get_object().get(params)) return invalid_argument("output 'parameters' must be an object");
      for (auto param : params) {
        if (param.key == "binary_data") {
          TENET_ASSIGN_OR_RETURN(bool b, get_bool_param(param.value, "binary_data"));
          out.binary = b;
        } else if (param.key == "classification") {
          return unimplemented("the classification extension is not supported");
        } else if (param.key == "shared_memory_region") {
          return unimplemented("shared memory outputs are not supported");
        }
      }
    }
  }
  if (!have_name) return invalid_argument("a requested output has no 'name'");
  return out;
}

// ---- encoding helpers ----

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_shape(std::string& out, const Shape& shape) {
  out.push_back('[');
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out.push_back(',');
    out += std::to_string(shape[i]);
  }
  out.push_back(']');
}

// Fixed text width of one JSON element per datatype.
size_t json_width(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 15;  // -3.40282347e+38
    case DType::kFloat64: return 24;  // -1.7976931348623157e+308
    case DType::kInt8: return 4;
    case DType::kUint8: return 3;
    case DType::kInt16: return 6;
    case DType::kInt32: return 11;
    case DType::kInt64: return 20;
    case DType::kBool: return 5;
    default: return 0;
  }
}

// Writes element i of `t` into `p` (width bytes, space padded). Non-finite floats become `null`
// (JSON has no NaN/Infinity).
void format_element(const Tensor& t, int64_t i, char* p, size_t width) {
  std::memset(p, ' ', width);
  char* end = p + width;
  std::to_chars_result r{p, std::errc()};
  switch (t.dtype()) {
    case DType::kFloat32: {
      const float v = t.as<float>()[i];
      if (!std::isfinite(v)) { std::memcpy(p, "null", 4); return; }
      r = std::to_chars(p, end, v, std::chars_format::scientific, 8);
      break;
    }
    case DType::kFloat64: {
      const double v = t.as<double>()[i];
      if (!std::isfinite(v)) { std::memcpy(p, "null", 4); return; }
      r = std::to_chars(p, end, v, std::chars_format::scientific, 16);
      break;
    }
    case DType::kInt8: r = std::to_chars(p, end, static_cast<int>(t.as<int8_t>()[i])); break;
    case DType::kUint8: r = std::to_chars(p, end, static_cast<int>(t.as<uint8_t>()[i])); break;
    case DType::kInt16: r = std::to_chars(p, end, t.as<int16_t>()[i]); break;
    case DType::kInt32: r = std::to_chars(p, end, t.as<int32_t>()[i]); break;
    case DType::kInt64: r = std::to_chars(p, end, t.as<int64_t>()[i]); break;
    case DType::kBool: {
      const bool v = t.as<uint8_t>()[i] != 0;
      std::memcpy(p, v ? "true" : "false", v ? 4 : 5);
      return;
    }
    default: return;
  }
  if (r.ec != std::errc()) std::memcpy(p, "null", 4);  // cannot happen with the widths above
}

void pad_to_quantum(std::string& s, size_t quantum) {
  if (quantum == 0) return;
  const size_t rem = s.size() % quantum;
  if (rem != 0) s.append(quantum - rem, ' ');
}

nlohmann::json tensor_specs_json(const std::vector<TensorSpec>& specs) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& s : specs) arr.push_back({{"name", s.name}, {"datatype", kserve_datatype(s.dtype)}, {"shape", s.shape}});
  return arr;
}

const char* config_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBool: return "TYPE_BOOL";
    case DType::kUint8: return "TYPE_UINT8";
    case DType::kInt8: return "TYPE_INT8";
    case DType::kInt16: return "TYPE_INT16";
    case DType::kInt32: return "TYPE_INT32";
    case DType::kInt64: return "TYPE_INT64";
    case DType::kFloat16: return "TYPE_FP16";
    case DType::kFloat32: return "TYPE_FP32";
    case DType::kFloat64: return "TYPE_FP64";
    default: return "TYPE_INVALID";
  }
}

nlohmann::json duration_json(const DurationStat& d) { return {{"count", d.count}, {"ns", d.ns}}; }

}  // namespace

void InferRequest::wipe() {
  for (InferInput& in : inputs) wipe_tensor(in.data);
}

std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 64; ++i) {
    const char c = s[i];
    out.push_back(c >= 0x20 && c < 0x7f && c != '\'' ? c : '?');
  }
  if (s.size() > 64) out += "...";
  return out;
}

Result<size_t> parse_header_length(std::string_view value) {
  size_t v = 0;
  if (value.empty() || value.size() > 19) return invalid_argument("Inference-Header-Content-Length must be a decimal byte count");
  auto r = std::from_chars(value.data(), value.data() + value.size(), v);
  if (r.ec != std::errc() || r.ptr != value.data() + value.size()) {
    return invalid_argument("Inference-Header-Content-Length must be a decimal byte count");
  }
  return v;
}

Result<InferRequest> parse_infer_request(std::string_view body, std::optional<size_t> header_length, const ParseLimits& limits) {
  const size_t json_size = header_length.value_or(body.size());
  if (json_size > body.size()) {
    return invalid_argument("Inference-Header-Content-Length {} exceeds the body size {}", json_size, body.size());
  }
  if (json_size == 0) return invalid_argument("empty request body");
  // simdjson wants SIMDJSON_PADDING readable bytes after the document: parse a padded copy, and
  // wipe the copy afterwards (it holds the client's data).
  simdjson::padded_string json(body.data(), json_size);
  struct WipeOnExit {
    simdjson::padded_string& s;
    ~WipeOnExit() { crypto::secure_wipe(s.data(), s.size()); }
  } wipe_json{json};

  dom::parser parser;
  dom::element doc;
  if (auto err = parser.parse(json).get(doc)) return json_error("header", err);
  dom::object root;
  if (doc.get_object().get(root)) return invalid_argument("the request must be a JSON object");

  InferRequest req;
  std::vector<PendingInput> pending;
  bool have_inputs = false;
  for (auto field : root) {
    if (field.key == "id") {
      TENET_ASSIGN_OR_RETURN(std::string_view id, get_string(field.value, "id"));
      if (id.size() > limits.max_id_bytes) return invalid_argument("'id' is longer than {} bytes", limits.max_id_bytes);
      req.id = std::string(id);
    } else if (field.key == "inputs") {
      dom::array arr;
      if (field.value.get_array().get(arr)) return invalid_argument("'inputs' must be an array");
      have_inputs = true;
      for (dom::element in : arr) {
        if (pending.size() >= limits.max_inputs) return invalid_argument("more than {} inputs", limits.max_inputs);
        TENET_ASSIGN_OR_RETURN(PendingInput p, parse_input(in, json_size));
        pending.push_back(std::move(p));
      }
    } else if (field.key == "outputs") {
      dom::array arr;
      if (field.value.get_array().get(arr)) return invalid_argument("'outputs' must be an array");
      for (dom::element out : arr) {
        if (req.outputs.size() >= limits.max_outputs) return invalid_argument("more than {} outputs", limits.max_outputs);
        TENET_ASSIGN_OR_RETURN(RequestedOutput o, parse_output(out));
        req.outputs.push_back(std::move(o));
      }
    } else if (field.key == "parameters") {
      dom::object params;
      if (field.value.get_object().get(params)) return invalid_argument("'parameters' must be an object");
      for (auto param : params) {
        if (param.key == "binary_data_output") {
          TENET_ASSIGN_OR_RETURN(req.binary_data_output, get_bool_param(param.value, "binary_data_output"));
        }
      }
    }
  }
  if (!have_inputs || pending.empty()) return invalid_argument("the request has no 'inputs'");
  for (size_t i = 0; i < pending.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (pending[i].input.name == pending[j].input.name) {
        return invalid_argument("input '{}' is given twice", printable(pending[i].input.name));
      }
    }
  }
  for (size_t i = 0; i < req.outputs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (req.outputs[i].name == req.outputs[j].name) {
        return invalid_argument("output '{}' is requested twice", printable(req.outputs[i].name));
      }
    }
  }

  // Attach data. Binary blobs follow the header in the order of the inputs that declare them.
  size_t offset = json_size;
  Status status;
  for (PendingInput& p : pending) {
    InferInput& in = p.input;
    auto nbytes = byte_size(in.dtype, in.shape);
    if (!nbytes.ok()) {
      status = invalid_argument("input '{}': shape {} is too large", printable(in.name), shape_to_string(in.shape));
      break;
    }
    if (p.binary_size) {
      if (!header_length) {
        status = invalid_argument("input '{}' has binary_data_size but the request has no Inference-Header-Content-Length",
                                  printable(in.name));
        break;
      }
      if (*p.binary_size != *nbytes) {
        status = invalid_argument("input '{}': binary_data_size {} does not match {} {} ({} bytes)", printable(in.name),
                                  *p.binary_size, kserve_datatype(in.dtype), shape_to_string(in.shape), *nbytes);
        break;
      }
      if (*p.binary_size > body.size() - offset) {
        status = invalid_argument("input '{}': binary data runs past the end of the body", printable(in.name));
        break;
      }
      auto t = Tensor::from_bytes(in.dtype, in.shape,
                                  std::span<const std::byte>(reinterpret_cast<const std::byte*>(body.data()) + offset, *nbytes));
      if (!t.ok()) {
        status = t.status();
        break;
      }
      in.data = std::move(t).value();
      offset += *nbytes;
    } else {
      if (in.dtype == DType::kFloat16) {
        status = invalid_argument("input '{}': FP16 data must be sent as binary data", printable(in.name));
        break;
      }
      auto t = Tensor::zeros(in.dtype, in.shape);
      if (!t.ok()) {
        status = invalid_argument("input '{}': cannot hold shape {}", printable(in.name), shape_to_string(in.shape));
        break;
      }
      in.data = std::move(t).value();
      JsonTensorWriter w(in.dtype, in.data.data(), numel(in.shape), in.name);
      status = w.write(*p.json_data);
      if (status.ok() && w.count() != numel(in.shape)) status = w.count_error();
      if (!status.ok()) break;
    }
    req.inputs.push_back(std::move(in));
  }
  if (status.ok() && offset != body.size()) {
    status = invalid_argument("the request body has {} bytes after the header and binary inputs that no input declares",
                              body.size() - offset);
  }
  if (!status.ok()) {
    req.wipe();
    for (PendingInput& p : pending) wipe_tensor(p.input.data);
    return status;
  }
  return req;
}

Result<std::vector<Tensor>> bind_inputs(const ServedModel& model, InferRequest& request) {
  const auto& specs = model.inputs();
  for (const InferInput& in : request.inputs) {
    bool known = false;
    for (const auto& s : specs) known = known || s.name == in.name;
    if (!known) return invalid_argument("model '{}' has no input '{}'", model.name(), printable(in.name));
  }
  std::vector<Tensor> tensors;
  for (const auto& s : specs) {
    InferInput* found = nullptr;
    for (InferInput& in : request.inputs) {
      if (in.name == s.name) found = &in;
    }
    if (!found) return invalid_argument("model '{}' needs input '{}' ({} {})", model.name(), s.name, kserve_datatype(s.dtype),
                                        shape_to_string(s.shape));
    tensors.push_back(found->data);
  }
  Status st = check_request(model, tensors);
  if (!st.ok()) return st;
  for (InferInput& in : request.inputs) in.data = Tensor();  // the tensors moved on
  return tensors;
}

Result<std::vector<OutputSelection>> select_outputs(const ServedModel& model, const InferRequest& request) {
  std::vector<OutputSelection> sel;
  const auto& outs = model.outputs();
  if (request.outputs.empty()) {
    for (size_t i = 0; i < outs.size(); ++i) sel.push_back({i, request.binary_data_output});
    return sel;
  }
  for (const RequestedOutput& r : request.outputs) {
    size_t idx = outs.size();
    for (size_t i = 0; i < outs.size(); ++i) {
      if (outs[i].name == r.name) idx = i;
    }
    if (idx == outs.size()) return invalid_argument("model '{}' has no output '{}'", model.name(), printable(r.name));
    sel.push_back({idx, r.binary.value_or(request.binary_data_output)});
  }
  return sel;
}

Result<EncodedResponse> encode_infer_response(const ServedModel& model, std::string_view id, const std::vector<Tensor>& outputs,
                                              const std::vector<OutputSelection>& selection, size_t pad_quantum_bytes) {
  if (outputs.size() != model.outputs().size()) return internal_error("model '{}' returned {} outputs", model.name(), outputs.size());
  // Size the JSON first so that it is built in one allocation.
  size_t reserve = 256 + model.name().size() + id.size();
  bool any_binary = false;
  size_t binary_bytes = 0;
  for (const auto& s : selection) {
    const Tensor& t = outputs[s.index];
    reserve += 128 + model.outputs()[s.index].name.size();
    if (s.binary || json_width(t.dtype()) == 0) {
      any_binary = true;
      binary_bytes += t.size_bytes();
    } else {
      reserve += static_cast<size_t>(t.numel()) * (json_width(t.dtype()) + 1);
    }
  }
  EncodedResponse resp;
  std::string& out = resp.body;
  out.reserve(reserve + binary_bytes + pad_quantum_bytes);
  out += "{\"model_name\":";
  append_json_string(out, model.name());
  out += ",\"model_version\":";
  append_json_string(out, model.version());
  if (!id.empty()) {
    out += ",\"id\":";
    append_json_string(out, id);
  }
  out += ",\"outputs\":[";
  for (size_t k = 0; k < selection.size(); ++k) {
    const auto& s = selection[k];
    const Tensor& t = outputs[s.index];
    if (k) out.push_back(',');
    out += "{\"name\":";
    append_json_string(out, model.outputs()[s.index].name);
    out += ",\"datatype\":\"";
    out += kserve_datatype(t.dtype());
    out += "\",\"shape\":";
    append_shape(out, t.shape());
    const size_t width = json_width(t.dtype());
    if (s.binary || width == 0) {
      out += ",\"parameters\":{\"binary_data_size\":";
      out += std::to_string(t.size_bytes());
      out += "}}";
    } else {
      out += ",\"data\":[";
      const int64_t n = t.numel();
      const size_t start = out.size();
      out.resize(start + static_cast<size_t>(n) * (width + 1));
      char* p = out.data() + start;
      for (int64_t i = 0; i < n; ++i) {
        format_element(t, i, p, width);
        p[width] = ',';
        p += width + 1;
      }
      if (n > 0) out.pop_back();  // last comma
      out += "]}";
    }
  }
  out += "]}";
  pad_to_quantum(out, pad_quantum_bytes);
  if (any_binary) {
    resp.header_length = out.size();
    for (const auto& s : selection) {
      const Tensor& t = outputs[s.index];
      if (s.binary || json_width(t.dtype()) == 0) out.append(static_cast<const char*>(t.data()), t.size_bytes());
    }
  }
  return resp;
}

int http_status_for(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kDataLoss:
    case StatusCode::kFailedPrecondition: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kUnimplemented: return 501;
    case StatusCode::kResourceExhausted: return 503;
    default: return 500;
  }
}

std::string error_json(const Status& status) {
  std::string out = "{\"error\":";
  append_json_string(out, status.message());
  out += "}";
  return out;
}

const std::vector<std::string>& server_extensions() {
  static const std::vector<std::string> kExtensions = {"binary_tensor_data", "model_configuration", "statistics"};
  return kExtensions;
}

std::string server_metadata_json() {
  nlohmann::json j = {{"name", kServerName}, {"version", kServerVersion}, {"extensions", server_extensions()}};
  return j.dump();
}

// KServe OIP v2 allows "parameters" in the model metadata response; tenet puts the protection
// mode there ({"mode": "hybrid", "verify_bits": 40}).
static nlohmann::json protection_json(const ServedModel& model) {
  const ProtectionInfo p = model.protection();
  nlohmann::json j = {{"mode", p.mode}};
  if (p.mode == "hybrid") j["verify_bits"] = p.verify_bits;
  return j;
}

std::string model_metadata_json(const ServedModel& model) {
  nlohmann::json j = {{"name", model.name()},
                      {"versions", {model.version()}},
                      {"platform", model.platform()},
                      {"inputs", tensor_specs_json(model.inputs())},
                      {"outputs", tensor_specs_json(model.outputs())},
                      {"parameters", protection_json(model)}};
  return j.dump();
}

std::string model_config_json(const ServedModel& model) {
  const bool batched = model.max_batch_size() > 0;
  auto dims = [&](const Shape& s) {
    return batched && !s.empty() ? Shape(s.begin() + 1, s.end()) : s;
  };
  nlohmann::json in = nlohmann::json::array(), out = nlohmann::json::array();
  for (const auto& s : model.inputs()) {
    in.push_back({{"name", s.name}, {"data_type", config_dtype_name(s.dtype)}, {"format", "FORMAT_NONE"}, {"dims", dims(s.shape)}});
  }
  for (const auto& s : model.outputs()) {
    out.push_back({{"name", s.name}, {"data_type", config_dtype_name(s.dtype)}, {"dims", dims(s.shape)}});
  }
  nlohmann::json j = {{"name", model.name()},
                      {"platform", model.platform()},
                      {"backend", "tenet"},
                      {"max_batch_size", model.max_batch_size()},
                      {"input", in},
                      {"output", out}};
  if (batched) j["dynamic_batching"] = {{"max_queue_delay_microseconds", model.max_queue_delay_us()}};
  // Triton model_config parameters: map<string, {string_value}>.
  nlohmann::json params = nlohmann::json::object();
  const nlohmann::json protection = protection_json(model);
  for (const auto& [k, v] : protection.items()) {
    params[k] = {{"string_value", v.is_string() ? v.get<std::string>() : v.dump()}};
  }
  j["parameters"] = params;
  return j.dump();
}

std::string model_stats_json(const std::vector<std::shared_ptr<ServedModel>>& models) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& m : models) {
    const ModelStats s = m->stats();
    nlohmann::json batches = nlohmann::json::array();
    for (const auto& b : s.batch_stats) {
      batches.push_back({{"batch_size", b.batch_size},
                         {"compute_input", duration_json(b.compute_input)},
                         {"compute_infer", duration_json(b.compute_infer)},
                         {"compute_output", duration_json(b.compute_output)}});
    }
    arr.push_back({{"name", m->name()},
                   {"version", m->version()},
                   {"last_inference", s.last_inference_ms},
                   {"inference_count", s.inference_count},
                   {"execution_count", s.execution_count},
                   {"inference_stats",
                    {{"success", duration_json(s.success)},
                     {"fail", duration_json(s.fail)},
                     {"queue", duration_json(s.queue)},
                     {"compute_input", duration_json(s.compute_input)},
                     {"compute_infer", duration_json(s.compute_infer)},
                     {"compute_output", duration_json(s.compute_output)},
                     {"cache_hit", duration_json({})},
                     {"cache_miss", duration_json({})}}},
                   {"batch_stats", batches}});
  }
  return nlohmann::json({{"model_stats", arr}}).dump();
}

}  // namespace tenet::serving
