#include "epc/measure.h"

#include <cstring>

#include "epc/host_epc.h"

namespace tenet::epc {
namespace {

void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void ecreate(crypto::Sha256& h, uint64_t size_bytes) {
  uint8_t rec[64] = {};
  std::memcpy(rec, "ECREATE", 7);
  rec[8] = 1;  // SSAFRAMESIZE = 1 page
  put_u64(rec + 12, size_bytes);
  h.update(crypto::ByteSpan(rec, sizeof(rec)));
}

// EADD record, then 16 EEXTEND records of 256 bytes each.
void add_page(crypto::Sha256& h, uint64_t offset, const uint8_t* page) {
  uint8_t rec[64] = {};
  std::memcpy(rec, "EADD", 4);
  put_u64(rec + 8, offset);
  rec[16] = 0x03;  // SECINFO.FLAGS: R | W
  rec[17] = 0x02;  // PT_REG
  h.update(crypto::ByteSpan(rec, sizeof(rec)));
  for (uint64_t chunk = 0; chunk < kPageBytes; chunk += 256) {
    uint8_t ext[64 + 256] = {};
    std::memcpy(ext, "EEXTEND", 7);
    put_u64(ext + 8, offset + chunk);
    std::memcpy(ext + 64, page + chunk, 256);
    h.update(crypto::ByteSpan(ext, sizeof(ext)));
  }
}

}  // namespace

crypto::Sha256Digest measure_pages(std::span<const uint8_t> contents, uint64_t base_offset) {
  crypto::Sha256 h;
  const uint64_t pages = (contents.size() + kPageBytes - 1) / kPageBytes;
  ecreate(h, pages * kPageBytes);
  uint8_t last[kPageBytes];
  for (uint64_t i = 0; i < pages; ++i) {
    const uint64_t off = i * kPageBytes;
    const uint8_t* page = contents.data() + off;
    if (off + kPageBytes > contents.size()) {
      std::memset(last, 0, sizeof(last));
      std::memcpy(last, page, contents.size() - off);
      page = last;
    }
    add_page(h, base_offset + off, page);
  }
  return h.finish();
}

crypto::Sha256Digest measure_enclave(uint64_t size_bytes) {
  static const uint8_t kZeroPage[kPageBytes] = {};
  crypto::Sha256 h;
  const uint64_t pages = (size_bytes + kPageBytes - 1) / kPageBytes;
  ecreate(h, pages * kPageBytes);
  for (uint64_t i = 0; i < pages; ++i) add_page(h, i * kPageBytes, kZeroPage);
  return h.finish();
}

}  // namespace tenet::epc
