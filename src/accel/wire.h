// The frames of the remote accelerator protocol (`tenet accelerator` <-> connect_accelerator).
//
// A Unix stream socket carries length-prefixed binary frames, little-endian throughout:
//
//   header (12 bytes): magic "TAC1" | u8 type | 3 zero bytes | u32 payload size
//
//   kHello          u32 protocol version
//   kHelloReply     u32 protocol version | u32 name size | name (backend name, ≤ 64 bytes)
//   kAddLayer       u8 kind | u8 weight rank | 2 zero | i64 weight dims[rank] | i64 strides[2] |
//                   i64 dilations[2] | i64 pads[4] | i64 group | u64 weight count | i8 weights[]
//   kAddLayerReply  i32 layer
//   kRun            i32 layer | u32 rank | i64 dims[rank] | u64 count | u32 x[count]
//   kRunReply       u32 rank | u32 zero | i64 dims[rank] | u64 count | u32 y[count]
//   kError          u32 status code | u32 message size | message (≤ 1 KiB)
//
// The fixed part of kRun and kRunReply is 16 + 8·rank bytes, so the u32 data that follows stays
// 4-byte aligned in a buffer that starts aligned; senders write it straight from the caller's span
// and the client reads y straight into it.
//
// Both ends treat the other as hostile: every header is checked (magic, type, reserved bytes,
// payload size bounded per type, before anything is allocated), and every payload is decoded
// with bounds checks, validated as a spec or run (accelerator.h's limits), and rejected with a
// status that names the field. A header that fails is fatal to the connection (its length cannot
// be trusted); a payload that fails is answered with kError and the connection goes on.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "accel/accelerator.h"

namespace tenet::accel::wire {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxNameSize = 64;
inline constexpr size_t kMaxErrorMessageSize = 1024;

enum class FrameType : uint8_t {
  kHello = 1,
  kAddLayer = 2,
  kRun = 3,
  kHelloReply = 0x81,
  kAddLayerReply = 0x82,
  kRunReply = 0x83,
  kError = 0xFF,
};

struct FrameHeader {
  FrameType type = FrameType::kError;
  uint32_t payload_size = 0;
};

// The largest payload a frame of `type` may carry (0 for an unknown type).
size_t max_payload_size(FrameType type);

std::array<uint8_t, kHeaderSize> encode_header(FrameType type, uint32_t payload_size);
// Checks magic, reserved bytes, that the type is known and the size within max_payload_size.
Result<FrameHeader> decode_header(std::span<const uint8_t> bytes);

// --- requests (client -> server) ---
struct HelloRequest {
  uint32_t version = 0;
};
struct RunRequest {
  int32_t layer = -1;
  Shape input_shape;
  std::vector<uint32_t> x;
};
using Request = std::variant<HelloRequest, LinearSpec, RunRequest>;

// Whole frames (header included).
std::vector<uint8_t> encode_hello();
Result<std::vector<uint8_t>> encode_add_layer(const LinearSpec& spec);
// The header and fixed part of a kRun frame; x (count u32 values) follows on the wire.
Result<std::vector<uint8_t>> encode_run_prefix(int32_t layer, const Shape& input_shape, uint64_t count);

// Decodes and validates a request payload: kAddLayer passes validate(); kRun has count ==
// numel(dims) and every value < p (the layer itself is checked by the server's backend).
Result<Request> decode_request(FrameType type, std::span<const uint8_t> payload);

// --- replies (server -> client) ---
std::vector<uint8_t> encode_hello_reply(const std::string& name);
std::vector<uint8_t> encode_add_layer_reply(int32_t layer);
Result<std::vector<uint8_t>> encode_run_reply_prefix(const Shape& output_shape, uint64_t count);
std::vector<uint8_t> encode_error(const Status& status);

Result<std::string> decode_hello_reply(std::span<const uint8_t> payload);
Result<int32_t> decode_add_layer_reply(std::span<const uint8_t> payload);
// Size of the fixed part of a kRunReply for an output of `rank` dims.
size_t run_reply_prefix_size(size_t rank);
// Checks that a kRunReply's fixed part announces exactly `expected_shape`.
Status check_run_reply_prefix(std::span<const uint8_t> prefix, const Shape& expected_shape);
// The status a kError payload carries (never OK: a malformed or OK-coded error becomes kDataLoss).
Status decode_error(std::span<const uint8_t> payload);

// "unix:/path/to/sock" -> "/path/to/sock" (bounded by sockaddr_un's sun_path).
Result<std::string> parse_unix_address(const std::string& address);

}  // namespace tenet::accel::wire
