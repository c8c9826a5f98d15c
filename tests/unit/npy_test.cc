// Tests for src/core/npy.h: round trips of every dtype, files written by numpy, and hostile input.
#include "core/npy.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace tenet {
namespace {

// Written by numpy 1.24.2 (io.BytesIO, then the bytes dumped as hex).
// np.save(f, np.arange(6, dtype='<f4').reshape(2, 3) - 2.5)
constexpr uint8_t kNumpyF32x2x3V1[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73, 0x63,
    0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74,
    0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32, 0x2c, 0x20,
    0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0xc0, 0xbf, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x00, 0x3f,
    0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x20, 0x40,
};
// np.lib.format.write_array(f, np.array([1, -2, 3 << 40], dtype='<i8'), version=(2, 0))
constexpr uint8_t kNumpyI64x3V2[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x02, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64, 0x65,
    0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x69, 0x38, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
    0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x33,
    0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00,
};
// np.lib.format.write_array(f, np.array([[True, False], [False, True]]), version=(3, 0))
constexpr uint8_t kNumpyBool2x2V3[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x03, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64, 0x65,
    0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x7c, 0x62, 0x31, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
    0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32,
    0x2c, 0x20, 0x32, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x01, 0x00, 0x00, 0x01,
};
// np.save(f, np.float64(2.5))
constexpr uint8_t kNumpyF64ScalarV1[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73, 0x63,
    0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x38, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74,
    0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x29, 0x2c, 0x20,
    0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x40,
};

std::span<const std::byte> as_bytes(const uint8_t* p, size_t n) {
  return {reinterpret_cast<const std::byte*>(p), n};
}
std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// An .npy file with the given header dict (padded as numpy does) and data bytes.
std::string make_npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  size_t preamble = major == 1 ? 10 : 12;
  size_t unpadded = preamble + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  size_t n = header.size();
  out.push_back(static_cast<char>(n & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    out.push_back(static_cast<char>((n >> 24) & 0xff));
  }
  return out + header + data;
}

std::string f32_dict(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}

Status parse_status(const std::string& bytes) { return parse_npy(as_bytes(bytes), "hostile.npy").status(); }

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.data()), t.size_bytes());
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "tenet_npy_test_" + name; }

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A tensor of `dtype` and `shape` whose bytes follow a pattern (bools are 0/1).
Tensor patterned(DType dtype, Shape shape) {
  Tensor t = Tensor::zeros(dtype, std::move(shape)).value();
  auto* p = static_cast<uint8_t*>(t.data());
  for (size_t i = 0; i < t.size_bytes(); ++i) {
    p[i] = dtype == DType::kBool ? i % 3 == 0 : static_cast<uint8_t>(i * 37 + 11);
  }
  return t;
}

void expect_same(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dtype(), b.dtype());
  EXPECT_EQ(a.shape(), b.shape());
  EXPECT_EQ(bytes_of(a), bytes_of(b));
}

constexpr DType kAllDTypes[] = {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kInt64, DType::kInt32,
                                DType::kInt16,   DType::kInt8,    DType::kUint8,   DType::kBool};

TEST(NpyTest, RoundTripsEveryDtypeInMemoryAndThroughAFile) {
  for (DType dtype : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor t = patterned(dtype, {2, 3, 5});
    std::vector<std::byte> bytes = serialize_npy(t.view());
    ASSERT_FALSE(bytes.empty());
    auto parsed = parse_npy(bytes);
    ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
    expect_same(*parsed, t);

    std::string path = temp_path(std::string(dtype_name(dtype)) + ".npy");
    ASSERT_TRUE(write_npy(path, t.view()).ok());
    auto read = read_npy(path);
    ASSERT_TRUE(read.ok()) << read.status().to_string();
    expect_same(*read, t);
    std::remove(path.c_str());
  }
}

