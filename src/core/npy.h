// NumPy .npy files: the tensors that cross tenet's command line (inputs, outputs, references).
//
// Implements the NPY format, versions 1.0, 2.0 and 3.0 (numpy/doc/neps/nep-0001-npy-format.rst,
// numpy.lib.format): the magic "\x93NUMPY", a major and minor version byte, a little-endian
// header length (2 bytes in 1.0, 4 bytes in 2.0 and 3.0), a header that is a Python dict literal
//
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//
// padded with spaces and a final '\n', then the raw array bytes in C order.
//
// Supported: descr '<f4' '<f8' '<f2' '<i8' '<i4' '<i2' '|i1' '|u1' '|b1' ('=' is accepted for
// native little-endian; 1-byte types accept any byte-order mark), fortran_order False, any shape
// tuple of rank <= kMaxRank including () for scalars and 0-size dims. Big-endian data, Fortran
// order and other dtypes (complex, unsigned wider than a byte, structured) are kUnimplemented.
//
// The parser treats its input as hostile: the header is bounded (kMaxNpyHeaderSize, as numpy's
// own reader), the dict is parsed strictly (exact keys, Python literal syntax, nothing else), dims
// are validated with element_count() before anything is allocated, and the data must have exactly
// the size the header announces (short: kDataLoss; longer: kInvalidArgument). Bool elements must
// be 0 or 1. Every error names the file (or, for parse_npy, the source name it is given).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace tenet {

// Largest header (the dict and its padding) accepted, in bytes; numpy's reader uses the same.
inline constexpr size_t kMaxNpyHeaderSize = 10000;

// Reads a whole .npy file. The data is read straight into the tensor, after the header has been
// checked against the file size, so a hostile shape cannot make this allocate more than the file.
Result<Tensor> read_npy(const std::string& path);

// Parses .npy bytes held in memory. `source_name` only labels error messages.
Result<Tensor> parse_npy(std::span<const std::byte> bytes, std::string_view source_name = "npy data");

// Writes `t` as a version 1.0 .npy file (header padded to 64 bytes, as numpy writes it); error if
// the view is invalid (undefined dtype, bad shape, null data with a non-zero size) or on I/O.
Status write_npy(const std::string& path, ConstTensorView t);

// The .npy bytes of `t`. Precondition: `t` is valid as write_npy checks; an invalid view yields an
// empty vector (which parse_npy rejects).
std::vector<std::byte> serialize_npy(ConstTensorView t);

}  // namespace tenet
