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
  if (repetitions < 0 || static_cast<size_t>(repetitions) > kMaxDots) {
    return invalid_argument("Freivalds: {} repetitions (at most {}: {} bits)", repetitions, kMaxDots, kMaxDots * 30);
  }
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
      c.x_per_row_ = w[1];
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
    c.x_per_row_ = cin * ih * iw;
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
    const int64_t sh = spec.strides[0], sw = spec.strides[1], dh = spec.dilations[0], dw = spec.dilations[1];
    const int64_t pt = spec.pads[0], pl = spec.pads[1];
    c.channels_in_ = cin;
    // Small planes (CIFAR-sized layers, a ResNet's last stages): per-row dots of a few elements
    // cost more in calls than in arithmetic, so the output side keeps s ⊗ t whole and the input
    // side the whole Z: each check is then two long dots (freivalds.h).
    c.small_planes_ = c.positions_ < kSmallPlane;
    if (c.small_planes_) {
      rep.st.resize(static_cast<size_t>(n_count * w[0] * c.positions_));
      for (int64_t n = 0; n < n_count; ++n) {
        for (int64_t co = 0; co < w[0]; ++co) {
          for (int64_t q = 0; q < c.positions_; ++q) {
            rep.st[static_cast<size_t>((n * w[0] + co) * c.positions_ + q)] =
                mul_mod(rep.s[static_cast<size_t>(co)], rep.t[static_cast<size_t>(n * c.positions_ + q)]);
          }
        }
      }
    }
    c.pointwise_ = !c.small_planes_ && kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && spec.pads[2] == 0 &&
                   spec.pads[3] == 0 && oh == ih && ow == iw;
    if (c.pointwise_) {
      // Z[n, ci, q] = ws[ci]·t[n, q]: keep ws only (freivalds.h).
      rep.ws = std::move(ws);
      c.reps_.push_back(std::move(rep));
      continue;
    }
    // Z[n, ci, y, x] = Σ over output positions (r, q) and taps (a, b) that read input (y, x) of
    // t[n, r, q]·ws[ci, a, b]: the same window walk as the convolution itself.
    rep.z.assign(static_cast<size_t>(n_count * cin * ih * iw), 0);
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
  // All repetitions in one pass over y and one over x (dot_mod_many): each is read once, however
  // many repetitions there are. Partial results are reduced field elements (< 2^31) summed in
  // uint64: fine for < 2^33 terms.
  const size_t reps = reps_.size();
  if (reps == 0) return -1;
  if (reps > kMaxDots) return 0;  // create() refuses more; reject rather than accept unchecked
  // The first `batch` images (conv) or rows (matmul) of the shape given at create(): a partial
  // batch is checked with the prefix of the same vectors (every vector is image- / row-major).
  const int64_t per_y = conv_ ? channels_out_ * positions_ : channels_out_;
  const int64_t batch = per_y > 0 ? static_cast<int64_t>(y.size()) / per_y : 0;
  if (batch < 1 || batch > batch_ || batch * per_y != static_cast<int64_t>(y.size())) return 0;
  if (static_cast<int64_t>(x.size()) != batch * x_per_row_) return 0;
  constexpr int64_t kParallel = int64_t{1} << 15;
  uint64_t lhs[kMaxDots] = {}, rhs[kMaxDots] = {};
  uint32_t y_max = 0;  // the largest value of y: a field element is < p
  if (conv_) {
    // lhs_r = Σ_{n, co} s_r[co]·(t_r[n] · y[n, co]) (or st_r · y); rhs_r = z_r · x (or, pointwise,
    // Σ_{n, ci} ws_r[ci]·(t_r[n] · x[n, ci])).
    const int64_t rows = batch * channels_out_;
    // This thread's share (inside the parallel region) of Σ_r-wise vec_r · data, in chunks (and,
    // with data_max, of data's largest value).
    auto whole = [&](std::vector<uint32_t> Rep::*vec, std::span<const uint32_t> data, uint64_t* part, uint32_t* data_max) {
      constexpr int64_t kChunk = 4096;
      const auto count = static_cast<int64_t>(data.size());
      const int64_t chunks = (count + kChunk - 1) / kChunk;
      const uint32_t* a[kMaxDots];
      uint32_t d[kMaxDots];
#pragma omp for schedule(static) nowait
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t at = c * kChunk;
        for (size_t r = 0; r < reps; ++r) a[r] = (reps_[r].*vec).data() + at;
        dot_mod_many(std::span(a, reps), data.data() + at, static_cast<size_t>(std::min(kChunk, count - at)), d, data_max);
        for (size_t r = 0; r < reps; ++r) part[r] += d[r];
      }
    };
    // This thread's share of Σ_{n, c} weight_r[c]·(t_r[n] · data[n, c]) over planes of positions_.
    auto per_plane = [&](std::vector<uint32_t> Rep::*weight, int64_t channels, std::span<const uint32_t> data, uint64_t* part,
                         uint32_t* data_max) {
      const uint32_t* a[kMaxDots];
      uint32_t d[kMaxDots];
#pragma omp for schedule(static) nowait
      for (int64_t plane = 0; plane < batch * channels; ++plane) {
        const int64_t n = plane / channels, c = plane % channels;
        for (size_t r = 0; r < reps; ++r) a[r] = reps_[r].t.data() + n * positions_;
        dot_mod_many(std::span(a, reps), data.data() + plane * positions_, static_cast<size_t>(positions_), d, data_max);
        for (size_t r = 0; r < reps; ++r) part[r] += mul_mod((reps_[r].*weight)[static_cast<size_t>(c)], d[r]);
      }
    };
