#include "core/npy.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

#include "core/safe_math.h"

namespace tenet {

static_assert(std::endian::native == std::endian::little,
              "npy.cc maps '<' and '=' to native byte order; a big-endian host needs byte swapping");

namespace {

constexpr char kMagic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
constexpr size_t kMagicSize = sizeof(kMagic);
constexpr size_t kVersionOffset = kMagicSize;          // major, minor
constexpr size_t kLengthOffset = kMagicSize + 2;       // little-endian header length
constexpr size_t kMaxPreambleSize = kLengthOffset + 4; // version 2.0 and 3.0
constexpr size_t kHeaderAlignment = 64;                // numpy.lib.format.ARRAY_ALIGN

// "'a'" for printable characters, "byte 0x93" otherwise: error messages never echo raw bytes.
std::string describe_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return fmt::format("'{}'", c);
  return fmt::format("byte 0x{:02x}", u);
}

struct Preamble {
  int major = 0;
  size_t dict_offset = 0;  // where the header dict starts
  size_t dict_size = 0;    // header length field: the dict, its padding and the final '\n'
};

// Parses magic, version and header length from the first bytes (up to kMaxPreambleSize).
Result<Preamble> parse_preamble(std::span<const std::byte> bytes, std::string_view source) {
  size_t magic_have = std::min(bytes.size(), kMagicSize);
  if (magic_have > 0 && std::memcmp(bytes.data(), kMagic, magic_have) != 0) {
    return invalid_argument("{}: not an .npy file (bad magic; expected \"\\x93NUMPY\")", source);
  }
  if (bytes.size() < kLengthOffset) {
    return data_loss("{}: truncated .npy preamble ({} bytes)", source, bytes.size());
  }
  auto major = static_cast<uint8_t>(bytes[kVersionOffset]);
  auto minor = static_cast<uint8_t>(bytes[kVersionOffset + 1]);
  if (major < 1 || major > 3 || minor != 0) {
    return unimplemented("{}: .npy format version {}.{} is not supported (expected 1.0, 2.0 or 3.0)", source,
                         major, minor);
  }
  size_t length_size = major == 1 ? 2 : 4;
  if (bytes.size() < kLengthOffset + length_size) {
    return data_loss("{}: truncated .npy preamble ({} bytes)", source, bytes.size());
  }
  size_t dict_size = 0;
  for (size_t i = 0; i < length_size; ++i) {
    dict_size |= static_cast<size_t>(static_cast<uint8_t>(bytes[kLengthOffset + i])) << (8 * i);
  }
  if (dict_size == 0) return invalid_argument("{}: .npy header is empty", source);
  if (dict_size > kMaxNpyHeaderSize) {
    return out_of_range("{}: .npy header of {} bytes exceeds the limit of {} bytes", source, dict_size,
                        kMaxNpyHeaderSize);
  }
  return Preamble{major, kLengthOffset + length_size, dict_size};
}

Result<DType> dtype_from_descr(std::string_view descr, std::string_view source) {
  auto bad = [&] { return invalid_argument("{}: .npy descr '{}' is not a valid dtype string", source, descr); };
  if (descr.size() < 2) return bad();
  char order = descr[0];
  std::string_view code = descr.substr(1);
  if (order != '<' && order != '>' && order != '|' && order != '=') return bad();
  struct Entry {
    std::string_view code;
    DType dtype;
  };
  static constexpr Entry kTable[] = {
      {"f4", DType::kFloat32}, {"f8", DType::kFloat64}, {"f2", DType::kFloat16},
      {"i8", DType::kInt64},   {"i4", DType::kInt32},   {"i2", DType::kInt16},
      {"i1", DType::kInt8},    {"u1", DType::kUint8},   {"b1", DType::kBool},
  };
  for (const Entry& e : kTable) {
    if (e.code != code) continue;
    if (dtype_size(e.dtype) == 1) return e.dtype;  // byte order is meaningless for one byte
    if (order == '<' || order == '=') return e.dtype;
    if (order == '>') {
      return unimplemented("{}: big-endian .npy data (descr '{}') is not supported; save it little-endian", source,
                           descr);
    }
    return invalid_argument("{}: .npy descr '{}': byte order '|' is invalid for a multi-byte type", source, descr);
  }
  // A well-formed type string (letter and digits) that tenet does not support, or junk.
  bool well_formed = code.size() >= 2 && std::isalpha(static_cast<unsigned char>(code[0]));
  for (char c : code.substr(1)) well_formed = well_formed && std::isdigit(static_cast<unsigned char>(c));
  if (!well_formed) return bad();
  return unimplemented(
      "{}: .npy dtype '{}' is not supported (supported: f4 f8 f2 i8 i4 i2 i1 u1 b1, little-endian)", source, descr);
}

// A strict parser for the header dict, a Python literal with exactly the keys 'descr' (a str),
// 'fortran_order' (a bool) and 'shape' (a tuple of non-negative ints), in any order, then
// whitespace only.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, int major, std::string_view source)
      : text_(text), major_(major), source_(source) {}

