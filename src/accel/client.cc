// connect_accelerator: the enclave host's client of `tenet accelerator` (frames in wire.h).
//
// The server is untrusted, so every reply is checked before it is used: the frame header (magic,
// type, size bound), a reply of exactly the size the request implies, an output shape equal to
// the one the client computes itself from the spec it uploaded, and every value of y < p. A
// misbehaving server yields kDataLoss and never a crash or an out-of-bounds write; the
// connection it came on is dropped (its framing can no longer be trusted). (Freivalds checks in
// src/hybrid then catch a server that returns well-formed but wrong products.)
//
// Thread safety and overlap: a small pool of connections; each call leases an idle connection
// or opens a new one (up to kMaxConnections), so concurrent run() calls proceed in parallel on
// the server, which serves each connection on its own thread.
#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include "accel/accelerator.h"
#include "accel/socket_io.h"
#include "accel/wire.h"

namespace tenet::accel {
namespace {

static_assert(std::endian::native == std::endian::little, "run data is sent as host u32 arrays");

constexpr int kMaxConnections = 8;
constexpr int kTimeoutS = 600;  // a run of a large batch on a slow backend, not a hung server

class RemoteAccelerator final : public Accelerator {
 public:
  RemoteAccelerator(std::string path, std::string backend_name, int first_fd)
      : path_(std::move(path)), name_("remote(" + backend_name + ")") {
    idle_.push_back(first_fd);
    open_ = 1;
  }
  ~RemoteAccelerator() override {
    for (int fd : idle_) ::close(fd);
  }

  std::string name() const override { return name_; }

  Result<int32_t> add_layer(const LinearSpec& spec) override {
    TENET_ASSIGN_OR_RETURN(std::vector<uint8_t> frame, wire::encode_add_layer(spec));
    TENET_ASSIGN_OR_RETURN(Lease lease, acquire());
    const iovec part{frame.data(), frame.size()};
    TENET_RETURN_IF_ERROR(context(write_all(lease.fd, std::span<const iovec>(&part, 1))));
    TENET_ASSIGN_OR_RETURN(wire::FrameHeader h, read_reply_header(lease.fd, wire::FrameType::kAddLayerReply));
    std::vector<uint8_t> payload(h.payload_size);
    TENET_RETURN_IF_ERROR(context(read_full(lease.fd, payload.data(), payload.size())));
    if (h.type == wire::FrameType::kError) {
      lease.healthy = true;
      return context(wire::decode_error(payload));
    }
    TENET_ASSIGN_OR_RETURN(int32_t id, context(wire::decode_add_layer_reply(payload)));
    lease.healthy = true;
    auto shape_only = std::make_shared<LinearSpec>();
    shape_only->kind = spec.kind;
    shape_only->weight_shape = spec.weight_shape;
    shape_only->strides = spec.strides;
    shape_only->dilations = spec.dilations;
    shape_only->pads = spec.pads;
    shape_only->group = spec.group;
    std::unique_lock lock(layers_mu_);
    if (!layers_.emplace(id, std::move(shape_only)).second) {
      return data_loss("accelerator at unix:{}: returned layer id {} twice", path_, id);
    }
    return id;
  }

  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    std::shared_ptr<const LinearSpec> spec;
    {
      std::shared_lock lock(layers_mu_);
      auto it = layers_.find(layer);
      if (it == layers_.end()) return not_found("remote accelerator: no layer {} was added through this client", layer);
      spec = it->second;
    }
    TENET_RETURN_IF_ERROR(check_run_arguments(*spec, input_shape, x, y));
    const Shape out = output_shape(*spec, input_shape).value();
    TENET_ASSIGN_OR_RETURN(std::vector<uint8_t> prefix, wire::encode_run_prefix(layer, input_shape, x.size()));
    TENET_ASSIGN_OR_RETURN(Lease lease, acquire());
    const iovec parts[2] = {{prefix.data(), prefix.size()},
                            {const_cast<uint32_t*>(x.data()), x.size() * sizeof(uint32_t)}};
    TENET_RETURN_IF_ERROR(context(write_all(lease.fd, parts)));
    TENET_ASSIGN_OR_RETURN(wire::FrameHeader h, read_reply_header(lease.fd, wire::FrameType::kRunReply));
    if (h.type == wire::FrameType::kError) {
      std::vector<uint8_t> payload(h.payload_size);
      TENET_RETURN_IF_ERROR(context(read_full(lease.fd, payload.data(), payload.size())));
      lease.healthy = true;
      return context(wire::decode_error(payload));
    }
    const size_t prefix_size = wire::run_reply_prefix_size(out.size());
    const size_t want = prefix_size + y.size() * sizeof(uint32_t);
    if (h.payload_size != want) {
      return data_loss("accelerator at unix:{}: run reply of {} bytes, expected {} for output {}", path_, h.payload_size,
                       want, shape_to_string(out));
    }
    std::vector<uint8_t> reply_prefix(prefix_size);
    TENET_RETURN_IF_ERROR(context(read_full(lease.fd, reply_prefix.data(), reply_prefix.size())));
    TENET_RETURN_IF_ERROR(context(wire::check_run_reply_prefix(reply_prefix, out)));
    TENET_RETURN_IF_ERROR(context(read_full(lease.fd, y.data(), y.size() * sizeof(uint32_t))));
    lease.healthy = true;  // framing intact, whatever the values
    uint32_t max_value = 0;
    for (uint32_t v : y) max_value = std::max(max_value, v);
    if (max_value >= kFieldPrime) {
      const auto bad = std::find_if(y.begin(), y.end(), [](uint32_t v) { return v >= kFieldPrime; });
      return data_loss("accelerator at unix:{}: output value {} at index {} is not a field element", path_, *bad,
                       bad - y.begin());
    }
    return ok_status();
  }

