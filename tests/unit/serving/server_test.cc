// The REST server in-process on 127.0.0.1:0 over TLS with a self-signed certificate, hit with real
// HTTPS requests (a raw OpenSSL client, so hostile byte streams can be sent as they are).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "serving/server.h"
#include "serving_test_util.h"

namespace tenet::serving {
namespace {

using testing::run_direct;
using testing::tiny_graph;

int connect_tcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// One TLS connection; the peer's certificate is not verified here (the Python tests verify it).
class TlsConn {
 public:
  explicit TlsConn(int port) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    fd_ = connect_tcp(port);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    ok_ = fd_ >= 0 && SSL_connect(ssl_) == 1;
  }
  ~TlsConn() {
    SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return ok_; }
  bool send(std::string_view data) {
    size_t off = 0;
    while (off < data.size()) {
      const int n = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // Reads one response: headers, then Content-Length bytes of body (or until EOF without one).
  // The server keeps connections alive after errors until its keep-alive timeout, so tests must
  // not wait for EOF.
  std::string read_response() {
    std::string out;
    char buf[16384];
    size_t want = std::string::npos;
    while (want == std::string::npos || out.size() < want) {
      const int n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      const size_t end = out.find("\r\n\r\n");
      if (want == std::string::npos && end != std::string::npos) {
        std::string head = out.substr(0, end);
        for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const size_t cl = head.find("content-length: ");
        if (cl != std::string::npos) want = end + 4 + std::stoul(head.substr(cl + 16));
      }
    }
    return out;
  }
  std::string read_all() {
    std::string out;
    char buf[16384];
    while (true) {
      const int n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool ok_ = false;
};

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

HttpReply parse_reply(const std::string& raw) {
  HttpReply r;
  const size_t end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || end == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + 9);
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

HttpReply https(int port, const std::string& method, const std::string& path, const std::string& body = "",
                const std::string& extra_headers = "") {
  TlsConn c(port);
  if (!c.ok()) return {};
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + extra_headers;
  if (method == "POST") req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (!c.send(req)) return {};
  return parse_reply(c.read_response());
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    graph_ = new ir::Graph(tiny_graph());
    repo_ = std::make_shared<ModelRepository>();
    ASSERT_TRUE(repo_->add(load_engine_model("tiny", *graph_, {}).value()).ok());
    auto [cert, key] = testing::self_signed_cert_pem();
    ServerOptions o;
    o.tls_cert_pem = cert;
    o.tls_key_pem = key;
    o.max_body_bytes = 1 << 20;
    o.read_timeout_ms = 1000;
    o.request_deadline_ms = 1500;
    o.http_threads = 8;
    o.response_pad_bytes = 1024;
    auto s = Server::start(repo_, o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = s->release();
    port_ = server_->http_port();
  }
  static void TearDownTestSuite() {
    delete server_;
    repo_.reset();
    delete graph_;
  }
  static ir::Graph* graph_;
  static std::shared_ptr<ModelRepository> repo_;
  static Server* server_;
  static int port_;
};
ir::Graph* ServerTest::graph_ = nullptr;
std::shared_ptr<ModelRepository> ServerTest::repo_;
Server* ServerTest::server_ = nullptr;
int ServerTest::port_ = 0;

TEST_F(ServerTest, HealthAndMetadata) {
  ASSERT_GT(port_, 0);
  EXPECT_GT(server_->grpc_port(), 0);
  EXPECT_EQ(https(port_, "GET", "/v2/health/live").status, 200);
  EXPECT_EQ(https(port_, "GET", "/v2/health/ready").status, 200);
  auto meta = https(port_, "GET", "/v2");
  ASSERT_EQ(meta.status, 200);
  EXPECT_EQ(nlohmann::json::parse(meta.body)["name"], "tenet");
  auto m = https(port_, "GET", "/v2/models/tiny");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(nlohmann::json::parse(m.body)["outputs"][0]["shape"], nlohmann::json::array({-1, 3}));
  EXPECT_EQ(https(port_, "GET", "/v2/models/tiny/versions/1").status, 200);
  EXPECT_EQ(https(port_, "GET", "/v2/models/tiny/versions/7").status, 404);
  EXPECT_EQ(https(port_, "GET", "/v2/models/tiny/ready").status, 200);
  EXPECT_EQ(https(port_, "GET", "/v2/models/tiny/versions/1/ready").status, 200);
  auto cfg = https(port_, "GET", "/v2/models/tiny/config");
  ASSERT_EQ(cfg.status, 200);
  EXPECT_EQ(nlohmann::json::parse(cfg.body)["max_batch_size"], 8);
  EXPECT_EQ(https(port_, "GET", "/v2/models/tiny/stats").status, 200);
  EXPECT_EQ(https(port_, "GET", "/v2/models/stats").status, 200);
  auto missing = https(port_, "GET", "/v2/models/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(nlohmann::json::parse(missing.body).contains("error"));
  auto route = https(port_, "GET", "/v3/whatever");
  EXPECT_EQ(route.status, 404);
  EXPECT_TRUE(nlohmann::json::parse(route.body).contains("error"));
}

TEST_F(ServerTest, JsonInferMatchesEngine) {
  Tensor x = Tensor::from_vector<float>({2, 4}, tenet::testing::random_values(8, 3));
  auto want = run_direct(*graph_, x);
  nlohmann::json req = {{"id", "abc"},
                        {"inputs", {{{"name", "x"}, {"shape", {2, 4}}, {"datatype", "FP32"},
                                     {"data", std::vector<float>(x.as<float>(), x.as<float>() + 8)}}}}};
  auto r = https(port_, "POST", "/v2/models/tiny/infer", req.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.size() % 1024, 0u) << "padded to the quantum";
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["id"], "abc");
  EXPECT_EQ(j["model_name"], "tiny");
  ASSERT_EQ(j["outputs"].size(), 2u);
  for (int o = 0; o < 2; ++o) {
    EXPECT_EQ(j["outputs"][o]["shape"], nlohmann::json::array({2, 3}));
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(j["outputs"][o]["data"][i].get<float>(), want[o].as<float>()[i], 1e-6f);
  }
}

TEST_F(ServerTest, BinaryInferMatchesEngine) {
  Tensor x = Tensor::from_vector<float>({3, 4}, tenet::testing::random_values(12, 4));
  auto want = run_direct(*graph_, x);
  const std::string header =
      R"({"inputs":[{"name":"x","shape":[3,4],"datatype":"FP32","parameters":{"binary_data_size":48}}],)"
      R"("outputs":[{"name":"z","parameters":{"binary_data":true}}]})";
  std::string body = header + std::string(static_cast<const char*>(x.data()), 48);
  auto r = https(port_, "POST", "/v2/models/tiny/infer", body,
                 "Inference-Header-Content-Length: " + std::to_string(header.size()) + "\r\n");
  ASSERT_EQ(r.status, 200) << r.body;
  const size_t hl_pos = r.headers.find("Inference-Header-Content-Length: ");
  ASSERT_NE(hl_pos, std::string::npos) << r.headers;
  const size_t hl = std::stoul(r.headers.substr(hl_pos + 33));
  ASSERT_EQ(r.body.size(), hl + 36);
  auto j = nlohmann::json::parse(r.body.substr(0, hl));
  EXPECT_EQ(j["outputs"][0]["name"], "z");
  EXPECT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 36);
  std::vector<float> got(9);
  std::memcpy(got.data(), r.body.data() + hl, 36);
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(got[i], want[1].as<float>()[i], 1e-6f);
}

TEST_F(ServerTest, HostileRequestsGetCleanErrors) {
  struct Case {
    std::string path, body, headers;
    int status;
  };
  const std::string bin_header = R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]})";
  const std::vector<Case> cases = {
      {"/v2/models/tiny/infer", "{not json", "", 400},
      {"/v2/models/tiny/infer", R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}])", "", 400},
      {"/v2/models/nope/infer", R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})", "", 404},
      {"/v2/models/tiny/versions/9/infer", R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})", "", 404},
      {"/v2/models/tiny/infer", R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}]})", "", 400},
      {"/v2/models/tiny/infer", R"({"inputs":[{"name":"q","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})", "", 400},
      {"/v2/models/tiny/infer", R"({"inputs":[{"name":"x","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]})", "", 400},
      {"/v2/models/tiny/infer", R"({"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]})", "", 400},
      {"/v2/models/tiny/infer", bin_header + std::string(12, '\0'), "Inference-Header-Content-Length: " + std::to_string(bin_header.size()) + "\r\n", 400},
      {"/v2/models/tiny/infer", bin_header + std::string(20, '\0'), "Inference-Header-Content-Length: " + std::to_string(bin_header.size()) + "\r\n", 400},
      {"/v2/models/tiny/infer", bin_header, "Inference-Header-Content-Length: 99999\r\n", 400},
      {"/v2/models/tiny/infer", bin_header, "Inference-Header-Content-Length: -5\r\n", 400},
  };
  for (const Case& c : cases) {
    auto r = https(port_, "POST", c.path, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 120) << " -> " << r.body;
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.body;
    EXPECT_TRUE(j.contains("error"));
  }
  // Oversized body: refused from Content-Length alone, before the body is sent.
  {
    TlsConn c(port_);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send("POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{"));
    const auto t0 = std::chrono::steady_clock::now();
    auto r = parse_reply(c.read_response());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3)) << "the server should answer at once";
    EXPECT_EQ(r.status, 413);
  }
  // Garbage instead of HTTP.
  {
    TlsConn c(port_);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send(std::string("\x01\x02\x03 garbage\r\n\r\n")));
    const auto t0 = std::chrono::steady_clock::now();
    auto r = parse_reply(c.read_response());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3)) << "the server should answer at once";
    EXPECT_EQ(r.status, 400);
  }
  // Still serving.
  EXPECT_EQ(https(port_, "GET", "/v2/health/live").status, 200);
  auto ok = https(port_, "POST", "/v2/models/tiny/infer", R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})");
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(ServerTest, SlowClientsDoNotStallOthers) {
  // Three clients that stall mid-headers and one that trickles its body past the deadline.
  std::vector<std::unique_ptr<TlsConn>> stalled;
  for (int i = 0; i < 3; ++i) {
    auto c = std::make_unique<TlsConn>(port_);
    ASSERT_TRUE(c->ok());
    ASSERT_TRUE(c->send("POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\n"));
    stalled.push_back(std::move(c));
  }
  auto trickler = std::async(std::launch::async, [] {
    TlsConn c(port_);
    if (!c.ok()) return HttpReply{};
    const std::string body = R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})";
    c.send("POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n");
    for (char ch : body) {
      if (!c.send(std::string_view(&ch, 1))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return parse_reply(c.read_response());
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto r = https(port_, "POST", "/v2/models/tiny/infer", R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})");
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  // The trickler is cut off at the whole-request deadline (1.5 s), far before its 25 s body ends.
  const auto t1 = std::chrono::steady_clock::now();
  auto slow = trickler.get();
  EXPECT_EQ(slow.status, 400) << slow.body;
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(5));
}

}  // namespace
}  // namespace tenet::serving