  Status parse(DType* dtype, Shape* shape) {
    skip_space();
    TENET_RETURN_IF_ERROR(expect('{', "the header to start a dict"));
    std::optional<DType> descr;
    std::optional<bool> fortran_order;
    std::optional<Shape> dims;
    while (true) {
      skip_space();
      if (peek() == '}') break;
      std::string key;
      TENET_RETURN_IF_ERROR(parse_string(&key));
      skip_space();
      TENET_RETURN_IF_ERROR(expect(':', "':' after a key"));
      skip_space();
      if (key == "descr") {
        if (descr) return error("duplicate key 'descr'");
        if (peek() == '[') return unimplemented("{}: structured .npy dtypes are not supported", source_);
        std::string value;
        TENET_RETURN_IF_ERROR(parse_string(&value));
        TENET_ASSIGN_OR_RETURN(descr, dtype_from_descr(value, source_));
      } else if (key == "fortran_order") {
        if (fortran_order) return error("duplicate key 'fortran_order'");
        bool value = false;
        TENET_RETURN_IF_ERROR(parse_bool(&value));
        fortran_order = value;
      } else if (key == "shape") {
        if (dims) return error("duplicate key 'shape'");
        Shape value;
        TENET_RETURN_IF_ERROR(parse_shape(&value));
        dims = std::move(value);
      } else {
        return error(fmt::format("unexpected key '{}' (expected 'descr', 'fortran_order', 'shape')", key));
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        return error_at("',' or '}' after a value");
      }
    }
    ++pos_;  // '}'
    skip_space();
    if (pos_ != text_.size()) return error_at("only whitespace after the dict");
    if (!descr) return error("missing key 'descr'");
    if (!fortran_order) return error("missing key 'fortran_order'");
    if (!dims) return error("missing key 'shape'");
    if (*fortran_order) {
      return unimplemented(
          "{}: .npy arrays in Fortran (column-major) order are not supported; save a C-ordered array "
          "(numpy.ascontiguousarray)",
          source_);
    }
    auto count = element_count(*dims);
    if (!count.ok()) {
      return Status(count.status().code(), fmt::format("{}: .npy shape: {}", source_, count.status().message()));
    }
    *dtype = *descr;
    *shape = std::move(*dims);
    return ok_status();
  }

