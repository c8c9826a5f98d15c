// Enclave creation cost on the sim platform: an EADD/EEXTEND-shaped measurement of every page.
//
// On SGX1 every page of an enclave is added (EADD) and measured (EEXTEND, 16 × 256 bytes per page)
// before EINIT, so creating a big enclave costs time proportional to its declared size — the cost
// TEMPER's enclave reuse saves by keeping enclaves alive. The sim platform reproduces that cost with
// the same hash input as the SGX SDM (vol. 3D, §40 "ECREATE/EADD/EEXTEND"): SHA-256 over an ECREATE
// record, then per page an EADD record (offset, SECINFO) and sixteen EEXTEND records (offset of
// the 256-byte chunk, then the chunk). The digest is MRENCLAVE-shaped but not bit-compatible with
// SGX's (the SECINFO and SSA fields are fixed here).
#pragma once

#include <cstdint>
#include <span>

#include "crypto/crypto.h"

namespace tenet::epc {

// Measures `contents` as pages at offsets base_offset, base_offset + 4096, …; a last partial page
// is measured zero-padded. Includes the ECREATE record for an enclave of `contents` size.
crypto::Sha256Digest measure_pages(std::span<const uint8_t> contents, uint64_t base_offset = 0);
// Measures a declared enclave of `size_bytes` (rounded up to pages) of zero pages, without
// allocating it: the time this takes is the modeled creation cost.
crypto::Sha256Digest measure_enclave(uint64_t size_bytes);

}  // namespace tenet::epc
