#include "attest/evidence.h"

#include <cbor.h>

#include <cstdlib>
#include <cstring>
#include <memory>

namespace tenet::attest {

namespace {

// ---- encoding (libcbor) ----

struct CborDeleter {
  void operator()(cbor_item_t* item) const { cbor_decref(&item); }
};
using CborPtr = std::unique_ptr<cbor_item_t, CborDeleter>;

Status cbor_oom() { return resource_exhausted("CBOR encoding: out of memory"); }

Result<Bytes> serialize(const cbor_item_t* item) {
  unsigned char* buf = nullptr;
  size_t buf_size = 0;
  const size_t n = cbor_serialize_alloc(item, &buf, &buf_size);
  if (n == 0 || buf == nullptr) {
    std::free(buf);
    return cbor_oom();
  }
  Bytes out(buf, buf + n);
  std::free(buf);
  return out;
}

CborPtr bstr(ByteSpan b) { return CborPtr(cbor_build_bytestring(b.data(), b.size())); }
CborPtr tstr(std::string_view s) { return CborPtr(cbor_build_stringn(s.data(), s.size())); }

// Takes ownership semantics of libcbor into account: containers incref what they hold.
Status map_add(cbor_item_t* map, CborPtr key, CborPtr value) {
  if (!key || !value) return cbor_oom();
  if (!cbor_map_add(map, cbor_pair{key.get(), value.get()})) return cbor_oom();
  return ok_status();
}
Status array_push(cbor_item_t* array, CborPtr item) {
  if (!item || !cbor_array_push(array, item.get())) return cbor_oom();
  return ok_status();
}

// ---- decoding (bounded reader) ----

enum Major : uint8_t { kUint = 0, kNint = 1, kBstr = 2, kTstr = 3, kArray = 4, kMap = 5, kTag = 6, kSimple = 7 };
constexpr int kMaxSkipDepth = 16;

class CborReader {
 public:
  explicit CborReader(ByteSpan data) : data_(data) {}

  // Reads an item head: major type and argument. Indefinite lengths are rejected.
  Status head(uint8_t* major, uint64_t* arg) {
    if (pos_ >= data_.size()) return data_loss("CBOR truncated at offset {}", pos_);
    const uint8_t ib = data_[pos_++];
    *major = ib >> 5;
    const uint8_t ai = ib & 0x1f;
    if (ai < 24) {
      *arg = ai;
      return ok_status();
    }
    size_t n = 0;
    switch (ai) {
      case 24: n = 1; break;
      case 25: n = 2; break;
      case 26: n = 4; break;
      case 27: n = 8; break;
      default: return data_loss("CBOR: unsupported additional info {} at offset {} (indefinite or reserved)", ai, pos_ - 1);
    }
    if (n > data_.size() - pos_) return data_loss("CBOR truncated at offset {}", pos_);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | data_[pos_++];
    *arg = v;
    return ok_status();
  }

  Status expect(uint8_t want_major, uint64_t* arg, const char* what) {
    uint8_t major = 0;
    TENET_RETURN_IF_ERROR(head(&major, arg));
    if (major != want_major) return data_loss("CBOR: {} has major type {}, expected {}", what, major, want_major);
    return ok_status();
  }

