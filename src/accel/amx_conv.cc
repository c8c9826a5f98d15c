// AMX convolution on four 8-bit planes with the planes combined in L1 (see amx_conv.h).
#include "accel/amx_conv.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "accel/plane_blocks.h"

namespace tenet::accel {
namespace {

using namespace plane_blocks;

constexpr int kPlanes = 4;  // 8-bit planes of a 31-bit field element
constexpr int64_t kChunk = 64;         // input channels per tile row (64 bytes)
constexpr int64_t kTileBytes = 1024;   // 16 rows x 64 bytes
constexpr int64_t kPixels = 16;        // virtual pixels per tile
constexpr int64_t kChannelPair = 32;   // output channels per pass (two B tiles)
// Bytes of one work item's input planes: a strip of input rows that stays in L2 while every
// channel pair reads it.
constexpr int64_t kStripTargetBytes = int64_t{512} << 10;

bool os_grants_tiles() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  constexpr unsigned kAmxTile = 1u << 24, kAmxInt8 = 1u << 25;
  if ((d & kAmxTile) == 0 || (d & kAmxInt8) == 0) return false;
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return false;
#if defined(__linux__)
  // Linux 5.16+: tile data is off until the process asks (arch_prctl(ARCH_REQ_XCOMP_PERM,
  // XFEATURE_XTILEDATA)); granted once, it holds for every thread.
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// The ldtilecfg operand (palette 1): every tile 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// A 64-byte aligned, growable byte buffer, one per thread (the input planes of a work item).
class ThreadBuffer {
 public:
  ~ThreadBuffer() { std::free(data_); }
  uint8_t* get(size_t size) {
    if (size > capacity_) {
      std::free(data_);
      capacity_ = (size + 63) / 64 * 64;
      data_ = static_cast<uint8_t*>(std::aligned_alloc(64, capacity_));
      if (data_ == nullptr) capacity_ = 0;
    }
    return data_;
  }

