// Internal: whole-file reads and writes for pseudo-files (/dev/attestation, configfs), where the
// size is not known in advance (st_size is 0 or 4096) and a read may return short counts.
#pragma once

#include <string>

#include "crypto/crypto.h"

namespace tenet::attest {

// Reads until EOF, failing when more than `max_size` bytes arrive.
Result<crypto::Bytes> read_pseudo_file(const std::string& path, size_t max_size);
// Opens (without O_CREAT) and writes all of `data` (one write call where the kernel allows).
Status write_pseudo_file(const std::string& path, crypto::ByteSpan data);

}  // namespace tenet::attest
