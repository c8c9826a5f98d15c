// tenet infer --server HOST:PORT --policy P.json --model NAME --input NAME=FILE.npy ... --output-dir DIR
//
// The attesting client: opens TLS to the server, verifies its RA-TLS certificate against the
// policy during the handshake (attest/ratls.h), and only then, on that same connection, sends the
// inputs as a KServe v2 REST request with the binary tensor extension (KServe OIP v2 §binary
// data). Writes DIR/<output>.npy per output, like `tenet run`; the last stdout line is JSON.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "attest/policy.h"
#include "attest/ratls.h"
#include "attest/ratls_client.h"
#include "cli/command.h"
#include "core/npy.h"
#include "crypto/crypto.h"
#include "serving/model_repository.h"

namespace {

using tenet::Result;
using tenet::Status;
namespace attest = tenet::attest;

struct InferArgs {
  std::string server;
  std::string policy;
  std::string model;
  std::vector<std::string> inputs;
  std::string output_dir;
  int timeout_ms = 60000;
  size_t max_response_bytes = size_t{1} << 30;
};

Status write_all(SSL* ssl, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const int n = SSL_write(ssl, data.data() + done, static_cast<int>(std::min<size_t>(data.size() - done, 1 << 20)));
    if (n <= 0) return tenet::internal_error("sending the request failed: {}", tenet::crypto::openssl_errors());
    done += static_cast<size_t>(n);
  }
  return tenet::ok_status();
}

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Reads one HTTP/1.1 response with a Content-Length body (what the server sends).
Result<HttpResponse> read_response(SSL* ssl, size_t max_bytes) {
  std::string buf;
  char chunk[65536];
  size_t header_end = std::string::npos;
  while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
    const int n = SSL_read(ssl, chunk, sizeof chunk);
    if (n <= 0) return tenet::data_loss("the server closed the connection before a full response header");
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() > 65536 && buf.find("\r\n\r\n") == std::string::npos) return tenet::data_loss("response header too large");
  }
  HttpResponse r;
  const std::string head = buf.substr(0, header_end);
  if (head.compare(0, 9, "HTTP/1.1 ") != 0 && head.compare(0, 9, "HTTP/1.0 ") != 0) {
    return tenet::data_loss("not an HTTP response");
  }
  r.status = std::atoi(head.c_str() + 9);
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    const size_t next = head.find("\r\n", pos + 2);
    const std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[name] = value;
    }
    pos = next;
  }
  const auto cl = r.headers.find("content-length");
  if (cl == r.headers.end()) return tenet::data_loss("response has no Content-Length");
  const unsigned long long length = std::strtoull(cl->second.c_str(), nullptr, 10);
  if (length > max_bytes) return tenet::out_of_range("response of {} bytes exceeds the limit {}", length, max_bytes);
  r.body = buf.substr(header_end + 4);
  while (r.body.size() < length) {
    const int n = SSL_read(ssl, chunk, sizeof chunk);
    if (n <= 0) return tenet::data_loss("response body truncated at {} of {} bytes", r.body.size(), length);
    r.body.append(chunk, static_cast<size_t>(n));
  }
  r.body.resize(length);
  return r;
}

