#include "serving/http_server.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <sys/socket.h>

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/crypto.h"
#include "serving/kserve_rest.h"

namespace tenet::serving {

namespace {

using Clock = std::chrono::steady_clock;

// A growable byte buffer that wipes every buffer it lets go of (growth and destruction), so the
// request body leaves no copy behind in freed memory.
class WipingBuffer {
 public:
  WipingBuffer() = default;
  WipingBuffer(const WipingBuffer&) = delete;
  WipingBuffer& operator=(const WipingBuffer&) = delete;
  ~WipingBuffer() { release(); }

  void reserve(size_t n) {
    if (n <= capacity_) return;
    auto fresh = std::make_unique<char[]>(n);
    if (size_) std::memcpy(fresh.get(), data_.get(), size_);
    release_storage();
    data_ = std::move(fresh);
    capacity_ = n;
  }
  void append(const char* p, size_t n) {
    if (size_ + n > capacity_) reserve(std::max(size_ + n, capacity_ * 2 + 4096));
    std::memcpy(data_.get() + size_, p, n);
    size_ += n;
  }
  std::string_view view() const { return {data_.get(), size_}; }
  size_t size() const { return size_; }
  void release() {
    release_storage();
    size_ = capacity_ = 0;
  }

 private:
  void release_storage() {
    if (data_) crypto::secure_wipe(data_.get(), capacity_);
    data_.reset();
  }
  std::unique_ptr<char[]> data_;
  size_t size_ = 0, capacity_ = 0;
};

void set_error(httplib::Response& res, const Status& status) {
  res.status = http_status_for(status);
  res.set_content(error_json(status), "application/json");
}

// Serves `body` from a shared buffer wiped once the response is sent (or abandoned).
void set_wiped_body(httplib::Response& res, std::string body, const char* content_type) {
  auto buf = std::make_shared<std::string>(std::move(body));
  const size_t size = buf->size();
  res.set_content_provider(
      size, content_type,
      [buf](size_t offset, size_t length, httplib::DataSink& sink) {
        if (offset >= buf->size()) return false;
        return sink.write(buf->data() + offset, std::min(length, buf->size() - offset));
      },
      [buf](bool) { crypto::secure_wipe(buf->data(), buf->size()); });
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  return e ? buf : "unknown OpenSSL error";
}

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};

}  // namespace

struct HttpServer::Impl {
  std::shared_ptr<ModelRepository> repo;
  ServerOptions options;
  std::unique_ptr<httplib::Server> server;
  std::thread listener;

  // Model lookup from a route match: group 1 = model, group 2 = version (may be empty).
  Result<std::shared_ptr<ServedModel>> model_from(const httplib::Request& req) const {
    const std::string name = req.matches.size() > 1 ? req.matches[1].str() : std::string();
    const std::string version = req.matches.size() > 2 ? req.matches[2].str() : std::string();
    return repo->get(name, version);
  }

