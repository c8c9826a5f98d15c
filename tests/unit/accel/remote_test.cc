// The remote accelerator: client <-> server over a loopback Unix socket equals the reference;
// hostile client frames are answered with errors while the server keeps serving; a hostile
// server's replies (wrong size, shape, type, values >= p, hang-ups) fail cleanly in the client.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <thread>

#include "accel/cpu_accelerator.h"
#include "accel/server.h"
#include "accel/socket_io.h"
#include "accel/wire.h"
#include "accel_test_util.h"

namespace tenet::accel {
namespace {

std::string temp_socket_dir() {
  char tmpl[] = "/tmp/tenet-accel-XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  return dir ? dir : "/tmp";
}

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_socket_dir();
    address_ = "unix:" + dir_ + "/accel.sock";
    auto backend = make_cpu_accelerator(0);
    ASSERT_TRUE(backend.ok()) << backend.status().to_string();
    auto server = AcceleratorServer::start(std::shared_ptr<Accelerator>(std::move(backend).value()), address_);
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    server_ = std::move(server).value();
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A raw connection for hostile frames.
  int raw_connect() {
    auto fd = connect_unix(server_->socket_path(), 10);
    EXPECT_TRUE(fd.ok()) << fd.status().to_string();
    return fd.ok() ? *fd : -1;
  }
  static void send_bytes(int fd, const std::vector<uint8_t>& bytes) {
    const iovec part{const_cast<uint8_t*>(bytes.data()), bytes.size()};
    ASSERT_TRUE(write_all(fd, std::span<const iovec>(&part, 1)).ok());
  }
  // Reads one reply frame; returns its type and payload.
  static std::pair<wire::FrameType, std::vector<uint8_t>> read_frame(int fd) {
    uint8_t header[wire::kHeaderSize];
    Status s = read_full(fd, header, sizeof(header));
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s.ok()) return {wire::FrameType::kError, {}};
    auto h = wire::decode_header(header);
    EXPECT_TRUE(h.ok()) << h.status().to_string();
    std::vector<uint8_t> payload(h->payload_size);
    EXPECT_TRUE(read_full(fd, payload.data(), payload.size()).ok());
    return {h->type, payload};
  }
  static Status expect_error_reply(int fd) {
    auto [type, payload] = read_frame(fd);
    EXPECT_EQ(type, wire::FrameType::kError);
    return wire::decode_error(payload);
  }
  void expect_still_serving() {
    auto client = connect_accelerator(address_);
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    LinearSpec s = testing::matmul(1, 2);
    s.weights = {3, -1};
    const int32_t id = (*client)->add_layer(s).value();
    std::vector<uint32_t> y(1);
    ASSERT_TRUE((*client)->run(id, {1, 2}, std::vector<uint32_t>{5, 7}, y).ok());
    EXPECT_EQ(y[0], 8u);
  }

  std::string dir_, address_;
  std::unique_ptr<AcceleratorServer> server_;
};

TEST_F(RemoteTest, MatchesReference) {
  auto client = connect_accelerator(address_);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  EXPECT_EQ((*client)->name(), "remote(cpu)");
  std::mt19937_64 rng(11);
  for (testing::Case c : testing::standard_cases()) {
    SCOPED_TRACE(c.name);
    testing::fill_weights(c.spec, rng);
    testing::expect_matches_reference(**client, c.spec, c.input_shape, testing::random_field(numel(c.input_shape), rng));
  }
}

TEST_F(RemoteTest, ConcurrentClientsAndCalls) {
  auto client = connect_accelerator(address_);
  ASSERT_TRUE(client.ok());
  std::mt19937_64 rng(5);
  LinearSpec spec = testing::conv({16, 8, 3, 3}, {1, 1}, {1, 1, 1, 1});
  testing::fill_weights(spec, rng);
  const int32_t id = (*client)->add_layer(spec).value();
  const Shape in = {2, 8, 12, 12};
  const std::vector<uint32_t> x = testing::random_field(numel(in), rng);
  std::vector<uint32_t> want(static_cast<size_t>(numel(output_shape(spec, in).value())));
  ASSERT_TRUE(reference_linear(spec, in, x, want).ok());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 4; ++rep) {
        std::vector<uint32_t> y(want.size());
        if (!(*client)->run(id, in, x, y).ok() || y != want) ++bad;
      }
    });
  }
  // A second, independent client at the same time.
  threads.emplace_back([&] {
    auto other = connect_accelerator(address_);
    if (!other.ok()) {
      ++bad;
      return;
    }
    auto other_id = (*other)->add_layer(spec);
    std::vector<uint32_t> y(want.size());
    if (!other_id.ok() || !(*other)->run(*other_id, in, x, y).ok() || y != want) ++bad;
  });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// A restarted accelerator process: while it is down runs fail at once (no hang, no output);