 private:
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }

  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  Status error(std::string_view what) const {
    return invalid_argument("{}: malformed .npy header: {}", source_, what);
  }
  Status error_at(std::string_view expected) const {
    std::string found = at_end() ? "end of header" : describe_char(peek());
    return invalid_argument("{}: malformed .npy header at offset {}: expected {}, found {}", source_, pos_, expected,
                            found);
  }
  Status expect(char c, std::string_view expected) {
    if (peek() != c || at_end()) return error_at(expected);
    ++pos_;
    return ok_status();
  }

  // A single- or double-quoted string of printable ASCII, without escapes.
  Status parse_string(std::string* out) {
    char quote = peek();
    if (at_end() || (quote != '\'' && quote != '"')) return error_at("a quoted string");
    ++pos_;
    size_t start = pos_;
    while (!at_end() && peek() != quote) {
      auto u = static_cast<unsigned char>(peek());
      if (u < 0x20 || u >= 0x7f || u == '\\') return error_at("a printable character in a string");
      ++pos_;
    }
    if (at_end()) return error_at("a closing quote");
    *out = std::string(text_.substr(start, pos_ - start));
    ++pos_;
    return ok_status();
  }

  Status parse_bool(bool* out) {
    for (auto [word, value] : {std::pair<std::string_view, bool>{"True", true}, {"False", false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        *out = value;
        return ok_status();
      }
    }
    return error_at("True or False for 'fortran_order'");
  }

  // A non-negative decimal int as Python 3 writes it (no leading zeros); Python 2's 'L' suffix is
  // accepted in version 1.0 and 2.0 headers, as numpy does.
  Status parse_dim(int64_t* out) {
    bool negative = peek() == '-';
    if (negative) ++pos_;
    size_t start = pos_;
    int64_t value = 0;
    bool too_large = false;
    while (!at_end() && std::isdigit(static_cast<unsigned char>(peek()))) {
      int64_t digit = peek() - '0';
      if (!too_large && (!checked_mul(value, int64_t{10}, &value) || !checked_add(value, digit, &value) ||
                         value > kMaxTensorElements)) {
        too_large = true;
      }
      ++pos_;
    }
    size_t digits = pos_ - start;
    if (digits == 0) return error_at("an integer dimension");
    if (digits > 1 && text_[start] == '0') return error("a dimension has leading zeros");
    if (major_ < 3 && peek() == 'L') ++pos_;
    std::string_view literal = text_.substr(start, std::min<size_t>(digits, 24));
    if (negative) return invalid_argument("{}: .npy shape has a negative dimension -{}", source_, literal);
    if (too_large) {
      return out_of_range("{}: .npy shape has a dimension {}{} above the limit of 2^40", source_, literal,
                          digits > 24 ? "..." : "");
    }
    *out = value;
    return ok_status();
  }

  // A tuple: "()", "(n,)", "(n, m)", "(n, m,)". "(n)" is an int in Python, not a tuple.
  Status parse_shape(Shape* out) {
    TENET_RETURN_IF_ERROR(expect('(', "a tuple for 'shape'"));
    skip_space();
    bool trailing_comma = false;
    while (peek() != ')') {
      if (out->size() >= static_cast<size_t>(kMaxRank)) {
        return out_of_range("{}: .npy shape has more than {} dimensions", source_, kMaxRank);
      }
      int64_t dim = 0;
      TENET_RETURN_IF_ERROR(parse_dim(&dim));
      out->push_back(dim);
      skip_space();
      trailing_comma = peek() == ',';
      if (trailing_comma) {
        ++pos_;
        skip_space();
      } else if (peek() != ')') {
        return error_at("',' or ')' in 'shape'");
      }
    }
    ++pos_;
    if (out->size() == 1 && !trailing_comma) return error("'shape' (n) is an int, not a tuple; expected (n,)");
    return ok_status();
  }

  std::string_view text_;
  size_t pos_ = 0;
  int major_;
  std::string_view source_;
};

struct Layout {
  DType dtype = DType::kUndefined;
  Shape shape;
  size_t data_offset = 0;
  size_t data_size = 0;  // bytes the header announces
};

// Parses everything up to the data from `prefix` (the first bytes of the file, at least the
// preamble and the header when the file has them).
Result<Layout> parse_layout(std::span<const std::byte> prefix, std::string_view source) {
  TENET_ASSIGN_OR_RETURN(Preamble pre, parse_preamble(prefix.first(std::min(prefix.size(), kMaxPreambleSize)), source));
  if (prefix.size() < pre.dict_offset + pre.dict_size) {
    return data_loss("{}: truncated .npy header: {} bytes announced, {} present", source, pre.dict_size,
                     prefix.size() - pre.dict_offset);
  }
  std::string_view text(reinterpret_cast<const char*>(prefix.data()) + pre.dict_offset, pre.dict_size);
  Layout layout;
  TENET_RETURN_IF_ERROR(HeaderParser(text, pre.major, source).parse(&layout.dtype, &layout.shape));
  TENET_ASSIGN_OR_RETURN(layout.data_size, byte_size(layout.dtype, layout.shape));
  layout.data_offset = pre.dict_offset + pre.dict_size;
  return layout;
}