 private:
  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
};

// The compiler sees neither what tileloadd reads nor what tilestored writes (GCC's tile
// intrinsics are asm without a memory clobber): order them against ordinary loads and stores.
inline void memory_barrier() { asm volatile("" ::: "memory"); }

}  // namespace

struct AmxPlaneConv::Item {
  // Direct layout: output rows [oy0, oy1) of image n. Gathered layout: output pixels [p0, p1) of
  // the whole batch, numbered image by image.
  int64_t n = 0, oy0 = 0, oy1 = 0, p0 = 0, p1 = 0;
  // Geometry of the run (the same for every item of it).
  int64_t h = 0, w = 0, ho = 0, wo = 0, wp = 0, pad_top = 0, pad_left = 0, dil = 1, stride = 1;
};

// What the tile loop (AmxPlaneConv::multiply) needs to know of a work item's layout.
struct AmxPlaneConv::Tiles {
  // Per tile: bytes from a plane's start to lane 0's row at tap 0, and the valid lanes.
  std::vector<int64_t> a_offset;
  std::vector<uint16_t> mask;
  // Direct layout: the output offset (within one channel's plane of the image) of the first valid
  // lane; valid lanes are consecutive there. Gathered layout: 16 offsets per tile (from y, within
  // channel 0's planes), one per lane.
  std::vector<int64_t> first;
  std::vector<int32_t> lanes;
  std::vector<int64_t> tap_offset;  // bytes, per kernel tap
  size_t stride_a = 0;              // bytes from one lane's row to the next
  uint32_t* y = nullptr;            // direct: the image's output; gathered: the batch's
  int64_t plane_elems = 0;          // Ho·Wo
};

bool AmxPlaneConv::available() {
  static const bool ok = os_grants_tiles();
  return ok;
}

std::string AmxPlaneConv::unsupported(const LinearSpec& spec) {
  if (spec.kind != LinearSpec::Kind::kConv2d) return "not a convolution";
  if (spec.weight_shape.size() != 4) return "weights are not 4-d";
  if (spec.group != 1) return "grouped";
  if (spec.strides[0] != spec.strides[1]) return "unequal strides";
  if (spec.dilations[0] != spec.dilations[1]) return "unequal dilations";
  for (int d = 0; d < 2; ++d) {
    const int64_t extent = (spec.weight_shape[2 + d] - 1) * spec.dilations[static_cast<size_t>(d)] + 1;
    if (spec.pads[static_cast<size_t>(d)] >= extent || spec.pads[static_cast<size_t>(2 + d)] >= extent) {
      return "padding as wide as the kernel";  // rows or columns of padding only: no CNN has them
    }
  }
  if (spec.weight_shape[1] % kChunk != 0) return "input channels not a multiple of 64";
  if (spec.weight_shape[0] % kChannelPair != 0) return "output channels not a multiple of 32";
  return "";
}

Result<std::unique_ptr<AmxPlaneConv>> AmxPlaneConv::create(const LinearSpec& spec) {
  TENET_RETURN_IF_ERROR(validate(spec));
  if (const std::string why = unsupported(spec); !why.empty()) return invalid_argument("amx convolution: {}", why);
  if (!available()) return failed_precondition("amx convolution: this CPU or OS gives no AMX-INT8 tiles");
  std::unique_ptr<AmxPlaneConv> c(new AmxPlaneConv(spec));
  c->cout_ = spec.weight_shape[0];
  c->cin_ = spec.weight_shape[1];
  c->kh_ = spec.weight_shape[2];
  c->kw_ = spec.weight_shape[3];
  c->chunks_ = c->cin_ / kChunk;
  const int64_t taps = c->kh_ * c->kw_;
  // packed[cb][tap][chunk] is one B tile: row r, column 4·j + q = W[16·cb + j][64·chunk + 4·r + q][tap].
  c->packed_.assign(static_cast<size_t>(numel(spec.weight_shape)) + 64, 0);
  c->packed_offset_ = (64 - reinterpret_cast<uintptr_t>(c->packed_.data()) % 64) % 64;
  int8_t* packed = c->packed_.data() + c->packed_offset_;
  for (int64_t co = 0; co < c->cout_; ++co) {
    const int64_t cb = co / 16, j = co % 16;
    for (int64_t ci = 0; ci < c->cin_; ++ci) {
      const int64_t chunk = ci / kChunk, r = (ci % kChunk) / 4, q = ci % 4;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t tile = (cb * taps + t) * c->chunks_ + chunk;
        packed[tile * kTileBytes + r * 64 + j * 4 + q] = spec.weights[static_cast<size_t>((co * c->cin_ + ci) * taps + t)];
      }
    }
  }
  c->spec_.weights.clear();
  c->spec_.weights.shrink_to_fit();
  return c;
}

