// AVX2 "8 rows per vector" GEMM for 4-bit 32-value block formats (Q4_0, Q4_1). Compiled with the
// AVX2 flags of this directory; only reached through kAvx2Kernels after dispatch checked the CPU.
// Includes no header whose external-linkage inline functions baseline code also uses (no std
// containers here), see kernels_avx2.cpp.
//
// Layout: for a group of 8 weight rows, each block of 32 values is transposed (in a small stack
// scratch, per call, never in the model) into 8 vectors: vector k holds, in 32-bit lane r, the
// unpacked quants 4k..4k+3 of row r (0..15 as uint8). One token's 4 activation bytes 4k..4k+3 are
// broadcast to all lanes, so one maddubs computes 4 products for 8 rows at once; the 8 maddubs of a
// block are summed in int16 (at most 8 * 2 * 15 * 127 = 30480, no overflow), widened once, and the
// float work (convert, scale, offset) is done once per block for 8 rows instead of once per row.
//
// Per output (row r, token t) the arithmetic is a fixed sequence, independent of the tile the pair
// is computed in (so results do not depend on threads / batch split):
//   acc = 0; for each block b: acc = fma(float(isum_b), dw_b * da_b, acc); acc = fma(cw_b, sa_b, acc)
// with isum_b = sum(q * qa) (exact int), cw_b = -8 dw_b (Q4_0) or m_b (Q4_1), sa_b = da_b*sum(qa).
// The scalar reference of this sequence is gemm_rows8_ref in cpp/kernels/scalar/gemm_rows8_ref.cpp.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gemm_rows8.h"

namespace edgellama {
namespace avx2_rows8 {
namespace {

constexpr int kBlocksPerChunk = 64;   // blocks repacked at a time (20 KB of scratch)
constexpr int kTokensPerChunk = 64;   // tokens whose partial sums are kept between block chunks
constexpr int kTile = 4;              // tokens per register tile
constexpr int kDirectBelow = 4;       // fewer tokens than this: no repacking
constexpr size_t kBlockBytes = 8 * 32 + 8 * 4 * 2;  // quants + dw[8] + cw[8]

struct ActBlock {  // = ActQ8x32
  float d;
  float s;
  int8_t qs[32];
};

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256i load2x128(const uint8_t* lo, const uint8_t* hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// The fp16 at byte `at` of each row's block (8 rows) as 8 floats, built with vector ops.
inline __m256 scales8(const uint8_t* const* p, size_t at) {
  uint16_t h[8];
  for (int r = 0; r < 8; ++r) std::memcpy(&h[r], p[r] + at, 2);
  const __m128i v = _mm_setr_epi16(short(h[0]), short(h[1]), short(h[2]), short(h[3]), short(h[4]), short(h[5]),
                                   short(h[6]), short(h[7]));
  return _mm256_cvtph_ps(v);
}

// One 32-value block of 8 rows (row pointers; the block at byte boff of each row), transposed:
// g[k] lane r = quants 4k..4k+3 of row r (uint8 0..15); dw, cw per lane.
template <bool kQ41>
inline void load_block(const uint8_t* const* p, size_t boff, __m256i* g, __m256* dw, __m256* cw) {
  constexpr int off = kQ41 ? 4 : 2;
  const __m256i a = load2x128(p[0] + boff + off, p[4] + boff + off);
  const __m256i b = load2x128(p[1] + boff + off, p[5] + boff + off);
  const __m256i c = load2x128(p[2] + boff + off, p[6] + boff + off);
  const __m256i d = load2x128(p[3] + boff + off, p[7] + boff + off);
  const __m256i ab_lo = _mm256_unpacklo_epi32(a, b), ab_hi = _mm256_unpackhi_epi32(a, b);
  const __m256i cd_lo = _mm256_unpacklo_epi32(c, d), cd_hi = _mm256_unpackhi_epi32(c, d);
  __m256i x[4];
  x[0] = _mm256_unpacklo_epi64(ab_lo, cd_lo);  // 32-bit word 0 of rows 0..7
  x[1] = _mm256_unpackhi_epi64(ab_lo, cd_lo);
  x[2] = _mm256_unpacklo_epi64(ab_hi, cd_hi);
  x[3] = _mm256_unpackhi_epi64(ab_hi, cd_hi);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int k = 0; k < 4; ++k) {
    g[k] = _mm256_and_si256(x[k], m4);                             // values 4k..4k+3 (low nibbles)
    g[k + 4] = _mm256_and_si256(_mm256_srli_epi16(x[k], 4), m4);  // values 16+4k..16+4k+3
  }
  *dw = scales8(p, boff);
  *cw = kQ41 ? scales8(p, boff + 2) : _mm256_mul_ps(*dw, _mm256_set1_ps(-8.0f));
}

template <bool kQ41>
inline void repack_block(const uint8_t* const* p, size_t boff, uint8_t* dst) {
  __m256i g[8];
  __m256 dw, cw;
  load_block<kQ41>(p, boff, g, &dw, &cw);
  __m256i* out = reinterpret_cast<__m256i*>(dst);
  for (int k = 0; k < 8; ++k) _mm256_store_si256(out + k, g[k]);
  _mm256_store_ps(reinterpret_cast<float*>(out + 8), dw);
  _mm256_store_ps(reinterpret_cast<float*>(out + 8) + 8, cw);
}

inline __m256i bcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm256_set1_epi32(v);
}

inline __m256 step(const __m256i* w, __m256 dw, __m256 cw, const ActBlock* ab, __m256 s, __m256i ones) {
  __m256i p = _mm256_maddubs_epi16(w[0], bcast4(ab->qs));
  for (int k = 1; k < 8; ++k) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[k], bcast4(ab->qs + 4 * k)));
  const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
  s = _mm256_fmadd_ps(f, _mm256_mul_ps(dw, _mm256_broadcast_ss(&ab->d)), s);
  return _mm256_fmadd_ps(cw, _mm256_broadcast_ss(&ab->s), s);
}

