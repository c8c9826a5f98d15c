#include "serving/server.h"

#include <cstdio>

#include "core/address.h"
#include "serving/grpc_server.h"
#include "serving/http_server.h"

namespace tenet::serving {

Result<std::pair<std::string, int>> split_host_port(const std::string& address) {
  TENET_ASSIGN_OR_RETURN(const HostPort hp, parse_host_port(address));
  if (hp.host.empty()) return invalid_argument("address '{}' must name a host (HOST:PORT)", address);
  return std::make_pair(hp.host, static_cast<int>(hp.port));
}

Server::~Server() { stop(); }

Result<std::unique_ptr<Server>> Server::start(std::shared_ptr<ModelRepository> repository, const ServerOptions& options) {
  if (!repository) return invalid_argument("no model repository");
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return invalid_argument("TLS needs both a certificate and a key");
  }
  if (options.max_body_bytes == 0) return invalid_argument("max_body_bytes must be > 0");
  auto server = std::unique_ptr<Server>(new Server());
  server->tls_ = !options.tls_cert_pem.empty();
  if (!server->tls_) {
    std::fprintf(stderr, "tenet: warning: serving without TLS (plaintext, INSECURE; development only)\n");
  }
  if (!options.http_address.empty()) {
    TENET_ASSIGN_OR_RETURN(server->http_, HttpServer::start(repository, options));
  }
  if (!options.grpc_address.empty()) {
    TENET_ASSIGN_OR_RETURN(server->grpc_, GrpcServer::start(repository, options));
  }
  return server;
}

int Server::http_port() const { return http_ ? http_->port() : 0; }
int Server::grpc_port() const { return grpc_ ? grpc_->port() : 0; }

void Server::stop() {
  if (http_) http_->stop();
  if (grpc_) grpc_->stop();
  http_.reset();
  grpc_.reset();
}

}  // namespace tenet::serving