  void install_routes() {
    httplib::Server& s = *server;
    s.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content("", "text/plain");
    });
    s.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
      bool ready = true;
      for (const auto& m : repo->models()) ready = ready && m->ready();
      res.status = ready ? 200 : 400;
      res.set_content("", "text/plain");
    });
    s.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(server_metadata_json(), "application/json");
    });
    s.Get("/v2/models/stats", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(model_stats_json(repo->models()), "application/json");
    });
    const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
    s.Get(model + "/ready", [this](const httplib::Request& req, httplib::Response& res) {
      auto m = model_from(req);
      if (!m.ok()) return set_error(res, m.status());
      res.status = (*m)->ready() ? 200 : 400;
      res.set_content("", "text/plain");
    });
    s.Get(model + "/config", [this](const httplib::Request& req, httplib::Response& res) {
      auto m = model_from(req);
      if (!m.ok()) return set_error(res, m.status());
      res.set_content(model_config_json(**m), "application/json");
    });
    s.Get(model + "/stats", [this](const httplib::Request& req, httplib::Response& res) {
      auto m = model_from(req);
      if (!m.ok()) return set_error(res, m.status());
      res.set_content(model_stats_json({*m}), "application/json");
    });
    s.Get(model, [this](const httplib::Request& req, httplib::Response& res) {
      auto m = model_from(req);
      if (!m.ok()) return set_error(res, m.status());
      res.set_content(model_metadata_json(**m), "application/json");
    });
    s.Post(model + "/infer",
           [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
             handle_infer(req, res, reader);
           });
    // Every error without a body gets {"error": ...} (unknown routes, 413, malformed HTTP).
    s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty() || res.content_length_ > 0) return httplib::Server::HandlerResponse::Unhandled;
      std::string msg;
      switch (res.status) {
        case 404: msg = "not found"; break;
        case 413: msg = "request body exceeds the server's limit"; break;
        case 400: msg = "malformed HTTP request"; break;
        default: msg = "request failed with HTTP status " + std::to_string(res.status); break;
      }
      res.set_content(error_json(Status(StatusCode::kInvalidArgument, msg)), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));
    s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      set_error(res, internal_error("internal error while handling the request"));
    });
  }

  // cpp-httplib keeps a connection alive after an error response and would go on reading the
  // rest of a refused body (or a trickle) as the next request. The error is served through a
  // content provider whose releaser, run right after the response is written, shuts the socket
  // down, so the connection ends there. (Plaintext connections expose no socket: they fall back
  // to "Connection: close" and the read timeouts.)
  static void set_error_and_close(const httplib::Request& req, httplib::Response& res, const Status& status, int http_status) {
    auto body = std::make_shared<std::string>(error_json(status));
    const int fd = req.ssl != nullptr ? SSL_get_fd(req.ssl) : -1;
    res.status = http_status;
    res.set_header("Connection", "close");
    res.set_content_provider(
        body->size(), "application/json",
        [body](size_t offset, size_t length, httplib::DataSink& sink) {
          if (offset >= body->size()) return false;
          return sink.write(body->data() + offset, std::min(length, body->size() - offset));
        },
        [fd](bool) {
          if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
        });
  }

  void handle_infer(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::milliseconds(options.request_deadline_ms);
    WipingBuffer body;
    if (req.has_header("Content-Length")) {
      const auto declared = req.get_header_value<uint64_t>("Content-Length");
      if (declared > options.max_body_bytes) {
        // Refused before reading: 413, and the connection closes (its unread body follows).
        return set_error_and_close(
            req, res, invalid_argument("request body of {} bytes exceeds the limit of {}", declared, options.max_body_bytes), 413);
      }
      body.reserve(static_cast<size_t>(declared));
    }
    bool too_big = false, too_slow = false;
    const bool read_ok = reader([&](const char* data, size_t len) {
      if (len > options.max_body_bytes - body.size()) {
        too_big = true;
        return false;
      }
      if (Clock::now() > deadline) {
        too_slow = true;
        return false;
      }
      body.append(data, len);
      return true;
    });
    if (too_big) {
      return set_error_and_close(req, res, invalid_argument("request body exceeds the limit of {} bytes", options.max_body_bytes), 413);
    }
    if (too_slow || !read_ok) {
      return set_error_and_close(req, res, invalid_argument("request body did not arrive within the deadline"), 400);
    }
    auto model = model_from(req);
    if (!model.ok()) return set_error(res, model.status());

    std::optional<size_t> header_length;
    if (req.has_header("Inference-Header-Content-Length")) {
      auto hl = parse_header_length(req.get_header_value("Inference-Header-Content-Length"));
      if (!hl.ok()) return set_error(res, hl.status());
      header_length = *hl;
    }
    auto parsed = parse_infer_request(body.view(), header_length, options.limits);
    body.release();
    if (!parsed.ok()) return set_error(res, parsed.status());
    InferRequest request = std::move(parsed).value();
    auto selection = select_outputs(**model, request);
    if (!selection.ok()) {
      request.wipe();
      return set_error(res, selection.status());
    }
    auto inputs = bind_inputs(**model, request);
    if (!inputs.ok()) {
      request.wipe();
      return set_error(res, inputs.status());
    }
    auto outputs = (*model)->infer(std::move(inputs).value());
    if (!outputs.ok()) return set_error(res, outputs.status());
    auto encoded = encode_infer_response(**model, request.id, *outputs, *selection, options.response_pad_bytes);
    for (Tensor& t : *outputs) wipe_tensor(t);
    if (!encoded.ok()) return set_error(res, encoded.status());
    res.status = 200;
    if (encoded->header_length) {
      res.set_header("Inference-Header-Content-Length", std::to_string(*encoded->header_length));
      set_wiped_body(res, std::move(encoded->body), "application/octet-stream");
    } else {
      set_wiped_body(res, std::move(encoded->body), "application/json");
    }
  }
};

