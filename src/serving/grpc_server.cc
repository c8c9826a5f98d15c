#include "serving/grpc_server.h"

#include <cstring>

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include "core/safe_math.h"
#include "crypto/crypto.h"
#include "serving/kserve_rest.h"
#include "serving/proto/grpc_service.grpc.pb.h"

namespace tenet::serving {

namespace {

grpc::Status to_grpc(const Status& s) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (s.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kDataLoss:
    case StatusCode::kFailedPrecondition: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case StatusCode::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case StatusCode::kUnimplemented: code = grpc::StatusCode::UNIMPLEMENTED; break;
    case StatusCode::kResourceExhausted: code = grpc::StatusCode::UNAVAILABLE; break;
    default: break;
  }
  return grpc::Status(code, s.message());
}

void fill_specs(const std::vector<TensorSpec>& specs,
                google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>* out) {
  for (const auto& s : specs) {
    auto* t = out->Add();
    t->set_name(s.name);
    t->set_datatype(kserve_datatype(s.dtype));
    for (int64_t d : s.shape) t->add_shape(d);
  }
}

void fill_duration(const DurationStat& d, inference::StatisticDuration* out) {
  out->set_count(d.count);
  out->set_ns(d.ns);
}

// Typed contents -> tensor bytes. `n` elements of `dtype` into `dst`.
Status copy_typed_contents(const inference::InferTensorContents& c, DType dtype, int64_t n, void* dst, const std::string& name) {
  auto mismatch = [&](int64_t got) {
    return invalid_argument("input '{}': contents hold {} elements, the shape needs {}", printable(name), got, n);
  };
  auto range_error = [&]() { return invalid_argument("input '{}': contents out of range for the datatype", printable(name)); };
  switch (dtype) {
    case DType::kFloat32:
      if (c.fp32_contents_size() != n) return mismatch(c.fp32_contents_size());
      std::memcpy(dst, c.fp32_contents().data(), static_cast<size_t>(n) * 4);
      return ok_status();
    case DType::kFloat64:
      if (c.fp64_contents_size() != n) return mismatch(c.fp64_contents_size());
      std::memcpy(dst, c.fp64_contents().data(), static_cast<size_t>(n) * 8);
      return ok_status();
    case DType::kInt64:
      if (c.int64_contents_size() != n) return mismatch(c.int64_contents_size());
      std::memcpy(dst, c.int64_contents().data(), static_cast<size_t>(n) * 8);
      return ok_status();
    case DType::kInt32:
      if (c.int_contents_size() != n) return mismatch(c.int_contents_size());
      std::memcpy(dst, c.int_contents().data(), static_cast<size_t>(n) * 4);
      return ok_status();
    case DType::kInt16:
    case DType::kInt8: {
      if (c.int_contents_size() != n) return mismatch(c.int_contents_size());
      for (int64_t i = 0; i < n; ++i) {
        const int32_t v = c.int_contents(static_cast<int>(i));
        if (dtype == DType::kInt16) {
          if (v < INT16_MIN || v > INT16_MAX) return range_error();
          static_cast<int16_t*>(dst)[i] = static_cast<int16_t>(v);
        } else {
          if (v < INT8_MIN || v > INT8_MAX) return range_error();
          static_cast<int8_t*>(dst)[i] = static_cast<int8_t>(v);
        }
      }
      return ok_status();
    }
    case DType::kUint8: {
      if (c.uint_contents_size() != n) return mismatch(c.uint_contents_size());
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t v = c.uint_contents(static_cast<int>(i));
        if (v > 255) return range_error();
        static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v);
      }
      return ok_status();
    }
    case DType::kBool:
      if (c.bool_contents_size() != n) return mismatch(c.bool_contents_size());
      for (int64_t i = 0; i < n; ++i) static_cast<uint8_t*>(dst)[i] = c.bool_contents(static_cast<int>(i)) ? 1 : 0;
      return ok_status();
    default:
      return invalid_argument("input '{}': this datatype must be sent in raw_input_contents", printable(name));
  }
}