TEST(NpyTest, WritesNumpysHeaderAndAlignsDataTo64Bytes) {
  for (const Shape& shape : {Shape{}, Shape{7}, Shape{2, 3}, Shape{1, 2, 3, 4, 5, 6, 7, 8}}) {
    std::vector<std::byte> bytes = serialize_npy(patterned(DType::kFloat32, shape).view());
    ASSERT_GE(bytes.size(), 10u);
    size_t header_size = static_cast<size_t>(bytes[8]) | static_cast<size_t>(bytes[9]) << 8;
    EXPECT_EQ((10 + header_size) % 64, 0u);
    EXPECT_EQ(static_cast<char>(bytes[10 + header_size - 1]), '\n');
  }
  std::vector<std::byte> bytes = serialize_npy(patterned(DType::kFloat32, {2, 3}).view());
  std::string numpy_header(reinterpret_cast<const char*>(kNumpyF32x2x3V1) + 10, 60);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()) + 10, 60), numpy_header);
  bytes = serialize_npy(patterned(DType::kInt64, {3}).view());
  EXPECT_NE(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()).find("'shape': (3,), }"),
            std::string::npos);
}

TEST(NpyTest, ScalarsRoundTrip) {
  for (DType dtype : kAllDTypes) {
    Tensor t = patterned(dtype, {});
    auto parsed = parse_npy(serialize_npy(t.view()));
    ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
    EXPECT_TRUE(parsed->shape().empty());
    expect_same(*parsed, t);
  }
}

TEST(NpyTest, ZeroSizeDimsRoundTrip) {
  for (const Shape& shape : {Shape{0}, Shape{2, 0, 3}, Shape{0, 0}}) {
    Tensor t = Tensor::zeros(DType::kFloat32, shape).value();
    auto parsed = parse_npy(serialize_npy(t.view()));
    ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
    EXPECT_EQ(parsed->shape(), shape);
    EXPECT_EQ(parsed->size_bytes(), 0u);
    std::string path = temp_path("empty.npy");
    ASSERT_TRUE(write_npy(path, t.view()).ok());
    auto read = read_npy(path);
    ASSERT_TRUE(read.ok()) << read.status().to_string();
    EXPECT_EQ(read->shape(), shape);
    std::remove(path.c_str());
  }
}

TEST(NpyTest, ReadsFilesWrittenByNumpy) {
  auto f32 = parse_npy(as_bytes(kNumpyF32x2x3V1, sizeof(kNumpyF32x2x3V1)));
  ASSERT_TRUE(f32.ok()) << f32.status().to_string();
  EXPECT_EQ(f32->dtype(), DType::kFloat32);
  EXPECT_EQ(f32->shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f32->as<float>()[i], static_cast<float>(i) - 2.5f);

  auto i64 = parse_npy(as_bytes(kNumpyI64x3V2, sizeof(kNumpyI64x3V2)));
  ASSERT_TRUE(i64.ok()) << i64.status().to_string();
  EXPECT_EQ(i64->shape(), (Shape{3}));
  EXPECT_EQ(i64->to_int64_vector(), (std::vector<int64_t>{1, -2, int64_t{3} << 40}));

  auto b = parse_npy(as_bytes(kNumpyBool2x2V3, sizeof(kNumpyBool2x2V3)));
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(b->dtype(), DType::kBool);
  EXPECT_EQ(b->to_int64_vector(), (std::vector<int64_t>{1, 0, 0, 1}));

  auto scalar = parse_npy(as_bytes(kNumpyF64ScalarV1, sizeof(kNumpyF64ScalarV1)));
  ASSERT_TRUE(scalar.ok()) << scalar.status().to_string();
  EXPECT_TRUE(scalar->shape().empty());
  EXPECT_EQ(scalar->as<double>()[0], 2.5);

  // And back: tenet's bytes parse to the same tensor.
  auto again = parse_npy(serialize_npy(f32->view()));
  ASSERT_TRUE(again.ok());
  expect_same(*again, *f32);
}

TEST(NpyTest, AcceptsEquivalentHeaderSpellings) {
  const std::string four_floats(16, '\0');
  for (const std::string& dict : {
           std::string("{'descr': '=f4', 'fortran_order': False, 'shape': (4,), }"),
           std::string("{\"shape\": (2, 2), \"fortran_order\": False, \"descr\": \"<f4\"}"),
           std::string("{'descr':'<f4','fortran_order':False,'shape':(4,)}"),
           std::string("{ 'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 1 , 4 , ) , }"),
           std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (4L,), }"),  // Python 2 numpy
       }) {
    SCOPED_TRACE(dict);
    auto t = parse_npy(as_bytes(make_npy(dict, four_floats)));
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    EXPECT_EQ(t->numel(), 4);
  }
  for (const char* descr : {"|u1", "<u1", "=i1", "|b1", "|i1"}) {
    std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2,), }";
    auto t = parse_npy(as_bytes(make_npy(dict, std::string(2, '\1'))));
    EXPECT_TRUE(t.ok()) << descr << ": " << t.status().to_string();
  }
  auto v2 = parse_npy(as_bytes(make_npy(f32_dict("(1,)"), std::string(4, '\0'), 2)));
  EXPECT_TRUE(v2.ok()) << v2.status().to_string();
  auto v3 = parse_npy(as_bytes(make_npy(f32_dict("(1,)"), std::string(4, '\0'), 3)));
  EXPECT_TRUE(v3.ok()) << v3.status().to_string();
}

