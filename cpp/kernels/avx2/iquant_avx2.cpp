// AVX2 kernels of IQ4_NL, MXFP4 (32-value blocks against ActQ8x32) and IQ4_XS, TQ1_0, TQ2_0
// (256-value super-blocks against block_q8_K). Compiled with the AVX2 flags; internal linkage
// except the entry points declared in entry_points.h (see the top of kernels_avx2.cpp).
//
// Every weight block is unpacked to 32 signed int8 levels per vector:
//   IQ4_NL / IQ4_XS / MXFP4: pshufb of the nibbles into the 16-entry level table,
//   TQ2_0: 2-bit fields shifted down, minus 1,
//   TQ1_0: base-3 digits as ((byte * 3^k) mod 256) * 3 >> 8, minus 1, in 16-bit lanes.
// The int8 x int8 products go through maddubs (unsigned x signed) as |w| x (a * sign(w)); no pair
// sum can saturate (|w|, |a| <= 127: 2 * 127 * 127 < 32767). Per (row, token) the block's integer sum
// is the scalar reference's (iquant_scalar.cpp); its scale is applied in float with one fma into 8
// lanes, reduced at the end. The sequence depends only on the (row, token) pair, never on the tile
// it was computed in, so any split of rows or tokens gives the same bits.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "../entry_points.h"
#include "../tile_walk.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/kernels.h"
#include "gemm_rows8.h"
#include "reduce_avx2.h"

namespace edgellama {
namespace {

using avx2_util::h2f;
using avx2_util::hsum;

// 256-value tiles: 2 rows x 4 tokens (noisy 2048x2048 timings, 32 tokens: 2x4 and 1x8 ~1.5x faster
// than 4x2, decode unchanged: unpacking a sub-block costs as much as dotting it with 2 tokens)
constexpr int kRows256 = 2, kTokens256 = 4;
constexpr int kRows = 4;    // tile rows (weights)
constexpr int kTokens = 2;  // tile tokens (activations)
constexpr int kPrefetchRows = 4;

inline __m256i table16(const int8_t* values) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values)));
}

// 16 bytes of nibbles -> 32 levels: low nibbles are values 0..15, high nibbles 16..31.
inline __m256i nibble_levels(const uint8_t* qs, __m256i table) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
  return _mm256_shuffle_epi8(table, idx);
}

// sum of w[i] * a[i] over 32 int8 pairs, as 16 int16 pair sums (wabs = |w|).
inline __m256i pair_sums(__m256i wabs, __m256i w, __m256i a) {
  return _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(a, w));
}

// ---- 32-value blocks against ActQ8x32 (MXFP4; IQ4_NL further down) ------------------------------

struct Mxfp4W {
  static constexpr size_t kBytes = sizeof(iq::block_mxfp4);
  static __m256i table() { return table16(iq::kMxfp4Values); }
  static float d(const uint8_t* p) { return iq::e8m0_to_float_half(p[0]); }
  static constexpr size_t kQsOffset = 1;
};

template <class W, int R, int T>
void tile32(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  const __m256i table = W::table();
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[R], qabs[R];
    float d[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * W::kBytes;
      if ((b & 3) == 0) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchRows * ws), _MM_HINT_T0);
      q[r] = nibble_levels(blk + W::kQsOffset, table);
      qabs[r] = _mm256_abs_epi8(q[r]);
      d[r] = W::d(blk);
    }
    for (int t = 0; t < T; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->qs));
      for (int r = 0; r < R; ++r) {
        const __m256i s = _mm256_madd_epi16(pair_sums(qabs[r], q[r], av), ones);
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d[r] * ab->d), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[size_t(t) * ys + size_t(r)] = hsum(acc[r][t]);
}

template <class W>
struct Tile32 {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile32<W, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// ---- 256-value super-blocks against block_q8_K ---------------------------------------------------

// Each format: prep() reads the float scale and the 8 sub-block scales (as int16 vectors), q() the
// 32 levels of sub-block c.
struct Iq4XsW {
  static constexpr size_t kBytes = sizeof(iq::block_iq4_xs);
  static constexpr bool kUnitScales = false;
  static float prep(const uint8_t* p, int16_t* sc) {
    const iq::block_iq4_xs* b = reinterpret_cast<const iq::block_iq4_xs*>(p);
    for (int j = 0; j < 8; ++j) sc[j] = int16_t(iq::iq4_xs_scale(b, j));
    return h2f(p);
  }
  static __m256i q(const uint8_t* p, int c, __m256i table) {
    return nibble_levels(p + offsetof(iq::block_iq4_xs, qs) + 16 * c, table);
  }
};

struct Tq2W {
  static constexpr size_t kBytes = sizeof(iq::block_tq2_0);
  static constexpr bool kUnitScales = true;
  static float prep(const uint8_t* p, int16_t*) { return h2f(p + offsetof(iq::block_tq2_0, d)); }
  // value 128 j + 32 l + m = bits 2l, 2l+1 of qs[32 j + m], minus 1
  static __m256i q(const uint8_t* p, int c, __m256i) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * (c / 4)));
    const __m256i f = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * (c % 4))), _mm256_set1_epi8(3));
    return _mm256_sub_epi8(f, _mm256_set1_epi8(1));
  }
};

