// Status and Result<T>: tenet's error model.
//
// Every fallible call returns [[nodiscard]] Status or Result<T>; errors carry a code and a message
// that names what failed and where ("node 'conv1' (Conv, opset 17): kernel_shape has 3 values,
// expected 2"). The OK path costs one pointer test. Errors are propagated with TENET_RETURN_IF_ERROR
// and TENET_ASSIGN_OR_RETURN (onnxruntime's ORT_RETURN_IF_ERROR, absl's ASSIGN_OR_RETURN).
// Exceptions are not used across module boundaries; third-party code that throws (protobuf,
// oneDNN's C++ API) is wrapped at the call site.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace tenet {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // bad input from outside: a model, a request, a flag
  kNotFound,           // a named thing does not exist
  kUnimplemented,      // valid but not supported by tenet (operator, attribute, dtype)
  kOutOfRange,         // sizes or indices beyond limits
  kResourceExhausted,  // memory or budget exceeded
  kFailedPrecondition, // called in the wrong state
  kDataLoss,           // corrupted or truncated data
  kInternal,           // a bug in tenet
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : rep_(code == StatusCode::kOk ? nullptr : std::make_shared<Rep>(Rep{code, std::move(message)})) {}

  static Status ok_status() { return Status(); }
  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  const std::string& message() const;
  // "InvalidArgument: message"
  std::string to_string() const;
  // Prefixes context: status.with_context("loading model.onnx") -> "loading model.onnx: <message>".
  Status with_context(const std::string& context) const;

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;
};

inline Status ok_status() { return Status(); }

template <typename... Args>
Status invalid_argument(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kInvalidArgument, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status not_found(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kNotFound, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status unimplemented(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kUnimplemented, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status out_of_range(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kOutOfRange, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status resource_exhausted(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kResourceExhausted, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status failed_precondition(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kFailedPrecondition, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status data_loss(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kDataLoss, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status internal_error(fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kInternal, fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result constructed from OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tenet

#define TENET_CONCAT_INNER_(a, b) a##b
#define TENET_CONCAT_(a, b) TENET_CONCAT_INNER_(a, b)

#define TENET_RETURN_IF_ERROR(expr)              \
  do {                                           \
    ::tenet::Status tenet_status_ = (expr);      \
    if (!tenet_status_.ok()) return tenet_status_; \
  } while (0)

#define TENET_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

#define TENET_ASSIGN_OR_RETURN(lhs, expr) \
  TENET_ASSIGN_OR_RETURN_IMPL_(TENET_CONCAT_(tenet_result_, __COUNTER__), lhs, expr)