struct HostileCase {
  const char* name;
  std::string bytes;
  StatusCode code;
};

TEST(NpyTest, RejectsHostileInput) {
  const std::string good = make_npy(f32_dict("(2, 3)"), std::string(24, '\0'));
  std::string header_too_long("\x93NUMPY\x02\x00\x00\x00\x01\x00", 12);  // 65536-byte header
  header_too_long += std::string(100, ' ');
  std::string long_length_v1 = good.substr(0, 8) + std::string("\x00\x02", 2) + good.substr(10);  // 512
  std::string nul_in_header = good;
  nul_in_header[20] = '\0';

  const HostileCase cases[] = {
      {"empty", "", StatusCode::kDataLoss},
      {"truncated magic", good.substr(0, 4), StatusCode::kDataLoss},
      {"truncated preamble", good.substr(0, 9), StatusCode::kDataLoss},
      {"truncated header", good.substr(0, 40), StatusCode::kDataLoss},
      {"header length past the end", long_length_v1, StatusCode::kDataLoss},
      {"bad magic", "\x93NUMPX" + good.substr(6), StatusCode::kInvalidArgument},
      {"not npy at all", "PK\x03\x04 this is a zip file", StatusCode::kInvalidArgument},
      {"version 4.0", good.substr(0, 6) + std::string("\x04\x00", 2) + good.substr(8), StatusCode::kUnimplemented},
      {"version 1.1", good.substr(0, 6) + std::string("\x01\x01", 2) + good.substr(8), StatusCode::kUnimplemented},
      {"header too long", header_too_long, StatusCode::kOutOfRange},
      {"nul in header", nul_in_header, StatusCode::kInvalidArgument},
      {"huge shape", make_npy(f32_dict("(1125899906842624,)"), ""), StatusCode::kOutOfRange},
      {"dim beyond int64", make_npy(f32_dict("(99999999999999999999999999999,)"), ""), StatusCode::kOutOfRange},
      {"overflowing shape", make_npy(f32_dict("(1073741824, 1073741824, 1073741824)"), ""), StatusCode::kOutOfRange},
      {"overflowing product of small dims",
       make_npy(f32_dict("(65536, 65536, 65536, 65536, 65536)"), ""), StatusCode::kOutOfRange},
      {"rank 9", make_npy(f32_dict("(1, 1, 1, 1, 1, 1, 1, 1, 1)"), std::string(4, '\0')), StatusCode::kOutOfRange},
      {"negative dim", make_npy(f32_dict("(2, -3)"), ""), StatusCode::kInvalidArgument},
      {"short data", make_npy(f32_dict("(2, 3)"), std::string(23, '\0')), StatusCode::kDataLoss},
      {"no data", make_npy(f32_dict("(2, 3)"), ""), StatusCode::kDataLoss},
      {"trailing data", make_npy(f32_dict("(2, 3)"), std::string(25, '\0')), StatusCode::kInvalidArgument},
      {"fortran order",
       make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", std::string(24, '\0')),
       StatusCode::kUnimplemented},
      {"non-dict header", make_npy("[('descr', '<f4'), ('shape', (2, 3))]", std::string(24, '\0')),
       StatusCode::kInvalidArgument},
      {"garbage header", make_npy("\x01\xfe garbage )(", ""), StatusCode::kInvalidArgument},
      {"unterminated dict", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", ""),
       StatusCode::kInvalidArgument},
      {"unterminated string", make_npy("{'descr: '<f4'}", ""), StatusCode::kInvalidArgument},
      {"unterminated tuple", make_npy(f32_dict("(2, 3"), ""), StatusCode::kInvalidArgument},
      {"text after dict", make_npy(f32_dict("(2, 3)") + " x", std::string(24, '\0')), StatusCode::kInvalidArgument},
      {"missing shape", make_npy("{'descr': '<f4', 'fortran_order': False}", ""), StatusCode::kInvalidArgument},
      {"missing descr", make_npy("{'fortran_order': False, 'shape': ()}", ""), StatusCode::kInvalidArgument},
      {"duplicate key", make_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", ""),
       StatusCode::kInvalidArgument},
      {"unknown key", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", ""),
       StatusCode::kInvalidArgument},
      {"int is not a tuple", make_npy(f32_dict("(6)"), std::string(24, '\0')), StatusCode::kInvalidArgument},
      {"list is not a tuple", make_npy(f32_dict("[6]"), std::string(24, '\0')), StatusCode::kInvalidArgument},
      {"float dim", make_npy(f32_dict("(6.0,)"), std::string(24, '\0')), StatusCode::kInvalidArgument},
      {"leading zeros", make_npy(f32_dict("(06,)"), std::string(24, '\0')), StatusCode::kInvalidArgument},
      {"fortran_order not a bool", make_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': ()}", ""),
       StatusCode::kInvalidArgument},
      {"big-endian", make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': ()}", std::string(4, '\0')),
       StatusCode::kUnimplemented},
      {"complex", make_npy("{'descr': '<c8', 'fortran_order': False, 'shape': ()}", std::string(8, '\0')),
       StatusCode::kUnimplemented},
      {"structured", make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}", ""),
       StatusCode::kUnimplemented},
      {"'|' on a multi-byte type", make_npy("{'descr': '|f4', 'fortran_order': False, 'shape': ()}", ""),
       StatusCode::kInvalidArgument},
      {"junk descr", make_npy("{'descr': 'f4', 'fortran_order': False, 'shape': ()}", ""),
       StatusCode::kInvalidArgument},
      {"bool byte 2", make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", std::string("\x01\x02", 2)),
       StatusCode::kInvalidArgument},
  };
  for (const HostileCase& c : cases) {
    SCOPED_TRACE(c.name);
    Status s = parse_status(c.bytes);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), c.code) << s.to_string();
    EXPECT_NE(s.message().find("hostile.npy"), std::string::npos) << s.to_string();
  }
  ASSERT_TRUE(parse_npy(as_bytes(good)).ok());
}

