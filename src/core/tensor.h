// Element types, shapes and tensors.
//
// TensorView is a non-owning, row-major (plain) view: kernels read and write through views into
// the planned arena. Tensor owns its bytes (64-byte aligned) and is used for weights, constants and
// data crossing the API. Blocked (oneDNN) layouts are a property of the compiled plan, not of these
// types: a TensorView is always plain.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tenet {

enum class DType : uint8_t {
  kUndefined = 0,
  kFloat32,
  kFloat64,
  kFloat16,
  kInt8,
  kUint8,
  kInt16,
  kInt32,
  kInt64,
  kBool,
};

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "float32", "int64", ...
// ONNX TensorProto.DataType <-> DType; unsupported ONNX types map to kUndefined.
DType dtype_from_onnx(int32_t onnx_type);
int32_t dtype_to_onnx(DType t);

using Shape = std::vector<int64_t>;

std::string shape_to_string(std::span<const int64_t> shape);  // "[1, 3, 224, 224]"
// Element count; error if a dim is negative or the count overflows kMaxTensorElements.
Result<int64_t> element_count(std::span<const int64_t> shape);
// Byte size of a tensor; error on overflow.
Result<size_t> byte_size(DType dtype, std::span<const int64_t> shape);
// Element count of a shape already validated (by byte_size / element_count).
int64_t numel(std::span<const int64_t> shape);
std::vector<int64_t> row_major_strides(std::span<const int64_t> shape);

template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <> constexpr DType dtype_of<double>() { return DType::kFloat64; }
template <> constexpr DType dtype_of<int8_t>() { return DType::kInt8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kUint8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::kInt16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kInt64; }
template <> constexpr DType dtype_of<bool>() { return DType::kBool; }

struct TensorView {
  DType dtype = DType::kUndefined;
  Shape shape;
  void* data = nullptr;

  int64_t numel() const { return tenet::numel(shape); }
  size_t size_bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  template <typename T> T* as() const { return static_cast<T*>(data); }
};

struct ConstTensorView {
  DType dtype = DType::kUndefined;
  Shape shape;
  const void* data = nullptr;

  ConstTensorView() = default;
  ConstTensorView(DType d, Shape s, const void* p) : dtype(d), shape(std::move(s)), data(p) {}
  ConstTensorView(const TensorView& v) : dtype(v.dtype), shape(v.shape), data(v.data) {}  // NOLINT
  int64_t numel() const { return tenet::numel(shape); }
  size_t size_bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  template <typename T> const T* as() const { return static_cast<const T*>(data); }
};

// An owning tensor with 64-byte aligned storage. Copies share storage (like a shared_ptr); use
// clone() for a deep copy.
class Tensor {
 public:
  Tensor() = default;
  // Zero-initialized tensor; error if the size overflows.
  static Result<Tensor> zeros(DType dtype, Shape shape);
  // Copies `bytes` (must be exactly the tensor's size).
  static Result<Tensor> from_bytes(DType dtype, Shape shape, std::span<const std::byte> bytes);
  template <typename T>
  static Tensor from_vector(Shape shape, const std::vector<T>& values);
  // Scalar int64 / float helpers for constant folding and tests.
  static Tensor scalar_int64(int64_t v);
  static Tensor vector_int64(const std::vector<int64_t>& v);

  bool defined() const { return storage_ != nullptr || dtype_ != DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return tenet::numel(shape_); }
  size_t size_bytes() const { return size_bytes_; }
  void* data() { return storage_.get(); }
  const void* data() const { return storage_.get(); }
  template <typename T> T* as() { return static_cast<T*>(data()); }
  template <typename T> const T* as() const { return static_cast<const T*>(data()); }

  TensorView view() { return TensorView{dtype_, shape_, data()}; }
  ConstTensorView view() const { return ConstTensorView{dtype_, shape_, data()}; }
  Tensor clone() const;
  // Same bytes, new shape with the same element count.
  Result<Tensor> reshaped(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing this tensor's storage (no copy; the
  // storage lives while either tensor does). Its data is aligned to the row size only.
  Result<Tensor> slice_rows(int64_t begin, int64_t end) const;
  // Reads element i as int64 (for integer dtypes) — used by shape computations.
  int64_t int_at(int64_t i) const;
  std::vector<int64_t> to_int64_vector() const;

 private:
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  size_t size_bytes_ = 0;
  std::shared_ptr<std::byte[]> storage_;
};

template <typename T>
Tensor Tensor::from_vector(Shape shape, const std::vector<T>& values) {
  Tensor t = zeros(dtype_of<T>(), std::move(shape)).value();
  std::copy(values.begin(), values.end(), t.as<T>());
  return t;
}

}  // namespace tenet
