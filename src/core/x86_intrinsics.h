// <immintrin.h> for the few functions built with __attribute__((target(...))) for an ISA beyond
// the baseline (AVX-512 AES-GCM, the matrix-vector kernel). GCC 12 reports its own AVX-512
// headers' _mm512_undefined_* placeholders as uninitialized (GCC PR 105593): the warnings point
// into the headers, not at tenet's code, so they are silenced for the include only.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
