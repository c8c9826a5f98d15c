#include "seal/package.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <queue>
#include <unordered_map>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/onnx_pb.h>

#include "core/safe_math.h"
#include "engine/onnx/importer.h"
#include "engine/onnx/proto_importer.h"

namespace tenet::seal {
namespace {

using crypto::Sha256Digest;

constexpr char kMagic[8] = {'T', 'E', 'N', 'E', 'T', 'P', 'K', 'G'};
constexpr std::string_view kInfoEnc = "tenet-seal/v1 chunk-encryption";
constexpr std::string_view kInfoMac = "tenet-seal/v1 manifest-mac";
constexpr std::string_view kInfoKeyCheck = "tenet-seal/v1 key-check";
constexpr std::string_view kAadLabel = "tenet-seal/v1 chunk";
constexpr size_t kMacBytes = 32;
constexpr size_t kKeyCheckBytes = 32;

// ---- little-endian encoding ----
void put_u32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_bytes(Bytes& out, ByteSpan b) { out.insert(out.end(), b.begin(), b.end()); }

// Bounds-checked reader over bytes already copied into memory.
class Cursor {
 public:
  Cursor(ByteSpan data, const char* what) : data_(data), what_(what) {}
  size_t remaining() const { return data_.size() - pos_; }
  size_t pos() const { return pos_; }
  Status need(size_t n, const char* field) const {
    if (n > remaining()) {
      return data_loss("{}: truncated at '{}' (needs {} bytes at offset {}, {} left)", what_, field, n, pos_, remaining());
    }
    return ok_status();
  }
  Result<uint32_t> u32(const char* field) {
    TENET_RETURN_IF_ERROR(need(4, field));
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{data_[pos_ + i]} << (8 * i);
    pos_ += 4;
    return v;
  }
  Result<uint64_t> u64(const char* field) {
    TENET_RETURN_IF_ERROR(need(8, field));
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{data_[pos_ + i]} << (8 * i);
    pos_ += 8;
    return v;
  }
  Result<ByteSpan> bytes(size_t n, const char* field) {
    TENET_RETURN_IF_ERROR(need(n, field));
    ByteSpan b = data_.subspan(pos_, n);
    pos_ += n;
    return b;
  }

 private:
  ByteSpan data_;
  size_t pos_ = 0;
  const char* what_;
};

bool printable_ascii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string short_id(const PackageId& id) { return crypto::to_hex(ByteSpan(id.data(), 8)); }

struct DerivedKeys {
  SecretBytes enc, mac, key_check;
};

Result<DerivedKeys> derive_keys(ByteSpan model_key, const PackageId& id) {
  if (model_key.size() != kModelKeyBytes) {
    return invalid_argument("model key must be {} bytes, got {}", kModelKeyBytes, model_key.size());
  }
  DerivedKeys k;
  TENET_ASSIGN_OR_RETURN(Bytes enc, crypto::hkdf_sha256(model_key, id, crypto::as_bytes(kInfoEnc), 32));
  k.enc = SecretBytes::adopt(std::move(enc));
  TENET_ASSIGN_OR_RETURN(Bytes mac, crypto::hkdf_sha256(model_key, id, crypto::as_bytes(kInfoMac), 32));
  k.mac = SecretBytes::adopt(std::move(mac));
  TENET_ASSIGN_OR_RETURN(Bytes check, crypto::hkdf_sha256(model_key, id, crypto::as_bytes(kInfoKeyCheck), kKeyCheckBytes));
  k.key_check = SecretBytes::adopt(std::move(check));
  return k;
}

Bytes chunk_aad(const PackageId& id, uint32_t index, uint32_t count, ChunkKind kind, uint64_t plaintext_size,
                uint64_t offset) {
  Bytes aad(kAadLabel.size() + id.size());
  std::memcpy(aad.data(), kAadLabel.data(), kAadLabel.size());
  std::memcpy(aad.data() + kAadLabel.size(), id.data(), id.size());
  put_u32(aad, index);
  put_u32(aad, count);
  put_u32(aad, static_cast<uint32_t>(kind));
  put_u64(aad, plaintext_size);
  put_u64(aad, offset);
  return aad;
}

// ---- protobuf helpers ----
template <typename Message>
Status parse_proto(ByteSpan bytes, Message& msg, const std::string& what) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) return out_of_range("{} is {} bytes; the limit is 2 GiB", what, bytes.size());
  google::protobuf::io::CodedInputStream stream(bytes.data(), static_cast<int>(bytes.size()));
  stream.SetTotalBytesLimit(INT_MAX);
  stream.SetRecursionLimit(64);
  if (!msg.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
    return data_loss("{} does not parse as protobuf (truncated or corrupted)", what);
  }
  return ok_status();
}

template <typename Message>
Result<SecretBytes> serialize_secret(const Message& msg, const std::string& what) {
  const size_t n = msg.ByteSizeLong();
  if (n > static_cast<size_t>(INT_MAX)) return out_of_range("{} serializes to {} bytes; the limit is 2 GiB", what, n);
  SecretBytes out(n);
  google::protobuf::io::ArrayOutputStream array(out.data(), static_cast<int>(n));
  google::protobuf::io::CodedOutputStream coded(&array);
  coded.SetSerializationDeterministic(true);
  msg.SerializeWithCachedSizes(&coded);
  if (coded.HadError() || static_cast<size_t>(coded.ByteCount()) != n) {
    return internal_error("serializing {} failed", what);
  }
  return out;
}

