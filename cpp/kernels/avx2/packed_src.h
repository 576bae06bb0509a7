// Reading a packed group of 8 weight rows (edgellama/packed_layout.h) in AVX2 registers: lane r of
// a 256-bit vector = row r. Shared by the AVX2 rows8 kernels and the AVX-512 (VL) packed decode
// kernels; include only from files compiled with AVX2 (or wider) flags: everything is in an
// anonymous namespace (internal linkage), see the top of kernels_avx2.cpp.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "edgellama/packed_layout.h"

namespace edgellama {
namespace {

#ifndef EDGELLAMA_PREFETCH_PACKED
#define EDGELLAMA_PREFETCH_PACKED 1
#endif
constexpr bool kPrefetchPacked = EDGELLAMA_PREFETCH_PACKED;

// How far ahead the decode kernels of packed groups prefetch (PackedSrc::prefetch), AVX2 and AVX-512.
// Once a block takes longer to compute than a memory latency (several tokens, or a slow format),
// the lines must be requested well ahead or compute and memory do not overlap. Until session 23:
// AVX2 2 KiB (Zen 3: 2 KiB vs 2 blocks, tg Q4_0 / Q8_0 ~15% / ~7% faster), AVX-512 2 blocks for
// the 32-value formats (288 bytes for Q4_0) and nothing for the K-quants (session 6, hardware
// prefetchers alone on huge pages). Zen 5, a 45056x2048 matrix from DRAM (packed once, then the
// matmul timed: benchmarks/gemm_bench.py; load 0.6-1.2 from these runs alone: steering), swept
// 1-8 KiB (4-8 KiB within noise of each other):
//   AVX-512, 4 tokens at 2 threads, ms: Q4_0 1.29 -> 0.78, Q8_0 2.82 -> 1.9, Q4_K 1.40 -> 0.90,
//     Q6_K 2.29 -> 1.6, Q3_K 1.81 -> 1.25 (with 2 blocks, 4 tokens of Q4_0 streamed 20 GB/s per
//     thread where 1 token streams 35); 1 token at 1 thread +15-25% GB/s for every type (Q4_1
//     36 -> 49, Q3_K 26 -> 34);
//   AVX2 and AVX-VNNI tiers, 1 thread: 1 token Q4_0 33 -> 42 GB/s, Q8_0 35 -> 43, K-quants +5%;
//     4 tokens Q8_0 +20-40%, the rest compute-bound (within 5%).
//   Whole-model tg128 TinyLlama (AVX-512, 1 / 2 threads, interleaved, 4 KiB): Q4_0 +12% / +7%,
//     Q4_K_M +9% / +10%, Q6_K +14% / +9%, Q8_0 +13% / +10%.
constexpr size_t kPackedPrefetchBytes = 6144;

// b = block index in the group, o = byte offset inside a block (GGUF layout):
//   q16(b, o, x): x[k] lane r = bytes o+4k..o+4k+3 of row r's block b (k < 4);
//   half8(b, o): the 8 rows' fp16 at o as floats; word8(b, o): lane r = row r's 4 bytes at o.
struct PackedSrc {
  const uint8_t* g;  // the group
  size_t bw;
  const uint8_t* at(int64_t b, size_t o) const { return g + size_t(b) * 8 * bw + 8 * o; }
  void q16(int64_t b, size_t o, __m256i* x) const {
    const __m256i* v = reinterpret_cast<const __m256i*>(at(b, o));
    for (int k = 0; k < 4; ++k) x[k] = _mm256_loadu_si256(v + k);
  }
  __m256 half8(int64_t b, size_t o) const {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at(b, o))));
  }
  __m256i word8(int64_t b, size_t o) const { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at(b, o))); }
  // Every cache line of a block further on (the K-type kernels read a block's lines out of order,
  // which the hardware prefetcher may not follow): kPackedPrefetchBytes ahead, or 2 blocks if that
  // is further.
  void prefetch(int64_t b) const {
    const size_t block = 8 * bw, ahead = 2 * block > kPackedPrefetchBytes ? 2 * block : kPackedPrefetchBytes;
    const uint8_t* p = g + size_t(b) * block + ahead;
    for (size_t o = 0; o < block; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
  }
};

// f(std::integral_constant<int, T>{}) for T = nt, 1 <= nt <= kMax (the token count of a direct kernel
// as a compile-time constant; below 1 calls T = 1).
template <int kMax, class F>
inline void with_token_count(int64_t nt, F&& f) {
  static_assert(kMax >= 1 && kMax <= 8, "direct kernels take 1-8 tokens");
  switch (nt) {
    case 8: if constexpr (kMax >= 8) f(std::integral_constant<int, 8>{}); break;
    case 7: if constexpr (kMax >= 7) f(std::integral_constant<int, 7>{}); break;
    case 6: if constexpr (kMax >= 6) f(std::integral_constant<int, 6>{}); break;
    case 5: if constexpr (kMax >= 5) f(std::integral_constant<int, 5>{}); break;
    case 4: if constexpr (kMax >= 4) f(std::integral_constant<int, 4>{}); break;
    case 3: if constexpr (kMax >= 3) f(std::integral_constant<int, 3>{}); break;
    case 2: if constexpr (kMax >= 2) f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

}  // namespace
}  // namespace edgellama
