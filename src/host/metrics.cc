#include "host/metrics.h"

#include <map>
#include <mutex>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "host/net.h"

namespace tenet::host {

struct HostMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  uint16_t port = 0;
  prometheus::Family<prometheus::Counter>* accepted;
  prometheus::Family<prometheus::Counter>* rejected;
  prometheus::Family<prometheus::Gauge>* active;
  prometheus::Family<prometheus::Histogram>* duration;
  prometheus::Family<prometheus::Gauge>* up;
  prometheus::Family<prometheus::Counter>* restarts;
  prometheus::Family<prometheus::Gauge>* accelerator_up;
  prometheus::Family<prometheus::Counter>* accelerator_restarts;
  prometheus::Family<prometheus::Counter>* requests;
  prometheus::Family<prometheus::Counter>* queue_seconds;
  prometheus::Family<prometheus::Counter>* compute_seconds;
  prometheus::Family<prometheus::Gauge>* epc_gauges;
  prometheus::Family<prometheus::Gauge>* host_epc;
  prometheus::Family<prometheus::Gauge>* sched_queue_depth;
  prometheus::Family<prometheus::Histogram>* sched_wait;
  prometheus::Family<prometheus::Counter>* sched_streams;
  prometheus::Family<prometheus::Gauge>* sched_admitted_bytes;
  prometheus::Family<prometheus::Gauge>* sched_admitted_enclaves;
  prometheus::Family<prometheus::Gauge>* sched_bound;
  prometheus::Family<prometheus::Gauge>* enclave_commit;

  std::mutex mu;
  // Last cumulative value seen per (slot, model, field), to turn enclave totals into deltas.
  std::map<std::tuple<size_t, std::string, std::string>, double> last;
};

namespace {

class Observer : public RelayObserver {
 public:
  Observer(prometheus::Counter& accepted, prometheus::Family<prometheus::Counter>& rejected, prometheus::Gauge& active,
           prometheus::Histogram& duration, std::string protocol)
      : accepted_(accepted), rejected_(rejected), active_(active), duration_(duration), protocol_(std::move(protocol)) {}
  void on_accept() override {
    accepted_.Increment();
    active_.Increment();
  }
  void on_reject(const char* reason) override { rejected_.Add({{"protocol", protocol_}, {"reason", reason}}).Increment(); }
  void on_close(double seconds) override {
    active_.Decrement();
    duration_.Observe(seconds);
  }

 private:
  prometheus::Counter& accepted_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Gauge& active_;
  prometheus::Histogram& duration_;
  std::string protocol_;
};

class SchedObserver : public SchedulerObserver {
 public:
  SchedObserver(HostMetrics::Impl& m, std::string policy) : m_(m), policy_(std::move(policy)) {}
  void on_queue_depth(size_t depth) override { m_.sched_queue_depth->Add({{"policy", policy_}}).Set(static_cast<double>(depth)); }
  void on_wait(double seconds, bool granted) override {
    m_.sched_wait->Add({{"policy", policy_}}, prometheus::Histogram::BucketBoundaries{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300})
        .Observe(seconds);
    m_.sched_streams->Add({{"policy", policy_}, {"outcome", granted ? "granted" : "gave_up"}}).Increment();
  }
  void on_admitted(uint64_t commit_bytes, size_t enclaves) override {
    m_.sched_admitted_bytes->Add({{"policy", policy_}}).Set(static_cast<double>(commit_bytes));
    m_.sched_admitted_enclaves->Add({{"policy", policy_}}).Set(static_cast<double>(enclaves));
  }
  void on_enclave_commit(size_t slot, uint64_t commit_bytes) override {
    m_.enclave_commit->Add({{"instance", std::to_string(slot)}}).Set(static_cast<double>(commit_bytes));
  }

 private:
  HostMetrics::Impl& m_;
  std::string policy_;
};

}  // namespace

HostMetrics::HostMetrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HostMetrics::~HostMetrics() = default;