// once a new server listens at the same address, the client connects again, registers its
// layers again (the new server numbers them differently) and its handles give exact results.
TEST_F(RemoteTest, ClientReconnectsAndRegistersItsLayersAgainAfterARestart) {
  auto client = connect_accelerator(address_);
  ASSERT_TRUE(client.ok());
  std::mt19937_64 rng(23);
  LinearSpec a = testing::conv({4, 3, 3, 3}, {1, 1}, {1, 1, 1, 1});
  LinearSpec b = testing::matmul(5, 7);
  testing::fill_weights(a, rng);
  testing::fill_weights(b, rng);
  const int32_t ha = (*client)->add_layer(a).value();
  const int32_t hb = (*client)->add_layer(b).value();
  const Shape in_a = {1, 3, 6, 6}, in_b = {2, 7};
  const std::vector<uint32_t> xa = testing::random_field(numel(in_a), rng), xb = testing::random_field(numel(in_b), rng);
  std::vector<uint32_t> want_a(static_cast<size_t>(numel(output_shape(a, in_a).value())));
  std::vector<uint32_t> want_b(static_cast<size_t>(numel(output_shape(b, in_b).value())));
  ASSERT_TRUE(reference_linear(a, in_a, xa, want_a).ok());
  ASSERT_TRUE(reference_linear(b, in_b, xb, want_b).ok());
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    std::vector<uint32_t> ya(want_a.size()), yb(want_b.size());
    Status sa = (*client)->run(ha, in_a, xa, ya);
    ASSERT_TRUE(sa.ok()) << sa.to_string();
    Status sb = (*client)->run(hb, in_b, xb, yb);
    ASSERT_TRUE(sb.ok()) << sb.to_string();
    EXPECT_EQ(ya, want_a);
    EXPECT_EQ(yb, want_b);
  };
  check("first server");

  // The server goes away (its connections close, the socket is removed).
  server_.reset();
  for (int i = 0; i < 3; ++i) {
    std::vector<uint32_t> y(want_a.size(), 0);
    const auto t0 = std::chrono::steady_clock::now();
    Status s = (*client)->run(ha, in_a, xa, y);
    EXPECT_FALSE(s.ok());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    EXPECT_EQ(y, std::vector<uint32_t>(want_a.size(), 0)) << "no output from a dead accelerator";
  }

  // A new server at the same address, where another client registered layers first, so that the
  // ids the first server gave no longer name the same layers.
  auto backend = make_cpu_accelerator(0);
  ASSERT_TRUE(backend.ok());
  auto server = AcceleratorServer::start(std::shared_ptr<Accelerator>(std::move(backend).value()), address_);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  server_ = std::move(server).value();
  {
    auto other = connect_accelerator(address_);
    ASSERT_TRUE(other.ok());
    LinearSpec decoy = testing::matmul(5, 7);
    testing::fill_weights(decoy, rng);
    ASSERT_TRUE((*other)->add_layer(decoy).ok());
    ASSERT_TRUE((*other)->add_layer(decoy).ok());
  }
  check("restarted server");
  check("restarted server, pooled connection");
  // Concurrent calls on the new session.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<uint32_t> y(want_b.size());
      if (!(*client)->run(hb, in_b, xb, y).ok() || y != want_b) ++bad;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  // New layers still register after a restart.
  const int32_t hc = (*client)->add_layer(b).value();
  EXPECT_NE(hc, hb);
  std::vector<uint32_t> yc(want_b.size());
  ASSERT_TRUE((*client)->run(hc, in_b, xb, yc).ok());
  EXPECT_EQ(yc, want_b);
}

