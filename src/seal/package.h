// Sealed model packages: an ONNX model encrypted per layer under a model key, for untrusted disk.
//
// What is protected. The model owner runs `tenet seal` on a trusted machine. The package it
// writes lives on the operator's disk (untrusted), and is decrypted only inside an attested
// enclave that obtained the model key from the owner's key broker (keybroker/). Encrypted: every
// weight, and the graph structure itself (operators, attributes, names, Constant nodes), since
// architectures can be private. Visible in plaintext: the model name and version the owner chose,
// the number of chunks and each chunk's size (so the per-layer weight sizes; padding them is a
// later option), and the format version.
//
// Layout (all integers little-endian; format version 2, which reads version 1 packages too):
//
//   header, 64 bytes
//     0  magic "TENETPKG"            8
//     8  u32 format_version (= 2; 1 before part chunks existed)
//    12  u32 header_size   (= 64)
//    16  package_id                  16 random bytes, fresh per package
//    32  u32 chunk_count             1 .. kMaxChunks
//    36  u32 manifest_size           bytes of the manifest below, MAC included
//    40  u64 data_offset             = 64 + manifest_size: first chunk
//    48  u64 file_size               the whole file; nothing may follow the last chunk
//    56  u64 reserved (= 0)
//   manifest, manifest_size bytes
//     u32 name_size, name            printable ASCII, <= kMaxNameBytes
//     u32 version_size, version      printable ASCII, <= kMaxVersionBytes
//     key_check                      32: HKDF(model_key, package_id, "tenet-seal/v1 key-check")
//     chunk_count entries of 76 bytes:
//       u32 kind (1 graph, 2 weights, 3 weight part), u32 reserved (= 0), u64 offset, u64 size (ciphertext
//       and tag), u64 plaintext_size, iv[12], sha256(ciphertext and tag)[32]
//     manifest_mac                   32: HMAC-SHA256(K_mac, header || manifest before the MAC)
//   chunks, back to back in index order from data_offset to file_size
//
// Chunk 0 is the graph: the ONNX ModelProto with every initializer removed (its metadata_props
// also map weight chunk i to its layer as "tenet.seal.chunk.<i>" = "<node index>:<node name>").
// Chunks 1.. are the weights per layer: walking the nodes in topological order, all initializers
// a node consumes that no earlier node consumed form one chunk (an ONNX GraphProto holding only
// `initializer`); initializers no node consumes form a last chunk. Nodes without new
// initializers make no chunk. An initializer whose raw data exceeds the part size (SealOptions::
// part_bytes, 16 MiB by default) is written without its data, marked as ONNX external data at
// location "tenet-seal-parts" with its byte length, and its raw bytes follow its weights chunk as
// part chunks of at most the part size, in order (one run of parts per such initializer, in the
// order the chunk lists them). So no chunk's plaintext exceeds the part size or one layer's other
// initializers, and loading never holds a whole large layer: VGG16's fc6 (411 MB) is 25 parts,
// deferred into the enclave's sealed store one part at a time.
//
// Keys: K_enc and K_mac are HKDF-SHA256(model_key, salt = package_id, info = "tenet-seal/v1
// chunk-encryption" / "tenet-seal/v1 manifest-mac"), so packages sealed under one model key
// still use unrelated keys. Chunk i is AES-256-GCM under K_enc with a fresh random IV and
// AAD = "tenet-seal/v1 chunk" || package_id || u32 i || u32 chunk_count || u32 kind ||
// u64 plaintext_size || u64 offset: a chunk that is flipped, swapped, reordered, duplicated,
// truncated or taken from another package fails authentication, and so does a manifest edit
// (the MAC) even before the chunk hashes are compared.
//
// Package digest = SHA-256(bytes [0, data_offset)) = SHA-256(header || manifest || MAC). The
// manifest lists every chunk's ciphertext hash, so the digest commits to the whole file. It is
// what `tenet seal` prints, what an enclave carries in its attestation claims and what the model
// owner's policy pins.
//
// Reading. The file is hostile input: PackageReader::open copies the header and manifest into
// memory and validates every count, size and offset (overflow-checked, against the real file
// size) before anything else uses them; it needs no key. Chunks are read one at a time, copied
// into memory first, then checked (hash, then GCM) and decrypted into SecretBytes, which wipe
// themselves. Wrong key and tampering are kDataLoss naming the chunk.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "crypto/crypto.h"
#include "engine/ir/graph.h"
#include "engine/onnx/importer.h"
#include "seal/secret.h"

namespace tenet::seal {

inline constexpr size_t kModelKeyBytes = 32;
inline constexpr uint32_t kPackageFormatVersion = 2;
inline constexpr uint32_t kOldestPackageFormatVersion = 1;
inline constexpr uint64_t kDefaultPartBytes = uint64_t{16} << 20;
// The external-data location that marks an initializer sealed as part chunks.
inline constexpr const char* kPartsLocation = "tenet-seal-parts";
inline constexpr size_t kPackageHeaderBytes = 64;
inline constexpr size_t kPackageIdBytes = 16;
inline constexpr size_t kManifestEntryBytes = 76;
inline constexpr uint32_t kMaxChunks = 1u << 20;
inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxVersionBytes = 64;
// One chunk's plaintext may not exceed what the ONNX importer accepts for a whole model.
inline constexpr uint64_t kMaxChunkPlaintextBytes = uint64_t{2} << 30;

using PackageId = std::array<uint8_t, kPackageIdBytes>;

enum class ChunkKind : uint32_t { kGraph = 1, kWeights = 2, kWeightPart = 3 };
const char* chunk_kind_name(ChunkKind kind);

struct SealOptions {
  std::string model_name;  // plaintext in the manifest; printable ASCII, <= kMaxNameBytes
  std::string version;     // plaintext in the manifest; printable ASCII, <= kMaxVersionBytes
  uint64_t part_bytes = kDefaultPartBytes;  // initializers with more raw bytes are sealed in parts of this size (> 0)
};

struct ChunkInfo {
  ChunkKind kind = ChunkKind::kWeights;
  uint64_t offset = 0;          // in the file
  uint64_t size = 0;            // ciphertext and tag
  uint64_t plaintext_size = 0;
  crypto::Sha256Digest ciphertext_sha256{};
};

struct PackageInfo {
  PackageId package_id{};
  uint32_t format_version = 0;
  std::string model_name;
  std::string version;
  std::vector<ChunkInfo> chunks;  // chunks[0] is the graph
  uint64_t file_size = 0;
  crypto::Sha256Digest digest{};  // the package digest (see above)