// ((x * m) mod 256) * 3 >> 8, minus 1, per byte: the base-3 digit of x that m = 3^k selects.
inline __m256i trits(__m256i x, __m256i m) {
  const __m256i low = _mm256_set1_epi16(0x00FF), three = _mm256_set1_epi16(3);
  __m256i even = _mm256_and_si256(_mm256_mullo_epi16(x, m), low);  // low byte of x0 * m0 (mod 2^16)
  __m256i odd = _mm256_and_si256(_mm256_mullo_epi16(_mm256_srli_epi16(x, 8), _mm256_srli_epi16(m, 8)), low);
  even = _mm256_srli_epi16(_mm256_mullo_epi16(even, three), 8);
  odd = _mm256_srli_epi16(_mm256_mullo_epi16(odd, three), 8);
  return _mm256_sub_epi8(_mm256_or_si256(even, _mm256_slli_epi16(odd, 8)), _mm256_set1_epi8(1));
}

struct Tq1W {
  static constexpr size_t kBytes = sizeof(iq::block_tq1_0);
  static constexpr bool kUnitScales = true;
  static float prep(const uint8_t* p, int16_t*) { return h2f(p + offsetof(iq::block_tq1_0, d)); }
  // Sub-blocks 0..4: the 32 qs bytes with 3^c. 5, 6: qs[32..47] twice with (1, 3) and (9, 27).
  // 7: qs[32..47] with 81, then the 4 qh bytes four times with 1, 3, 9, 27.
  static __m256i q(const uint8_t* p, int c, __m256i) {
    if (c < 5) {
      static constexpr int16_t kPow[5] = {1, 3, 9, 27, 81};
      return trits(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_set1_epi8(int8_t(kPow[c])));
    }
    const __m128i hi16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32));
    if (c == 5) return trits(_mm256_set_m128i(hi16, hi16), _mm256_set_m128i(_mm_set1_epi8(3), _mm_set1_epi8(1)));
    if (c == 6) return trits(_mm256_set_m128i(hi16, hi16), _mm256_set_m128i(_mm_set1_epi8(27), _mm_set1_epi8(9)));
    int32_t qh;
    std::memcpy(&qh, p + offsetof(iq::block_tq1_0, qh), 4);
    const __m128i mh = _mm_setr_epi8(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
    return trits(_mm256_set_m128i(_mm_set1_epi32(qh), hi16), _mm256_set_m128i(mh, _mm_set1_epi8(81)));
  }
};

template <class W, int R, int T>
void tile256(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  const __m256i table = table16(iq::kIq4Values);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[R];
    float d[R];
    alignas(16) int16_t sc[R][8];
    for (int r = 0; r < R; ++r) {
      blk[r] = w + size_t(r) * ws + size_t(b) * W::kBytes;
      for (size_t off = 0; off < W::kBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(blk[r] + kPrefetchRows * ws + off), _MM_HINT_T0);
      d[r] = W::prep(blk[r], sc[r]);
    }
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i iacc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) iacc[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m256i q[R], qabs[R], s[R];
      for (int r = 0; r < R; ++r) {
        q[r] = W::q(blk[r], c, table);
        qabs[r] = _mm256_abs_epi8(q[r]);
        s[r] = W::kUnitScales ? ones : _mm256_set1_epi16(sc[r][c]);
      }
      for (int t = 0; t < T; ++t) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[t]->qs + 32 * c));
        for (int r = 0; r < R; ++r)
          iacc[r][t] = _mm256_add_epi32(iacc[r][t], _mm256_madd_epi16(pair_sums(qabs[r], q[r], av), s[r]));
      }
    }
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r][t]), _mm256_set1_ps(d[r] * ab[t]->d), acc[r][t]);
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[size_t(t) * ys + size_t(r)] = hsum(acc[r][t]);
}