// ModelInferRequest -> InferRequest (the same checks as the REST parser).
Result<InferRequest> parse_grpc_request(const inference::ModelInferRequest& r, const ParseLimits& limits) {
  InferRequest req;
  if (r.id().size() > limits.max_id_bytes) return invalid_argument("'id' is longer than {} bytes", limits.max_id_bytes);
  req.id = r.id();
  if (r.inputs_size() == 0) return invalid_argument("the request has no inputs");
  if (static_cast<size_t>(r.inputs_size()) > limits.max_inputs) return invalid_argument("more than {} inputs", limits.max_inputs);
  if (static_cast<size_t>(r.outputs_size()) > limits.max_outputs) return invalid_argument("more than {} outputs", limits.max_outputs);
  const bool raw = r.raw_input_contents_size() > 0;
  if (raw && r.raw_input_contents_size() != r.inputs_size()) {
    return invalid_argument("raw_input_contents has {} entries for {} inputs", r.raw_input_contents_size(), r.inputs_size());
  }
  for (int i = 0; i < r.inputs_size(); ++i) {
    const auto& in = r.inputs(i);
    InferInput out;
    out.name = in.name();
    for (int j = 0; j < i; ++j) {
      if (r.inputs(j).name() == in.name()) return invalid_argument("input '{}' is given twice", printable(in.name()));
    }
    out.dtype = dtype_from_kserve(in.datatype());
    if (out.dtype == DType::kUndefined) {
      return invalid_argument("input '{}': datatype '{}' is not supported", printable(in.name()), printable(in.datatype()));
    }
    if (in.shape_size() > kMaxRank) return invalid_argument("input '{}': rank exceeds {}", printable(in.name()), kMaxRank);
    out.shape.assign(in.shape().begin(), in.shape().end());
    int64_t count = 0;
    if (!checked_element_count(out.shape, &count)) {
      return invalid_argument("input '{}': shape {} is negative or has too many elements", printable(in.name()),
                              shape_to_string(out.shape));
    }
    auto nbytes = byte_size(out.dtype, out.shape);
    if (!nbytes.ok()) return invalid_argument("input '{}': shape {} is too large", printable(in.name()), shape_to_string(out.shape));
    if (in.parameters().count("shared_memory_region")) return unimplemented("shared memory inputs are not supported");
    if (raw) {
      if (in.has_contents()) return invalid_argument("input '{}' has both contents and raw_input_contents", printable(in.name()));
      const std::string& bytes = r.raw_input_contents(i);
      if (bytes.size() != *nbytes) {
        return invalid_argument("input '{}': raw_input_contents has {} bytes, {} {} needs {}", printable(in.name()), bytes.size(),
                                in.datatype(), shape_to_string(out.shape), *nbytes);
      }
      TENET_ASSIGN_OR_RETURN(out.data, Tensor::from_bytes(out.dtype, out.shape,
                                                          std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())));
    } else {
      // Each typed element needs at least one byte on the wire (packed bools: one), so a count
      // above the message size is refused before allocating.
      if (count > static_cast<int64_t>(r.ByteSizeLong())) {
        return invalid_argument("input '{}': shape {} needs more elements than the request holds", printable(in.name()),
                                shape_to_string(out.shape));
      }
      TENET_ASSIGN_OR_RETURN(out.data, Tensor::zeros(out.dtype, out.shape));
      Status s = copy_typed_contents(in.contents(), out.dtype, count, out.data.data(), in.name());
      if (!s.ok()) {
        wipe_tensor(out.data);
        req.wipe();
        return s;
      }
    }
    req.inputs.push_back(std::move(out));
  }
  for (const auto& o : r.outputs()) {
    if (o.parameters().count("classification")) return unimplemented("the classification extension is not supported");
    req.outputs.push_back(RequestedOutput{o.name(), std::nullopt});
  }
  return req;
}