void wipe_string(std::string* s) {
  if (!s->empty()) crypto::secure_wipe(s->data(), s->size());
}
template <typename Field>
void wipe_repeated(Field* f) {
  if (f->size() > 0) crypto::secure_wipe(f->mutable_data(), static_cast<size_t>(f->size()) * sizeof(*f->mutable_data()));
}

void wipe_tensor(onnx::TensorProto& t) {
  wipe_string(t.mutable_raw_data());
  wipe_repeated(t.mutable_float_data());
  wipe_repeated(t.mutable_int32_data());
  wipe_repeated(t.mutable_int64_data());
  wipe_repeated(t.mutable_double_data());
  wipe_repeated(t.mutable_uint64_data());
  for (auto& s : *t.mutable_string_data()) wipe_string(&s);
}

// Wipes tensor payloads (initializers and Constant-style attribute tensors) before the protobuf
// objects free their buffers.
void wipe_graph(onnx::GraphProto& g) {
  for (auto& t : *g.mutable_initializer()) wipe_tensor(t);
  for (auto& n : *g.mutable_node()) {
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_t()) wipe_tensor(*a.mutable_t());
      for (auto& t : *a.mutable_tensors()) wipe_tensor(t);
      wipe_repeated(a.mutable_floats());
      wipe_repeated(a.mutable_ints());
    }
  }
}

// Node indices of `g` in topological order (Kahn, ties broken by file order). Nodes on a cycle
// (which the importer has already refused) are appended in file order.
std::vector<int> topological_order(const onnx::GraphProto& g) {
  const int n = g.node_size();
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < n; ++i) {
    for (const auto& out : g.node(i).output()) {
      if (!out.empty()) producer.emplace(out, i);
    }
  }
  std::vector<std::vector<int>> users(static_cast<size_t>(n));
  std::vector<int> pending(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    for (const auto& in : g.node(i).input()) {
      auto it = producer.find(in);
      if (in.empty() || it == producer.end() || it->second == i) continue;
      users[static_cast<size_t>(it->second)].push_back(i);
      ++pending[static_cast<size_t>(i)];
    }
  }
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < n; ++i) {
    if (pending[static_cast<size_t>(i)] == 0) ready.push(i);
  }
  std::vector<int> order;
  std::vector<bool> done(static_cast<size_t>(n), false);
  while (!ready.empty()) {
    const int i = ready.top();
    ready.pop();
    order.push_back(i);
    done[static_cast<size_t>(i)] = true;
    for (int u : users[static_cast<size_t>(i)]) {
      if (--pending[static_cast<size_t>(u)] == 0) ready.push(u);
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!done[static_cast<size_t>(i)]) order.push_back(i);
  }
  return order;
}


// Marks `t` as sealed in parts of `bytes` bytes (its data removed by the caller).
void mark_parts(onnx::TensorProto& t, uint64_t bytes) {
  t.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = t.add_external_data();
  location->set_key("location");
  location->set_value(kPartsLocation);
  auto* length = t.add_external_data();
  length->set_key("length");
  length->set_value(std::to_string(bytes));
}

// The byte length of an initializer sealed in parts; nullopt for an ordinary one; kDataLoss for
// external data that is not tenet's mark exactly.
Result<std::optional<uint64_t>> parts_length(const onnx::TensorProto& t) {
  if (t.data_location() != onnx::TensorProto::EXTERNAL && t.external_data_size() == 0) return std::optional<uint64_t>();
  if (t.data_location() != onnx::TensorProto::EXTERNAL || t.external_data_size() != 2 || t.external_data(0).key() != "location" ||
      t.external_data(0).value() != kPartsLocation || t.external_data(1).key() != "length") {
    return data_loss("initializer '{}' has external data other than tenet's part chunks", t.name());
  }
  const std::string& v = t.external_data(1).value();
  uint64_t n = 0;
  if (v.empty() || v.size() > 19 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return data_loss("initializer '{}': part length '{}' is not a number", t.name(), v.substr(0, 32));
  }
  for (char c : v) n = n * 10 + static_cast<uint64_t>(c - '0');
  return std::optional<uint64_t>(n);
}

