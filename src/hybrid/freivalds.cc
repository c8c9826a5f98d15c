// Freivalds checks for outsourced conv and matmul layers (see freivalds.h for the argument).
#include "hybrid/freivalds.h"

#include <algorithm>
#include <cmath>

#include "crypto/crypto.h"
#include "hybrid/field.h"
#include "hybrid/trusted_linear.h"

namespace tenet::hybrid {

int repetitions_for_bits(int bits) {
  if (bits <= 0) return 0;
  // One repetition gives log2(p / 2) = 29.9999999993... bits.
  const long double per_rep = std::log2(static_cast<long double>(kP) / 2.0L);
  return static_cast<int>(std::ceil(static_cast<long double>(bits) / per_rep));
}

Status random_field_elements(std::span<uint32_t> out) {
  TENET_RETURN_IF_ERROR(crypto::random_bytes(std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size_bytes())));
  for (uint32_t& v : out) {
    v &= kP;
    while (v == kP) {
      TENET_RETURN_IF_ERROR(crypto::random_bytes(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), sizeof(v))));
      v &= kP;
    }
  }
  return ok_status();
}

Result<FreivaldsCheck> FreivaldsCheck::create(const accel::LinearSpec& spec, const Shape& input_shape, int repetitions) {
  TENET_ASSIGN_OR_RETURN(const Shape out, linear_output_shape(spec, input_shape));
  FreivaldsCheck c;
  const Shape& w = spec.weight_shape;
  c.conv_ = spec.kind == accel::LinearSpec::Kind::kConv2d;
  c.channels_out_ = w[0];
  for (int r = 0; r < repetitions; ++r) {
    Rep rep;
    rep.s.resize(static_cast<size_t>(w[0]));
    TENET_RETURN_IF_ERROR(random_field_elements(rep.s));
    if (!c.conv_) {
      // z = s^T W over the K inputs.
      c.k_ = w[1];
      c.batch_ = input_shape[0];
      rep.z.assign(static_cast<size_t>(w[1]), 0);
      for (int64_t o = 0; o < w[0]; ++o) {
        const uint32_t so = rep.s[static_cast<size_t>(o)];
        for (int64_t k = 0; k < w[1]; ++k) {
          uint32_t& zk = rep.z[static_cast<size_t>(k)];
          zk = add_mod(zk, mul_mod(so, from_signed(spec.weights[static_cast<size_t>(o * w[1] + k)])));
        }
      }
      c.reps_.push_back(std::move(rep));
      continue;
    }
    const int64_t n_count = input_shape[0], cin = input_shape[1], ih = input_shape[2], iw = input_shape[3];
    const int64_t cin_g = w[1], kh = w[2], kw = w[3], cout_g = w[0] / spec.group;
    const int64_t oh = out[2], ow = out[3];
    c.batch_ = n_count;
    c.positions_ = oh * ow;
    rep.t.resize(static_cast<size_t>(n_count * oh * ow));
    TENET_RETURN_IF_ERROR(random_field_elements(rep.t));
    // ws[ci][a][b] = Σ_{co in ci's group} s_co W[co, ci mod cin_g, a, b].
    std::vector<uint32_t> ws(static_cast<size_t>(cin * kh * kw), 0);
    for (int64_t co = 0; co < w[0]; ++co) {
      const int64_t g = co / cout_g;
      const uint32_t so = rep.s[static_cast<size_t>(co)];
      for (int64_t cil = 0; cil < cin_g; ++cil) {
        for (int64_t ab = 0; ab < kh * kw; ++ab) {
          uint32_t& dst = ws[static_cast<size_t>(((g * cin_g + cil) * kh * kw) + ab)];
          dst = add_mod(dst, mul_mod(so, from_signed(spec.weights[static_cast<size_t>((co * cin_g + cil) * kh * kw + ab)])));
        }
      }
    }
    // Z[n, ci, y, x] = Σ over output positions (r, q) and taps (a, b) that read input (y, x) of
    // t[n, r, q]·ws[ci, a, b]: the same window walk as the convolution itself.
    rep.z.assign(static_cast<size_t>(n_count * cin * ih * iw), 0);
    const int64_t sh = spec.strides[0], sw = spec.strides[1], dh = spec.dilations[0], dw = spec.dilations[1];
    const int64_t pt = spec.pads[0], pl = spec.pads[1];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < n_count; ++n) {
      for (int64_t ci = 0; ci < cin; ++ci) {
        uint32_t* zplane = rep.z.data() + (n * cin + ci) * ih * iw;
        const uint32_t* tplane = rep.t.data() + n * oh * ow;
        for (int64_t a = 0; a < kh; ++a) {
          for (int64_t b = 0; b < kw; ++b) {
            const uint32_t wv = ws[static_cast<size_t>((ci * kh + a) * kw + b)];
            if (wv == 0) continue;
            for (int64_t r = 0; r < oh; ++r) {
              const int64_t yy = r * sh - pt + a * dh;
              if (yy < 0 || yy >= ih) continue;
              for (int64_t q = 0; q < ow; ++q) {
                const int64_t xx = q * sw - pl + b * dw;
                if (xx < 0 || xx >= iw) continue;
                uint32_t& dst = zplane[yy * iw + xx];
                dst = add_mod(dst, mul_mod(wv, tplane[r * ow + q]));
              }
            }
          }
        }
      }
    }
    c.reps_.push_back(std::move(rep));
  }
  return c;
}

