// The accelerator service's accept loop and per-connection frame handling (see server.h).
#include "accel/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>

#include "accel/socket_io.h"
#include "accel/wire.h"

namespace tenet::accel {
namespace {

static_assert(std::endian::native == std::endian::little, "run data is sent as host u32 arrays");

Status send_frame(int fd, const std::vector<uint8_t>& frame) {
  const iovec part{const_cast<uint8_t*>(frame.data()), frame.size()};
  return write_all(fd, std::span<const iovec>(&part, 1));
}

}  // namespace

Result<std::unique_ptr<AcceleratorServer>> AcceleratorServer::start(std::shared_ptr<Accelerator> backend,
                                                                    const std::string& address,
                                                                    AcceleratorServerOptions options) {
  if (!backend) return invalid_argument("accelerator server: no backend");
  if (options.max_connections == 0) return invalid_argument("accelerator server: max_connections must be > 0");
  TENET_ASSIGN_OR_RETURN(std::string path, wire::parse_unix_address(address));
  TENET_ASSIGN_OR_RETURN(int listen_fd, listen_unix(path, 64));
  const int wake_fd = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    ::close(listen_fd);
    ::unlink(path.c_str());
    return internal_error("accelerator server: eventfd: {}", std::strerror(errno));
  }
  std::unique_ptr<AcceleratorServer> server(
      new AcceleratorServer(std::move(backend), std::move(path), listen_fd, wake_fd, std::move(options)));
  server->accept_thread_ = std::thread([s = server.get()] { s->accept_loop(); });
  return server;
}

AcceleratorServer::AcceleratorServer(std::shared_ptr<Accelerator> backend, std::string path, int listen_fd, int wake_fd,
                                     AcceleratorServerOptions options)
    : backend_(std::move(backend)), path_(std::move(path)), listen_fd_(listen_fd), wake_fd_(wake_fd),
      options_(std::move(options)) {}

AcceleratorServer::~AcceleratorServer() { stop(); }

void AcceleratorServer::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

void AcceleratorServer::stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    const uint64_t one = 1;
    if (::write(wake_fd_, &one, sizeof(one)) < 0) log("stop: eventfd write failed");
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      std::lock_guard lock(conns_mu_);
      for (Connection& c : conns_) ::shutdown(c.fd, SHUT_RDWR);
    }
    // Connection threads finish their current frame, see EOF and exit.
    std::list<Connection> conns;
    {
      std::lock_guard lock(conns_mu_);
      conns.splice(conns.end(), conns_);
    }
    for (Connection& c : conns) {
      if (c.thread.joinable()) c.thread.join();
      ::close(c.fd);
    }
    ::close(listen_fd_);
    ::close(wake_fd_);
    ::unlink(path_.c_str());
  });
}

void AcceleratorServer::reap_finished() {
  std::lock_guard lock(conns_mu_);
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->done.load()) {
      it->thread.join();
      ::close(it->fd);
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void AcceleratorServer::accept_loop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int rc = ::poll(fds, 2, 1000);
    reap_finished();
    if (rc < 0 && errno != EINTR) {
      log(fmt::format("poll failed: {}", std::strerror(errno)));
      return;
    }
    if (stopping_.load() || (fds[1].revents & POLLIN)) return;
    if (rc <= 0 || !(fds[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) log(fmt::format("accept failed: {}", std::strerror(errno)));
      continue;
    }
    std::lock_guard lock(conns_mu_);
    if (conns_.size() >= options_.max_connections) {
      (void)send_frame(fd, wire::encode_error(resource_exhausted("accelerator: {} connections already open",
                                                                 options_.max_connections)));
      ::close(fd);
      log(fmt::format("refused a connection: {} already open", options_.max_connections));
      continue;
    }
    Connection& c = conns_.emplace_back();
    c.fd = fd;
    c.thread = std::thread([this, &c] { serve(&c); });
  }
}

void AcceleratorServer::serve(Connection* conn) {
  while (!stopping_.load() && handle_frame(conn->fd)) {
  }
  conn->done.store(true);
}

Result<Shape> AcceleratorServer::layer_output_shape(int32_t layer, const Shape& input_shape) const {
  std::shared_ptr<const LinearSpec> spec;
  {
    std::shared_lock lock(specs_mu_);
    auto it = specs_.find(layer);
    if (it == specs_.end()) return not_found("accelerator: no layer {} ({} registered)", layer, specs_.size());
    spec = it->second;
  }
  return output_shape(*spec, input_shape);
}

bool AcceleratorServer::handle_frame(int fd) {
  uint8_t header_bytes[wire::kHeaderSize];
  bool eof = false;
  Status s = read_full(fd, header_bytes, sizeof(header_bytes), &eof);
  if (!s.ok()) {
    if (!eof) log(fmt::format("connection dropped: {}", s.message()));
    return false;
  }
  auto header = wire::decode_header(header_bytes);
  if (!header.ok()) {
    log(fmt::format("closing a connection: {}", header.status().message()));
    (void)send_frame(fd, wire::encode_error(header.status()));
    return false;
  }
  // Allocated uninitialized: a client that announces a large frame and sends nothing holds
  // address space, not memory.
  std::unique_ptr<uint8_t[]> payload(new uint8_t[header->payload_size]);
  s = read_full(fd, payload.get(), header->payload_size);
  if (!s.ok()) {
    log(fmt::format("connection dropped mid-frame: {}", s.message()));
    return false;
  }
  auto request = wire::decode_request(header->type, std::span<const uint8_t>(payload.get(), header->payload_size));
  payload.reset();
  if (!request.ok()) {
    log(fmt::format("rejected a frame: {}", request.status().message()));
    return send_frame(fd, wire::encode_error(request.status())).ok();
  }
  if (auto* hello = std::get_if<wire::HelloRequest>(&*request)) {
    if (hello->version != wire::kProtocolVersion) {
      return send_frame(fd, wire::encode_error(failed_precondition("accelerator speaks protocol version {}, client {}",
                                                                   wire::kProtocolVersion, hello->version)))
          .ok();
    }
    return send_frame(fd, wire::encode_hello_reply(backend_->name())).ok();
  }
  if (auto* spec = std::get_if<LinearSpec>(&*request)) {
    auto id = backend_->add_layer(*spec);
    if (id.ok()) {
      auto shape_only = std::make_shared<LinearSpec>(std::move(*spec));
      shape_only->weights.clear();
      shape_only->weights.shrink_to_fit();
      std::unique_lock lock(specs_mu_);
      specs_[*id] = std::move(shape_only);
    }
    return send_frame(fd, id.ok() ? wire::encode_add_layer_reply(*id) : wire::encode_error(id.status())).ok();
  }
  auto& run = std::get<wire::RunRequest>(*request);
  auto out_shape = layer_output_shape(run.layer, run.input_shape);
  if (!out_shape.ok()) return send_frame(fd, wire::encode_error(out_shape.status())).ok();
  std::vector<uint32_t> y(static_cast<size_t>(numel(*out_shape)));
  s = backend_->run(run.layer, run.input_shape, run.x, y);
  if (!s.ok()) return send_frame(fd, wire::encode_error(s)).ok();
  auto prefix = wire::encode_run_reply_prefix(*out_shape, y.size());
  if (!prefix.ok()) return send_frame(fd, wire::encode_error(prefix.status())).ok();
  const iovec parts[2] = {{prefix->data(), prefix->size()}, {y.data(), y.size() * sizeof(uint32_t)}};
  return write_all(fd, parts).ok();
}

}  // namespace tenet::accel
