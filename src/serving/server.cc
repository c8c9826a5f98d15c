#include "serving/server.h"

#include <charconv>
#include <cstdio>

#include "serving/grpc_server.h"
#include "serving/http_server.h"

namespace tenet::serving {

Result<std::pair<std::string, int>> split_host_port(const std::string& address) {
  std::string host, port_text;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return invalid_argument("address '{}' must be [HOST]:PORT", address);
    }
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0) return invalid_argument("address '{}' must be HOST:PORT", address);
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
  }
  int port = -1;
  auto r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (r.ec != std::errc() || r.ptr != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return invalid_argument("address '{}': port must be 0..65535", address);
  }
  return std::make_pair(host, port);
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