template <class W>
struct Tile256 {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile256<W, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// IQ4_NL is Q8_0 with its levels looked up: an IQ4_NL block {fp16 d, 16 nibble bytes} is exactly
// the Q8_0 block {d, kIq4Values[nibble] for its 32 values}. Prefill (4 tokens and more) transcodes
// the rows (pshufb) into a per-thread scratch, a group of rows at a time, and runs the rows8 Q8_0
// kernel (gemm_rows8_avx2.cpp) with its repacked tiles; decode runs the row tiles below, which
// follow the same per-output sequence (gemm_rows8_ref's Q8_0: per block the exact integer sum,
// acc = fma(float(isum), dw * da, acc)), so a token's bits never depend on the call's token count.
constexpr int64_t kTranscodeRows = 16;  // rows per transcoded group (a multiple of the kernel's 8)
constexpr int64_t kDecodeMax = 4;  // fewer tokens: the row tiles (no transcoding to amortize)

void transcode_iq4_nl_to_q8_0(const uint8_t* src, uint8_t* dst, int64_t nb, __m256i table) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(iq::block_iq4_nl), dst += sizeof(block_q8_0)) {
    std::memcpy(dst, src, 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2), nibble_levels(src + 2, table));
  }
}

// Lane r (r < R <= 4) = the sum of the 8 int32 lanes of v[r]; lanes >= R are 0.
template <int R>
inline __m128i row_sums_i32(const __m256i* v) {
  const __m256i z = _mm256_setzero_si256();
  const __m256i h01 = _mm256_hadd_epi32(v[0], R > 1 ? v[1] : z);
  const __m256i h23 = R > 2 ? _mm256_hadd_epi32(v[2], R > 3 ? v[3] : z) : z;
  const __m256i h = _mm256_hadd_epi32(h01, h23);
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// R <= 4 rows in the lanes of one float accumulator per token.
template <int R, int T>
void tile_iq4_nl_decode(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  static_assert(R <= 4, "rows are the lanes of one __m128");
  const __m256i table = table16(iq::kIq4Values);
  const __m256i ones = _mm256_set1_epi16(1);
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[R], qabs[R];
    float d[4] = {0, 0, 0, 0};
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * sizeof(iq::block_iq4_nl);
      if ((b & 3) == 0) _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchRows * ws), _MM_HINT_T0);
      q[r] = nibble_levels(blk + 2, table);
      qabs[r] = _mm256_abs_epi8(q[r]);
      d[r] = h2f(blk);
    }
    const __m128 dv = _mm_setr_ps(d[0], d[1], d[2], d[3]);
    for (int t = 0; t < T; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->qs));
      __m256i s[R];
      for (int r = 0; r < R; ++r) s[r] = _mm256_madd_epi16(pair_sums(qabs[r], q[r], av), ones);
      acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(s)), _mm_mul_ps(dv, _mm_set1_ps(ab->d)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float s4[4];
    _mm_store_ps(s4, acc[t]);
    for (int r = 0; r < R; ++r) y[size_t(t) * ys + size_t(r)] = s4[r];
  }
}

template <int R, int T>
struct Iq4NlDecodeTile {
  static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    tile_iq4_nl_decode<R, T>(nb, w, ws, a, as, y, ys);
  }
};

}  // namespace

void avx2_gemm_iq4_nl(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  avx2_gemm_iq4_nl_via(avx2_rows8::gemm_q8_0, n, w, ws, nr, a, as, nt, y, ys);
}

void avx2_gemm_iq4_nl_via(GemmFn q8_0_prefill, int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a,
                          size_t as, int64_t nt, float* y, size_t ys) {
  const int64_t nb = n / 32;
  if (nt < kDecodeMax) {
    walk_tiles<Iq4NlDecodeTile, 4, 3>(nb, w, ws, nr, a, as, nt, y, ys);
    return;
  }
  const size_t q8_row = size_t(nb) * sizeof(block_q8_0);
  thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < size_t(kTranscodeRows) * q8_row) scratch.resize(size_t(kTranscodeRows) * q8_row);
  const __m256i table = table16(iq::kIq4Values);
  for (int64_t r0 = 0; r0 < nr; r0 += kTranscodeRows) {
    const int64_t rr = nr - r0 < kTranscodeRows ? nr - r0 : kTranscodeRows;
    for (int64_t r = 0; r < rr; ++r)
      transcode_iq4_nl_to_q8_0(w + size_t(r0 + r) * ws, scratch.data() + size_t(r) * q8_row, nb, table);
    q8_0_prefill(n, scratch.data(), q8_row, rr, a, as, nt, y + r0, ys);
  }
}
void avx2_gemm_mxfp4(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                     float* y, size_t ys) {
  walk_tiles<Tile32<Mxfp4W>::Of, kRows, kTokens>(n / 32, w, ws, nr, a, as, nt, y, ys);
}
void avx2_gemm_iq4_xs(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  walk_tiles<Tile256<Iq4XsW>::Of, kRows256, kTokens256>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}
void avx2_gemm_tq1_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                     float* y, size_t ys) {
  walk_tiles<Tile256<Tq1W>::Of, kRows256, kTokens256>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}
void avx2_gemm_tq2_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                     float* y, size_t ys) {
  walk_tiles<Tile256<Tq2W>::Of, kRows256, kTokens256>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

}  // namespace edgellama