// Splits a parsed model into the graph chunk, the per-layer weight chunks and the part chunks of
// large initializers (see package.h). Consumes the model's initializers.
Result<std::vector<ChunkPlaintext>> split_model(onnx::ModelProto& model, uint64_t part_bytes) {
  onnx::GraphProto* gp = model.mutable_graph();
  std::unordered_map<std::string, int> init_index;
  for (int i = 0; i < gp->initializer_size(); ++i) init_index.emplace(gp->initializer(i).name(), i);
  std::vector<bool> assigned(static_cast<size_t>(gp->initializer_size()), false);

  struct Group {
    std::vector<int> inits;
    std::string layer;
  };
  std::vector<Group> groups;
  for (int node : topological_order(*gp)) {
    Group group;
    for (const auto& in : gp->node(node).input()) {
      auto it = init_index.find(in);
      if (it == init_index.end() || assigned[static_cast<size_t>(it->second)]) continue;
      assigned[static_cast<size_t>(it->second)] = true;
      group.inits.push_back(it->second);
    }
    if (group.inits.empty()) continue;
    group.layer = fmt::format("{}:{}", node, gp->node(node).name());
    groups.push_back(std::move(group));
  }
  Group rest;
  rest.layer = "unreferenced";
  for (int i = 0; i < gp->initializer_size(); ++i) {
    if (!assigned[static_cast<size_t>(i)]) rest.inits.push_back(i);
  }
  if (!rest.inits.empty()) groups.push_back(std::move(rest));

  std::vector<ChunkPlaintext> chunks;
  chunks.reserve(groups.size() + 1);
  chunks.push_back(ChunkPlaintext{ChunkKind::kGraph, SecretBytes()});  // filled below
  for (size_t c = 0; c < groups.size(); ++c) {
    onnx::GraphProto weights;
    std::vector<std::string> parted;  // raw data of the initializers sealed in parts, in chunk order
    struct Wiper {
      std::vector<std::string>& v;
      ~Wiper() {
        for (std::string& d : v) wipe_string(&d);
      }
    } parted_wiper{parted};
    for (int i : groups[c].inits) {
      onnx::TensorProto* t = weights.add_initializer();
      t->Swap(gp->mutable_initializer(i));
      if (t->has_raw_data() && t->raw_data().size() > part_bytes) {
        parted.emplace_back();
        parted.back().swap(*t->mutable_raw_data());
        t->clear_raw_data();
        mark_parts(*t, parted.back().size());
      }
    }
    const size_t index = chunks.size();
    auto bytes = serialize_secret(weights, fmt::format("weight chunk {}", index));
    wipe_graph(weights);
    if (!bytes.ok()) return bytes.status();
    chunks.push_back(ChunkPlaintext{ChunkKind::kWeights, std::move(bytes).value()});
    auto* prop = model.add_metadata_props();
    prop->set_key(fmt::format("tenet.seal.chunk.{}", index));
    prop->set_value(groups[c].layer);
    for (const std::string& data : parted) {
      for (size_t off = 0; off < data.size(); off += part_bytes) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(part_bytes, data.size() - off));
        SecretBytes part(n);
        std::memcpy(part.span().data(), data.data() + off, n);
        chunks.push_back(ChunkPlaintext{ChunkKind::kWeightPart, std::move(part)});
      }
    }
  }
  gp->clear_initializer();  // every slot was swapped out into a weight chunk
  TENET_ASSIGN_OR_RETURN(chunks[0].bytes, serialize_secret(model, "graph chunk"));
  return chunks;
}

}  // namespace

const char* chunk_kind_name(ChunkKind kind) {
  switch (kind) {
    case ChunkKind::kGraph: return "graph";
    case ChunkKind::kWeights: return "weights";
    case ChunkKind::kWeightPart: return "weight part";
  }
  return "unknown";
}

uint64_t PackageInfo::weight_plaintext_bytes() const {
  uint64_t sum = 0;
  for (const auto& c : chunks) {
    if (c.kind != ChunkKind::kGraph) sum += c.plaintext_size;
  }
  return sum;
}

// ---- model keys ----

Result<SecretBytes> generate_model_key() {
  SecretBytes key(kModelKeyBytes);
  TENET_RETURN_IF_ERROR(crypto::random_bytes(key.span()));
  return key;
}

Result<SecretBytes> read_model_key_file(const std::string& path) {
  auto text = crypto::read_file(path, 4096);
  if (!text.ok()) return text.status().with_context("reading model key file '" + path + "'");
  SecretBytes raw = SecretBytes::adopt(Bytes(text->begin(), text->end()));
  crypto::secure_wipe(text.value());
  if (raw.size() == kModelKeyBytes) return raw;
  std::string_view hex = crypto::as_chars(raw.view());
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) hex.remove_suffix(1);
  if (hex.size() != 2 * kModelKeyBytes) {
    return invalid_argument("model key file '{}' must hold {} hex characters (or {} raw bytes)", path,
                            2 * kModelKeyBytes, kModelKeyBytes);
  }
  auto key = crypto::from_hex(hex);
  if (!key.ok()) return invalid_argument("model key file '{}' is not hex", path);
  return SecretBytes::adopt(std::move(key).value());
}

Status write_model_key_file(const std::string& path, const SecretBytes& key) {
  if (key.size() != kModelKeyBytes) return invalid_argument("model key must be {} bytes", kModelKeyBytes);
  std::string hex = crypto::to_hex(key.view()) + "\n";
  Status s = crypto::write_file(path, hex, 0600);
  crypto::secure_wipe(hex);
  return s;
}

// ---- sealing ----

Result<Bytes> seal_model_to_bytes(ByteSpan onnx_model, ByteSpan model_key, const SealOptions& options,
                                  PackageInfo* info_out) {
  // Before the import (a large model takes a while); seal_chunks_to_bytes checks it again in derive_keys.
  if (model_key.size() != kModelKeyBytes) {
    return invalid_argument("model key must be {} bytes, got {}", kModelKeyBytes, model_key.size());
  }
  {
    // Refuse what the enclave could not load.
    auto g = onnx_import::import_model_bytes(std::span(reinterpret_cast<const std::byte*>(onnx_model.data()), onnx_model.size()));
    if (!g.ok()) return g.status().with_context("the model cannot be sealed because tenet cannot import it");
  }
  onnx::ModelProto model;
  TENET_RETURN_IF_ERROR(parse_proto(onnx_model, model, "ONNX model"));
  if (options.part_bytes == 0) return invalid_argument("part size must be positive");
  auto chunks_or = split_model(model, options.part_bytes);
  wipe_graph(*model.mutable_graph());
  if (!chunks_or.ok()) return chunks_or.status();
  return seal_chunks_to_bytes(std::move(chunks_or).value(), model_key, options, info_out);
}