int FreivaldsCheck::first_failure(std::span<const uint32_t> x, std::span<const uint32_t> y) const {
  // Partial results are reduced field elements (< 2^31) summed in uint64: fine for < 2^33 terms.
  constexpr int64_t kParallel = int64_t{1} << 15;
  for (size_t r = 0; r < reps_.size(); ++r) {
    const Rep& rep = reps_[r];
    if (conv_) {
      const int64_t rows = batch_ * channels_out_;
      uint64_t lhs = 0;
#pragma omp parallel for reduction(+ : lhs) if (rows * positions_ > kParallel)
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t n = row / channels_out_, co = row % channels_out_;
        const auto t = std::span(rep.t).subspan(static_cast<size_t>(n * positions_), static_cast<size_t>(positions_));
        const auto yr = y.subspan(static_cast<size_t>(row * positions_), static_cast<size_t>(positions_));
        lhs += mul_mod(rep.s[static_cast<size_t>(co)], dot_mod(t, yr));
      }
      constexpr int64_t kChunk = 4096;
      const auto count = static_cast<int64_t>(x.size());
      const int64_t chunks = (count + kChunk - 1) / kChunk;
      uint64_t rhs = 0;
#pragma omp parallel for reduction(+ : rhs) if (count > kParallel)
      for (int64_t c = 0; c < chunks; ++c) {
        const auto at = static_cast<size_t>(c * kChunk);
        const size_t len = std::min<size_t>(static_cast<size_t>(kChunk), x.size() - at);
        rhs += dot_mod(std::span(rep.z).subspan(at, len), x.subspan(at, len));
      }
      if (reduce64(lhs) != reduce64(rhs)) return static_cast<int>(r);
      continue;
    }
    bool bad = false;
#pragma omp parallel for reduction(|| : bad) if (batch_ * (channels_out_ + k_) > kParallel)
    for (int64_t m = 0; m < batch_; ++m) {
      const uint32_t lhs = dot_mod(rep.s, y.subspan(static_cast<size_t>(m * channels_out_), static_cast<size_t>(channels_out_)));
      const uint32_t rhs = dot_mod(rep.z, x.subspan(static_cast<size_t>(m * k_), static_cast<size_t>(k_)));
      bad = bad || lhs != rhs;
    }
    if (bad) return static_cast<int>(r);
  }
  return -1;
}

size_t FreivaldsCheck::size_bytes() const {
  size_t n = 0;
  for (const Rep& r : reps_) n += (r.s.size() + r.t.size() + r.z.size()) * sizeof(uint32_t);
  return n;
}

}  // namespace tenet::hybrid
