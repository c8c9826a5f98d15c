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
//
// Reconnection (a restarted accelerator process): the handles add_layer() returns are the
// client's own (0, 1, ...), mapped to the ids of the server the client currently talks to, and
// the client keeps every spec it registered, weights included (public int8 weights; one more
// copy in enclave memory). A connection that breaks (the server died, hung up, or sent a reply
// the client rejected) marks the session broken: the request it carried fails, and the next
// call opens a new session: it drops the pooled connections, connects again (failing at once
// while nothing listens), and registers every layer again before running anything, so that
// the handles keep working on a new server process. Connections of an older session are never
// reused and their server ids never sent to a newer one. A restarted server is exactly as
// untrusted as the first: replies are checked as above, and Freivalds checks are unchanged.
#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
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
constexpr int kStaleSessionRetries = 3;

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
    // Registrations and session changes are serialized: a session's id table is complete.
    std::lock_guard session(session_mu_);
    TENET_RETURN_IF_ERROR(resync_locked());
    TENET_ASSIGN_OR_RETURN(Lease lease, acquire_connection());
    TENET_ASSIGN_OR_RETURN(int32_t id, register_on(lease.fd, frame, &lease.healthy));
    auto kept = std::make_shared<LinearSpec>(spec);
    std::lock_guard lock(mu_);
    if (lease.generation != generation_) {
      // Cannot happen while session_mu_ is held (only resync_locked starts a session).
      return failed_precondition("the session changed while registering a layer");
    }
    if (std::find(remote_ids_.begin(), remote_ids_.end(), id) != remote_ids_.end()) {
      return data_loss("accelerator at unix:{}: returned layer id {} twice", path_, id);
    }
    specs_.push_back(std::move(kept));
    remote_ids_.push_back(id);
    return static_cast<int32_t>(specs_.size() - 1);
  }

  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    std::shared_ptr<const LinearSpec> spec;
    {
      std::lock_guard lock(mu_);
      if (layer < 0 || static_cast<size_t>(layer) >= specs_.size()) {
        return not_found("remote accelerator: no layer {} was added through this client", layer);
      }
      spec = specs_[static_cast<size_t>(layer)];
    }
    TENET_RETURN_IF_ERROR(check_run_arguments(*spec, input_shape, x, y));
    const Shape out = output_shape(*spec, input_shape).value();
    for (int attempt = 0;; ++attempt) {
      TENET_ASSIGN_OR_RETURN(Lease lease, acquire());
      int32_t remote = -1;
      {
        std::lock_guard lock(mu_);
        if (lease.generation == generation_) remote = remote_ids_[static_cast<size_t>(layer)];
      }
      if (remote < 0) {
        // A newer session started after this connection was leased: its server ids are stale.
        if (attempt + 1 < kStaleSessionRetries) continue;
        return failed_precondition("accelerator at unix:{}: the session changed during the request", path_);
      }
      return run_on(lease, remote, input_shape, out, x, y);
    }
  }

 private:
  // A leased connection of one session: returned to the pool if the exchange left its framing
  // intact and its session is still current, else closed (and a current session marked broken).
  struct Lease {
    RemoteAccelerator* owner = nullptr;
    int fd = -1;
    uint64_t generation = 0;
    bool healthy = false;
    Lease(RemoteAccelerator* o, int f, uint64_t g) : owner(o), fd(f), generation(g) {}
    Lease(Lease&& other) noexcept : owner(other.owner), fd(other.fd), generation(other.generation), healthy(other.healthy) {
      other.owner = nullptr;
    }
    Lease(const Lease&) = delete;
    ~Lease() {
      if (owner) owner->release(fd, generation, healthy);
    }
  };

  Status run_on(Lease& lease, int32_t remote, const Shape& input_shape, const Shape& out, std::span<const uint32_t> x,
                std::span<uint32_t> y) {
    TENET_ASSIGN_OR_RETURN(std::vector<uint8_t> prefix, wire::encode_run_prefix(remote, input_shape, x.size()));
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

  // Sends one kAddLayer frame on `fd` and reads the server's id for it.
  Result<int32_t> register_on(int fd, const std::vector<uint8_t>& frame, bool* healthy) {
    const iovec part{const_cast<uint8_t*>(frame.data()), frame.size()};
    TENET_RETURN_IF_ERROR(context(write_all(fd, std::span<const iovec>(&part, 1))));
    TENET_ASSIGN_OR_RETURN(wire::FrameHeader h, read_reply_header(fd, wire::FrameType::kAddLayerReply));
    std::vector<uint8_t> payload(h.payload_size);
    TENET_RETURN_IF_ERROR(context(read_full(fd, payload.data(), payload.size())));
    if (h.type == wire::FrameType::kError) {
      *healthy = true;
      return context(wire::decode_error(payload));
    }
    TENET_ASSIGN_OR_RETURN(int32_t id, context(wire::decode_add_layer_reply(payload)));
    *healthy = true;
    return id;
  }

  // A connection of the current session, starting a new session first if the current one broke.
  Result<Lease> acquire() {
    bool broken;
    {
      std::lock_guard lock(mu_);
      broken = broken_;
    }
    if (broken) {
      std::lock_guard session(session_mu_);
      TENET_RETURN_IF_ERROR(resync_locked());
    }
    return acquire_connection();
  }

  // An idle connection of the current session, or a new one (connect + hello).
  Result<Lease> acquire_connection() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !idle_.empty() || open_ < kMaxConnections; });
    const uint64_t generation = generation_;
    if (!idle_.empty()) {
      const int fd = idle_.back();
      idle_.pop_back();
      return Lease(this, fd, generation);
    }
    ++open_;
    lock.unlock();
    auto fd = open_connection();
    if (!fd.ok()) {
      lock.lock();
      --open_;
      if (generation == generation_) broken_ = true;  // nothing listens: the next call starts over
      cv_.notify_one();
      return fd.status();
    }
    return Lease(this, *fd, generation);
  }

  // Connects and shakes hands (version check), as connect_accelerator does for the first one.
  Result<int> open_connection() {
    TENET_ASSIGN_OR_RETURN(int fd, connect_unix(path_, kTimeoutS));
    const auto fail = [&](const Status& s) {
      ::close(fd);
      return context(s);
    };
    const std::vector<uint8_t> hello = wire::encode_hello();
    const iovec part{const_cast<uint8_t*>(hello.data()), hello.size()};
    if (Status s = write_all(fd, std::span<const iovec>(&part, 1)); !s.ok()) return fail(s);
    auto h = read_reply_header(fd, wire::FrameType::kHelloReply);
    if (!h.ok()) return fail(h.status());
    std::vector<uint8_t> payload(h->payload_size);
    if (Status s = read_full(fd, payload.data(), payload.size()); !s.ok()) return fail(s);
    if (h->type == wire::FrameType::kError) return fail(wire::decode_error(payload));
    if (Status s = wire::decode_hello_reply(payload).status(); !s.ok()) return fail(s);
    return fd;
  }

  // With session_mu_ held: if the session broke, starts a new one: drops the pooled connections,
  // connects again and registers every layer again; the new ids replace the old ones only when
  // all layers are registered. Leaves the session broken (and says why) when that fails.
  Status resync_locked() {
    {
      std::lock_guard lock(mu_);
      if (!broken_) return ok_status();
      ++generation_;  // leases of the old session are closed when released
      for (int fd : idle_) ::close(fd);
      open_ -= static_cast<int>(idle_.size());
      idle_.clear();
      cv_.notify_all();
    }
    std::vector<std::shared_ptr<const LinearSpec>> specs;
    {
      std::lock_guard lock(mu_);
      specs = specs_;
    }
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return open_ < kMaxConnections; });
      ++open_;
    }
    auto fd = open_connection();
    const auto give_up = [&](int close_fd, const Status& s) {
      if (close_fd >= 0) ::close(close_fd);
      std::lock_guard lock(mu_);
      --open_;
      cv_.notify_one();
      return failed_precondition("accelerator at unix:{} is unavailable ({} layers to register again): {}", path_,
                               specs.size(), s.to_string());
    };
    if (!fd.ok()) return give_up(-1, fd.status());
    std::vector<int32_t> ids;
    ids.reserve(specs.size());
    for (const auto& spec : specs) {
      auto frame = wire::encode_add_layer(*spec);
      if (!frame.ok()) return give_up(*fd, frame.status());
      bool healthy = false;
      auto id = register_on(*fd, *frame, &healthy);
      if (!id.ok()) return give_up(*fd, id.status());
      if (std::find(ids.begin(), ids.end(), *id) != ids.end()) {
        return give_up(*fd, data_loss("accelerator at unix:{}: returned layer id {} twice", path_, *id));
      }
      ids.push_back(*id);
    }
    std::lock_guard lock(mu_);
    remote_ids_ = std::move(ids);
    broken_ = false;
    idle_.push_back(*fd);
    ++sessions_;
    cv_.notify_one();
    std::fprintf(stderr, "accelerator client: reconnected to unix:%s (session %llu), registered %zu layers again\n",
                 path_.c_str(), static_cast<unsigned long long>(sessions_), specs.size());
    return ok_status();
  }

  void release(int fd, uint64_t generation, bool healthy) {
    std::lock_guard lock(mu_);
    if (healthy && generation == generation_) {
      idle_.push_back(fd);
    } else {
      ::close(fd);
      --open_;
      if (!healthy && generation == generation_) broken_ = true;
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
  std::mutex session_mu_;  // held to register layers or start a session; taken before mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> idle_;  // connections of the current session
  int open_ = 0;           // connections open, of any session
  uint64_t generation_ = 0;
  uint64_t sessions_ = 0;  // sessions started after the first
  bool broken_ = false;
  std::vector<std::shared_ptr<const LinearSpec>> specs_;  // by handle, weights kept (resync)
  std::vector<int32_t> remote_ids_;                       // by handle: the current session's ids
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
