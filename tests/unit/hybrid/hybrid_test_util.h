// Test helpers for hybrid mode: an honest accelerator (the fast CPU backend when it is built,
// else the enclave's exact loops) and a malicious wrapper that tampers with results.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "accel/accelerator.h"
#include "core/tensor.h"
#include "hybrid/field.h"
#include "hybrid/trusted_linear.h"

namespace tenet::hybrid::testing {

// ||got - want|| / ||want|| over float32 tensors of one shape.
inline double relative_error(const Tensor& got, const Tensor& want) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = got.as<float>()[i] - want.as<float>()[i];
    num += d * d;
    den += static_cast<double>(want.as<float>()[i]) * want.as<float>()[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// The arg-max class of each row of [rows, classes] logits.
inline std::vector<int64_t> top1(const Tensor& logits) {
  const int64_t classes = logits.shape().back(), rows = logits.numel() / classes;
  std::vector<int64_t> out;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = logits.as<float>() + r * classes;
    out.push_back(std::max_element(p, p + classes) - p);
  }
  return out;
}

inline std::shared_ptr<accel::Accelerator> honest_accelerator() {
  auto cpu = accel::make_cpu_accelerator(2);
  if (cpu.ok()) return std::shared_ptr<accel::Accelerator>(std::move(cpu).value());
  return std::make_shared<ExactLinear>();
}

// kOutOfField: a value >= p; kCongruent: a true value plus p, which is >= p yet congruent to the
// true product mod p (Freivalds' dot products alone, computed mod p, would accept it).
enum class Attack { kNone, kFlipOne, kDropChannel, kReplay, kScale, kZero, kOutOfField, kCongruent, kError };

// Wraps an honest accelerator; while an attack is set, it corrupts the results of `target`
// (a layer handle, or -1 for every layer) after computing them honestly.
class MaliciousAccelerator final : public accel::Accelerator {
 public:
  explicit MaliciousAccelerator(std::shared_ptr<accel::Accelerator> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return "malicious(" + inner_->name() + ")"; }
  Result<int32_t> add_layer(const accel::LinearSpec& spec) override {
    TENET_ASSIGN_OR_RETURN(int32_t h, inner_->add_layer(spec));
    std::lock_guard<std::mutex> lock(mu_);
    registered_.push_back(spec);
    channels_[h] = spec.weight_shape[0];
    kinds_[h] = spec.kind;
    return h;
  }
  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    TENET_RETURN_IF_ERROR(inner_->run(layer, input_shape, x, y));
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint32_t> honest(y.begin(), y.end());
    const Attack a = attack_;
    if (a != Attack::kNone && (target_ < 0 || target_ == layer)) {
      ++tampered_;
      const size_t n = y.size();
      switch (a) {
        case Attack::kNone: break;
        case Attack::kFlipOne: y[n / 2] = (y[n / 2] + 1) % kP; break;
        case Attack::kOutOfField: y[0] = kP + 5; break;
        case Attack::kCongruent: y[n / 3] += kP; break;  // < 2^31 + p < 2^32
        case Attack::kDropChannel: {
          // The output lacks channel 0: every later channel moves up one place, the last repeats.
          const int64_t c = channels_[layer];
          if (kinds_[layer] == accel::LinearSpec::Kind::kConv2d) {
            const size_t per = n / static_cast<size_t>(input_shape[0] * c);
            for (int64_t b = 0; b < input_shape[0]; ++b) {
              uint32_t* base = y.data() + static_cast<size_t>(b * c) * per;
              std::copy(base + per, base + static_cast<size_t>(c) * per, base);
            }
          } else {
            for (size_t r = 0; r < n / static_cast<size_t>(c); ++r) {
              uint32_t* row = y.data() + r * static_cast<size_t>(c);
              std::copy(row + 1, row + c, row);
            }
          }
          break;
        }
        case Attack::kReplay: {
          auto it = last_.find(layer);
          if (it != last_.end() && it->second.size() == n) std::copy(it->second.begin(), it->second.end(), y.begin());
          break;
        }
        case Attack::kScale:
          for (uint32_t& v : y) v = mul_mod(v, 2);
          break;
        case Attack::kZero: std::fill(y.begin(), y.end(), 0u); break;
        case Attack::kError: return unavailable_error();
      }
    }
    last_[layer] = std::move(honest);
    return ok_status();
  }
  static Status unavailable_error() { return Status(StatusCode::kInternal, "injected accelerator failure"); }
  void set_attack(Attack a, int32_t target = -1) {
    std::lock_guard<std::mutex> lock(mu_);
    attack_ = a;
    target_ = target;
  }
  // Every layer the enclave registered (what the accelerator learns of the model).
  std::vector<accel::LinearSpec> registered() {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_;
  }
  int tampered() {
    std::lock_guard<std::mutex> lock(mu_);
    return tampered_;
  }

 private:
  std::shared_ptr<accel::Accelerator> inner_;
  std::mutex mu_;
  Attack attack_ = Attack::kNone;
  int32_t target_ = -1;
  int tampered_ = 0;
  std::vector<accel::LinearSpec> registered_;
  std::map<int32_t, int64_t> channels_;
  std::map<int32_t, accel::LinearSpec::Kind> kinds_;
  std::map<int32_t, std::vector<uint32_t>> last_;
};

}  // namespace tenet::hybrid::testing
