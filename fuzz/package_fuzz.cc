// libFuzzer target for the sealed-package reader (seal/package.h), the hostile-input surface an
// enclave parses from untrusted disk.
//
// Input whose first byte is odd: the rest is an ONNX model; seal it under a fixed key and load it
// back, with 64-byte parts. Whatever seals must load (a property check on the writer, on part
// chunks and on the post-decryption protobuf parsing and import).
// Otherwise the input is a package: parse header and manifest (no key), hash chunks, and try the
// fixed key on every chunk and on load_graph. Seeds in fuzz/corpus/package_fuzz/ are sealed with
// that key (tenet seal --key with kFuzzKeyHex), so mutations reach the MAC and GCM checks.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "seal/package.h"

namespace {
// 32 bytes 0x5e: "5e5e...5e". The seeds' key file holds this hex.
const tenet::crypto::Bytes kFuzzKey(tenet::seal::kModelKeyBytes, 0x5e);
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const tenet::crypto::ByteSpan input(data, size);
  if (data[0] & 1) {
    tenet::seal::PackageInfo info;
    // Parts of 64 bytes: any initializer over 16 floats is sealed as part chunks and read back
    // part by part.
    tenet::seal::SealOptions options{"fuzz", "1"};
    options.part_bytes = 64;
    auto package = tenet::seal::seal_model_to_bytes(input.subspan(1), kFuzzKey, options, &info);
    if (!package.ok()) return 0;
    auto reader = tenet::seal::PackageReader::from_bytes(*package);
    if (!reader.ok() || reader->info().digest != info.digest) std::abort();
    auto graph = reader->load_graph(kFuzzKey);
    if (!graph.ok()) std::abort();  // a model that sealed must load
    return 0;
  }
  auto reader = tenet::seal::PackageReader::from_bytes(input);
  if (!reader.ok()) return 0;
  (void)reader->verify_ciphertext_hashes();
  if (!reader->check_key(kFuzzKey).ok()) return 0;
  for (uint32_t i = 0; i < reader->chunk_count() && i < 16; ++i) (void)reader->read_chunk(i, kFuzzKey);
  (void)reader->load_graph(kFuzzKey);
  return 0;
}
