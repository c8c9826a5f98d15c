// Memory-bounded execution: on-demand, layer-wise weight loading (Vessels) for models whose
// weights do not fit the memory they may keep resident (an enclave's share of the EPC).
//
// A compiled model normally keeps every kernel's weights (reordered into the kernel's layout)
// in memory. With streaming, the compiler moves each large weight buffer into a WeightStore as
// soon as its kernel is built (so the kernels' copies never accumulate), drops the graph's
// constants that no kernel reads at run time, and then plans the steady state from the budget:
//
//   budget ≥ arena + scratchpad + small weights + resident weights + ring
//
// * The ring: `ring_slots` buffers of the largest streamed weight's size, in which streamed
//   weights are loaded just before their step and released after it.
// * Resident or streamed, per weight buffer: streaming a buffer costs its load (decryption,
//   proportional to its bytes) plus a fixed per-load cost, on every run; keeping it resident costs
//   its bytes of budget. With every byte of budget worth the same, the knapsack's greedy order is
//   by value density (1 + fixed/bytes): smallest first. So the planner streams the largest
//   buffers and keeps the others resident, smallest first, while they fit; what is resident is
//   loaded back once, at compile time. How much to keep is a trade of the shared EPC against
//   time: by default (StreamingOptions::max_loading_overhead) only as much as it takes for the
//   predicted loading to stay within 20% of the predicted compute, so that a compute-heavy model
//   streams nearly everything and leaves the EPC to other enclaves (resnet152 at a 93 MiB budget:
//   peak 24.7 instead of 91.6 MiB, 72.2 against 70.0 ms plain), while one whose loads outweigh
//   its compute (alexnet, vgg16) keeps as much as the budget holds.
// * Pieces: a kernel that reads a weight once, in independent pieces (tenet_gemv, the batch-1
//   fully-connected layers), takes it straight from the store piece by piece: each compute thread
//   has a piece of whole rows (about 256 KiB) decrypted into its own buffer and uses it while it
//   is in its L2 or, where the store can (WeightStore::dot_piece: the sealed store on VAES), into
//   the rows' dot products as it decrypts, the plaintext never written to memory (alexnet's fc6,
//   151 MB on 2 threads: 8.1 → 7.5 ms, measured in the same minutes). Such a weight needs no ring
//   slot and no tiling, and its bytes are read from memory once per run (ciphertext), not three
//   times (ciphertext, ring write, ring read).
// * Tiling (passes::tile_linear_outputs, applied before compiling): a linear layer whose weights
//   alone exceed a ring slot (VGG16's fc6, 411 MB) is split along its output channels into
//   layers whose weights fit, joined by a Concat that the compiler turns into direct writes.
//   The slot size derives from the budget: the ring takes at most a quarter of it (two slots),
//   which leaves the rest for the arena and for resident weights — the more is resident, the
//   less is decrypted per run.
//
// The store is where the bytes go between runs. In a sim enclave it is epc::SealedWeightStore:
// AES-128-GCM in untrusted memory under a key that never leaves the enclave (TEESlice's
// "untrusted memory as an encrypted cache"), so a streamed weight costs one decryption per run,
// with no page faults and no evictions, instead of secure paging at 4 KiB granularity.
//
// Loading is bounded the same way (deferred constants, ir/graph.h): with an import option carrying
// a store, the importer seals each large initializer into it as it reads it, the passes that
// rewrite a weight (BN folding, tiling) read it back and seal the result, and the compiler
// materializes a node's weights only while it builds that node's kernel (which copies them into
// its own layout; the copy then moves to the streaming store as above). A tenet_gemv weight, used
// as is, goes from store to store piece by piece without ever being whole in memory. So the peak
// while loading is one layer's weights (twice) beside the plan, not the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/ir/graph.h"