int run_infer(const InferArgs& a) {
  auto policy = attest::load_policy(a.policy);
  if (!policy.ok()) return tenet::cli::fail(policy.status());
  // Inputs first: a bad file is reported before anything goes on the wire.
  nlohmann::json header = {{"inputs", nlohmann::json::array()}, {"parameters", {{"binary_data_output", true}}}};
  std::vector<tenet::Tensor> tensors;
  for (const auto& spec : a.inputs) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return tenet::cli::fail(tenet::invalid_argument("--input expects NAME=FILE.npy, got '{}'", spec));
    }
    auto t = tenet::read_npy(spec.substr(eq + 1));
    if (!t.ok()) return tenet::cli::fail(t.status().with_context("input '" + spec.substr(0, eq) + "'"));
    const char* datatype = tenet::serving::kserve_datatype(t->dtype());
    if (datatype == nullptr || *datatype == '\0') {
      return tenet::cli::fail(tenet::invalid_argument("input '{}': dtype {} cannot be sent", spec.substr(0, eq),
                                                      tenet::dtype_name(t->dtype())));
    }
    header["inputs"].push_back({{"name", spec.substr(0, eq)},
                                {"shape", t->shape()},
                                {"datatype", datatype},
                                {"parameters", {{"binary_data_size", t->size_bytes()}}}});
    tensors.push_back(std::move(t).value());
  }
  const std::string json_part = header.dump();
  size_t body_size = json_part.size();
  for (const auto& t : tensors) body_size += t.size_bytes();

  const auto t0 = std::chrono::steady_clock::now();
  auto conn = attest::connect_ratls(a.server, std::make_shared<const attest::Policy>(std::move(policy).value()), a.timeout_ms);
  if (!conn.ok()) return tenet::cli::fail(conn.status().with_context("attestation"));
  const attest::VerifiedPeer& peer = conn->peer;
  const auto t_attested = std::chrono::steady_clock::now();
  std::fprintf(stderr, "tenet infer: attested %s (%s, mrenclave %s)\n", a.server.c_str(), peer.platform.c_str(),
               tenet::crypto::to_hex(peer.identity.mrenclave).c_str());

  std::string request = fmt::format(
      "POST /v2/models/{}/infer HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n"
      "Inference-Header-Content-Length: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      a.model, a.server, json_part.size(), body_size);
  request += json_part;
  Status sent = write_all(conn->ssl.get(), request);
  for (const auto& t : tensors) {
    if (!sent.ok()) break;
    sent = write_all(conn->ssl.get(), std::string_view(static_cast<const char*>(t.data()), t.size_bytes()));
  }
  if (!sent.ok()) return tenet::cli::fail(sent);
  auto resp = read_response(conn->ssl.get(), a.max_response_bytes);
  if (!resp.ok()) return tenet::cli::fail(resp.status());
  const auto t_done = std::chrono::steady_clock::now();
  if (resp->status != 200) {
    const auto err = nlohmann::json::parse(resp->body, nullptr, false);
    const std::string msg = err.is_object() && err.contains("error") && err["error"].is_string()
                                ? err["error"].get<std::string>()
                                : resp->body.substr(0, 200);
    const auto code = resp->status == 404 ? tenet::StatusCode::kNotFound
                      : resp->status < 500 ? tenet::StatusCode::kInvalidArgument
                                           : tenet::StatusCode::kInternal;
    return tenet::cli::fail(Status(code, fmt::format("server answered {}: {}", resp->status, msg)));
  }
  size_t json_len = resp->body.size();
  if (auto h = resp->headers.find("inference-header-content-length"); h != resp->headers.end()) {
    json_len = std::strtoull(h->second.c_str(), nullptr, 10);
    if (json_len > resp->body.size()) return tenet::cli::fail(tenet::data_loss("response header length exceeds the body"));
  }
  const auto meta = nlohmann::json::parse(resp->body.substr(0, json_len), nullptr, false);
  if (!meta.is_object() || !meta.contains("outputs") || !meta["outputs"].is_array()) {
    return tenet::cli::fail(tenet::data_loss("response is not a KServe v2 inference response"));
  }
  std::error_code ec;
  std::filesystem::create_directories(a.output_dir, ec);
  size_t offset = json_len;
  nlohmann::json written = nlohmann::json::array();
  for (const auto& out : meta["outputs"]) {
    if (!out.is_object() || !out.contains("name") || !out["name"].is_string() || !out.contains("shape") ||
        !out.contains("datatype") || !out["datatype"].is_string()) {
      return tenet::cli::fail(tenet::data_loss("malformed output in the response"));
    }
    const std::string name = out["name"].get<std::string>();
    const tenet::DType dtype = tenet::serving::dtype_from_kserve(out["datatype"].get<std::string>());
    tenet::Shape shape;
    for (const auto& d : out["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return tenet::cli::fail(tenet::data_loss("bad output shape"));
      shape.push_back(d.get<int64_t>());
    }
    auto size = tenet::byte_size(dtype, shape);
    if (dtype == tenet::DType::kUndefined || !size.ok()) return tenet::cli::fail(tenet::data_loss("output '{}': bad type or shape", name));
    const auto& params = out.value("parameters", nlohmann::json::object());
    if (!params.contains("binary_data_size") || params["binary_data_size"].get<uint64_t>() != *size ||
        offset + *size > resp->body.size()) {
      return tenet::cli::fail(tenet::data_loss("output '{}': binary size disagrees with its shape", name));
    }
    auto t = tenet::Tensor::from_bytes(dtype, shape, std::as_bytes(std::span(resp->body.data() + offset, *size)));
    if (!t.ok()) return tenet::cli::fail(t.status());
    offset += *size;
    const std::string path = (std::filesystem::path(a.output_dir) / (name + ".npy")).string();
    Status s = tenet::write_npy(path, t->view());
    if (!s.ok()) return tenet::cli::fail(s);
    written.push_back(path);
  }
  tenet::crypto::secure_wipe(resp->body);
  nlohmann::json summary = {
      {"server", a.server},
      {"model", a.model},
      {"platform", peer.platform},
      {"mrenclave", tenet::crypto::to_hex(peer.identity.mrenclave)},
      {"outputs", written},
      {"attest_ms", std::chrono::duration<double, std::milli>(t_attested - t0).count()},
      {"infer_ms", std::chrono::duration<double, std::milli>(t_done - t_attested).count()}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

const tenet::cli::CommandRegistration kInfer([](CLI::App& app) {
  auto a = std::make_shared<InferArgs>();
  CLI::App* cmd = app.add_subcommand(
      "infer",
      "Attest a tenet server against a policy, then run one inference on that same TLS connection (KServe v2 REST, "
      "binary tensors). Writes DIR/<output>.npy per output; the last stdout line is JSON. Nothing is sent before the "
      "server's evidence passes the policy.");
  cmd->add_option("--server", a->server, "HOST:PORT of the server's REST endpoint")->required();
  cmd->add_option("--policy", a->policy, "Attestation policy (JSON)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--model", a->model, "Model name")->required();
  cmd->add_option("--input", a->inputs, "NAME=FILE.npy for each model input")->required();
  cmd->add_option("--output-dir", a->output_dir, "Directory for <output name>.npy files")->required();
  cmd->add_option("--timeout-ms", a->timeout_ms, "Socket timeout (default 60000)")->check(CLI::Range(1, 3600000));
  return tenet::cli::Command{cmd, [a] { return run_infer(*a); }};
});

}  // namespace