HttpServer::~HttpServer() { stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::start(std::shared_ptr<ModelRepository> repository, const ServerOptions& options) {
  TENET_ASSIGN_OR_RETURN(auto hp, split_host_port(options.http_address));
  auto impl = std::make_unique<Impl>();
  impl->repo = std::move(repository);
  impl->options = options;
  const bool tls = !options.tls_cert_pem.empty() || !options.tls_key_pem.empty();
  if (tls) {
    std::unique_ptr<BIO, BioDeleter> cert_bio(BIO_new_mem_buf(options.tls_cert_pem.data(), static_cast<int>(options.tls_cert_pem.size())));
    std::unique_ptr<BIO, BioDeleter> key_bio(BIO_new_mem_buf(options.tls_key_pem.data(), static_cast<int>(options.tls_key_pem.size())));
    if (!cert_bio || !key_bio) return internal_error("BIO_new_mem_buf failed");
    std::unique_ptr<X509, X509Deleter> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    if (!cert) return invalid_argument("TLS certificate is not a PEM certificate: {}", openssl_error());
    std::unique_ptr<EVP_PKEY, PkeyDeleter> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (!key) return invalid_argument("TLS key is not a PEM private key: {}", openssl_error());
    if (X509_check_private_key(cert.get(), key.get()) != 1) return invalid_argument("TLS key does not match the certificate");
    auto ssl = std::make_unique<httplib::SSLServer>(cert.get(), key.get());  // takes its own references
    if (!ssl->is_valid()) return internal_error("cannot set up the TLS server context: {}", openssl_error());
    impl->server = std::move(ssl);
  } else {
    impl->server = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *impl->server;
  const int threads = std::max(2, options.http_threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options.max_body_bytes);
  s.set_read_timeout(options.read_timeout_ms / 1000, (options.read_timeout_ms % 1000) * 1000);
  s.set_write_timeout(options.write_timeout_ms / 1000, (options.write_timeout_ms % 1000) * 1000);
  s.set_keep_alive_max_count(1000);
  s.set_keep_alive_timeout(5);
  s.set_tcp_nodelay(true);
  impl->install_routes();

  int port = 0;
  if (hp.second == 0) {
    port = s.bind_to_any_port(hp.first);
    if (port <= 0) return invalid_argument("cannot listen on {} (HTTP)", options.http_address);
  } else {
    if (!s.bind_to_port(hp.first, hp.second)) return invalid_argument("cannot listen on {} (HTTP)", options.http_address);
    port = hp.second;
  }
  httplib::Server* raw = impl->server.get();
  impl->listener = std::thread([raw] { raw->listen_after_bind(); });
  auto out = std::unique_ptr<HttpServer>(new HttpServer());
  out->impl_ = std::move(impl);
  out->port_ = port;
  return out;
}

void HttpServer::stop() {
  if (!impl_) return;
  if (impl_->server) impl_->server->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
  impl_.reset();
}

}  // namespace tenet::serving
