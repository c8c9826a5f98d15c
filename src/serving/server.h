// The KServe v2 server a process embeds: REST (http_server.h) and gRPC (grpc_server.h) front
// ends over one ModelRepository. Inside an enclave, TLS terminates here, with the certificate and
// key handed in as PEM strings (the enclave's RA-TLS certificate); the host only relays bytes.
//
//   auto repo = std::make_shared<tenet::serving::ModelRepository>();
//   TENET_RETURN_IF_ERROR(repo->add(TENET_ASSIGN...(load_engine_model("resnet", graph, {}))));
//   tenet::serving::ServerOptions opts;
//   opts.http_address = "0.0.0.0:8443"; opts.grpc_address = "0.0.0.0:8444";
//   opts.tls_cert_pem = cert; opts.tls_key_pem = key;
//   TENET_ASSIGN_OR_RETURN(auto server, tenet::serving::Server::start(repo, opts));
//   ... server->http_port(), server->grpc_port() ...
//   server->stop();  // graceful: stops accepting, finishes in-flight requests
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.h"
#include "serving/kserve_rest.h"
#include "serving/model_repository.h"

namespace tenet::serving {

struct ServerOptions {
  // "HOST:PORT" ("[::1]:PORT" for IPv6); port 0 picks a free port. Empty disables that front end.
  std::string http_address = "127.0.0.1:0";
  std::string grpc_address = "127.0.0.1:0";
  // PEM certificate (chain) and private key. Both empty: plaintext, for development only
  // (the server logs that it is INSECURE).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // Largest request body (REST) or message (gRPC). REST rejects a larger Content-Length with 413
  // before reading the body, and stops reading a chunked body once it passes the limit.
  size_t max_body_bytes = size_t{64} << 20;
  int http_threads = 32;  // connections served at once; stalled clients hold one each
  int grpc_threads = 16;
  // REST: one read or write making no progress for this long drops the connection.
  int read_timeout_ms = 5000;
  int write_timeout_ms = 5000;
  // REST: the whole request body must have arrived within this time of its first byte.
  int request_deadline_ms = 30000;
  // JSON response parts are padded with spaces to a multiple of this (0: no padding).
  size_t response_pad_bytes = 4096;
  ParseLimits limits;
};

class HttpServer;
class GrpcServer;

class Server {
 public:
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds both listeners and starts serving. Errors: bad addresses, ports in use, bad PEM.
  static Result<std::unique_ptr<Server>> start(std::shared_ptr<ModelRepository> repository, const ServerOptions& options);

  int http_port() const;  // 0 if REST is disabled
  int grpc_port() const;  // 0 if gRPC is disabled
  bool tls() const { return tls_; }
  // Stops accepting, lets in-flight requests finish, joins. Idempotent; also run by the destructor.
  void stop();

 private:
  Server() = default;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<GrpcServer> grpc_;
  bool tls_ = false;
};

// Splits "HOST:PORT" / "[V6]:PORT". Port must be 0..65535.
Result<std::pair<std::string, int>> split_host_port(const std::string& address);

}  // namespace tenet::serving