#pragma omp parallel if (rows * positions_ > kParallel)
    {
      uint64_t part[kMaxDots] = {}, part_x[kMaxDots] = {};
      uint32_t part_y_max = 0;
      if (small_planes_) {
        whole(&Rep::st, y, part, &part_y_max);
      } else {
        per_plane(&Rep::s, channels_out_, y, part, &part_y_max);
      }
      if (pointwise_) {
        per_plane(&Rep::ws, channels_in_, x, part_x, nullptr);
      } else {
        whole(&Rep::z, x, part_x, nullptr);
      }
#pragma omp critical(tenet_freivalds_sum)
      {
        y_max = std::max(y_max, part_y_max);
        for (size_t r = 0; r < reps; ++r) {
          lhs[r] += part[r];
          rhs[r] += part_x[r];
        }
      }
    }
    if (y_max >= kP) return kOutsideField;
    for (size_t r = 0; r < reps; ++r) {
      if (reduce64(lhs[r]) != reduce64(rhs[r])) return static_cast<int>(r);
    }
    return -1;
  }
  // Matmul, per row m of the batch: s_r · y[m] == z_r · x[m] for every r.
  int bad = static_cast<int>(reps);
#pragma omp parallel for reduction(min : bad) reduction(max : y_max) if (batch * (channels_out_ + k_) > kParallel)
  for (int64_t m = 0; m < batch; ++m) {
    const uint32_t* a[kMaxDots];
    uint32_t ly[kMaxDots], rx[kMaxDots];
    for (size_t r = 0; r < reps; ++r) a[r] = reps_[r].s.data();
    dot_mod_many(std::span(a, reps), y.data() + m * channels_out_, static_cast<size_t>(channels_out_), ly, &y_max);
    for (size_t r = 0; r < reps; ++r) a[r] = reps_[r].z.data();
    dot_mod_many(std::span(a, reps), x.data() + m * k_, static_cast<size_t>(k_), rx);
    for (size_t r = 0; r < reps; ++r) {
      if (ly[r] != rx[r]) bad = std::min(bad, static_cast<int>(r));
    }
  }
  if (y_max >= kP) return kOutsideField;
  return bad == static_cast<int>(reps) ? -1 : bad;
}

size_t FreivaldsCheck::size_bytes() const {
  size_t n = 0;
  for (const Rep& r : reps_) n += (r.s.size() + r.t.size() + r.z.size() + r.ws.size() + r.st.size()) * sizeof(uint32_t);
  return n;
}

}  // namespace tenet::hybrid
