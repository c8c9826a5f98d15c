// The untrusted accelerator service (`tenet accelerator`): serves one backend Accelerator to
// enclaves over a Unix stream socket, speaking the frames of wire.h.
//
// One thread accepts; each connection gets its own thread, so the runs of concurrent clients (or
// of one client's connection pool) overlap on the backend, whose run() is thread-safe. Layer ids
// are the backend's, shared by every connection (weights are public; a client's pool uploads a
// layer once and runs it on any connection). A hostile client gets an error frame for a bad
// payload and keeps its connection; a bad header (its length cannot be trusted) closes that one
// connection; neither disturbs the others. Limits: at most max_connections at once, every frame
// bounded by wire::max_payload_size, and the backend's own limits on layers.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <string>
#include <thread>

#include "accel/accelerator.h"

namespace tenet::accel {

struct AcceleratorServerOptions {
  size_t max_connections = 64;
  // Protocol events (connections refused, frames rejected); null: silent.
  std::function<void(const std::string&)> log;
};

class AcceleratorServer {
 public:
  // Listens at `address` ("unix:/path") and serves `backend` until stop() or destruction.
  static Result<std::unique_ptr<AcceleratorServer>> start(std::shared_ptr<Accelerator> backend,
                                                          const std::string& address,
                                                          AcceleratorServerOptions options = {});
  ~AcceleratorServer();
  AcceleratorServer(const AcceleratorServer&) = delete;
  AcceleratorServer& operator=(const AcceleratorServer&) = delete;

  // Stops accepting, closes every connection (runs in progress finish first), removes the socket.
  void stop();
  const std::string& socket_path() const { return path_; }

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  AcceleratorServer(std::shared_ptr<Accelerator> backend, std::string path, int listen_fd, int wake_fd,
                    AcceleratorServerOptions options);
  void accept_loop();
  void serve(Connection* conn);
  // Answers one request frame; false when the connection must close.
  bool handle_frame(int fd);
  void log(const std::string& line) const;
  void reap_finished();
  // The output shape of a registered layer for `input_shape` (the backend keeps no specs we can see).
  Result<Shape> layer_output_shape(int32_t layer, const Shape& input_shape) const;

  std::shared_ptr<Accelerator> backend_;
  std::string path_;
  int listen_fd_;
  int wake_fd_;  // eventfd that wakes the accept loop on stop()
  AcceleratorServerOptions options_;
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;
  std::thread accept_thread_;
  std::mutex conns_mu_;
  std::list<Connection> conns_;
  mutable std::shared_mutex specs_mu_;
  std::unordered_map<int32_t, std::shared_ptr<const LinearSpec>> specs_;  // weights dropped
};

}  // namespace tenet::accel