Status check_data_size(const Layout& layout, size_t available, std::string_view source) {
  if (available < layout.data_size) {
    return data_loss("{}: truncated .npy data: {} {} needs {} bytes, {} present", source, dtype_name(layout.dtype),
                     shape_to_string(layout.shape), layout.data_size, available);
  }
  if (available > layout.data_size) {
    return invalid_argument("{}: {} trailing bytes after the .npy data ({} {} needs {} bytes)", source,
                            available - layout.data_size, dtype_name(layout.dtype), shape_to_string(layout.shape),
                            layout.data_size);
  }
  return ok_status();
}

// Bytes other than 0 and 1 in a bool tensor would be undefined behaviour when read as C++ bool.
Status check_bools(const Tensor& t, std::string_view source) {
  if (t.dtype() != DType::kBool) return ok_status();
  const auto* p = t.as<uint8_t>();
  for (size_t i = 0; i < t.size_bytes(); ++i) {
    if (p[i] > 1) return invalid_argument("{}: bool element {} has byte value {} (expected 0 or 1)", source, i, p[i]);
  }
  return ok_status();
}

const char* descr_of(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "<f4";
    case DType::kFloat64: return "<f8";
    case DType::kFloat16: return "<f2";
    case DType::kInt64: return "<i8";
    case DType::kInt32: return "<i4";
    case DType::kInt16: return "<i2";
    case DType::kInt8: return "|i1";
    case DType::kUint8: return "|u1";
    case DType::kBool: return "|b1";
    case DType::kUndefined: return nullptr;
  }
  return nullptr;
}

Result<size_t> validate_view(const ConstTensorView& t) {
  if (descr_of(t.dtype) == nullptr) return invalid_argument("cannot write a tensor of dtype {}", dtype_name(t.dtype));
  TENET_ASSIGN_OR_RETURN(size_t bytes, byte_size(t.dtype, t.shape));
  if (bytes > 0 && t.data == nullptr) return invalid_argument("tensor {} has no data", shape_to_string(t.shape));
  return bytes;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

Status io_error(std::string_view what, const std::string& path, int err) {
  if (err == ENOENT) return not_found("{}: {}: {}", path, what, std::strerror(err));
  return invalid_argument("{}: {}: {}", path, what, std::strerror(err));
}

}  // namespace

Result<Tensor> parse_npy(std::span<const std::byte> bytes, std::string_view source_name) {
  TENET_ASSIGN_OR_RETURN(Layout layout, parse_layout(bytes, source_name));
  TENET_RETURN_IF_ERROR(check_data_size(layout, bytes.size() - layout.data_offset, source_name));
  auto tensor = Tensor::from_bytes(layout.dtype, std::move(layout.shape), bytes.subspan(layout.data_offset));
  if (!tensor.ok()) return tensor.status().with_context(std::string(source_name));
  TENET_RETURN_IF_ERROR(check_bools(*tensor, source_name));
  return tensor;
}