Result<Bytes> seal_chunks_to_bytes(std::vector<ChunkPlaintext> chunks, ByteSpan model_key, const SealOptions& options,
                                   PackageInfo* info_out) {
  if (options.model_name.size() > kMaxNameBytes || !printable_ascii(options.model_name)) {
    return invalid_argument("model name must be printable ASCII of at most {} bytes", kMaxNameBytes);
  }
  if (options.version.size() > kMaxVersionBytes || !printable_ascii(options.version)) {
    return invalid_argument("model version must be printable ASCII of at most {} bytes", kMaxVersionBytes);
  }
  if (chunks.empty() || chunks.size() > kMaxChunks) return out_of_range("a package has 1 to {} chunks; this model needs {}", kMaxChunks, chunks.size());
  const uint32_t count = static_cast<uint32_t>(chunks.size());

  PackageInfo info;
  info.format_version = kPackageFormatVersion;
  info.model_name = options.model_name;
  info.version = options.version;
  TENET_RETURN_IF_ERROR(crypto::random_bytes(info.package_id));
  TENET_ASSIGN_OR_RETURN(DerivedKeys keys, derive_keys(model_key, info.package_id));

  const uint64_t manifest_size = 4 + options.model_name.size() + 4 + options.version.size() + kKeyCheckBytes +
                                 uint64_t{kManifestEntryBytes} * count + kMacBytes;
  if (manifest_size > UINT32_MAX) return out_of_range("manifest of {} bytes is too large", manifest_size);
  const uint64_t data_offset = kPackageHeaderBytes + manifest_size;

  // Encrypt every chunk; offsets follow from the plaintext sizes.
  std::vector<Bytes> ciphertexts(count);
  std::vector<std::array<uint8_t, crypto::kAesGcmIvBytes>> ivs(count);
  uint64_t offset = data_offset;
  for (uint32_t i = 0; i < count; ++i) {
    ChunkInfo c;
    c.kind = chunks[i].kind;
    c.offset = offset;
    c.plaintext_size = chunks[i].bytes.size();
    if (c.plaintext_size > kMaxChunkPlaintextBytes) {
      return out_of_range("chunk {} is {} bytes; the limit is {}", i, c.plaintext_size, kMaxChunkPlaintextBytes);
    }
    c.size = c.plaintext_size + crypto::kAesGcmTagBytes;
    TENET_RETURN_IF_ERROR(crypto::random_bytes(ivs[i]));
    const Bytes aad = chunk_aad(info.package_id, i, count, c.kind, c.plaintext_size, c.offset);
    TENET_ASSIGN_OR_RETURN(ciphertexts[i], crypto::aes256gcm_seal(keys.enc.view(), ivs[i], aad, chunks[i].bytes.view()));
    chunks[i].bytes = SecretBytes();  // wiped as soon as it is encrypted
    c.ciphertext_sha256 = crypto::sha256(ciphertexts[i]);
    if (!checked_add(offset, c.size, &offset)) return out_of_range("package size overflows");
    info.chunks.push_back(c);
  }
  info.file_size = offset;

  Bytes out;
  out.reserve(static_cast<size_t>(info.file_size));
  put_bytes(out, crypto::as_bytes(std::string_view(kMagic, sizeof(kMagic))));
  put_u32(out, kPackageFormatVersion);
  put_u32(out, static_cast<uint32_t>(kPackageHeaderBytes));
  put_bytes(out, info.package_id);
  put_u32(out, count);
  put_u32(out, static_cast<uint32_t>(manifest_size));
  put_u64(out, data_offset);
  put_u64(out, info.file_size);
  put_u64(out, 0);
  put_u32(out, static_cast<uint32_t>(options.model_name.size()));
  put_bytes(out, crypto::as_bytes(options.model_name));
  put_u32(out, static_cast<uint32_t>(options.version.size()));
  put_bytes(out, crypto::as_bytes(options.version));
  put_bytes(out, keys.key_check.view());
  for (uint32_t i = 0; i < count; ++i) {
    const ChunkInfo& c = info.chunks[i];
    put_u32(out, static_cast<uint32_t>(c.kind));
    put_u32(out, 0);
    put_u64(out, c.offset);
    put_u64(out, c.size);
    put_u64(out, c.plaintext_size);
    put_bytes(out, ivs[i]);
    put_bytes(out, c.ciphertext_sha256);
  }
  TENET_ASSIGN_OR_RETURN(Bytes mac, crypto::hmac_sha256(keys.mac.view(), out));
  put_bytes(out, mac);
  if (out.size() != data_offset) return internal_error("manifest is {} bytes, expected {}", out.size(), data_offset);
  info.digest = crypto::sha256(out);
  for (const Bytes& ct : ciphertexts) put_bytes(out, ct);
  if (out.size() != info.file_size) return internal_error("package is {} bytes, expected {}", out.size(), info.file_size);
  if (info_out) *info_out = std::move(info);
  return out;
}