class Service final : public inference::GRPCInferenceService::Service {
 public:
  Service(std::shared_ptr<ModelRepository> repo, ServerOptions options) : repo_(std::move(repo)), options_(std::move(options)) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*, inference::ServerLiveResponse* res) override {
    res->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*, inference::ServerReadyResponse* res) override {
    bool ready = true;
    for (const auto& m : repo_->models()) ready = ready && m->ready();
    res->set_ready(ready);
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* req, inference::ModelReadyResponse* res) override {
    auto m = repo_->get(req->name(), req->version());
    res->set_ready(m.ok() && (*m)->ready());
    return grpc::Status::OK;
  }
  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* res) override {
    res->set_name(kServerName);
    res->set_version(kServerVersion);
    for (const auto& e : server_extensions()) res->add_extensions(e);
    return grpc::Status::OK;
  }
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* req,
                             inference::ModelMetadataResponse* res) override {
    auto m = repo_->get(req->name(), req->version());
    if (!m.ok()) return to_grpc(m.status());
    res->set_name((*m)->name());
    res->add_versions((*m)->version());
    res->set_platform((*m)->platform());
    fill_specs((*m)->inputs(), res->mutable_inputs());
    fill_specs((*m)->outputs(), res->mutable_outputs());
    return grpc::Status::OK;
  }
  grpc::Status ModelConfig(grpc::ServerContext*, const inference::ModelConfigRequest* req, inference::ModelConfigResponse* res) override {
    auto m = repo_->get(req->name(), req->version());
    if (!m.ok()) return to_grpc(m.status());
    const ServedModel& model = **m;
    auto* c = res->mutable_config();
    c->set_name(model.name());
    c->set_platform(model.platform());
    c->set_backend("tenet");
    c->set_max_batch_size(model.max_batch_size());
    const size_t skip = model.max_batch_size() > 0 ? 1 : 0;
    for (const auto& s : model.inputs()) {
      auto* in = c->add_input();
      in->set_name(s.name);
      in->set_data_type(static_cast<inference::DataType>(triton_config_dtype(s.dtype)));
      for (size_t d = skip; d < s.shape.size(); ++d) in->add_dims(s.shape[d]);
    }
    for (const auto& s : model.outputs()) {
      auto* out = c->add_output();
      out->set_name(s.name);
      out->set_data_type(static_cast<inference::DataType>(triton_config_dtype(s.dtype)));
      for (size_t d = skip; d < s.shape.size(); ++d) out->add_dims(s.shape[d]);
    }
    if (model.max_batch_size() > 0) c->mutable_dynamic_batching()->set_max_queue_delay_microseconds(model.max_queue_delay_us());
    // Triton's ModelConfig.parameters (map<string, ModelParameter{string_value}>): the protection
    // mode, as REST's model config shows it (kserve_rest.cc, model_config_json: "mode", and
    // "verify_bits" for hybrid models, as strings).
    const ProtectionInfo p = model.protection();
    auto& params = *c->mutable_parameters();
    params["mode"].set_string_value(p.mode);
    if (p.mode == "hybrid") params["verify_bits"].set_string_value(std::to_string(p.verify_bits));
    return grpc::Status::OK;
  }
  grpc::Status ModelStatistics(grpc::ServerContext*, const inference::ModelStatisticsRequest* req,
                               inference::ModelStatisticsResponse* res) override {
    std::vector<std::shared_ptr<ServedModel>> models;
    if (req->name().empty()) {
      models = repo_->models();
    } else {
      auto m = repo_->get(req->name(), req->version());
      if (!m.ok()) return to_grpc(m.status());
      models.push_back(*m);
    }
    for (const auto& m : models) {
      const ModelStats s = m->stats();
      auto* ms = res->add_model_stats();
      ms->set_name(m->name());
      ms->set_version(m->version());
      ms->set_last_inference(s.last_inference_ms);
      ms->set_inference_count(s.inference_count);
      ms->set_execution_count(s.execution_count);
      auto* is = ms->mutable_inference_stats();
      fill_duration(s.success, is->mutable_success());
      fill_duration(s.fail, is->mutable_fail());
      fill_duration(s.queue, is->mutable_queue());
      fill_duration(s.compute_input, is->mutable_compute_input());
      fill_duration(s.compute_infer, is->mutable_compute_infer());
      fill_duration(s.compute_output, is->mutable_compute_output());
      for (const auto& b : s.batch_stats) {
        auto* bs = ms->add_batch_stats();
        bs->set_batch_size(b.batch_size);
        fill_duration(b.compute_input, bs->mutable_compute_input());
        fill_duration(b.compute_infer, bs->mutable_compute_infer());
        fill_duration(b.compute_output, bs->mutable_compute_output());
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* req, inference::ModelInferResponse* res) override {
    // The request message is gRPC's, allocated mutable for this call; wipe its raw bytes once
    // copied into tensors.
    auto* mutable_req = const_cast<inference::ModelInferRequest*>(req);
    struct WipeRaw {
      inference::ModelInferRequest* r;
      ~WipeRaw() {
        for (std::string& s : *r->mutable_raw_input_contents()) crypto::secure_wipe(s.data(), s.size());
        for (auto& in : *r->mutable_inputs()) {
          auto* c = in.mutable_contents();
          crypto::secure_wipe(c->mutable_fp32_contents()->mutable_data(), sizeof(float) * c->fp32_contents_size());
          crypto::secure_wipe(c->mutable_fp64_contents()->mutable_data(), sizeof(double) * c->fp64_contents_size());
          crypto::secure_wipe(c->mutable_int_contents()->mutable_data(), sizeof(int32_t) * c->int_contents_size());
          crypto::secure_wipe(c->mutable_int64_contents()->mutable_data(), sizeof(int64_t) * c->int64_contents_size());
          crypto::secure_wipe(c->mutable_uint_contents()->mutable_data(), sizeof(uint32_t) * c->uint_contents_size());
          crypto::secure_wipe(c->mutable_bool_contents()->mutable_data(), sizeof(bool) * c->bool_contents_size());
        }
      }
    } wipe{mutable_req};

    auto model = repo_->get(req->model_name(), req->model_version());
    if (!model.ok()) return to_grpc(model.status());
    auto parsed = parse_grpc_request(*req, options_.limits);
    if (!parsed.ok()) return to_grpc(parsed.status());
    InferRequest request = std::move(parsed).value();
    auto selection = select_outputs(**model, request);
    if (!selection.ok()) {
      request.wipe();
      return to_grpc(selection.status());
    }
    auto inputs = bind_inputs(**model, request);
    if (!inputs.ok()) {
      request.wipe();
      return to_grpc(inputs.status());
    }
    auto outputs = (*model)->infer(std::move(inputs).value());
    if (!outputs.ok()) return to_grpc(outputs.status());
    res->set_model_name((*model)->name());
    res->set_model_version((*model)->version());
    res->set_id(request.id);
    for (const auto& s : *selection) {
      const Tensor& t = (*outputs)[s.index];
      auto* o = res->add_outputs();
      o->set_name((*model)->outputs()[s.index].name);
      o->set_datatype(kserve_datatype(t.dtype()));
      for (int64_t d : t.shape()) o->add_shape(d);
      res->add_raw_output_contents(static_cast<const char*>(t.data()), t.size_bytes());
    }
    for (Tensor& t : *outputs) wipe_tensor(t);
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<ModelRepository> repo_;
  ServerOptions options_;
};

}  // namespace

struct GrpcServer::Impl {
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
};

GrpcServer::~GrpcServer() { stop(); }

Result<std::unique_ptr<GrpcServer>> GrpcServer::start(std::shared_ptr<ModelRepository> repository, const ServerOptions& options) {
  TENET_ASSIGN_OR_RETURN(auto hp, split_host_port(options.grpc_address));
  (void)hp;
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<Service>(std::move(repository), options);
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!options.tls_cert_pem.empty() || !options.tls_key_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.grpc_address, creds, &port);
  builder.RegisterService(impl->service.get());
  const int max_msg = static_cast<int>(std::min<size_t>(options.max_body_bytes, INT32_MAX));
  builder.SetMaxReceiveMessageSize(max_msg);
  builder.SetMaxSendMessageSize(INT32_MAX);
  grpc::ResourceQuota quota("tenet_serving");
  quota.SetMaxThreads(std::max(4, options.grpc_threads));
  builder.SetResourceQuota(quota);
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) return invalid_argument("cannot listen on {} (gRPC)", options.grpc_address);
  auto out = std::unique_ptr<GrpcServer>(new GrpcServer());
  out->impl_ = std::move(impl);
  out->port_ = port;
  return out;
}

void GrpcServer::stop() {
  if (!impl_) return;
  if (impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    impl_->server->Wait();
  }
  impl_.reset();
}

}  // namespace tenet::serving