TEST_F(RemoteTest, ClientRejectsBadCallsLocally) {
  auto client = connect_accelerator(address_);
  ASSERT_TRUE(client.ok());
  LinearSpec s = testing::matmul(2, 2);
  s.weights = {1, 2, 3, -128};
  EXPECT_EQ((*client)->add_layer(s).status().code(), StatusCode::kInvalidArgument);
  s.weights[3] = 4;
  const int32_t id = (*client)->add_layer(s).value();
  std::vector<uint32_t> y(2);
  EXPECT_EQ((*client)->run(id + 7, {1, 2}, std::vector<uint32_t>{1, 2}, y).code(), StatusCode::kNotFound);
  EXPECT_EQ((*client)->run(id, {1, 2}, std::vector<uint32_t>{1, kFieldPrime}, y).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*client)->run(id, {1, 2}, std::vector<uint32_t>{1, 2}, y).ok());
  EXPECT_EQ(y, (std::vector<uint32_t>{5, 11}));
}

TEST_F(RemoteTest, HostileFramesGetErrorsAndTheServerKeepsServing) {
  // Register a layer through a proper client: [2, 2] matmul, id known to the raw connection.
  auto client = connect_accelerator(address_);
  ASSERT_TRUE(client.ok());
  LinearSpec s = testing::matmul(2, 2);
  s.weights = {1, 2, 3, 4};
  const int32_t id = (*client)->add_layer(s).value();

  const int fd = raw_connect();
  ASSERT_GE(fd, 0);
  auto run_frame = [](int32_t layer, const Shape& shape, const std::vector<uint32_t>& x) {
    std::vector<uint8_t> f = wire::encode_run_prefix(layer, shape, numel(shape)).value();
    const auto* b = reinterpret_cast<const uint8_t*>(x.data());
    f.insert(f.end(), b, b + 4 * x.size());
    // Patch the header's payload size to the bytes actually sent (x may not match the shape).
    const uint32_t payload = static_cast<uint32_t>(f.size() - wire::kHeaderSize);
    for (int i = 0; i < 4; ++i) f[8 + static_cast<size_t>(i)] = static_cast<uint8_t>(payload >> (8 * i));
    return f;
  };
  // Bad layer id.
  send_bytes(fd, run_frame(id + 100, {1, 2}, {1, 2}));
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kNotFound);
  // Wrong element count for the shape.
  send_bytes(fd, run_frame(id, {1, 2}, {1, 2, 3}));
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kDataLoss);
  // Shape that does not fit the layer.
  send_bytes(fd, run_frame(id, {1, 3}, {1, 2, 3}));
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kInvalidArgument);
  // A value >= p.
  send_bytes(fd, run_frame(id, {1, 2}, {1, kFieldPrime}));
  Status not_field = expect_error_reply(fd);
  EXPECT_EQ(not_field.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(not_field.message().find("index 1"), std::string::npos) << not_field.message();
  // A spec with a weight of -128, and a truncated spec.
  std::vector<uint8_t> add = wire::encode_add_layer(s).value();
  add.back() = 0x80;
  send_bytes(fd, add);
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kInvalidArgument);
  std::vector<uint8_t> truncated = wire::encode_add_layer(s).value();
  truncated.resize(wire::kHeaderSize + 10);
  truncated[8] = 10;
  truncated[9] = truncated[10] = truncated[11] = 0;
  send_bytes(fd, truncated);
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kDataLoss);
  // A reply type sent as a request.
  send_bytes(fd, wire::encode_add_layer_reply(3));
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kInvalidArgument);
  // The same connection still works.
  send_bytes(fd, run_frame(id, {1, 2}, {1, 1}));
  auto [type, payload] = read_frame(fd);
  EXPECT_EQ(type, wire::FrameType::kRunReply);
  // Oversized frame: error, then the server closes this connection.
  auto huge = wire::encode_header(wire::FrameType::kHello, 0xFFFFFFFFu);
  send_bytes(fd, std::vector<uint8_t>(huge.begin(), huge.end()));
  EXPECT_EQ(expect_error_reply(fd).code(), StatusCode::kResourceExhausted);
  uint8_t byte;
  EXPECT_FALSE(read_full(fd, &byte, 1).ok());
  ::close(fd);

  // Bad magic on a new connection.
  const int fd2 = raw_connect();
  send_bytes(fd2, std::vector<uint8_t>(wire::kHeaderSize, 'x'));
  EXPECT_EQ(expect_error_reply(fd2).code(), StatusCode::kDataLoss);
  ::close(fd2);
  // A frame cut short by a hang-up.
  const int fd3 = raw_connect();
  std::vector<uint8_t> cut = run_frame(id, {1, 2}, {1, 2});
  cut.resize(cut.size() - 3);
  send_bytes(fd3, cut);
  ::close(fd3);
  expect_still_serving();
}