 private:
  // A leased connection: returned to the pool if the exchange left its framing intact, else closed.
  struct Lease {
    RemoteAccelerator* owner = nullptr;
    int fd = -1;
    bool healthy = false;
    Lease(RemoteAccelerator* o, int f) : owner(o), fd(f) {}
    Lease(Lease&& other) noexcept : owner(other.owner), fd(other.fd), healthy(other.healthy) { other.owner = nullptr; }
    Lease(const Lease&) = delete;
    ~Lease() {
      if (owner) owner->release(fd, healthy);
    }
  };

  Result<Lease> acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !idle_.empty() || open_ < kMaxConnections; });
    if (!idle_.empty()) {
      const int fd = idle_.back();
      idle_.pop_back();
      return Lease(this, fd);
    }
    ++open_;
    lock.unlock();
    auto fd = connect_unix(path_, kTimeoutS);
    if (!fd.ok()) {
      lock.lock();
      --open_;
      cv_.notify_one();
      return fd.status();
    }
    // Version handshake on every new connection, as on the first.
    const std::vector<uint8_t> hello = wire::encode_hello();
    const iovec part{const_cast<uint8_t*>(hello.data()), hello.size()};
    Lease lease(this, *fd);
    TENET_RETURN_IF_ERROR(context(write_all(*fd, std::span<const iovec>(&part, 1))));
    TENET_ASSIGN_OR_RETURN(wire::FrameHeader h, read_reply_header(*fd, wire::FrameType::kHelloReply));
    std::vector<uint8_t> payload(h.payload_size);
    TENET_RETURN_IF_ERROR(context(read_full(*fd, payload.data(), payload.size())));
    if (h.type == wire::FrameType::kError) return context(wire::decode_error(payload));
    TENET_RETURN_IF_ERROR(context(wire::decode_hello_reply(payload).status()));
    return lease;
  }

  void release(int fd, bool healthy) {
    std::lock_guard lock(mu_);
    if (healthy) {
      idle_.push_back(fd);
    } else {
      ::close(fd);
      --open_;
    }
    cv_.notify_one();
  }

  // Reads a reply header: `expected` or kError, nothing else.
  Result<wire::FrameHeader> read_reply_header(int fd, wire::FrameType expected) {
    uint8_t bytes[wire::kHeaderSize];
    TENET_RETURN_IF_ERROR(context(read_full(fd, bytes, sizeof(bytes))));
    TENET_ASSIGN_OR_RETURN(wire::FrameHeader h, context(wire::decode_header(bytes)));
    if (h.type != expected && h.type != wire::FrameType::kError) {
      return data_loss("accelerator at unix:{}: reply of frame type 0x{:02x}, expected 0x{:02x}", path_,
                       static_cast<unsigned>(h.type), static_cast<unsigned>(expected));
    }
    return h;
  }

  Status context(const Status& s) const { return s.ok() ? s : s.with_context("accelerator at unix:" + path_); }
  template <typename T>
  Result<T> context(Result<T> r) const {
    if (r.ok()) return r;
    return r.status().with_context("accelerator at unix:" + path_);
  }

  const std::string path_;
  const std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> idle_;
  int open_ = 0;
  std::shared_mutex layers_mu_;
  std::unordered_map<int32_t, std::shared_ptr<const LinearSpec>> layers_;  // weights dropped
};

}  // namespace

Result<std::unique_ptr<Accelerator>> connect_accelerator(const std::string& address) {
  TENET_ASSIGN_OR_RETURN(std::string path, wire::parse_unix_address(address));
  TENET_ASSIGN_OR_RETURN(int fd, connect_unix(path, kTimeoutS));
  const auto fail = [&](const Status& s) {
    ::close(fd);
    return s.with_context("accelerator at " + address);
  };
  const std::vector<uint8_t> hello = wire::encode_hello();
  const iovec part{const_cast<uint8_t*>(hello.data()), hello.size()};
  if (Status s = write_all(fd, std::span<const iovec>(&part, 1)); !s.ok()) return fail(s);
  uint8_t bytes[wire::kHeaderSize];
  if (Status s = read_full(fd, bytes, sizeof(bytes)); !s.ok()) return fail(s);
  auto h = wire::decode_header(bytes);
  if (!h.ok()) return fail(h.status());
  if (h->type != wire::FrameType::kHelloReply && h->type != wire::FrameType::kError) {
    return fail(data_loss("reply of frame type 0x{:02x} to hello", static_cast<unsigned>(h->type)));
  }
  std::vector<uint8_t> payload(h->payload_size);
  if (Status s = read_full(fd, payload.data(), payload.size()); !s.ok()) return fail(s);
  if (h->type == wire::FrameType::kError) return fail(wire::decode_error(payload));
  auto name = wire::decode_hello_reply(payload);
  if (!name.ok()) return fail(name.status());
  return std::unique_ptr<Accelerator>(std::make_unique<RemoteAccelerator>(std::move(path), *name, fd));
}

}  // namespace tenet::accel