Result<std::unique_ptr<HostMetrics>> HostMetrics::create(const std::string& listen) {
  auto impl = std::make_unique<Impl>();
  auto& r = *impl->registry;
  impl->accepted = &prometheus::BuildCounter().Name("tenet_relay_connections_total").Help("Client connections accepted").Register(r);
  impl->rejected = &prometheus::BuildCounter().Name("tenet_relay_rejected_total").Help("Client connections refused").Register(r);
  impl->active = &prometheus::BuildGauge().Name("tenet_relay_connections_active").Help("Open client connections").Register(r);
  impl->duration = &prometheus::BuildHistogram().Name("tenet_relay_connection_seconds").Help("Client connection lifetime").Register(r);
  impl->up = &prometheus::BuildGauge().Name("tenet_enclave_up").Help("1 while the enclave is ready").Register(r);
  impl->restarts = &prometheus::BuildCounter().Name("tenet_enclave_restarts_total").Help("Enclave restarts after an exit").Register(r);
  impl->accelerator_up = &prometheus::BuildGauge()
                             .Name("tenet_accelerator_up")
                             .Help("1 while the accelerator process serve started (--accelerator auto) runs")
                             .Register(r);
  impl->accelerator_restarts = &prometheus::BuildCounter()
                                   .Name("tenet_accelerator_restarts_total")
                                   .Help("Restarts of the accelerator process serve started, after it exited")
                                   .Register(r);
  impl->requests = &prometheus::BuildCounter().Name("tenet_model_requests_total").Help("Inference requests, by outcome").Register(r);
  impl->queue_seconds = &prometheus::BuildCounter().Name("tenet_model_queue_seconds_total").Help("Time requests waited in the batch queue").Register(r);
  impl->compute_seconds = &prometheus::BuildCounter().Name("tenet_model_compute_seconds_total").Help("Time spent computing").Register(r);
  impl->epc_gauges = &prometheus::BuildGauge()
                          .Name("tenet_enclave_epc")
                          .Help("Sim EPC emulation per enclave: resident/peak bytes, cumulative faults/evictions")
                          .Register(r);
  impl->host_epc = &prometheus::BuildGauge()
                        .Name("tenet_host_epc")
                        .Help("Sim EPC emulation, whole host: budget/resident/peak bytes, cumulative faults/evictions/loads")
                        .Register(r);
  impl->sched_queue_depth = &prometheus::BuildGauge().Name("tenet_sched_queue_depth").Help("Client connections waiting for an enclave (FIFO)").Register(r);
  impl->sched_wait = &prometheus::BuildHistogram().Name("tenet_sched_queue_wait_seconds").Help("Time a client connection waited for an enclave").Register(r);
  impl->sched_streams = &prometheus::BuildCounter().Name("tenet_sched_streams_total").Help("Client connections scheduled, by outcome").Register(r);
  impl->sched_admitted_bytes = &prometheus::BuildGauge().Name("tenet_sched_admitted_commit_bytes").Help("Sum of the EPC commits of enclaves admitted to serve").Register(r);
  impl->sched_admitted_enclaves = &prometheus::BuildGauge().Name("tenet_sched_admitted_enclaves").Help("Enclaves admitted to serve").Register(r);
  impl->sched_bound = &prometheus::BuildGauge().Name("tenet_sched_bound_bytes").Help("Bound on the admitted EPC commit (epc-aware)").Register(r);
  impl->enclave_commit = &prometheus::BuildGauge().Name("tenet_enclave_commit_bytes").Help("EPC an enclave needs resident to run without paging").Register(r);
  if (!listen.empty()) {
    TENET_ASSIGN_OR_RETURN(const HostPort addr, parse_host_port(listen));
    try {
      impl->exposer = std::make_unique<prometheus::Exposer>(addr.to_string());
    } catch (const std::exception& e) {
      return invalid_argument("cannot serve metrics on '{}': {}", listen, e.what());
    }
    impl->exposer->RegisterCollectable(impl->registry);
    const auto ports = impl->exposer->GetListeningPorts();
    impl->port = ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
  }
  return std::unique_ptr<HostMetrics>(new HostMetrics(std::move(impl)));
}

