// base64url (RFC 4648 §5) without padding, as JOSE/JWK and the KBS protocol use it.
// Decoding is strict: only the URL-safe alphabet, no padding, no whitespace, and the unused low
// bits of the last character must be zero, so every byte string has exactly one encoding.
#pragma once

#include <string>
#include <string_view>

#include "crypto/crypto.h"

namespace tenet::seal {

std::string base64url_encode(crypto::ByteSpan data);
// kInvalidArgument naming the offending position on anything non-canonical.
Result<crypto::Bytes> base64url_decode(std::string_view text);

}  // namespace tenet::seal