namespace tenet::cpu {

// Storage outside the bounded memory. put() copies the bytes (the caller frees its buffer
// afterwards); get() writes an entry back, checking that it is the entry that was put. Thread-safe
// for concurrent get()s and get_piece()s.
//
// It also holds a graph's deferred constants while a model loads (ir::ConstantStore): those are
// put in pieces of kConstantPieceBytes, so that any byte range of them can be read back by
// decrypting only the pieces it covers (the tiling pass cuts a weight that way).
class WeightStore : public ir::ConstantStore {
 public:
  static constexpr uint64_t kConstantPieceBytes = 256 * 1024;
  virtual ~WeightStore() = default;
  // `piece_bytes` > 0: the entry can also be read back piece by piece (get_piece), in pieces of
  // that many bytes (the last one may be shorter), each checked on its own. 0: the store's choice.
  virtual Result<uint32_t> put(std::span<const std::byte> data, uint64_t piece_bytes) = 0;
  virtual Status get(uint32_t id, std::span<std::byte> dst) = 0;
  // Piece `piece` of an entry put with piece_bytes > 0; `dst` has exactly that piece's size.
  virtual Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) = 0;
  // For a piece whose bytes are float32 rows of `k` values, needed only as dot products with x
  // (tenet_gemv): row r's 64 partial sums into lanes[64·r .. 64·r + 63], lane j = Σ_i x[64·i + j]·
  // w_r[64·i + j] (in order of i, one fused multiply-add each). A store that decrypts can do
  // this without writing the piece anywhere (SealedWeightStore: the plaintext stays in registers,
  // and the separate pass over an L2 buffer is gone). kUnimplemented, the default, or for a k it
  // cannot take (dots_pieces() says which): the caller uses get_piece().
  virtual Status dot_piece(uint32_t id, uint64_t piece, const float* x, int64_t k, std::span<float> lanes);
  // Whether dot_piece() takes rows of k floats here (the caller asks before each piece).
  virtual bool dots_pieces(int64_t k) const { return false; }
  // Bytes per second that get()/get_piece() deliver on `threads` threads (decryption, for a
  // sealed store), measured on this machine the first time it is asked: what the planner charges a
  // run for each streamed byte. 0 (the default): unknown, and the planner keeps what fits.
  virtual double load_bytes_per_second(int threads) { return 0; }
  virtual uint64_t stored_bytes() const = 0;
  virtual std::string describe() const = 0;

  // put() of `size` bytes that the caller produces piece by piece: `fill(offset, dst)` writes
  // bytes [offset, offset + dst.size()). A store that seals piece by piece (SealedWeightStore)
  // never needs the whole entry in memory; this default assembles it in host memory first.
  // (Filler: ir::ConstantStore's.)
  virtual Result<uint32_t> put_from(uint64_t size, uint64_t piece_bytes, const Filler& fill);

  // ir::ConstantStore: entries in pieces of kConstantPieceBytes; get_constant() reads the pieces
  // a range covers (a partly covered piece through a piece-sized host buffer).
  Result<uint32_t> put_constant(std::span<const std::byte> data) override { return put(data, kConstantPieceBytes); }
  Result<uint32_t> put_constant_from(uint64_t size, const Filler& fill) override { return put_from(size, kConstantPieceBytes, fill); }
  Status get_constant(uint32_t id, uint64_t entry_bytes, uint64_t offset, std::span<std::byte> dst) override;
};

// Plain host memory (no protection): for tests and for the engine outside enclaves.
std::shared_ptr<WeightStore> make_plain_weight_store();

