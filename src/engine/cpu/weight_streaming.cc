// The plain (unprotected) weight store; the planner lives in compiled_model.cc.
#include "engine/cpu/weight_streaming.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <oneapi/dnnl/dnnl.hpp>

namespace tenet::cpu {
namespace {

class PlainWeightStore final : public WeightStore {
 public:
  Result<uint32_t> put(std::span<const std::byte> data, uint64_t piece_bytes) override {
    std::lock_guard lock(mu_);
    entries_.push_back({std::vector<std::byte>(data.begin(), data.end()), piece_bytes});
    bytes_ += data.size();
    return static_cast<uint32_t>(entries_.size() - 1);
  }
  Status get(uint32_t id, std::span<std::byte> dst) override {
    std::lock_guard lock(mu_);
    if (id >= entries_.size()) return not_found("weight store: no entry {}", id);
    const auto& e = entries_[id].bytes;
    if (e.size() != dst.size()) return invalid_argument("weight store: entry {} has {} bytes, not {}", id, e.size(), dst.size());
    std::memcpy(dst.data(), e.data(), e.size());
    return ok_status();
  }
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override {
    std::lock_guard lock(mu_);
    if (id >= entries_.size()) return not_found("weight store: no entry {}", id);
    const Entry& e = entries_[id];
    if (e.piece_bytes == 0) return failed_precondition("weight store: entry {} was not stored in pieces", id);
    const uint64_t off = piece * e.piece_bytes;
    if (off >= e.bytes.size() || dst.size() != std::min<uint64_t>(e.piece_bytes, e.bytes.size() - off)) {
      return invalid_argument("weight store: entry {} has no piece {} of {} bytes", id, piece, dst.size());
    }
    std::memcpy(dst.data(), e.bytes.data() + off, dst.size());
    return ok_status();
  }
  uint64_t stored_bytes() const override { return bytes_; }
  std::string describe() const override { return "plain memory"; }
  // A copy: memcpy of a buffer larger than the caches, on the team.
  double load_bytes_per_second(int threads) override {
    constexpr size_t kBytes = size_t{32} << 20, kPart = size_t{1} << 20;
    std::vector<std::byte> src, dst;
    return measured_rate("plain store copy", threads, kBytes, [&] {
      src.resize(kBytes, std::byte{1});
      dst.resize(kBytes);
#pragma omp parallel for num_threads(threads) schedule(static)
      for (size_t p = 0; p < kBytes / kPart; ++p) std::memcpy(dst.data() + p * kPart, src.data() + p * kPart, kPart);
      return true;
    });
  }

 private:
  struct Entry {
    std::vector<std::byte> bytes;
    uint64_t piece_bytes = 0;
  };
  std::mutex mu_;
  std::vector<Entry> entries_;
  uint64_t bytes_ = 0;
};

}  // namespace

double measured_rate(const std::string& what, int threads, uint64_t units, const std::function<bool()>& run) {
  static std::mutex mu;
  static std::map<std::pair<std::string, int>, double> rates;
  std::lock_guard lock(mu);
  const auto known = rates.find({what, threads});
  if (known != rates.end()) return known->second;
  if (!run()) return 0;  // warm: first touch, thread start
  double rate = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!run()) return 0;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) rate = std::max(rate, static_cast<double>(units) / s);
  }
  if (rate > 0) rates[{what, threads}] = rate;
  return rate;
}

double fp32_flops_per_second(int threads) {
  constexpr int64_t n = 512;
  std::optional<dnnl::engine> engine;
  std::optional<dnnl::stream> stream;
  dnnl::memory a, b, c;
  std::optional<dnnl::matmul> mm;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const double rate = measured_rate("fp32 matmul", threads, static_cast<uint64_t>(2 * n * n * n), [&] {
    if (!mm) {  // built on the first (untimed) call only, and only when the rate is not known yet
      engine.emplace(dnnl::engine::kind::cpu, 0);
      stream.emplace(*engine);
      const dnnl::memory::desc md({n, n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab);
      a = dnnl::memory(md, *engine);
      b = dnnl::memory(md, *engine);
      c = dnnl::memory(md, *engine);
      for (dnnl::memory* m : {&a, &b}) {
        auto* p = static_cast<float*>(m->get_data_handle());
        for (int64_t i = 0; i < n * n; ++i) p[i] = static_cast<float>(i % 7) * 0.125f;
      }
      mm.emplace(dnnl::matmul::primitive_desc(dnnl::matmul::desc(md, md, md), *engine));
    }
    mm->execute(*stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream->wait();
    return true;
  });
  omp_set_num_threads(saved);
  return rate;
}

Result<uint32_t> WeightStore::put_from(uint64_t size, uint64_t piece_bytes, const Filler& fill) {
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  TENET_RETURN_IF_ERROR(fill(0, bytes));
  return put(bytes, piece_bytes);
}

Status WeightStore::dot_piece(uint32_t, uint64_t, const float*, int64_t, std::span<float>) {
  return unimplemented("{}: no dot products from stored pieces", describe());
}

Status WeightStore::get_constant(uint32_t id, uint64_t entry_bytes, uint64_t offset, std::span<std::byte> dst) {
  constexpr uint64_t kPiece = kConstantPieceBytes;
  if (offset + dst.size() > entry_bytes) return invalid_argument("weight store: bytes beyond entry {}", id);
  std::vector<std::byte> partial;
  uint64_t at = offset;
  const uint64_t end = offset + dst.size();
  while (at < end) {
    const uint64_t piece = at / kPiece, piece_start = piece * kPiece;
    const uint64_t piece_size = std::min(kPiece, entry_bytes - piece_start);
    const uint64_t n = std::min(end, piece_start + piece_size) - at;
    std::byte* out = dst.data() + (at - offset);
    if (at == piece_start && n == piece_size) {
      TENET_RETURN_IF_ERROR(get_piece(id, piece, std::span(out, n)));  // a whole piece: straight in
    } else {
      partial.resize(piece_size);
      TENET_RETURN_IF_ERROR(get_piece(id, piece, partial));
      std::memcpy(out, partial.data() + (at - piece_start), n);
    }
    at += n;
  }
  return ok_status();
}

std::shared_ptr<WeightStore> make_plain_weight_store() { return std::make_shared<PlainWeightStore>(); }

}  // namespace tenet::cpu
