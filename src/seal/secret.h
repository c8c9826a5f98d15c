// SecretBytes: an owning byte buffer for keys and decrypted plaintext that is wiped
// (OPENSSL_cleanse) when it is destroyed or overwritten. Move-only: a secret is never copied
// implicitly. It never grows after construction, so no reallocation leaves an unwiped copy behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "crypto/crypto.h"

namespace tenet::seal {

using crypto::ByteSpan;
using crypto::Bytes;

class SecretBytes {
 public:
  SecretBytes() = default;
  // `size` zero bytes.
  explicit SecretBytes(size_t size) : bytes_(size) {}
  // Copies `data`.
  static SecretBytes copy_of(ByteSpan data) {
    SecretBytes s(data.size());
    if (!data.empty()) std::copy(data.begin(), data.end(), s.bytes_.begin());
    return s;
  }
  // Takes ownership of `data` (its buffer is wiped by this object later).
  static SecretBytes adopt(Bytes&& data) {
    SecretBytes s;
    s.bytes_ = std::move(data);
    return s;
  }
  ~SecretBytes() { crypto::secure_wipe(bytes_); }
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      crypto::secure_wipe(bytes_);
      bytes_ = std::move(other.bytes_);
      other.bytes_.clear();
    }
    return *this;
  }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  std::span<uint8_t> span() { return bytes_; }
  ByteSpan view() const { return bytes_; }
  // Explicit deep copy (for the rare caller that must keep two).
  SecretBytes clone() const { return copy_of(bytes_); }

 private:
  Bytes bytes_;
};

}  // namespace tenet::seal