Result<PackageInfo> seal_model(ByteSpan onnx_model, const std::string& out_path, ByteSpan model_key,
                               const SealOptions& options) {
  PackageInfo info;
  TENET_ASSIGN_OR_RETURN(Bytes package, seal_model_to_bytes(onnx_model, model_key, options, &info));
  TENET_RETURN_IF_ERROR(crypto::write_file(out_path, crypto::as_chars(package), 0644));
  return info;
}

Result<PackageInfo> seal_model_file(const std::string& onnx_path, const std::string& out_path, ByteSpan model_key,
                                    const SealOptions& options) {
  auto text = crypto::read_file(onnx_path, onnx_import::kMaxModelBytes);
  if (!text.ok()) return text.status().with_context("reading model '" + onnx_path + "'");
  auto info = seal_model(crypto::as_bytes(*text), out_path, model_key, options);
  crypto::secure_wipe(text.value());
  if (!info.ok()) return info.status().with_context(onnx_path);
  return info;
}

// ---- reading ----

struct PackageReader::Source {
  Bytes memory;  // from_bytes
  int fd = -1;   // open
  uint64_t size = 0;
  std::string name;

  ~Source() {
    if (fd >= 0) ::close(fd);
  }
  // Copies [offset, offset + out.size()) into `out`.
  Status read_at(uint64_t offset, std::span<uint8_t> out) const {
    uint64_t end = 0;
    if (!checked_add(offset, static_cast<uint64_t>(out.size()), &end) || end > size) {
      return data_loss("{}: read of {} bytes at offset {} is past the end of the {}-byte file", name, out.size(), offset, size);
    }
    if (fd < 0) {
      if (!out.empty()) std::memcpy(out.data(), memory.data() + offset, out.size());
      return ok_status();
    }
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return data_loss("{}: read failed at offset {}: {}", name, offset + done, std::strerror(errno));
      if (n == 0) return data_loss("{}: file is shorter than claimed (ends at offset {})", name, offset + done);
      done += static_cast<size_t>(n);
    }
    return ok_status();
  }
};

PackageReader::PackageReader() = default;
PackageReader::~PackageReader() = default;
PackageReader::PackageReader(PackageReader&&) noexcept = default;
PackageReader& PackageReader::operator=(PackageReader&&) noexcept = default;

