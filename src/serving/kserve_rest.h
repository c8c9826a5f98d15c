// KServe Open Inference Protocol v2 over REST: request parsing and response encoding, with no
// sockets (http_server.h does the I/O; fuzz/kserve_request_fuzz.cc drives the parser).
//
// Request bodies are hostile. The parser (simdjson, error codes, no exceptions) checks:
//   * JSON well-formedness, field types, one name per input, at most ParseLimits inputs/outputs;
//   * shapes: rank <= kMaxRank, dims >= 0, element count overflow-checked (core/safe_math.h)
//     before anything is allocated; a JSON tensor's element count is checked against the body
//     size before its buffer is allocated (every element needs at least one byte of JSON);
//   * datatypes: only those the engine has (BOOL, UINT8, INT8/16/32/64, FP16 binary only,
//     FP32, FP64); BYTES, BF16, UINT16/32/64 are rejected;
//   * JSON values: numbers of the right kind and range for the datatype (integers for integer
//     types, finite and in range for FP32), element count equal to the shape's;
//   * binary tensor data (KServe OIP v2 §binary tensor data extension, Triton's
//     binary_tensor_data): the body is a JSON header of Inference-Header-Content-Length bytes
//     followed by the raw tensors in the order of the inputs that carry
//     parameters.binary_data_size; each size must equal the tensor's byte size and the sizes
//     must add up to exactly the bytes after the header.
// Error messages name inputs, shapes and sizes, never data values.
//
// Responses (encode_infer_response) are built so that their size depends only on the model, the
// requested outputs' shapes and the request id, never on tensor values: JSON numbers are printed
// in fixed width per datatype (FP32 as %.8e right-padded with spaces to 15 characters, integers
// padded to their type's widest value, BOOL to 5), binary outputs are raw little-endian bytes
// whose size is fixed by the shape, and the JSON part is padded with spaces to a multiple of
// `pad_quantum_bytes` (JSON allows trailing whitespace; with binary outputs the padding is inside
// Inference-Header-Content-Length).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "serving/model_repository.h"

namespace tenet::serving {

struct ParseLimits {
  size_t max_inputs = 64;
  size_t max_outputs = 64;
  size_t max_id_bytes = 256;
};

struct InferInput {
  std::string name;
  DType dtype = DType::kUndefined;
  Shape shape;
  Tensor data;
};

struct RequestedOutput {
  std::string name;
  std::optional<bool> binary;  // parameters.binary_data
};

struct InferRequest {
  std::string id;
  std::vector<InferInput> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every model output
  bool binary_data_output = false;       // request-level parameters.binary_data_output
  // Wipes every input tensor's bytes.
  void wipe();
};

// Parses an infer request body. `header_length` is the Inference-Header-Content-Length value if
// the client sent one (binary extension); without it the whole body is JSON.
Result<InferRequest> parse_infer_request(std::string_view body, std::optional<size_t> header_length,
                                         const ParseLimits& limits = {});
// Parses an Inference-Header-Content-Length header value (decimal, no sign, no overflow).
Result<size_t> parse_header_length(std::string_view value);

// Moves the request's tensors into the model's input order, checking names (unknown, missing,
// duplicated) and then check_request(). The request's tensors are moved out.
Result<std::vector<Tensor>> bind_inputs(const ServedModel& model, InferRequest& request);

// Which model outputs to return and how.
struct OutputSelection {
  size_t index = 0;  // into model.outputs()
  bool binary = false;
};
Result<std::vector<OutputSelection>> select_outputs(const ServedModel& model, const InferRequest& request);

struct EncodedResponse {
  std::string body;
  std::optional<size_t> header_length;  // set when any output is binary
};
// `outputs` are all the model's outputs, in model order (from ServedModel::infer).
Result<EncodedResponse> encode_infer_response(const ServedModel& model, std::string_view id,
                                              const std::vector<Tensor>& outputs,
                                              const std::vector<OutputSelection>& selection, size_t pad_quantum_bytes);

// Triton's mapping of errors to HTTP status: invalid argument 400, not found 404, unimplemented
// 501, unavailable (queue full) 503, internal 500.
int http_status_for(const Status& status);
// {"error": "<message>"}
std::string error_json(const Status& status);

// Metadata documents (nlohmann).
std::string server_metadata_json();
std::string model_metadata_json(const ServedModel& model);
std::string model_config_json(const ServedModel& model);
std::string model_stats_json(const std::vector<std::shared_ptr<ServedModel>>& models);

// A client-supplied string made safe for an error message: at most 64 printable ASCII
// characters, others replaced by '?'.
std::string printable(std::string_view s);

// KServe extensions tenet implements (server metadata).
const std::vector<std::string>& server_extensions();
inline constexpr const char* kServerName = "tenet";
inline constexpr const char* kServerVersion = "0.1.0";

}  // namespace tenet::serving