Result<Tensor> read_npy(const std::string& path) {
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) return io_error("cannot open .npy file", path, errno);
  struct stat st {};
  if (fstat(fileno(file.get()), &st) != 0) return io_error("cannot stat .npy file", path, errno);
  if (!S_ISREG(st.st_mode)) return invalid_argument("{}: not a regular file", path);
  auto file_size = static_cast<size_t>(st.st_size);

  // Read the preamble and the header; nothing larger than kMaxNpyHeaderSize is allocated until the
  // header's data size has been checked against the file's size.
  std::vector<std::byte> prefix(std::min(file_size, kMaxPreambleSize));
  if (std::fread(prefix.data(), 1, prefix.size(), file.get()) != prefix.size()) {
    return data_loss("{}: cannot read the .npy preamble (file changed while reading?)", path);
  }
  TENET_ASSIGN_OR_RETURN(Preamble pre, parse_preamble(prefix, path));
  size_t header_end = std::min(file_size, pre.dict_offset + pre.dict_size);
  size_t have = prefix.size();
  prefix.resize(std::max(have, header_end));
  if (header_end > have &&
      std::fread(prefix.data() + have, 1, header_end - have, file.get()) != header_end - have) {
    return data_loss("{}: cannot read the .npy header (file changed while reading?)", path);
  }
  prefix.resize(header_end);
  TENET_ASSIGN_OR_RETURN(Layout layout, parse_layout(prefix, path));
  TENET_RETURN_IF_ERROR(check_data_size(layout, file_size - layout.data_offset, path));

  auto tensor = Tensor::zeros(layout.dtype, std::move(layout.shape));
  if (!tensor.ok()) return tensor.status().with_context(path);
  if (std::fseek(file.get(), static_cast<long>(layout.data_offset), SEEK_SET) != 0) {
    return io_error("cannot seek in .npy file", path, errno);
  }
  // Through a bounce buffer: tensor storage may be an enclave heap whose non-resident pages the
  // kernel cannot write into (read() would fail with EFAULT; user-space stores fault them in).
  size_t got = 0;
  {
    std::vector<std::byte> chunk(std::min<size_t>(layout.data_size, size_t{1} << 20));
    auto* dst = static_cast<std::byte*>(tensor->data());
    while (got < layout.data_size) {
      const size_t n = std::fread(chunk.data(), 1, std::min(chunk.size(), layout.data_size - got), file.get());
      if (n == 0) break;
      std::memcpy(dst + got, chunk.data(), n);
      got += n;
    }
  }
  if (got != layout.data_size) {
    return data_loss("{}: .npy data ended after {} of {} bytes (file changed while reading?)", path, got,
                     layout.data_size);
  }
  if (std::fgetc(file.get()) != EOF) {
    return invalid_argument("{}: trailing bytes after the .npy data (file changed while reading?)", path);
  }
  TENET_RETURN_IF_ERROR(check_bools(*tensor, path));
  return tensor;
}

std::vector<std::byte> serialize_npy(ConstTensorView t) {
  auto bytes = validate_view(t);
  if (!bytes.ok()) return {};

  std::string dims;
  for (int64_t d : t.shape) dims += fmt::format("{}, ", d);
  if (t.shape.size() > 1) dims.resize(dims.size() - 2);  // "(2, 3)"; "(3,)" keeps its comma
  else if (t.shape.size() == 1) dims.pop_back();
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr_of(t.dtype), dims);
  // Version 1.0: pad with spaces so that the data starts 64-byte aligned, then '\n'.
  size_t unpadded = kMagicSize + 2 + 2 + header.size() + 1;
  header.append(align_up(unpadded, kHeaderAlignment) - unpadded, ' ');
  header.push_back('\n');

  std::vector<std::byte> out;
  out.reserve(kMagicSize + 4 + header.size() + *bytes);
  auto append = [&out](const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  append(kMagic, kMagicSize);
  const uint8_t version_and_length[4] = {1, 0, static_cast<uint8_t>(header.size() & 0xff),
                                         static_cast<uint8_t>(header.size() >> 8)};
  append(version_and_length, sizeof(version_and_length));
  append(header.data(), header.size());
  if (*bytes > 0) append(t.data, *bytes);
  return out;
}

Status write_npy(const std::string& path, ConstTensorView t) {
  auto valid = validate_view(t);
  if (!valid.ok()) return valid.status().with_context(fmt::format("writing {}", path));
  std::vector<std::byte> bytes = serialize_npy(t);
  File file(std::fopen(path.c_str(), "wb"));
  if (!file) return io_error("cannot create .npy file", path, errno);
  if (std::fwrite(bytes.data(), 1, bytes.size(), file.get()) != bytes.size()) {
    return io_error("cannot write .npy file", path, errno);
  }
  if (std::fclose(file.release()) != 0) return io_error("cannot write .npy file", path, errno);
  return ok_status();
}

}  // namespace tenet
