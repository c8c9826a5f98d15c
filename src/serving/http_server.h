// KServe v2 REST front end on cpp-httplib (Debian's build with OpenSSL), TLS inside the process.
//
// Routes (KServe OIP v2 plus Triton's model_configuration and statistics extensions):
//   GET  /v2/health/live, /v2/health/ready, /v2
//   GET  /v2/models/<m>[/versions/<v>]          model metadata
//   GET  /v2/models/<m>[/versions/<v>]/ready
//   GET  /v2/models/<m>[/versions/<v>]/config
//   GET  /v2/models[/<m>[/versions/<v>]]/stats
//   POST /v2/models/<m>[/versions/<v>]/infer    JSON or binary tensor data
// Every error is {"error": "..."} with Triton's status mapping (kserve_rest.h).
//
// Hostile clients: a Content-Length above max_body_bytes is refused (413) before the body is
// read; chunked bodies are cut off at the limit; every read has a timeout (read_timeout_ms), and
// the body must arrive within request_deadline_ms of the handler starting, so a client that
// trickles bytes holds one of http_threads connections for a bounded time and never the model.
// Residual: cpp-httplib reads the request line and headers (at most 8 KiB each) before tenet's
// code runs, so during that phase only the per-read timeout applies.
//
// Request bodies are read into a buffer that is wiped when the request ends (and when it grows);
// responses are served from a buffer wiped once sent. cpp-httplib's own socket buffers (4 KiB)
// and OpenSSL's record buffers are outside tenet's reach.
#pragma once

#include <memory>

#include "core/status.h"
#include "serving/model_repository.h"
#include "serving/server.h"

namespace tenet::serving {

class HttpServer {
 public:
  ~HttpServer();
  static Result<std::unique_ptr<HttpServer>> start(std::shared_ptr<ModelRepository> repository, const ServerOptions& options);
  int port() const { return port_; }
  void stop();

 private:
  HttpServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace tenet::serving