TEST_F(RemoteTest, StopsCleanlyWithClientsConnected) {
  auto client = connect_accelerator(address_);
  ASSERT_TRUE(client.ok());
  server_->stop();
  EXPECT_FALSE(std::filesystem::exists(server_->socket_path()));
  LinearSpec s = testing::matmul(1, 1);
  s.weights = {1};
  EXPECT_FALSE((*client)->add_layer(s).ok());
}

TEST(RemoteAddress, RejectsBadAddresses) {
  EXPECT_EQ(connect_accelerator("tcp:1.2.3.4:5").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(connect_accelerator("unix:").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(connect_accelerator("unix:/" + std::string(200, 'a')).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(connect_accelerator("unix:/nonexistent/tenet/accel.sock").status().code(), StatusCode::kFailedPrecondition);
  auto backend = make_cpu_accelerator(1);
  ASSERT_TRUE(backend.ok());
  EXPECT_FALSE(AcceleratorServer::start(std::shared_ptr<Accelerator>(std::move(backend).value()), "unix:/proc/nope/x").ok());
}

// A scripted hostile server: answers hello and add_layer properly, then answers run frames with
// `reply` (given the request's output count) and hangs up.
class HostileServer {
 public:
  using Reply = std::function<std::vector<uint8_t>(size_t out_count)>;
  HostileServer(const std::string& path, Reply reply) : path_(path), reply_(std::move(reply)) {
    listen_fd_ = listen_unix(path, 4).value();
    thread_ = std::thread([this] { serve(); });
  }
  ~HostileServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    if (conn_fd_ >= 0) ::shutdown(conn_fd_, SHUT_RDWR);
    thread_.join();
    ::unlink(path_.c_str());
  }

 private:
  void serve() {
    while (true) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      conn_fd_ = fd;
      while (true) {
        uint8_t header[wire::kHeaderSize];
        if (!read_full(fd, header, sizeof(header)).ok()) break;
        auto h = wire::decode_header(header);
        if (!h.ok()) break;
        std::vector<uint8_t> payload(h->payload_size);
        if (!read_full(fd, payload.data(), payload.size()).ok()) break;
        auto req = wire::decode_request(h->type, payload);
        if (!req.ok()) break;
        std::vector<uint8_t> out;
        if (std::holds_alternative<wire::HelloRequest>(*req)) out = wire::encode_hello_reply("evil");
        if (std::holds_alternative<LinearSpec>(*req)) out = wire::encode_add_layer_reply(0);
        if (auto* run = std::get_if<wire::RunRequest>(&*req)) out = reply_(run->x.size() / 2);  // [M,2]->[M,1]
        const iovec part{out.data(), out.size()};
        if (out.empty() || !write_all(fd, std::span<const iovec>(&part, 1)).ok()) break;
        if (std::holds_alternative<wire::RunRequest>(*req)) break;  // one run per connection, then hang up
      }
      ::close(fd);
      conn_fd_ = -1;
    }
  }
  std::string path_;
  Reply reply_;
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  std::thread thread_;
};

std::vector<uint8_t> run_reply(const Shape& shape, const std::vector<uint32_t>& y) {
  std::vector<uint8_t> f = wire::encode_run_reply_prefix(shape, y.size()).value();
  const auto* b = reinterpret_cast<const uint8_t*>(y.data());
  f.insert(f.end(), b, b + 4 * y.size());
  return f;
}

TEST(RemoteHostileServer, BadRepliesFailCleanly) {
  const std::string dir = temp_socket_dir();
  const std::string path = dir + "/evil.sock";
  struct Scenario {
    const char* name;
    HostileServer::Reply reply;
  };
  const std::vector<Scenario> scenarios = {
      {"value >= p", [](size_t n) { return run_reply({static_cast<int64_t>(n), 1}, std::vector<uint32_t>(n, kFieldPrime)); }},
      {"value 2^32-1", [](size_t n) { return run_reply({static_cast<int64_t>(n), 1}, std::vector<uint32_t>(n, ~0u)); }},
      {"wrong shape", [](size_t n) { return run_reply({1, static_cast<int64_t>(n)}, std::vector<uint32_t>(n, 1)); }},
      {"too few values", [](size_t n) { return run_reply({static_cast<int64_t>(n) - 1, 1}, std::vector<uint32_t>(n - 1, 1)); }},
      {"too many values", [](size_t n) { return run_reply({static_cast<int64_t>(n) + 1, 1}, std::vector<uint32_t>(n + 1, 1)); }},
      {"wrong frame type", [](size_t) { return wire::encode_add_layer_reply(1); }},
      {"huge frame", [](size_t) {
         auto h = wire::encode_header(wire::FrameType::kRunReply, 0x7FFFFFFF);
         return std::vector<uint8_t>(h.begin(), h.end());
       }},
      {"bad magic", [](size_t) { return std::vector<uint8_t>(40, 'z'); }},
      {"hang-up mid-reply", [](size_t n) {
         auto f = run_reply({static_cast<int64_t>(n), 1}, std::vector<uint32_t>(n, 1));
         f.resize(f.size() - 2);
         return f;
       }},
      {"malformed error", [](size_t) {
         auto f = wire::encode_error(internal_error("x"));
         f[12] = 0;  // status code 0 (OK) in an error frame
         return f;
       }},
  };
  for (const Scenario& sc : scenarios) {
    SCOPED_TRACE(sc.name);
    HostileServer server(path, sc.reply);
    auto client = connect_accelerator("unix:" + path);
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    EXPECT_EQ((*client)->name(), "remote(evil)");
    LinearSpec s = testing::matmul(1, 2);
    s.weights = {1, 1};
    ASSERT_EQ((*client)->add_layer(s).value(), 0);
    std::vector<uint32_t> y(4, 0);
    Status st = (*client)->run(0, {4, 2}, std::vector<uint32_t>(8, 1), y);
    EXPECT_FALSE(st.ok());
    // kDataLoss; kResourceExhausted for a frame over the size bound.
    EXPECT_TRUE(st.code() == StatusCode::kDataLoss || st.code() == StatusCode::kResourceExhausted) << st.to_string();
  }
  // An honest error frame passes through with its code.
  {
    HostileServer server(path, [](size_t) { return wire::encode_error(out_of_range("too big")); });
    auto client = connect_accelerator("unix:" + path);
    ASSERT_TRUE(client.ok());
    LinearSpec s = testing::matmul(1, 2);
    s.weights = {1, 1};
    ASSERT_TRUE((*client)->add_layer(s).ok());
    std::vector<uint32_t> y(4);
    Status st = (*client)->run(0, {4, 2}, std::vector<uint32_t>(8, 1), y);
    EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
    EXPECT_NE(st.message().find("too big"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST(Wire, RoundTripsSpecsAndRuns) {
  LinearSpec s = testing::conv({6, 2, 3, 1}, {2, 1}, {1, 0, 2, 0}, 3, {1, 2});
  s.weights.assign(36, -7);
  std::vector<uint8_t> f = wire::encode_add_layer(s).value();
  auto h = wire::decode_header(std::span<const uint8_t>(f).first(wire::kHeaderSize));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->type, wire::FrameType::kAddLayer);
  EXPECT_EQ(h->payload_size, f.size() - wire::kHeaderSize);
  auto req = wire::decode_request(h->type, std::span<const uint8_t>(f).subspan(wire::kHeaderSize));
  ASSERT_TRUE(req.ok()) << req.status().to_string();
  const LinearSpec& d = std::get<LinearSpec>(*req);
  EXPECT_EQ(d.weight_shape, s.weight_shape);
  EXPECT_EQ(d.strides, s.strides);
  EXPECT_EQ(d.dilations, s.dilations);
  EXPECT_EQ(d.pads, s.pads);
  EXPECT_EQ(d.group, s.group);
  EXPECT_EQ(d.weights, s.weights);
  // Every strict prefix of the payload is rejected, never read past.
  for (size_t n = 0; n + wire::kHeaderSize < f.size(); ++n) {
    EXPECT_FALSE(wire::decode_request(wire::FrameType::kAddLayer, std::span<const uint8_t>(f).subspan(wire::kHeaderSize, n)).ok());
  }
  EXPECT_FALSE(wire::encode_run_prefix(0, {1, 2}, 3).ok());
  EXPECT_FALSE(wire::encode_run_prefix(0, Shape(9, 1), 1).ok());
}

}  // namespace
}  // namespace tenet::accel