TEST(NpyTest, FileErrorsNameTheFile) {
  std::string missing = temp_path("does_not_exist.npy");
  auto r = read_npy(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(missing), std::string::npos);

  std::string truncated = temp_path("truncated.npy");
  write_file(truncated, make_npy(f32_dict("(2, 3)"), std::string(20, '\0')));
  r = read_npy(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(truncated), std::string::npos) << r.status().to_string();

  // A shape of 2^39 floats in a tiny file fails on the size check, before any allocation.
  write_file(truncated, make_npy(f32_dict("(549755813888,)"), std::string(4, '\0')));
  r = read_npy(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);

  write_file(truncated, make_npy(f32_dict("(2, 3)"), std::string(28, '\0')));
  r = read_npy(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  write_file(truncated, std::string("\x93NUMPY\x01\x00\x76", 9));
  r = read_npy(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(truncated), std::string::npos);
  std::remove(truncated.c_str());

  Status w = write_npy(temp_path("no_such_dir/x.npy"), Tensor::scalar_int64(1).view());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.message().find("no_such_dir/x.npy"), std::string::npos);
}

TEST(NpyTest, RejectsInvalidViewsOnWrite) {
  int32_t value = 0;
  EXPECT_FALSE(write_npy(temp_path("bad.npy"), ConstTensorView(DType::kUndefined, {1}, &value)).ok());
  EXPECT_FALSE(write_npy(temp_path("bad.npy"), ConstTensorView(DType::kInt32, {-1}, &value)).ok());
  EXPECT_FALSE(write_npy(temp_path("bad.npy"), ConstTensorView(DType::kInt32, {2}, nullptr)).ok());
  EXPECT_TRUE(serialize_npy(ConstTensorView(DType::kInt32, {-1}, &value)).empty());
}

}  // namespace
}  // namespace tenet
