// CPU kernels: the executable form of one graph node (or of a layout conversion between nodes).
//
// Life cycle (XNNPACK's create -> reshape -> setup -> run, oneDNN's primitive descriptors):
//   1. A factory builds the kernel for a node from the layouts its inputs currently have. The
//      kernel states the layout it requires for each input (the compiler inserts reorders where
//      they differ) and the layout of each output (oneDNN picks blocked layouts for
//      convolutions; they stay blocked through the ops that accept them, with no reorder per
//      layer), and the scratchpad bytes it needs.
//   2. The compiler plans the arena, then bind() gives the kernel the addresses of its inputs,
//      outputs and the shared scratchpad. Nothing is allocated after this point.
//   3. execute() runs it. Kernels of one compiled model run one at a time on one stream.
//
// Implementations are tried in order, the plain reference last (oneDNN's
// cpu_convolution_list.cpp): a factory returns nullptr when it does not support the node.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/status.h"
#include "core/tensor.h"
#include "engine/ir/graph.h"

namespace tenet::cpu {

// Where a value lives and how its bytes are arranged. For float32 values `md` is always set:
// a plain (row-major) or a oneDNN blocked descriptor. Other dtypes are always plain and have an
// empty md.
struct Layout {
  DType dtype = DType::kUndefined;
  Shape shape;
  dnnl::memory::desc md;
  bool is_plain() const;
  size_t size_bytes() const;
  std::string describe() const;  // "plain", "nChw8c", "blocked"
  bool operator==(const Layout& other) const;
};

Layout plain_layout(DType dtype, const Shape& shape);
dnnl::memory::dims to_dims(const Shape& shape);
// A oneDNN plain descriptor (row-major strides) for float32.
dnnl::memory::desc plain_md(const Shape& shape);
// The named 4-D blocked format of a layout (nChw8c, nChw16c, nhwc, nChw4c), or `undef`.
dnnl::memory::format_tag blocked_tag(const Layout& l);
// A float32 layout of `shape` in format `tag`.
Layout tagged_layout(const Shape& shape, dnnl::memory::format_tag tag);

struct KernelInputs {
  const ir::Graph& graph;
  const ir::Node& node;
  std::vector<Layout> input_layouts;  // current layouts of the node's inputs (absent: dtype kUndefined)
  dnnl::engine& engine;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual const char* name() const = 0;
  // Called once after planning. `inputs`/`outputs` parallel the node's inputs/outputs (nullptr
  // for absent ones); `scratchpad` has at least scratchpad_bytes().
  virtual Status bind(std::span<void* const> inputs, std::span<void* const> outputs, void* scratchpad) = 0;
  virtual Status execute(dnnl::stream& stream) = 0;

  // Weight streaming (weight_streaming.h): the constant buffers the kernel owns (weights
  // reordered into its layout, biases), which a memory-bounded model may move out of enclave
  // memory between runs and bring back into a ring slot just before execute().
  virtual size_t owned_weight_count() const { return 0; }
  virtual std::span<std::byte> owned_weight(size_t i) { return {}; }
  // Points owned weight i at `data` (same size and layout) for the following execute() calls.
  virtual void set_owned_weight_data(size_t i, void* data) {}
  // Drops the kernel's own storage of weight i (after a copy was taken); set_owned_weight_data
  // must be called before the next execute().
  virtual void release_owned_weight(size_t i) {}
  // False when execute() never reads node input i through the bound address (it uses its own
  // copy): a constant input the kernel copied need not stay in memory.
  virtual bool reads_input(size_t i) const { return true; }
  // The node input whose constant bytes owned weight i is, unchanged (shared with the graph, not
  // a reordered copy), or -1.
  virtual int owned_weight_input(size_t i) const { return -1; }

  // Streaming piece by piece: a kernel that reads owned weight i exactly once, in independent
  // pieces (a matrix-vector product reads whole rows), returns the piece size it wants (a multiple
  // of what one unit of work reads); 0 when the weight must be whole in memory. A streamed model
  // then never loads that weight into a ring slot: execute_pieces() runs the kernel with `load`
  // giving the address of piece p's bytes, either in resident memory or decrypted into `buffer`
  // (which the kernel carves out of `scratch`: pieces_scratch_bytes() for `threads` threads), and
  // computes exactly what execute() computes with the whole weight.
  // A kernel whose weight rows (float32, k each) are only needed as dot products with one input
  // row may first ask `dot` for piece p: true when it wrote each row's 64 partial sums into `lanes`
  // (WeightStore::dot_piece: the store decrypts the piece without writing it to memory), false
  // when the piece must be loaded instead (resident, or the store cannot). `dot` may be empty.
  using PieceLoader = std::function<Result<const std::byte*>(uint64_t piece, std::span<std::byte> buffer)>;
  using PieceDot = std::function<Result<bool>(uint64_t piece, const float* x, int64_t k, std::span<float> lanes)>;
  virtual uint64_t weight_piece_bytes(size_t i) const { return 0; }
  virtual size_t pieces_scratch_bytes(size_t i, int threads) const { return 0; }
  virtual Status execute_pieces(dnnl::stream& stream, size_t i, const PieceLoader& load, const PieceDot& dot,
                                std::span<std::byte> scratch) {
    return unimplemented("{}: no piecewise execution", name());
  }

  // Filled by the factory.
  std::vector<Layout> required_inputs;  // per node input; must equal the layout at bind time
  std::vector<Layout> outputs;          // per node output
  // For each output, the index of an input whose buffer it may share (in place), or -1.
  std::vector<int> in_place;
  size_t scratchpad_bytes = 0;
};

using KernelFactory = Result<std::unique_ptr<Kernel>> (*)(KernelInputs& in);

// Matrix-vector products (gemv_kernel.cc): Gemm / MatMul whose input is one row and whose weight
// is a constant matrix (batch-1 classifiers: AlexNet's and VGG's fc layers). tenet's own kernel,
// because a memory-bounded model streams such weights piece by piece, decrypting each piece into
// L2 just before its rows are used, and must compute bit for bit what the resident kernel
// computes. gemv_applicable() says whether make_gemv_kernel() takes the node (after shape
// inference).
bool gemv_applicable(const ir::Graph& g, const ir::Node& n);
// Whether make_gemv_kernel() would take the node's weight (input 1) as its owned weight 0 byte for
// byte ([N, K], alpha 1). Such a weight, when it is a deferred constant not in memory (ir/graph.h),
// is not materialized: the kernel is built without it (owned_weight_input(0) == 1, no data) and
// the compiler copies it from the graph's constant store into the weight store piece by piece.
bool gemv_shares_weight(const ir::Graph& g, const ir::Node& n);
Result<std::unique_ptr<Kernel>> make_gemv_kernel(KernelInputs& in);

// oneDNN-backed kernels (dnnl_kernels.cc); each returns nullptr if the node is not supported.
Result<std::unique_ptr<Kernel>> make_dnnl_kernel(KernelInputs& in);
// The plain reference kernel for any op in the operator table (reference_kernel.cc).
Result<std::unique_ptr<Kernel>> make_reference_kernel(KernelInputs& in);
// Layout conversion from `src` to `dst` (same dims).
Result<std::unique_ptr<Kernel>> make_reorder_kernel(const Layout& src, const Layout& dst, dnnl::engine& engine);

}  // namespace tenet::cpu