  Result<ByteSpan> string_body(uint64_t len, const char* what) {
    if (len > data_.size() - pos_) return data_loss("CBOR: {} of {} bytes runs past the end", what, len);
    ByteSpan s = data_.subspan(pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  Result<ByteSpan> bytes(const char* what) {
    uint64_t len = 0;
    TENET_RETURN_IF_ERROR(expect(kBstr, &len, what));
    return string_body(len, what);
  }
  Result<std::string> text(const char* what) {
    uint64_t len = 0;
    TENET_RETURN_IF_ERROR(expect(kTstr, &len, what));
    TENET_ASSIGN_OR_RETURN(ByteSpan s, string_body(len, what));
    return std::string(crypto::as_chars(s));
  }

  // Skips one item of any shape, up to kMaxSkipDepth levels of nesting.
  Status skip(int depth = 0) {
    if (depth > kMaxSkipDepth) return data_loss("CBOR nested deeper than {}", kMaxSkipDepth);
    uint8_t major = 0;
    uint64_t arg = 0;
    TENET_RETURN_IF_ERROR(head(&major, &arg));
    switch (major) {
      case kUint:
      case kNint:
      case kSimple:
        return ok_status();
      case kBstr:
      case kTstr:
        return string_body(arg, "string").status();
      case kArray:
      case kMap: {
        // Each element takes at least one byte: bound the count by what is left before looping.
        const uint64_t per = major == kMap ? 2 : 1;
        if (arg > (data_.size() - pos_) / per) return data_loss("CBOR container of {} items runs past the end", arg);
        for (uint64_t i = 0; i < arg * per; ++i) TENET_RETURN_IF_ERROR(skip(depth + 1));
        return ok_status();
      }
      case kTag:
        return skip(depth + 1);
    }
    return internal_error("unreachable CBOR major type");
  }

  bool at_end() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  ByteSpan data_;
  size_t pos_ = 0;
};

Result<std::pair<uint64_t, Bytes>> decode_hash_entry(ByteSpan cbor) {
  CborReader r(cbor);
  uint64_t n = 0;
  TENET_RETURN_IF_ERROR(r.expect(kArray, &n, "pubkey-hash entry"));
  if (n != 2) return data_loss("pubkey-hash entry has {} items, expected [hash-alg-id, hash]", n);
  uint64_t alg = 0;
  TENET_RETURN_IF_ERROR(r.expect(kUint, &alg, "pubkey-hash hash-alg-id"));
  TENET_ASSIGN_OR_RETURN(ByteSpan h, r.bytes("pubkey-hash value"));
  if (!r.at_end()) return data_loss("pubkey-hash entry has {} trailing bytes", r.remaining());
  return std::make_pair(alg, Bytes(h.begin(), h.end()));
}

}  // namespace

Result<Bytes> encode_claims(const Claims& c) {
  if (c.pubkey_hash.empty()) return invalid_argument("claims need a pubkey-hash");
  size_t count = 1 + (c.nonce ? 1 : 0) + (c.model_digests.empty() ? 0 : 1) + (c.mode.empty() ? 0 : 1) +
                 (c.model_modes.empty() ? 0 : 1) + (c.platform.empty() ? 0 : 1);
  CborPtr map(cbor_new_definite_map(count));
  if (!map) return cbor_oom();

  CborPtr entry(cbor_new_definite_array(2));
  if (!entry) return cbor_oom();
  // Small ids as uint8, like Gramine (libcbor keeps the width it was built with).
  CborPtr alg(c.pubkey_hash_alg <= 0xff ? cbor_build_uint8(static_cast<uint8_t>(c.pubkey_hash_alg))
                                        : cbor_build_uint64(c.pubkey_hash_alg));
  TENET_RETURN_IF_ERROR(array_push(entry.get(), std::move(alg)));
  TENET_RETURN_IF_ERROR(array_push(entry.get(), bstr(c.pubkey_hash)));
  TENET_ASSIGN_OR_RETURN(Bytes entry_bytes, serialize(entry.get()));
  TENET_RETURN_IF_ERROR(map_add(map.get(), tstr("pubkey-hash"), bstr(entry_bytes)));

  if (c.nonce) TENET_RETURN_IF_ERROR(map_add(map.get(), tstr("nonce"), bstr(*c.nonce)));
  if (!c.model_digests.empty()) {
    CborPtr digests(cbor_new_definite_array(c.model_digests.size()));
    if (!digests) return cbor_oom();
    for (const Bytes& d : c.model_digests) TENET_RETURN_IF_ERROR(array_push(digests.get(), bstr(d)));
    TENET_RETURN_IF_ERROR(map_add(map.get(), tstr("tenet-model-digests"), std::move(digests)));
  }
  if (!c.mode.empty()) TENET_RETURN_IF_ERROR(map_add(map.get(), tstr("tenet-mode"), tstr(c.mode)));
  if (!c.model_modes.empty()) {
    CborPtr modes(cbor_new_definite_array(c.model_modes.size()));
    if (!modes) return cbor_oom();
    for (const std::string& m : c.model_modes) TENET_RETURN_IF_ERROR(array_push(modes.get(), tstr(m)));
    TENET_RETURN_IF_ERROR(map_add(map.get(), tstr("tenet-model-modes"), std::move(modes)));
  }
  if (!c.platform.empty()) TENET_RETURN_IF_ERROR(map_add(map.get(), tstr("tenet-platform"), tstr(c.platform)));
  return serialize(map.get());
}

Result<Claims> decode_claims(ByteSpan cbor) {
  if (cbor.size() > kMaxEvidenceSize) return out_of_range("claims of {} bytes exceed {}", cbor.size(), kMaxEvidenceSize);
  CborReader r(cbor);
  uint64_t n = 0;
  TENET_RETURN_IF_ERROR(r.expect(kMap, &n, "claims"));
  if (n > r.remaining() / 2) return data_loss("claims map of {} entries runs past the end", n);
  Claims c;
  bool have_pubkey_hash = false, have_nonce = false, have_digests = false, have_mode = false, have_platform = false,
       have_model_modes = false;
  auto once = [](bool& seen, const std::string& key) -> Status {
    if (seen) return data_loss("claim '{}' appears twice", key);
    seen = true;
    return ok_status();
  };
  for (uint64_t i = 0; i < n; ++i) {
    TENET_ASSIGN_OR_RETURN(std::string key, r.text("claim name"));
    if (key == "pubkey-hash") {
      TENET_RETURN_IF_ERROR(once(have_pubkey_hash, key));
      // Gramine: bstr wrapping the serialized [alg, hash]; the draft: the array itself.
      CborReader peek = r;
      uint8_t major = 0;
      uint64_t arg = 0;
      TENET_RETURN_IF_ERROR(peek.head(&major, &arg));
      ByteSpan entry;
      if (major == kBstr) {
        TENET_ASSIGN_OR_RETURN(entry, r.bytes("pubkey-hash"));
      } else {
        CborReader start = r;
        TENET_RETURN_IF_ERROR(r.skip());
        const size_t len = start.remaining() - r.remaining();
        entry = cbor.subspan(cbor.size() - start.remaining(), len);
      }
      TENET_ASSIGN_OR_RETURN(auto alg_hash, decode_hash_entry(entry));
      c.pubkey_hash_alg = alg_hash.first;
      c.pubkey_hash = std::move(alg_hash.second);
    } else if (key == "nonce") {
      TENET_RETURN_IF_ERROR(once(have_nonce, key));
      TENET_ASSIGN_OR_RETURN(ByteSpan v, r.bytes("nonce"));
      c.nonce = Bytes(v.begin(), v.end());
    } else if (key == "tenet-model-digests") {
      TENET_RETURN_IF_ERROR(once(have_digests, key));
      uint64_t count = 0;
      TENET_RETURN_IF_ERROR(r.expect(kArray, &count, "tenet-model-digests"));
      if (count > r.remaining()) return data_loss("tenet-model-digests of {} items runs past the end", count);
      for (uint64_t j = 0; j < count; ++j) {
        TENET_ASSIGN_OR_RETURN(ByteSpan d, r.bytes("tenet-model-digests item"));
        c.model_digests.emplace_back(d.begin(), d.end());
      }
    } else if (key == "tenet-mode") {
      TENET_RETURN_IF_ERROR(once(have_mode, key));
      TENET_ASSIGN_OR_RETURN(c.mode, r.text("tenet-mode"));
    } else if (key == "tenet-model-modes") {
      TENET_RETURN_IF_ERROR(once(have_model_modes, key));
      uint64_t count = 0;
      TENET_RETURN_IF_ERROR(r.expect(kArray, &count, "tenet-model-modes"));
      if (count > r.remaining()) return data_loss("tenet-model-modes of {} items runs past the end", count);
      for (uint64_t j = 0; j < count; ++j) {
        TENET_ASSIGN_OR_RETURN(std::string m, r.text("tenet-model-modes item"));
        c.model_modes.push_back(std::move(m));
      }
    } else if (key == "tenet-platform") {
      TENET_RETURN_IF_ERROR(once(have_platform, key));
      TENET_ASSIGN_OR_RETURN(c.platform, r.text("tenet-platform"));
    } else {
      TENET_RETURN_IF_ERROR(r.skip());  // other verifiers' claims: ignored, as Gramine does
    }
  }
  if (!r.at_end()) return data_loss("claims have {} trailing bytes", r.remaining());
  if (!have_pubkey_hash) return data_loss("claims lack 'pubkey-hash'");
  return c;
}

Result<Bytes> encode_evidence(ByteSpan quote, ByteSpan claims_cbor) {
  CborPtr array(cbor_new_definite_array(2));
  if (!array) return cbor_oom();
  TENET_RETURN_IF_ERROR(array_push(array.get(), bstr(quote)));
  TENET_RETURN_IF_ERROR(array_push(array.get(), bstr(claims_cbor)));
  CborPtr tag(cbor_new_tag(kTaggedEvidenceCborTag));
  if (!tag) return cbor_oom();
  cbor_tag_set_item(tag.get(), array.get());
  return serialize(tag.get());
}

Result<Evidence> decode_evidence(ByteSpan cbor) {
  if (cbor.size() > kMaxEvidenceSize) return out_of_range("evidence of {} bytes exceeds {}", cbor.size(), kMaxEvidenceSize);
  CborReader r(cbor);
  uint64_t tag = 0;
  TENET_RETURN_IF_ERROR(r.expect(kTag, &tag, "evidence"));
  if (tag != kTaggedEvidenceCborTag) return unimplemented("evidence CBOR tag {} (supported: {}, TEE quote)", tag, kTaggedEvidenceCborTag);
  uint64_t n = 0;
  TENET_RETURN_IF_ERROR(r.expect(kArray, &n, "evidence"));
  if (n != 2) return data_loss("evidence array has {} items, expected [quote, claims]", n);
  TENET_ASSIGN_OR_RETURN(ByteSpan quote, r.bytes("evidence quote"));
  TENET_ASSIGN_OR_RETURN(ByteSpan claims, r.bytes("evidence claims"));
  if (!r.at_end()) return data_loss("evidence has {} trailing bytes", r.remaining());
  if (quote.empty() || claims.empty()) return data_loss("evidence quote or claims is empty");
  return Evidence{Bytes(quote.begin(), quote.end()), Bytes(claims.begin(), claims.end())};
}

std::array<uint8_t, 64> report_data_for_claims(ByteSpan claims_cbor) {
  std::array<uint8_t, 64> rd{};
  const auto h = crypto::sha256(claims_cbor);
  std::memcpy(rd.data(), h.data(), h.size());
  return rd;
}

Result<Bytes> pubkey_hash(uint64_t alg, ByteSpan spki_der) {
  switch (alg) {
    case kHashAlgSha256: {
      const auto h = crypto::sha256(spki_der);
      return Bytes(h.begin(), h.end());
    }
    case kHashAlgSha384: {
      const auto h = crypto::sha384(spki_der);
      return Bytes(h.begin(), h.end());
    }
    default:
      return unimplemented("pubkey-hash algorithm id {} (supported: 1 sha-256, 7 sha-384)", alg);
  }
}

}  // namespace tenet::attest