Result<PackageReader> PackageReader::open(const std::string& path) {
  auto source = std::make_unique<Source>();
  source->name = "package '" + path + "'";
  source->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (source->fd < 0) return not_found("cannot open package '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(source->fd, &st) != 0 || !S_ISREG(st.st_mode)) return invalid_argument("package '{}' is not a regular file", path);
  source->size = static_cast<uint64_t>(st.st_size);
  return parse(std::move(source));
}

Result<PackageReader> PackageReader::from_bytes(ByteSpan package) {
  auto source = std::make_unique<Source>();
  source->name = "package";
  source->memory.assign(package.begin(), package.end());
  source->size = package.size();
  return parse(std::move(source));
}

Result<PackageReader> PackageReader::parse(std::unique_ptr<Source> source) {
  const std::string& what = source->name;
  if (source->size < kPackageHeaderBytes) {
    return data_loss("{}: file is {} bytes, shorter than the {}-byte header", what, source->size, kPackageHeaderBytes);
  }
  Bytes header(kPackageHeaderBytes);
  TENET_RETURN_IF_ERROR(source->read_at(0, header));
  Cursor h(header, "package header");
  TENET_ASSIGN_OR_RETURN(ByteSpan magic, h.bytes(8, "magic"));
  if (std::memcmp(magic.data(), kMagic, sizeof(kMagic)) != 0) return data_loss("{}: not a tenet sealed package (bad magic)", what);
  TENET_ASSIGN_OR_RETURN(const uint32_t version, h.u32("format_version"));
  if (version < kOldestPackageFormatVersion || version > kPackageFormatVersion) {
    return unimplemented("{}: package format version {}; this tenet reads versions {} to {}", what, version, kOldestPackageFormatVersion,
                         kPackageFormatVersion);
  }
  TENET_ASSIGN_OR_RETURN(const uint32_t header_size, h.u32("header_size"));
  if (header_size != kPackageHeaderBytes) return data_loss("{}: header_size is {}, expected {}", what, header_size, kPackageHeaderBytes);
  PackageReader r;
  TENET_ASSIGN_OR_RETURN(ByteSpan id, h.bytes(kPackageIdBytes, "package_id"));
  std::copy(id.begin(), id.end(), r.info_.package_id.begin());
  TENET_ASSIGN_OR_RETURN(const uint32_t count, h.u32("chunk_count"));
  if (count == 0 || count > kMaxChunks) return out_of_range("{}: chunk_count {} is outside 1..{}", what, count, kMaxChunks);
  TENET_ASSIGN_OR_RETURN(const uint32_t manifest_size, h.u32("manifest_size"));
  TENET_ASSIGN_OR_RETURN(const uint64_t data_offset, h.u64("data_offset"));
  TENET_ASSIGN_OR_RETURN(const uint64_t file_size, h.u64("file_size"));
  TENET_ASSIGN_OR_RETURN(const uint64_t reserved, h.u64("reserved"));
  if (reserved != 0) return data_loss("{}: reserved header field is not zero", what);

  // The manifest's size follows from the chunk count and the two short strings.
  const uint64_t fixed = 4 + 4 + kKeyCheckBytes + uint64_t{kManifestEntryBytes} * count + kMacBytes;
  if (manifest_size < fixed || manifest_size > fixed + kMaxNameBytes + kMaxVersionBytes) {
    return data_loss("{}: manifest_size {} is impossible for {} chunks", what, manifest_size, count);
  }
  if (data_offset != kPackageHeaderBytes + uint64_t{manifest_size}) {
    return data_loss("{}: data_offset {} does not follow the {}-byte manifest", what, data_offset, manifest_size);
  }
  if (file_size != source->size) {
    return data_loss("{}: header says the file is {} bytes but it is {} bytes (truncated or extended)", what, file_size,
                     source->size);
  }
  if (data_offset > file_size) return data_loss("{}: manifest ends at {}, past the end of the file", what, data_offset);

  r.metadata_.resize(static_cast<size_t>(data_offset));
  std::copy(header.begin(), header.end(), r.metadata_.begin());
  TENET_RETURN_IF_ERROR(source->read_at(kPackageHeaderBytes, std::span(r.metadata_).subspan(kPackageHeaderBytes)));
  Cursor m(ByteSpan(r.metadata_).subspan(kPackageHeaderBytes), "package manifest");
  TENET_ASSIGN_OR_RETURN(const uint32_t name_size, m.u32("name_size"));
  if (name_size > kMaxNameBytes) return out_of_range("{}: model name of {} bytes exceeds {}", what, name_size, kMaxNameBytes);
  TENET_ASSIGN_OR_RETURN(ByteSpan name, m.bytes(name_size, "name"));
  TENET_ASSIGN_OR_RETURN(const uint32_t version_size, m.u32("version_size"));
  if (version_size > kMaxVersionBytes) {
    return out_of_range("{}: model version of {} bytes exceeds {}", what, version_size, kMaxVersionBytes);
  }
  TENET_ASSIGN_OR_RETURN(ByteSpan ver, m.bytes(version_size, "version"));
  r.info_.model_name.assign(crypto::as_chars(name));
  r.info_.version.assign(crypto::as_chars(ver));
  if (!printable_ascii(r.info_.model_name) || !printable_ascii(r.info_.version)) {
    return data_loss("{}: model name or version is not printable ASCII", what);
  }
  if (m.remaining() != kKeyCheckBytes + uint64_t{kManifestEntryBytes} * count + kMacBytes) {
    return data_loss("{}: manifest_size disagrees with the manifest's contents", what);
  }
  TENET_ASSIGN_OR_RETURN(ByteSpan key_check, m.bytes(kKeyCheckBytes, "key_check"));
  std::copy(key_check.begin(), key_check.end(), r.key_check_.begin());

  r.info_.chunks.resize(count);
  r.ivs_.resize(count);
  uint64_t expected_offset = data_offset;
  for (uint32_t i = 0; i < count; ++i) {
    ChunkInfo& c = r.info_.chunks[i];
    TENET_ASSIGN_OR_RETURN(const uint32_t kind, m.u32("chunk kind"));
    // Chunk 0 is the graph; then weights, each followed by its parts (version 2).
    const bool part_ok = version >= 2 && i >= 2;
    if (i == 0 ? kind != static_cast<uint32_t>(ChunkKind::kGraph)
               : kind != static_cast<uint32_t>(ChunkKind::kWeights) && !(part_ok && kind == static_cast<uint32_t>(ChunkKind::kWeightPart))) {
      return data_loss("{}: chunk {} has kind {}, expected {}", what, i, kind, i == 0 ? "1 (graph)" : part_ok ? "2 (weights) or 3 (weight part)" : "2 (weights)");
    }
    c.kind = static_cast<ChunkKind>(kind);
    TENET_ASSIGN_OR_RETURN(const uint32_t entry_reserved, m.u32("chunk reserved"));
    if (entry_reserved != 0) return data_loss("{}: chunk {}: reserved field is not zero", what, i);
    TENET_ASSIGN_OR_RETURN(c.offset, m.u64("chunk offset"));
    TENET_ASSIGN_OR_RETURN(c.size, m.u64("chunk size"));
    TENET_ASSIGN_OR_RETURN(c.plaintext_size, m.u64("chunk plaintext_size"));
    TENET_ASSIGN_OR_RETURN(ByteSpan iv, m.bytes(crypto::kAesGcmIvBytes, "chunk iv"));
    std::copy(iv.begin(), iv.end(), r.ivs_[i].begin());
    TENET_ASSIGN_OR_RETURN(ByteSpan hash, m.bytes(32, "chunk hash"));
    std::copy(hash.begin(), hash.end(), c.ciphertext_sha256.begin());

    if (c.offset != expected_offset) {
      return data_loss("{}: chunk {} starts at offset {}, expected {} (chunks are back to back)", what, i, c.offset, expected_offset);
    }
    if (c.plaintext_size > kMaxChunkPlaintextBytes) {
      return out_of_range("{}: chunk {} claims {} plaintext bytes; the limit is {}", what, i, c.plaintext_size, kMaxChunkPlaintextBytes);
    }
    uint64_t sealed_size = 0;
    if (!checked_add(c.plaintext_size, uint64_t{crypto::kAesGcmTagBytes}, &sealed_size) || sealed_size != c.size) {
      return data_loss("{}: chunk {} size {} disagrees with its plaintext size {} plus the tag", what, i, c.size, c.plaintext_size);
    }
    uint64_t end = 0;
    if (!checked_add(c.offset, c.size, &end) || end > file_size) {
      return data_loss("{}: chunk {} ({} bytes at offset {}) runs past the end of the {}-byte file", what, i, c.size, c.offset, file_size);
    }
    expected_offset = end;
  }
  if (expected_offset != file_size) {
    return data_loss("{}: chunks end at offset {} but the file is {} bytes", what, expected_offset, file_size);
  }
  if (m.remaining() != kMacBytes) return internal_error("manifest parse ended {} bytes before the MAC", m.remaining() - kMacBytes);

  r.info_.format_version = version;
  r.info_.file_size = file_size;
  r.info_.digest = crypto::sha256(r.metadata_);
  r.source_ = std::move(source);
  return r;
}

Status PackageReader::verify_ciphertext_hashes() const {
  Bytes buf;
  for (uint32_t i = 0; i < chunk_count(); ++i) {
    const ChunkInfo& c = info_.chunks[i];
    buf.resize(static_cast<size_t>(c.size));
    TENET_RETURN_IF_ERROR(source_->read_at(c.offset, buf));
    if (crypto::sha256(buf) != c.ciphertext_sha256) {
      return data_loss("package {}: chunk {} of {} ({}): ciphertext does not match the manifest's hash", short_id(info_.package_id), i,
                       chunk_count(), chunk_kind_name(c.kind));
    }
  }
  return ok_status();
}

Status PackageReader::check_key(ByteSpan model_key) const {
  TENET_ASSIGN_OR_RETURN(DerivedKeys keys, derive_keys(model_key, info_.package_id));
  if (!crypto::constant_time_equal(keys.key_check.view(), key_check_)) {
    return data_loss("package {}: the model key does not match (key check failed: wrong key, or the manifest was edited)",
                     short_id(info_.package_id));
  }
  const ByteSpan meta(metadata_);
  TENET_ASSIGN_OR_RETURN(Bytes mac, crypto::hmac_sha256(keys.mac.view(), meta.first(meta.size() - kMacBytes)));
  if (!crypto::constant_time_equal(mac, meta.last(kMacBytes))) {
    return data_loss("package {}: manifest MAC does not verify: the header or manifest was edited", short_id(info_.package_id));
  }
  return ok_status();
}

Result<ChunkPlaintext> PackageReader::read_chunk_after_key_check(uint32_t index, ByteSpan k_enc) const {
  const ChunkInfo& c = info_.chunks[index];
  const std::string where = fmt::format("package {}: chunk {} of {} ({})", short_id(info_.package_id), index, chunk_count(),
                                        chunk_kind_name(c.kind));
  Bytes ciphertext(static_cast<size_t>(c.size));
  Status read = source_->read_at(c.offset, ciphertext);
  if (!read.ok()) return read.with_context(where);
  if (crypto::sha256(ciphertext) != c.ciphertext_sha256) {
    return data_loss("{}: ciphertext does not match the manifest's hash (tampered, swapped or truncated)", where);
  }
  ChunkPlaintext out;
  out.kind = c.kind;
  out.bytes = SecretBytes(static_cast<size_t>(c.plaintext_size));
  const Bytes aad = chunk_aad(info_.package_id, index, chunk_count(), c.kind, c.plaintext_size, c.offset);
  Status opened = crypto::aes256gcm_open_into(k_enc, ivs_[index], aad, ciphertext, out.bytes.span());
  if (!opened.ok()) {
    return data_loss("{}: authentication failed (tampered, moved, from another package, or wrong key)", where);
  }
  return out;
}

Result<ChunkPlaintext> PackageReader::read_chunk(uint32_t index, ByteSpan model_key) const {
  if (index >= chunk_count()) return out_of_range("chunk index {} is out of range (package has {} chunks)", index, chunk_count());
  Status key_ok = check_key(model_key);
  if (!key_ok.ok()) return key_ok.with_context(fmt::format("chunk {} of {}", index, chunk_count()));
  TENET_ASSIGN_OR_RETURN(DerivedKeys keys, derive_keys(model_key, info_.package_id));
  return read_chunk_after_key_check(index, keys.enc.view());
}

Result<ir::Graph> PackageReader::load_graph(ByteSpan model_key, const onnx_import::ImportOptions& import) const {
  TENET_RETURN_IF_ERROR(check_key(model_key));
  TENET_ASSIGN_OR_RETURN(DerivedKeys keys, derive_keys(model_key, info_.package_id));
  // The bound a whole ONNX model has (import_model_bytes): the chunks' plaintexts add up to the
  // reassembled model's size.
  uint64_t plaintext = 0;
  for (const ChunkInfo& c : info_.chunks) plaintext += c.plaintext_size;
  if (plaintext > onnx_import::kMaxModelBytes) {
    return out_of_range("sealed package {}: model is {} bytes; the limit is 2 GiB", short_id(info_.package_id), plaintext);
  }
  auto graph = import_by_chunk(keys.enc.view(), import);
  if (!graph.ok()) return graph.status().with_context(fmt::format("importing sealed package {}", short_id(info_.package_id)));
  return graph;
}

// The part chunks of one initializer, from chunk `first` on, read in order of offset.
class PackageReader::PartCursor {
 public:
  PartCursor(const PackageReader& reader, ByteSpan k_enc, uint32_t first, uint64_t length)
      : reader_(reader), k_enc_(k_enc), next_(first), length_(length) {}

  Status read(uint64_t offset, std::span<std::byte> dst) {
    if (offset != pos_ || dst.size() > length_ - pos_) return internal_error("part bytes asked out of order");
    size_t done = 0;
    while (done < dst.size()) {
      if (at_ == part_.size()) TENET_RETURN_IF_ERROR(next_part());
      const size_t n = std::min(dst.size() - done, part_.size() - at_);
      std::memcpy(dst.data() + done, part_.view().data() + at_, n);
      at_ += n;
      done += n;
      pos_ += n;
    }
    return ok_status();
  }
  // All `length` bytes read, and they ended where a part did.
  Status finish() const {
    if (pos_ != length_) return data_loss("read {} of its {} bytes", pos_, length_);
    if (at_ != part_.size()) return data_loss("its parts hold more than its {} bytes", length_);
    return ok_status();
  }
  uint32_t next_chunk() const { return next_; }

 private:
  Status next_part() {
    if (next_ >= reader_.chunk_count() || reader_.info_.chunks[next_].kind != ChunkKind::kWeightPart) {
      return data_loss("its parts end after {} of its {} bytes (chunk {} is not a part)", pos_, length_, next_);
    }
    const uint64_t size = reader_.info_.chunks[next_].plaintext_size;
    if (size == 0) return data_loss("chunk {} is an empty part", next_);
    part_ = SecretBytes();  // the previous part is wiped before the next is decrypted
    TENET_ASSIGN_OR_RETURN(ChunkPlaintext chunk, reader_.read_chunk_after_key_check(next_, k_enc_));
    part_ = std::move(chunk.bytes);
    at_ = 0;
    ++next_;
    return ok_status();
  }

  const PackageReader& reader_;
  ByteSpan k_enc_;
  uint32_t next_;
  uint64_t length_;
  uint64_t pos_ = 0;  // bytes handed out
  SecretBytes part_;
  size_t at_ = 0;     // bytes of part_ handed out
};

Result<ir::Graph> PackageReader::import_by_chunk(ByteSpan k_enc, const onnx_import::ImportOptions& import) const {
  onnx::ModelProto model;
  // Wipes the graph chunk's tensor payloads (Constant nodes) on every exit path.
  struct ModelWiper {
    onnx::ModelProto& m;
    ~ModelWiper() { wipe_graph(*m.mutable_graph()); }
  } model_wiper{model};
  {
    TENET_ASSIGN_OR_RETURN(ChunkPlaintext graph_chunk, read_chunk_after_key_check(0, k_enc));
    TENET_RETURN_IF_ERROR(parse_proto(graph_chunk.bytes.view(), model, "graph chunk 0"));
  }
  if (model.graph().initializer_size() != 0) return data_loss("graph chunk 0 carries initializers; expected none");
  onnx_import::ModelImporter importer(import);
  TENET_RETURN_IF_ERROR(importer.begin(model));
  uint32_t i = 1;
  while (i < chunk_count()) {
    // One chunk at a time: its plaintext (SecretBytes, wiped when it goes) and its parsed
    // initializers (wiped below) are gone before the next chunk is decrypted.
    if (info_.chunks[i].kind != ChunkKind::kWeights) return data_loss("chunk {} is a weight part that belongs to no initializer", i);
    onnx::GraphProto weights;
    struct Wiper {
      onnx::GraphProto& g;
      ~Wiper() { wipe_graph(g); }
    } wiper{weights};
    {
      TENET_ASSIGN_OR_RETURN(ChunkPlaintext chunk, read_chunk_after_key_check(i, k_enc));
      TENET_RETURN_IF_ERROR(parse_proto(chunk.bytes.view(), weights, fmt::format("weight chunk {}", i)));
    }
    if (weights.node_size() != 0 || weights.input_size() != 0 || weights.output_size() != 0) {
      return data_loss("weight chunk {} holds more than initializers", i);
    }
    ++i;
    for (const auto& t : weights.initializer()) {
      TENET_ASSIGN_OR_RETURN(const std::optional<uint64_t> length, parts_length(t));
      if (!length) {
        TENET_RETURN_IF_ERROR(importer.add_initializer(t));
        continue;
      }
      // Its bytes are the next part chunks, read in order as the importer asks for them: one
      // part's plaintext in memory at a time.
      PartCursor parts{*this, k_enc, i, *length};
      Status added = importer.add_initializer_from(t, *length, [&parts](uint64_t offset, std::span<std::byte> dst) {
        return parts.read(offset, dst);
      });
      if (added.ok()) added = parts.finish();
      if (!added.ok()) return added.with_context(fmt::format("initializer '{}' in parts from chunk {}", t.name(), i));
      i = parts.next_chunk();
    }
  }
  return importer.finish(model);
}

}  // namespace tenet::seal