  std::string digest_hex() const { return crypto::to_hex(digest); }
  uint64_t weight_plaintext_bytes() const;  // sum over the weight and part chunks
};

// A fresh random model key (32 bytes).
Result<SecretBytes> generate_model_key();
// Key files hold the key as 64 hex characters and a newline (raw 32-byte files are also read).
Result<SecretBytes> read_model_key_file(const std::string& path);
// Written atomically with mode 0600.
Status write_model_key_file(const std::string& path, const SecretBytes& key);

struct ChunkPlaintext {
  ChunkKind kind = ChunkKind::kWeights;
  SecretBytes bytes;  // chunk 0: ModelProto without initializers; weights: GraphProto{initializer}; part: raw bytes
};

// Seals an ONNX model (serialized ModelProto) into package bytes. The model is imported first, so
// a model tenet cannot load is refused at sealing time, not in the enclave. `info` may be null.
Result<Bytes> seal_model_to_bytes(crypto::ByteSpan onnx_model, crypto::ByteSpan model_key,
                                  const SealOptions& options, PackageInfo* info = nullptr);
// The writer under seal_model_to_bytes: encrypts chunks as given, in order, and writes the header
// and manifest. It checks nothing about their contents (the reader does): for tools that have cut a
// model themselves, and for tests that need authentic packages of any structure.
Result<Bytes> seal_chunks_to_bytes(std::vector<ChunkPlaintext> chunks, crypto::ByteSpan model_key, const SealOptions& options,
                                   PackageInfo* info = nullptr);
// Same, written to `out_path` (atomically, mode 0644: the package is ciphertext). Returns the
// package's info (digest, chunks).
Result<PackageInfo> seal_model(crypto::ByteSpan onnx_model, const std::string& out_path,
                               crypto::ByteSpan model_key, const SealOptions& options);
Result<PackageInfo> seal_model_file(const std::string& onnx_path, const std::string& out_path,
                                    crypto::ByteSpan model_key, const SealOptions& options);


// Reads a sealed package. Thread-compatible: one reader per thread, or external locking.
class PackageReader {
 public:
  ~PackageReader();
  PackageReader(PackageReader&&) noexcept;
  PackageReader& operator=(PackageReader&&) noexcept;

  // Validates the header and manifest (no key needed). kNotFound if the file cannot be opened,
  // kDataLoss / kOutOfRange naming the field for anything malformed, truncated or oversized.
  static Result<PackageReader> open(const std::string& path);
  // Same over bytes already in memory (copied).
  static Result<PackageReader> from_bytes(crypto::ByteSpan package);

  const PackageInfo& info() const { return info_; }
  uint32_t chunk_count() const { return static_cast<uint32_t>(info_.chunks.size()); }

  // Hashes every chunk's ciphertext against the manifest (no key needed; the untrusted host can
  // check a package before launching an enclave on it). kDataLoss naming the first bad chunk.
  Status verify_ciphertext_hashes() const;
  // Checks the key against the package (key check value, then the manifest MAC). kDataLoss
  // "wrong model key" or "manifest ... edited".
  Status check_key(crypto::ByteSpan model_key) const;
  // Decrypts one chunk into enclave memory: checks the key and manifest MAC, reads the chunk,
  // compares its hash, then opens it. kDataLoss naming the chunk on any mismatch.
  Result<ChunkPlaintext> read_chunk(uint32_t index, crypto::ByteSpan model_key) const;
  // Decrypts the chunks one at a time and imports them as they come: chunk 0 (the graph), then
  // each weight chunk's initializers; each chunk's plaintext and parsed tensors are wiped before
  // the next chunk is read, so no more than one chunk's plaintext is in memory at a time. With
  // import.constant_store (bounded loading, ir/graph.h) the large initializers are deferred into
  // the store as they are read, so the graph does not hold the model's weights either; an
  // initializer sealed in parts goes into the store part by part. The graph equals an import of
  // the whole ONNX model, constant for constant.
  Result<ir::Graph> load_graph(crypto::ByteSpan model_key, const onnx_import::ImportOptions& import = {}) const;

 private:
  struct Source;
  PackageReader();
  static Result<PackageReader> parse(std::unique_ptr<Source> source);
  Result<ChunkPlaintext> read_chunk_after_key_check(uint32_t index, crypto::ByteSpan k_enc) const;
  Result<ir::Graph> import_by_chunk(crypto::ByteSpan k_enc, const onnx_import::ImportOptions& import) const;
  class PartCursor;

  std::unique_ptr<Source> source_;
  PackageInfo info_;
  Bytes metadata_;  // bytes [0, data_offset): header, manifest, MAC
  std::vector<std::array<uint8_t, crypto::kAesGcmIvBytes>> ivs_;
  crypto::Sha256Digest key_check_{};
};

}  // namespace tenet::seal