// T tokens x 8 rows over nb repacked blocks; acc holds the running sums (8 floats per token).
template <int T>
inline void tile(int nb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_loadu_ps(acc + 8 * t);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int b = 0; b < nb; ++b) {
    const __m256i* wq = reinterpret_cast<const __m256i*>(pk + size_t(b) * kBlockBytes);
    __m256i w[8];
    for (int k = 0; k < 8; ++k) w[k] = _mm256_load_si256(wq + k);
    const __m256 dw = _mm256_load_ps(reinterpret_cast<const float*>(wq + 8));
    const __m256 cw = _mm256_load_ps(reinterpret_cast<const float*>(wq + 8) + 8);
    for (int t = 0; t < T; ++t)
      s[t] = step(w, dw, cw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b0 + b, s[t], ones);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Few tokens (decode): no scratch, the transposed block is used straight from registers.
template <bool kQ41, int T>
inline void direct(int64_t nb, const uint8_t* const* p, size_t kW, const uint8_t* a, size_t as, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i w[8];
    __m256 dw, cw;
    for (int r = 0; r < 8; ++r) _mm_prefetch(reinterpret_cast<const char*>(p[r] + (b + 8) * kW), _MM_HINT_T0);
    load_block<kQ41>(p, size_t(b) * kW, w, &dw, &cw);
    for (int t = 0; t < T; ++t) s[t] = step(w, dw, cw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b, s[t], ones);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

template <bool kQ41>
void gemm_q4(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
             size_t ys) {
  constexpr size_t kW = kQ41 ? 20 : 18;
  const int64_t nb = n / 32;
  alignas(32) uint8_t pk[kBlocksPerChunk * kBlockBytes];
  alignas(32) float acc[kTokensPerChunk * 8];
  for (int64_t t0 = 0; t0 < nt; t0 += kTokensPerChunk) {
    const int64_t ntc = nt - t0 < kTokensPerChunk ? nt - t0 : kTokensPerChunk;
    const uint8_t* at = a + size_t(t0) * as;
    for (int64_t r0 = 0; r0 < nr; r0 += 8) {
      const uint8_t* p[8];
      for (int r = 0; r < 8; ++r) p[r] = w + size_t(r0 + r < nr ? r0 + r : nr - 1) * ws;  // tail: repeat last row
      const int rr = int(nr - r0 < 8 ? nr - r0 : 8);
      if (ntc < kDirectBelow) {
        switch (ntc) {
          case 3: direct<kQ41, 3>(nb, p, kW, at, as, acc); break;
          case 2: direct<kQ41, 2>(nb, p, kW, at, as, acc); break;
          default: direct<kQ41, 1>(nb, p, kW, at, as, acc); break;
        }
        for (int64_t t = 0; t < ntc; ++t)
          for (int r = 0; r < rr; ++r) y[size_t(t0 + t) * ys + size_t(r0 + r)] = acc[8 * t + r];
        continue;
      }
      std::memset(acc, 0, sizeof(float) * 8 * size_t(ntc));
      for (int64_t b0 = 0; b0 < nb; b0 += kBlocksPerChunk) {
        const int nbc = int(nb - b0 < kBlocksPerChunk ? nb - b0 : kBlocksPerChunk);
        for (int b = 0; b < nbc; ++b) repack_block<kQ41>(p, size_t(b0 + b) * kW, pk + size_t(b) * kBlockBytes);
        int64_t t = 0;
        for (; t + kTile <= ntc; t += kTile) tile<kTile>(nbc, pk, at + size_t(t) * as, as, b0, acc + 8 * t);
        switch (ntc - t) {
          case 3: tile<3>(nbc, pk, at + size_t(t) * as, as, b0, acc + 8 * t); break;
          case 2: tile<2>(nbc, pk, at + size_t(t) * as, as, b0, acc + 8 * t); break;
          case 1: tile<1>(nbc, pk, at + size_t(t) * as, as, b0, acc + 8 * t); break;
          default: break;
        }
      }
      for (int64_t t = 0; t < ntc; ++t)
        for (int r = 0; r < rr; ++r) y[size_t(t0 + t) * ys + size_t(r0 + r)] = acc[8 * t + r];
    }
  }
}

}  // namespace

void gemm_q4_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_q4<false>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_q4<true>(n, w, ws, nr, a, as, nt, y, ys);
}

}  // namespace avx2_rows8
}  // namespace edgellama
