#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/allocator.h"
#include "core/safe_math.h"

namespace tenet {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kFloat16: return 2;
    case DType::kInt8: return 1;
    case DType::kUint8: return 1;
    case DType::kInt16: return 2;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kBool: return 1;
    case DType::kUndefined: return 0;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kInt8: return "int8";
    case DType::kUint8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kBool: return "bool";
    case DType::kUndefined: return "undefined";
  }
  return "undefined";
}

// ONNX TensorProto.DataType numbering (onnx.proto).
DType dtype_from_onnx(int32_t t) {
  switch (t) {
    case 1: return DType::kFloat32;
    case 2: return DType::kUint8;
    case 3: return DType::kInt8;
    case 5: return DType::kInt16;
    case 6: return DType::kInt32;
    case 7: return DType::kInt64;
    case 9: return DType::kBool;
    case 10: return DType::kFloat16;
    case 11: return DType::kFloat64;
    default: return DType::kUndefined;
  }
}

int32_t dtype_to_onnx(DType t) {
  switch (t) {
    case DType::kFloat32: return 1;
    case DType::kUint8: return 2;
    case DType::kInt8: return 3;
    case DType::kInt16: return 5;
    case DType::kInt32: return 6;
    case DType::kInt64: return 7;
    case DType::kBool: return 9;
    case DType::kFloat16: return 10;
    case DType::kFloat64: return 11;
    case DType::kUndefined: return 0;
  }
  return 0;
}

std::string shape_to_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Result<int64_t> element_count(std::span<const int64_t> shape) {
  if (shape.size() > static_cast<size_t>(kMaxRank)) {
    return out_of_range("rank {} exceeds the maximum of {}", shape.size(), kMaxRank);
  }
  int64_t n = 0;
  if (!checked_element_count(shape, &n)) {
    return out_of_range("shape {} has a negative dimension or more than 2^40 elements", shape_to_string(shape));
  }
  return n;
}

Result<size_t> byte_size(DType dtype, std::span<const int64_t> shape) {
  TENET_ASSIGN_OR_RETURN(int64_t n, element_count(shape));
  if (dtype == DType::kUndefined) return invalid_argument("tensor has undefined dtype");
  return static_cast<size_t>(n) * dtype_size(dtype);
}

int64_t numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> row_major_strides(std::span<const int64_t> shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

namespace {
std::shared_ptr<std::byte[]> aligned_storage(size_t bytes) { return allocate_buffer(bytes); }
}  // namespace

Result<Tensor> Tensor::zeros(DType dtype, Shape shape) {
  TENET_ASSIGN_OR_RETURN(size_t bytes, byte_size(dtype, shape));
  Tensor t;
  t.storage_ = aligned_storage(bytes);
  if (!t.storage_) return resource_exhausted("cannot allocate {} bytes for a tensor of shape {}", bytes, shape_to_string(shape));
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.size_bytes_ = bytes;
  return t;
}

Result<Tensor> Tensor::from_bytes(DType dtype, Shape shape, std::span<const std::byte> bytes) {
  TENET_ASSIGN_OR_RETURN(size_t want, byte_size(dtype, shape));
  if (want != bytes.size()) {
    return invalid_argument("tensor of {} {} needs {} bytes, got {}", dtype_name(dtype), shape_to_string(shape), want, bytes.size());
  }
  TENET_ASSIGN_OR_RETURN(Tensor t, zeros(dtype, std::move(shape)));
  if (want) std::memcpy(t.data(), bytes.data(), want);
  return t;
}

Tensor Tensor::scalar_int64(int64_t v) { return from_vector<int64_t>({}, {v}); }
Tensor Tensor::vector_int64(const std::vector<int64_t>& v) {
  return from_vector<int64_t>({static_cast<int64_t>(v.size())}, v);
}

Tensor Tensor::clone() const {
  if (!defined()) return Tensor();
  Tensor t = zeros(dtype_, shape_).value();
  if (size_bytes_) std::memcpy(t.data(), data(), size_bytes_);
  return t;
}

Result<Tensor> Tensor::reshaped(Shape shape) const {
  TENET_ASSIGN_OR_RETURN(int64_t n, element_count(shape));
  if (n != numel()) {
    return invalid_argument("cannot reshape {} elements to {}", numel(), shape_to_string(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Result<Tensor> Tensor::slice_rows(int64_t begin, int64_t end) const {
  if (shape_.empty() || begin < 0 || end < begin || end > shape_[0]) {
    return invalid_argument("cannot take rows [{}, {}) of {}", begin, end, shape_to_string(shape_));
  }
  const size_t row_bytes = shape_[0] == 0 ? 0 : size_bytes_ / static_cast<size_t>(shape_[0]);
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.size_bytes_ = row_bytes * static_cast<size_t>(end - begin);
  t.storage_ = std::shared_ptr<std::byte[]>(storage_, storage_.get() + row_bytes * static_cast<size_t>(begin));
  return t;
}

int64_t Tensor::int_at(int64_t i) const {
  switch (dtype_) {
    case DType::kInt64: return as<int64_t>()[i];
    case DType::kInt32: return as<int32_t>()[i];
    case DType::kInt16: return as<int16_t>()[i];
    case DType::kInt8: return as<int8_t>()[i];
    case DType::kUint8: return as<uint8_t>()[i];
    case DType::kBool: return as<uint8_t>()[i] != 0;
    case DType::kFloat32: return static_cast<int64_t>(as<float>()[i]);
    case DType::kFloat64: return static_cast<int64_t>(as<double>()[i]);
    default: return 0;
  }
}

std::vector<int64_t> Tensor::to_int64_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[i] = int_at(i);
  return v;
}

}  // namespace tenet