std::shared_ptr<RelayObserver> HostMetrics::relay_observer(const std::string& protocol) {
  const prometheus::Labels l{{"protocol", protocol}};
  return std::make_shared<Observer>(impl_->accepted->Add(l), *impl_->rejected, impl_->active->Add(l),
                                    impl_->duration->Add(l, prometheus::Histogram::BucketBoundaries{
                                                                0.001, 0.01, 0.1, 1, 10, 60, 600}),
                                    protocol);
}

void HostMetrics::enclave_up(size_t slot, bool up) { impl_->up->Add({{"instance", std::to_string(slot)}}).Set(up ? 1 : 0); }

void HostMetrics::enclave_restarted(size_t slot) { impl_->restarts->Add({{"instance", std::to_string(slot)}}).Increment(); }

void HostMetrics::accelerator_up(bool up) { impl_->accelerator_up->Add({}).Set(up ? 1 : 0); }

void HostMetrics::accelerator_restarted() { impl_->accelerator_restarts->Add({}).Increment(); }

void HostMetrics::apply_enclave_stats(size_t slot, const nlohmann::json& event) {
  if (!event.contains("models") || !event["models"].is_object()) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (const auto& item : event["models"].items()) {
    const std::string& model = item.key();
    const nlohmann::json& stats = item.value();
    if (!stats.is_object() || model.size() > 256) continue;
    auto delta = [&](const char* field) -> double {
      if (!stats.contains(field) || !stats[field].is_number()) return 0;
      const double now = stats[field].get<double>();
      double& prev = impl_->last[{slot, model, field}];
      // A restarted enclave starts from zero again: count its new total.
      const double d = now >= prev ? now - prev : now;
      prev = now;
      return d > 0 ? d : 0;
    };
    impl_->requests->Add({{"model", model}, {"outcome", "success"}}).Increment(delta("success"));
    impl_->requests->Add({{"model", model}, {"outcome", "fail"}}).Increment(delta("fail"));
    impl_->queue_seconds->Add({{"model", model}}).Increment(delta("queue_us") / 1e6);
    impl_->compute_seconds->Add({{"model", model}}).Increment(delta("compute_us") / 1e6);
  }
}

void HostMetrics::apply_enclave_epc(size_t slot, const nlohmann::json& event) {
  if (!event.contains("epc") || !event["epc"].is_object()) return;
  for (const char* field : {"resident_bytes", "peak_resident_bytes", "allocated_bytes", "page_faults", "evictions", "loads"}) {
    const auto& v = event["epc"];
    if (v.contains(field) && v[field].is_number()) {
      impl_->epc_gauges->Add({{"instance", std::to_string(slot)}, {"counter", field}}).Set(v[field].get<double>());
    }
  }
}

std::shared_ptr<SchedulerObserver> HostMetrics::scheduler_observer(const std::string& policy, uint64_t bound_bytes) {
  impl_->sched_bound->Add({{"policy", policy}}).Set(static_cast<double>(bound_bytes));
  return std::make_shared<SchedObserver>(*impl_, policy);
}

void HostMetrics::apply_host_epc(const nlohmann::json& counters) {
  if (!counters.is_object()) return;
  for (const char* field : {"budget_bytes", "resident_bytes", "peak_resident_bytes", "page_faults", "evictions", "loads"}) {
    if (counters.contains(field) && counters[field].is_number()) {
      impl_->host_epc->Add({{"counter", field}}).Set(counters[field].get<double>());
    }
  }
}

std::string HostMetrics::scrape() const { return prometheus::TextSerializer().Serialize(impl_->registry->Collect()); }

uint16_t HostMetrics::port() const { return impl_->port; }

}  // namespace tenet::host
