// Frame encoding and bounds-checked decoding of the remote accelerator protocol (see wire.h).
#include "accel/wire.h"

#include <cstring>

#include <sys/un.h>

#include "core/safe_math.h"

namespace tenet::accel::wire {
namespace {

constexpr uint8_t kMagic[4] = {'T', 'A', 'C', '1'};
constexpr size_t kSpecFixedSize = 4 + 8 * (2 + 2 + 4 + 1) + 8;  // without the dims and weights

void put_u8(std::vector<uint8_t>& out, uint8_t v) { out.push_back(v); }
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_i64(std::vector<uint8_t>& out, int64_t v) { put_u64(out, static_cast<uint64_t>(v)); }

// Sequential little-endian reads that fail, never overrun.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}
  bool u8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = data_[pos_++];
    return true;
  }
  bool u32(uint32_t* v) {
    if (remaining() < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= static_cast<uint32_t>(data_[pos_ + static_cast<size_t>(i)]) << (8 * i);
    pos_ += 4;
    return true;
  }
  bool u64(uint64_t* v) {
    if (remaining() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(data_[pos_ + static_cast<size_t>(i)]) << (8 * i);
    pos_ += 8;
    return true;
  }
  bool i32(int32_t* v) {
    uint32_t u = 0;
    if (!u32(&u)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool i64(int64_t* v) {
    uint64_t u = 0;
    if (!u64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  std::span<const uint8_t> bytes(size_t n) {
    std::span<const uint8_t> s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

std::vector<uint8_t> frame(FrameType type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out;
  out.reserve(kHeaderSize + payload.size());
  const auto h = encode_header(type, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Status check_shape(std::span<const int64_t> dims, const char* what) {
  int64_t count = 0;
  if (dims.size() > static_cast<size_t>(kMaxRank) || !checked_element_count(dims, &count) || count > kMaxRunCount) {
    return invalid_argument("{}: shape {} exceeds rank {} or {} elements", what, shape_to_string(dims), kMaxRank,
                            kMaxRunCount);
  }
  return ok_status();
}

Result<LinearSpec> decode_spec(std::span<const uint8_t> payload) {
  Reader r(payload);
  uint8_t kind = 0, rank = 0, pad0 = 0, pad1 = 0;
  if (!r.u8(&kind) || !r.u8(&rank) || !r.u8(&pad0) || !r.u8(&pad1)) return data_loss("add_layer frame: truncated header");
  if (kind > 1) return invalid_argument("add_layer frame: unknown layer kind {}", kind);
  if (pad0 != 0 || pad1 != 0) return invalid_argument("add_layer frame: reserved bytes are not zero");
  if (rank > kMaxRank) return invalid_argument("add_layer frame: weight rank {} exceeds {}", rank, kMaxRank);
  LinearSpec spec;
  spec.kind = kind == 0 ? LinearSpec::Kind::kConv2d : LinearSpec::Kind::kMatMul;
  spec.weight_shape.resize(rank);
  for (int64_t& d : spec.weight_shape) {
    if (!r.i64(&d)) return data_loss("add_layer frame: truncated weight shape");
  }
  for (int64_t& v : spec.strides) {
    if (!r.i64(&v)) return data_loss("add_layer frame: truncated strides");
  }
  for (int64_t& v : spec.dilations) {
    if (!r.i64(&v)) return data_loss("add_layer frame: truncated dilations");
  }
  for (int64_t& v : spec.pads) {
    if (!r.i64(&v)) return data_loss("add_layer frame: truncated pads");
  }
  uint64_t count = 0;
  if (!r.i64(&spec.group) || !r.u64(&count)) return data_loss("add_layer frame: truncated group or weight count");
  int64_t want = 0;
  if (!checked_element_count(spec.weight_shape, &want) || want > kMaxWeightCount) {
    return invalid_argument("add_layer frame: weight shape {} exceeds {} elements", shape_to_string(spec.weight_shape),
                            kMaxWeightCount);
  }
  if (count != static_cast<uint64_t>(want)) {
    return invalid_argument("add_layer frame: weight count {} does not match shape {} ({} elements)", count,
                            shape_to_string(spec.weight_shape), want);
  }
  if (r.remaining() != count) {
    return data_loss("add_layer frame: {} bytes of weights for a count of {}", r.remaining(), count);
  }
  std::span<const uint8_t> w = r.bytes(count);
  spec.weights.resize(count);
  if (count > 0) std::memcpy(spec.weights.data(), w.data(), count);
  TENET_RETURN_IF_ERROR(validate(spec).with_context("add_layer frame"));
  return spec;
}

Result<RunRequest> decode_run(std::span<const uint8_t> payload) {
  Reader r(payload);
  RunRequest req;
  uint32_t rank = 0;
  if (!r.i32(&req.layer) || !r.u32(&rank)) return data_loss("run frame: truncated header");
  if (rank > static_cast<uint32_t>(kMaxRank)) return invalid_argument("run frame: rank {} exceeds {}", rank, kMaxRank);
  req.input_shape.resize(rank);
  for (int64_t& d : req.input_shape) {
    if (!r.i64(&d)) return data_loss("run frame: truncated shape");
  }
  TENET_RETURN_IF_ERROR(check_shape(req.input_shape, "run frame"));
  uint64_t count = 0;
  if (!r.u64(&count)) return data_loss("run frame: truncated count");
  if (count != static_cast<uint64_t>(numel(req.input_shape))) {
    return invalid_argument("run frame: count {} does not match shape {} ({} elements)", count,
                            shape_to_string(req.input_shape), numel(req.input_shape));
  }
  if (r.remaining() != count * 4) {
    return data_loss("run frame: {} bytes of data for {} elements ({} bytes)", r.remaining(), count, count * 4);
  }
  std::span<const uint8_t> bytes = r.bytes(count * 4);
  req.x.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* b = bytes.data() + 4 * i;
    req.x[i] = uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
  }
  for (size_t i = 0; i < count; ++i) {
    if (req.x[i] >= kFieldPrime) {
      return invalid_argument("run frame: value {} at index {} is not a field element (>= 2^31-1)", req.x[i], i);
    }
  }
  return req;
}

}  // namespace

size_t max_payload_size(FrameType type) {
  switch (type) {
    case FrameType::kHello: return 4;
    case FrameType::kHelloReply: return 8 + kMaxNameSize;
    case FrameType::kAddLayer: return kSpecFixedSize + 8 * kMaxRank + kMaxWeightCount;
    case FrameType::kAddLayerReply: return 4;
    case FrameType::kRun:
    case FrameType::kRunReply: return 16 + 8 * kMaxRank + 4 * kMaxRunCount;
    case FrameType::kError: return 8 + kMaxErrorMessageSize;
  }
  return 0;
}

std::array<uint8_t, kHeaderSize> encode_header(FrameType type, uint32_t payload_size) {
  std::array<uint8_t, kHeaderSize> h{};
  std::memcpy(h.data(), kMagic, 4);
  h[4] = static_cast<uint8_t>(type);
  for (int i = 0; i < 4; ++i) h[8 + static_cast<size_t>(i)] = static_cast<uint8_t>(payload_size >> (8 * i));
  return h;
}

Result<FrameHeader> decode_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) return data_loss("frame header: {} bytes, need {}", bytes.size(), kHeaderSize);
  if (std::memcmp(bytes.data(), kMagic, 4) != 0) return data_loss("frame header: bad magic (not a tenet accelerator peer?)");
  if (bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0) return data_loss("frame header: reserved bytes are not zero");
  FrameHeader h;
  h.type = static_cast<FrameType>(bytes[4]);
  const size_t max = max_payload_size(h.type);
  if (max == 0) return data_loss("frame header: unknown frame type 0x{:02x}", bytes[4]);
  h.payload_size = uint32_t{bytes[8]} | uint32_t{bytes[9]} << 8 | uint32_t{bytes[10]} << 16 | uint32_t{bytes[11]} << 24;
  if (h.payload_size > max) {
    return resource_exhausted("frame header: payload of {} bytes exceeds {} for frame type 0x{:02x}", h.payload_size, max,
                              bytes[4]);
  }
  return h;
}

std::vector<uint8_t> encode_hello() {
  std::vector<uint8_t> p;
  put_u32(p, kProtocolVersion);
  return frame(FrameType::kHello, p);
}

Result<std::vector<uint8_t>> encode_add_layer(const LinearSpec& spec) {
  TENET_RETURN_IF_ERROR(validate(spec));
  std::vector<uint8_t> p;
  p.reserve(kSpecFixedSize + 8 * spec.weight_shape.size() + spec.weights.size());
  put_u8(p, spec.kind == LinearSpec::Kind::kConv2d ? 0 : 1);
  put_u8(p, static_cast<uint8_t>(spec.weight_shape.size()));
  put_u8(p, 0);
  put_u8(p, 0);
  for (int64_t d : spec.weight_shape) put_i64(p, d);
  for (int64_t v : spec.strides) put_i64(p, v);
  for (int64_t v : spec.dilations) put_i64(p, v);
  for (int64_t v : spec.pads) put_i64(p, v);
  put_i64(p, spec.group);
  put_u64(p, spec.weights.size());
  const auto* w = reinterpret_cast<const uint8_t*>(spec.weights.data());
  p.insert(p.end(), w, w + spec.weights.size());
  return frame(FrameType::kAddLayer, p);
}

Result<std::vector<uint8_t>> encode_run_prefix(int32_t layer, const Shape& input_shape, uint64_t count) {
  TENET_RETURN_IF_ERROR(check_shape(input_shape, "run"));
  if (count != static_cast<uint64_t>(numel(input_shape))) {
    return invalid_argument("run: {} elements for shape {}", count, shape_to_string(input_shape));
  }
  std::vector<uint8_t> p;
  put_u32(p, static_cast<uint32_t>(layer));
  put_u32(p, static_cast<uint32_t>(input_shape.size()));
  for (int64_t d : input_shape) put_i64(p, d);
  put_u64(p, count);
  std::vector<uint8_t> out(kHeaderSize);
  const auto h = encode_header(FrameType::kRun, static_cast<uint32_t>(p.size() + 4 * count));
  std::copy(h.begin(), h.end(), out.begin());
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

Result<Request> decode_request(FrameType type, std::span<const uint8_t> payload) {
  switch (type) {
    case FrameType::kHello: {
      Reader r(payload);
      HelloRequest hello;
      if (!r.u32(&hello.version) || r.remaining() != 0) return data_loss("hello frame: {} bytes, expected 4", payload.size());
      return Request(hello);
    }
    case FrameType::kAddLayer: {
      TENET_ASSIGN_OR_RETURN(LinearSpec spec, decode_spec(payload));
      return Request(std::move(spec));
    }
    case FrameType::kRun: {
      TENET_ASSIGN_OR_RETURN(RunRequest run, decode_run(payload));
      return Request(std::move(run));
    }
    default: break;
  }
  return invalid_argument("frame type 0x{:02x} is not a request", static_cast<unsigned>(type));
}

std::vector<uint8_t> encode_hello_reply(const std::string& name) {
  const std::string n = name.substr(0, kMaxNameSize);
  std::vector<uint8_t> p;
  put_u32(p, kProtocolVersion);
  put_u32(p, static_cast<uint32_t>(n.size()));
  p.insert(p.end(), n.begin(), n.end());
  return frame(FrameType::kHelloReply, p);
}

std::vector<uint8_t> encode_add_layer_reply(int32_t layer) {
  std::vector<uint8_t> p;
  put_u32(p, static_cast<uint32_t>(layer));
  return frame(FrameType::kAddLayerReply, p);
}

Result<std::vector<uint8_t>> encode_run_reply_prefix(const Shape& output_shape, uint64_t count) {
  TENET_RETURN_IF_ERROR(check_shape(output_shape, "run reply"));
  std::vector<uint8_t> p;
  put_u32(p, static_cast<uint32_t>(output_shape.size()));
  put_u32(p, 0);
  for (int64_t d : output_shape) put_i64(p, d);
  put_u64(p, count);
  std::vector<uint8_t> out(kHeaderSize);
  const auto h = encode_header(FrameType::kRunReply, static_cast<uint32_t>(p.size() + 4 * count));
  std::copy(h.begin(), h.end(), out.begin());
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<uint8_t> encode_error(const Status& status) {
  const std::string msg = status.message().substr(0, kMaxErrorMessageSize);
  std::vector<uint8_t> p;
  put_u32(p, static_cast<uint32_t>(status.ok() ? StatusCode::kInternal : status.code()));
  put_u32(p, static_cast<uint32_t>(msg.size()));
  p.insert(p.end(), msg.begin(), msg.end());
  return frame(FrameType::kError, p);
}

Result<std::string> decode_hello_reply(std::span<const uint8_t> payload) {
  Reader r(payload);
  uint32_t version = 0, size = 0;
  if (!r.u32(&version) || !r.u32(&size)) return data_loss("hello reply: truncated");
  if (version != kProtocolVersion) {
    return failed_precondition("hello reply: server speaks protocol version {}, this client {}", version, kProtocolVersion);
  }
  if (size > kMaxNameSize || r.remaining() != size) return data_loss("hello reply: bad name size {}", size);
  std::string name;
  for (uint8_t c : r.bytes(size)) {
    if (c < 0x20 || c > 0x7e) return data_loss("hello reply: backend name is not printable ASCII");
    name.push_back(static_cast<char>(c));
  }
  return name;
}

Result<int32_t> decode_add_layer_reply(std::span<const uint8_t> payload) {
  Reader r(payload);
  int32_t layer = -1;
  if (!r.i32(&layer) || r.remaining() != 0) return data_loss("add_layer reply: {} bytes, expected 4", payload.size());
  if (layer < 0) return data_loss("add_layer reply: negative layer id {}", layer);
  return layer;
}

size_t run_reply_prefix_size(size_t rank) { return 16 + 8 * rank; }

Status check_run_reply_prefix(std::span<const uint8_t> prefix, const Shape& expected_shape) {
  Reader r(prefix);
  uint32_t rank = 0, zero = 1;
  if (!r.u32(&rank) || !r.u32(&zero)) return data_loss("run reply: truncated");
  if (rank != expected_shape.size() || zero != 0) {
    return data_loss("run reply: rank {} (reserved {}), expected rank {}", rank, zero, expected_shape.size());
  }
  for (size_t i = 0; i < rank; ++i) {
    int64_t d = 0;
    if (!r.i64(&d)) return data_loss("run reply: truncated shape");
    if (d != expected_shape[i]) {
      return data_loss("run reply: dimension {} is {}, expected {} (output shape {})", i, d, expected_shape[i],
                       shape_to_string(expected_shape));
    }
  }
  uint64_t count = 0;
  if (!r.u64(&count) || r.remaining() != 0) return data_loss("run reply: truncated count");
  if (count != static_cast<uint64_t>(numel(expected_shape))) {
    return data_loss("run reply: count {}, expected {}", count, numel(expected_shape));
  }
  return ok_status();
}

Status decode_error(std::span<const uint8_t> payload) {
  Reader r(payload);
  uint32_t code = 0, size = 0;
  if (!r.u32(&code) || !r.u32(&size) || size > kMaxErrorMessageSize || r.remaining() != size) {
    return data_loss("error reply: malformed ({} bytes)", payload.size());
  }
  std::string msg;
  for (uint8_t c : r.bytes(size)) msg.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  if (code == 0 || code > static_cast<uint32_t>(StatusCode::kInternal)) {
    return data_loss("error reply with invalid status code {}: {}", code, msg);
  }
  return Status(static_cast<StatusCode>(code), msg);
}

Result<std::string> parse_unix_address(const std::string& address) {
  constexpr std::string_view kPrefix = "unix:";
  if (address.rfind(kPrefix, 0) != 0 || address.size() == kPrefix.size()) {
    return invalid_argument("accelerator address must be unix:PATH, got '{}'", address);
  }
  std::string path = address.substr(kPrefix.size());
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return invalid_argument("accelerator socket path is {} bytes, the limit is {}: '{}'", path.size(),
                            sizeof(sockaddr_un{}.sun_path) - 1, path);
  }
  if (path.find('\0') != std::string::npos) return invalid_argument("accelerator socket path contains a NUL byte");
  return path;
}

}  // namespace tenet::accel::wire