Status AmxPlaneConv::run(const Shape& input_shape, const uint32_t* x, uint32_t* y, int threads) const {
  LinearSpec shape_spec = spec_;  // output_shape checks the weight count against the shape
  shape_spec.weights.resize(static_cast<size_t>(numel(spec_.weight_shape)));
  TENET_ASSIGN_OR_RETURN(const Shape out, output_shape(shape_spec, input_shape));
  Item geometry;
  geometry.h = input_shape[2];
  geometry.w = input_shape[3];
  geometry.ho = out[2];
  geometry.wo = out[3];
  geometry.pad_top = spec_.pads[0];
  geometry.pad_left = spec_.pads[1];
  geometry.wp = spec_.pads[1] + geometry.w + spec_.pads[3];
  geometry.dil = spec_.dilations[0];
  geometry.stride = spec_.strides[0];
  const int64_t batch = input_shape[0], halo = (kh_ - 1) * geometry.dil;
  threads = std::max(1, threads);
  // The direct layout's share of lanes that compute a real output; where it is below half (small
  // images: ResNet's late stages at CIFAR sizes), the batch's pixels are gathered instead.
  const int64_t direct_lanes = geometry.stride == 1
                                   ? (geometry.ho * geometry.wp + kPixels - 1) / kPixels * kPixels
                                   : geometry.ho * ((geometry.wo + kPixels - 1) / kPixels * kPixels);
  const bool gathered = 2 * geometry.ho * geometry.wo < direct_lanes;
  int64_t items = 0, rows = 0, strips = 0, item_pixels = 0;
  const int64_t pixels = batch * geometry.ho * geometry.wo;
  if (gathered) {
    // Pixels per item: whole tiles whose gathered planes fit kStripTargetBytes, and at least
    // `threads` items where there are enough tiles.
    const int64_t k_bytes = kPlanes * kh_ * kw_ * cin_;
    const int64_t tiles = (pixels + kPixels - 1) / kPixels;
    int64_t per_item = std::clamp<int64_t>(kStripTargetBytes / (kPixels * k_bytes), 1, tiles);
    per_item = std::min(per_item, std::max<int64_t>(1, (tiles + threads - 1) / threads));
    item_pixels = per_item * kPixels;
    items = (pixels + item_pixels - 1) / item_pixels;
  } else {
    // Output rows per item: the strip's planes within kStripTargetBytes, and at least `threads`
    // items where the batch alone gives fewer.
    const int64_t row_bytes = kPlanes * geometry.wp * cin_;
    rows = std::clamp<int64_t>((kStripTargetBytes / row_bytes - halo) / geometry.stride, 1, geometry.ho);
    if (batch < threads) {
      const int64_t per_image = (threads + batch - 1) / batch;
      rows = std::min(rows, std::max<int64_t>(1, (geometry.ho + per_image - 1) / per_image));
    }
    strips = (geometry.ho + rows - 1) / rows;
    items = batch * strips;
  }
  const int team = static_cast<int>(std::min<int64_t>(threads, items));
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(team) if (team > 1)
  for (int64_t i = 0; i < items; ++i) {
    Item item = geometry;
    if (gathered) {
      item.p0 = i * item_pixels;
      item.p1 = std::min(pixels, item.p0 + item_pixels);
    } else {
      item.n = i / strips;
      item.oy0 = (i % strips) * rows;
      item.oy1 = std::min(geometry.ho, item.oy0 + rows);
    }
    if (failed) continue;
    const bool done = gathered ? run_gathered(item, x, y) : run_direct(item, x, y);
    if (!done) failed = true;
  }
  if (failed) return resource_exhausted("amx convolution: cannot allocate a work item's input planes");
  return ok_status();
}