struct StreamingOptions {
  std::shared_ptr<WeightStore> store;  // null: no streaming (every weight stays resident)
  // What the compiled model may keep in memory in the steady state: arena, scratchpad, weights
  // kept resident and the ring. Required when `store` is set.
  uint64_t budget_bytes = 0;
  // Weight buffers below this stay resident without being considered (ir::kMinDeferredBytes).
  uint64_t min_streamed_bytes = ir::kMinDeferredBytes;
  int ring_slots = 2;
  // Who decrypts: a loader thread working ahead of the steps (overlapping decryption with
  // computation), or the compute threads right before each step. Auto: the loader thread when the
  // machine has more cores than the model's compute threads.
  enum class Prefetch { kAuto, kBackground, kInline };
  Prefetch prefetch = Prefetch::kAuto;
  // What loading streamed weights may add to a run, as a fraction of its predicted compute time.
  // The planner keeps resident only as many weights as it takes to stay within this (Vessels' goal:
  // the smallest enclave that runs near native speed, leaving the rest of the shared EPC to other
  // enclaves), never more than the budget holds; if even a full budget cannot meet it, it keeps
  // what fits. 0: keep resident whatever fits (the fastest plan and the largest footprint).
  // Predictions use rates measured on this machine: a run's compute time is its FLOPs at
  // fp32_flops_per_second, and a streamed byte costs its load at the store's load_bytes_per_second,
  // as if no loading overlapped computation (measured on 2 cores, with the loads inline: within
  // about 30% of the extra time planned runs take, on the seven models of bench_vessels.py).
  // The default, 0.2, keeps planned mode's promise of latency within 1.3x of the plain engine with
  // room for that error.
  double max_loading_overhead = 0.2;
};

// `units` per second over the best of five timed calls of `run` (after an untimed one), measured
// once per process for each (`what`, `threads`) and remembered: how the machine rates below and the
// stores' load_bytes_per_second are measured. 0 (not remembered) when a call of `run` returns false.
double measured_rate(const std::string& what, int threads, uint64_t units, const std::function<bool()>& run);

// FP32 multiply-add throughput of this machine's matrix kernels on `threads` threads, in FLOP/s
// (a 512x512x512 oneDNN matmul, best of a few; measured once per thread count and process).
double fp32_flops_per_second(int threads);

// The decision for one weight buffer of one step, for `tenet inspect --epc` and tests.
struct WeightPlacement {
  int step = 0;
  size_t index = 0;  // owned weight index within the step's kernel
  uint64_t bytes = 0;
  bool streamed = false;
  bool in_pieces = false;        // streamed piece by piece (no ring slot)
  uint64_t resident_bytes = 0;   // of a weight streamed in pieces: its leading pieces kept resident
};

struct StreamingPlan {
  bool enabled = false;
  uint64_t budget_bytes = 0;
  uint64_t arena_bytes = 0;
  uint64_t scratchpad_bytes = 0;
  uint64_t resident_weight_bytes = 0;  // kernel weights kept in memory (incl. small ones)
  uint64_t constant_bytes = 0;         // graph constants read directly by kernels
  uint64_t streamed_weight_bytes = 0;  // loaded on every run
  uint64_t ring_slot_bytes = 0;
  int ring_slots = 0;
  uint64_t streamed_in_pieces_bytes = 0;  // of streamed_weight_bytes: taken piece by piece, no ring slot
  uint64_t piece_buffer_bytes = 0;        // one piece per compute thread
  uint64_t planned_peak_bytes = 0;     // arena + scratchpad + resident + constants + ring + piece buffers
  int tiled_layers = 0;                // layers split by the tiling pass
  // The loading-overhead bound (StreamingOptions::max_loading_overhead) and what it was held to:
  // the run's FLOPs and streamed bytes at the measured rates. 0 when the bound is off.
  double max_loading_overhead = 0;
  double predicted_compute_ms = 0;
  double predicted_loading_ms = 0;     // streamed bytes at the store's load rate
  uint64_t resident_cap_bytes = 0;     // resident weights the bound asked for at most (budget permitting)
  bool background_loading = false;     // a loader thread prefetches into the ring
  std::vector<WeightPlacement> placements;
};

// The ring slot size the tiling pass aims at for a budget: a quarter of it over `ring_slots`.
uint64_t ring_slot_target_bytes(uint64_t budget_bytes, int ring_slots);

}  // namespace tenet::cpu