// (GCC 12 warns inside its own AVX-512 headers, on _mm512_undefined_epi32: a false positive.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f,avx512bw,avx512vl"))) bool AmxPlaneConv::run_direct(const Item& item, const uint32_t* x,
                                                                                     uint32_t* y) const {
  const int64_t rows_out = item.oy1 - item.oy0, halo = (kh_ - 1) * item.dil, stride = item.stride;
  const int64_t rows_in = (rows_out - 1) * stride + halo + 1;
  const int64_t wp = item.wp;
  // The tiles: lane 0's padded input pixel (at tap (0, 0)), the valid lanes and the output offset
  // (within a channel's plane) of the first; valid lanes are consecutive in the output. Stride 1:
  // tile t is virtual pixels 16t.. (rows of wp, the last wp - wo of each dropped). Larger strides:
  // tiles within one output row (lanes past wo dropped), lane m at input column s·(ox0 + m).
  Tiles tiles;
  int64_t last_base = 0;
  const auto add_tile = [&](int64_t base, uint16_t mask, int64_t first) {
    tiles.a_offset.push_back(base * cin_);
    tiles.mask.push_back(mask);
    tiles.first.push_back(first);
    last_base = base;
  };
  if (stride == 1) {
    for (int64_t v0 = 0; v0 < rows_out * wp; v0 += kPixels) {
      uint16_t mask = 0;
      int64_t first = -1;
      for (int64_t m = 0; m < kPixels; ++m) {
        const int64_t v = v0 + m, r = v / wp, ox = v % wp;
        if (r >= rows_out || ox >= item.wo) continue;
        mask = static_cast<uint16_t>(mask | (1u << m));
        if (first < 0) first = (item.oy0 + r) * item.wo + ox;
      }
      add_tile(v0, mask, first);
    }
  } else {
    for (int64_t r = 0; r < rows_out; ++r) {
      for (int64_t ox0 = 0; ox0 < item.wo; ox0 += kPixels) {
        const int64_t lanes = std::min(kPixels, item.wo - ox0);
        add_tile(r * stride * wp + ox0 * stride, static_cast<uint16_t>((1u << lanes) - 1), (item.oy0 + r) * item.wo + ox0);
      }
    }
  }
  // The farthest padded pixel any lane reads (exclusive), at its last tap.
  const int64_t pixels = std::max(rows_in * wp, last_base + (kPixels - 1) * stride + halo * wp + (kw_ - 1) * item.dil + 1);
  const size_t plane_stride = static_cast<size_t>((pixels * cin_ + 63) / 64 * 64);
  thread_local ThreadBuffer buffer;
  uint8_t* planes = buffer.get(plane_stride * kPlanes);
  if (planes == nullptr) return false;

  // The strip's input planes, padded: zero rows above and below the image, zero columns left and
  // right, zero pixels past the last row (read only by dropped lanes).
  const int64_t hw = item.h * item.w, row_len = wp * cin_;
  const uint32_t* x_image = x + item.n * cin_ * hw;
  for (int64_t r = 0; r < rows_in; ++r) {
    const int64_t iy = item.oy0 * stride - item.pad_top + r;
    uint8_t* row = planes + r * row_len;
    if (iy < 0 || iy >= item.h) {
      for (int p = 0; p < kPlanes; ++p) std::memset(row + p * plane_stride, 0, static_cast<size_t>(row_len));
      continue;
    }
    const int64_t right = (item.pad_left + item.w) * cin_;
    for (int p = 0; p < kPlanes; ++p) {
      std::memset(row + p * plane_stride, 0, static_cast<size_t>(item.pad_left * cin_));
      std::memset(row + p * plane_stride + right, 0, static_cast<size_t>(row_len - right));
    }
    for (int64_t c0 = 0; c0 < cin_; c0 += kBlock) {
      const uint32_t* src = x_image + c0 * hw + iy * item.w;
      uint8_t* dst = row + item.pad_left * cin_ + c0;
      for (int64_t x0 = 0; x0 < item.w; x0 += kBlock) {
        split_block_avx512(src + x0, hw, 8, kPlanes, dst + x0 * cin_, plane_stride, cin_,
                           static_cast<int>(std::min(kBlock, item.w - x0)));
      }
    }
  }
  for (int p = 0; p < kPlanes; ++p) {
    std::memset(planes + p * plane_stride + rows_in * row_len, 0, static_cast<size_t>((pixels - rows_in * wp) * cin_));
  }
  tiles.tap_offset.resize(static_cast<size_t>(kh_ * kw_));
  for (int64_t ky = 0; ky < kh_; ++ky) {
    for (int64_t kx = 0; kx < kw_; ++kx) {
      tiles.tap_offset[static_cast<size_t>(ky * kw_ + kx)] = (ky * wp + kx) * item.dil * cin_;
    }
  }
  tiles.stride_a = static_cast<size_t>(stride * cin_);
  tiles.plane_elems = item.ho * item.wo;
  tiles.y = y + item.n * cout_ * tiles.plane_elems;
  multiply(planes, plane_stride, tiles);
  return true;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) bool AmxPlaneConv::run_gathered(const Item& item, const uint32_t* x,
                                                                                       uint32_t* y) const {
  // Every output pixel's patch as one row of K = taps·Cin bytes per plane, tap-major (the order
  // of the packed weights' chunks), gathered from x 16 channels at a time; rows past the item's
  // last pixel are zero (their lanes are dropped).
  const int64_t taps = kh_ * kw_, k_bytes = taps * cin_, count = item.p1 - item.p0;
  const int64_t tile_count = (count + kPixels - 1) / kPixels;
  const size_t plane_stride = static_cast<size_t>(tile_count * kPixels * k_bytes);
  thread_local ThreadBuffer buffer;
  uint8_t* planes = buffer.get(plane_stride * kPlanes);
  if (planes == nullptr) return false;
  const int64_t hw = item.h * item.w, plane_elems = item.ho * item.wo;
  const __m512i channel_step = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                  _mm512_set1_epi32(static_cast<int>(hw)));
  const __m512i byte_mask = _mm512_set1_epi32(0xFF);
  for (int64_t i = 0; i < tile_count * kPixels; ++i) {
    uint8_t* row = planes + i * k_bytes;
    if (i >= count) {
      for (int p = 0; p < kPlanes; ++p) std::memset(row + p * plane_stride, 0, static_cast<size_t>(k_bytes));
      continue;
    }
    const int64_t g = item.p0 + i, n = g / plane_elems, oy = g % plane_elems / item.wo, ox = g % item.wo;
    for (int64_t ky = 0; ky < kh_; ++ky) {
      const int64_t iy = oy * item.stride - item.pad_top + ky * item.dil;
      for (int64_t kx = 0; kx < kw_; ++kx) {
        const int64_t ix = ox * item.stride - item.pad_left + kx * item.dil;
        uint8_t* dst = row + (ky * kw_ + kx) * cin_;
        if (iy < 0 || iy >= item.h || ix < 0 || ix >= item.w) {
          for (int p = 0; p < kPlanes; ++p) std::memset(dst + p * plane_stride, 0, static_cast<size_t>(cin_));
          continue;
        }
        const uint32_t* src = x + (n * cin_) * hw + iy * item.w + ix;
        for (int64_t c0 = 0; c0 < cin_; c0 += kBlock) {
          // (hw·16 < 2^31: x holds at most kMaxRunCount = 2^28 elements.)
          const __m512i v = _mm512_i32gather_epi32(channel_step, src + c0 * hw, 4);
          for (int p = 0; p < kPlanes; ++p) {
            const __m512i byte = _mm512_and_si512(_mm512_srli_epi32(v, 8 * p), byte_mask);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + p * plane_stride + c0), _mm512_cvtepi32_epi8(byte));
          }
        }
      }
    }
  }
  Tiles tiles;
  for (int64_t t = 0; t < tile_count; ++t) {
    tiles.a_offset.push_back(t * kPixels * k_bytes);
    uint16_t mask = 0;
    for (int64_t m = 0; m < kPixels; ++m) {
      const int64_t i = t * kPixels + m, g = item.p0 + i;
      if (i < count) mask = static_cast<uint16_t>(mask | (1u << m));
      // Lane offset from y: image g / plane_elems, pixel g % plane_elems of channel 0 (< 2^28).
      tiles.lanes.push_back(i < count ? static_cast<int32_t>(g / plane_elems * cout_ * plane_elems + g % plane_elems) : 0);
    }
    tiles.mask.push_back(mask);
  }
  tiles.tap_offset.resize(static_cast<size_t>(taps));
  for (int64_t t = 0; t < taps; ++t) tiles.tap_offset[static_cast<size_t>(t)] = t * cin_;
  tiles.stride_a = static_cast<size_t>(k_bytes);
  tiles.plane_elems = plane_elems;
  tiles.y = y;
  multiply(planes, plane_stride, tiles);
  return true;
}

__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl"))) void AmxPlaneConv::multiply(const uint8_t* planes,
                                                                                                 size_t plane_stride,
                                                                                                 const Tiles& tiles) const {
  // Per pair of 16-channel blocks, per tile of 16 pixels: planes 0-1 then 2-3 into C tiles, then
  // the planes combined (16 pixels x 16 channels at a time), transposed to channel rows and the
  // valid lanes written.
  TileConfig config;
  for (int i = 0; i < 8; ++i) {
    config.colsb[i] = 64;
    config.rows[i] = 16;
  }
  memory_barrier();  // the planes are written
  _tile_loadconfig(&config);
  alignas(64) int32_t acc[kPlanes][kPixels][kChannelPair];
  const int8_t* packed = packed_.data() + packed_offset_;
  const int64_t taps = kh_ * kw_;
  const int64_t b_block = taps * chunks_ * kTileBytes;  // bytes of one 16-channel block
  const auto tile_count = static_cast<int64_t>(tiles.a_offset.size());
  const int64_t plane_elems = tiles.plane_elems;
  const size_t stride_a = tiles.stride_a;
  const bool gathered = !tiles.lanes.empty();
  for (int64_t cp = 0; cp < cout_ / kChannelPair; ++cp) {
    const int8_t* b0 = packed + 2 * cp * b_block;
    const int8_t* b1 = b0 + b_block;
    for (int64_t t = 0; t < tile_count; ++t) {
      memory_barrier();  // the last tile's combine has read acc
      for (int pair = 0; pair < 2; ++pair) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        const uint8_t* a0 = planes + static_cast<size_t>(2 * pair) * plane_stride + tiles.a_offset[static_cast<size_t>(t)];
        const uint8_t* a1 = a0 + plane_stride;
        for (int64_t tap = 0; tap < taps; ++tap) {
          const int64_t off = tiles.tap_offset[static_cast<size_t>(tap)];
          const int8_t* bt0 = b0 + tap * chunks_ * kTileBytes;
          const int8_t* bt1 = b1 + tap * chunks_ * kTileBytes;
          for (int64_t k = 0; k < chunks_; ++k) {
            _tile_loadd(4, a0 + off + k * kChunk, stride_a);
            _tile_loadd(5, a1 + off + k * kChunk, stride_a);
            _tile_loadd(6, bt0 + k * kTileBytes, 64);
            _tile_loadd(7, bt1 + k * kTileBytes, 64);
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
          }
        }
        _tile_stored(0, &acc[2 * pair][0][0], kChannelPair * 4);
        _tile_stored(1, &acc[2 * pair][0][16], kChannelPair * 4);
        _tile_stored(2, &acc[2 * pair + 1][0][0], kChannelPair * 4);
        _tile_stored(3, &acc[2 * pair + 1][0][16], kChannelPair * 4);
      }
      memory_barrier();
      const uint16_t mask = tiles.mask[static_cast<size_t>(t)];
      if (mask == 0) continue;
      for (int half = 0; half < 2; ++half) {
        __m512i rows[16];
        combine_rows_avx512<8>(&acc[0][0][16 * half], kChannelPair, kPixels * kChannelPair, rows, false);
        uint32_t* dst = tiles.y + (cp * kChannelPair + 16 * half) * plane_elems;
        if (gathered) {
          const __m512i lanes = _mm512_loadu_si512(tiles.lanes.data() + t * kPixels);
          for (int c = 0; c < 16; ++c) _mm512_mask_i32scatter_epi32(dst + c * plane_elems, mask, lanes, rows[c], 4);
        } else if (mask == 0xFFFF) {
          dst += tiles.first[static_cast<size_t>(t)];
          for (int c = 0; c < 16; ++c) _mm512_storeu_si512(dst + c * plane_elems, rows[c]);
        } else {
          dst += tiles.first[static_cast<size_t>(t)];
          for (int c = 0; c < 16; ++c) _mm512_mask_compressstoreu_epi32(dst + c * plane_elems, mask, rows[c]);
        }
      }
    }
  }
  _tile_release();
  memory_barrier();
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace tenet::accel
