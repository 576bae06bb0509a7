// AVX2 "8 rows per vector" GEMM for the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1; Q4_K and
// Q8_0 further down). Compiled with the AVX2 flags of this directory; only reached through
// kAvx2Kernels after dispatch checked the CPU. Includes no header whose external-linkage inline
// functions baseline code also uses (no std containers here), see kernels_avx2.cpp.
//
// Layout: for a group of 8 weight rows, each block of 32 values is transposed (in a small stack
// scratch, per call, never in the model) into 8 vectors: vector k holds, in 32-bit lane r, the
// unpacked quants 4k..4k+3 of row r (0..15, or 0..31 for Q5_x, as uint8). One token's 4 activation
// bytes 4k..4k+3 are broadcast to all lanes, so one maddubs computes 4 products for 8 rows at once;
// the 8 maddubs of a block are summed in int16 (see block_isum), widened, and the float work
// (convert, scale, offset) is done once per block for 8 rows instead of once per row. The same file
// is compiled a second time for AVX-VNNI (rows8_isa.h), where vpdpbusd sums the products in int32.
//
// Per output (row r, token t) the arithmetic is a fixed sequence, independent of the tile the pair
// is computed in (so results do not depend on threads / batch split):
//   acc = 0; for each block b: acc = fma(float(isum_b), dw_b * da_b, acc); acc = fma(cw_b, sa_b, acc)
// with isum_b = sum(q * qa) (exact int), cw_b = -8 dw_b (Q4_0), -16 dw_b (Q5_0) or m_b (Q4_1, Q5_1),
// sa_b = da_b*sum(qa).
// The scalar reference of this sequence is gemm_rows8_ref in cpp/kernels/scalar/gemm_rows8_ref.cpp.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../always_inline.h"
#include "../kquant_scales.h"
#include "edgellama/quant_blocks.h"
#include "gemm_rows8.h"
#include "isum_pair_avx2.h"
#include "isum_nibbles_avx2.h"
#include "isum_q8_avx2.h"
#include "legacy_blocks_avx2.h"
#include "packed_src.h"
#include "kquant_avx2.h"
#include "reduce_avx2.h"
#include "rows8_isa.h"

namespace edgellama {
namespace EDGELLAMA_ROWS8_NS {
namespace {

constexpr int kBlocksPerChunk = 64;   // blocks repacked at a time (20 KB of scratch)
constexpr int kTokensPerChunk = 64;   // tokens whose partial sums are kept between block chunks
constexpr int kTile = 4;              // tokens per register tile
constexpr int kDirectBelow = 4;       // fewer tokens than this: no repacking
constexpr int kDirectBelowPacked = 7;  // packed groups: the unpacking is cheap, the scratch is not
// Pair tiles (16 rows) from this many tokens: below it the weights' streaming decides, and one group
// at a time reads them in one sequential pass (TinyLlama's 4-token step, whose logits matmul has 8
// rows with the residual, was ~10% slower with pairs).
constexpr int kPairFrom = 32;
// Formats with F::kPassesFrom take up to this many tokens of a packed group as direct passes of 4
// (the asm cores keep their sums in registers; the later passes read the group from L1/L2). Up to 8
// until session 17: the 9-31-token chunks of multi-stream speculative steps (4 streams x 2-3 draft
// rows, doubled by the residual pass) went through repack + run_tile. Quiet whole-step A/B
// (BENCHMARKS.md session 17): TinyLlama Q4_0 10 rows 8-18% faster in three of four pairs, 20 and 28
// rows equal; SmolLM2 10 / 20 / 28 rows 5 / 14 / 5% faster.
constexpr int kDirectPassesUpTo = kPairFrom - 1;
constexpr size_t kBlockBytes = 8 * 32 + 8 * 4 * 2;  // quants + dw[8] + cw[8]

struct ActBlock {  // = ActQ8x32
  float d;
  float s;
  int8_t qs[32];
};

using avx2_util::h2f;

inline __m256i load2x128(const uint8_t* lo, const uint8_t* hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// Quant bytes 16 at byte o of each row's block, transposed: x[k] lane r = bytes 4k..4k+3 of row r.
inline void transpose_rows(const uint8_t* const* p, size_t o, __m256i* x) {
  const __m256i a = load2x128(p[0] + o, p[4] + o);
  const __m256i b = load2x128(p[1] + o, p[5] + o);
  const __m256i c = load2x128(p[2] + o, p[6] + o);
  const __m256i d = load2x128(p[3] + o, p[7] + o);
  const __m256i ab_lo = _mm256_unpacklo_epi32(a, b), ab_hi = _mm256_unpackhi_epi32(a, b);
  const __m256i cd_lo = _mm256_unpacklo_epi32(c, d), cd_hi = _mm256_unpackhi_epi32(c, d);
  x[0] = _mm256_unpacklo_epi64(ab_lo, cd_lo);
  x[1] = _mm256_unpackhi_epi64(ab_lo, cd_lo);
  x[2] = _mm256_unpacklo_epi64(ab_hi, cd_hi);
  x[3] = _mm256_unpackhi_epi64(ab_hi, cd_hi);
}

// The fp16 at byte `at` of each row's block (8 rows) as 8 floats, built with vector ops.
inline __m256 scales8(const uint8_t* const* p, size_t at) {
  uint16_t h[8];
  for (int r = 0; r < 8; ++r) std::memcpy(&h[r], p[r] + at, 2);
  const __m128i v = _mm_setr_epi16(short(h[0]), short(h[1]), short(h[2]), short(h[3]), short(h[4]), short(h[5]),
                                   short(h[6]), short(h[7]));
  return _mm256_cvtph_ps(v);
}

// The 32-bit word at byte `at` of each row's block (8 rows): lane r = row r's word.
inline __m256i words8(const uint8_t* const* p, size_t at) {
  uint32_t u[8];
  for (int r = 0; r < 8; ++r) std::memcpy(&u[r], p[r] + at, 4);
  return _mm256_setr_epi32(int(u[0]), int(u[1]), int(u[2]), int(u[3]), int(u[4]), int(u[5]), int(u[6]), int(u[7]));
}

// Where a kernel reads a group of 8 rows' blocks from (b = block index, o = byte offset in a block):
//   RowSrc:    8 row pointers in the GGUF layout; the vectors are built here (transposed per call);
//   PackedSrc: a group packed at load (edgellama/packed_layout.h): the same vectors are plain loads.
// q16(b, o, x): x[k] lane r = bytes o+4k..o+4k+3 of row r's block b (k < 4);
// half8(b, o): the 8 rows' fp16 at o as floats; word8(b, o): lane r = row r's 4 bytes at o.
struct RowSrc {
  const uint8_t* p[8];
  size_t bw;  // bytes per block
  void q16(int64_t b, size_t o, __m256i* x) const { transpose_rows(p, size_t(b) * bw + o, x); }
  __m256 half8(int64_t b, size_t o) const { return scales8(p, size_t(b) * bw + o); }
  __m256i word8(int64_t b, size_t o) const { return words8(p, size_t(b) * bw + o); }
  void prefetch(int64_t b) const {
    for (int r = 0; r < 8; ++r) _mm_prefetch(reinterpret_cast<const char*>(p[r] + size_t(b + 8) * bw), _MM_HINT_T0);
  }
};
// One 32-value block of 8 rows (row pointers; the block at byte boff of each row), transposed:
// g[k] lane r = quants 4k..4k+3 of row r (uint8 0..15, or 0..31 with the fifth bit); dw, cw per lane.
// cw of the 8 rows' block b (see the top of this file): the stored minimum, or kOffset * dw.
template <class L, class S>
inline __m256 offset8(const S& src, int64_t b, __m256 dw) {
  return L::kMinOff ? src.half8(b, L::kMinOff) : _mm256_mul_ps(dw, _mm256_set1_ps(L::kOffset));
}

template <class L, class S>
inline void load_block(const S& src, int64_t b, __m256i* g, __m256* dw, __m256* cw) {
  __m256i x[4];
  src.q16(b, L::kQsOff, x);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int k = 0; k < 4; ++k) {
    g[k] = _mm256_and_si256(x[k], m4);                             // values 4k..4k+3 (low nibbles)
    g[k + 4] = _mm256_and_si256(_mm256_srli_epi16(x[k], 4), m4);  // values 16+4k..16+4k+3
  }
  if constexpr (L::kFiveBit) {
    const __m256i qh = src.word8(b, L::kQhOff);
    for (int k = 0; k < 8; ++k) g[k] = _mm256_or_si256(g[k], fifth_bits(qh, k));
  }
  *dw = src.half8(b, 0);
  *cw = offset8<L>(src, b, *dw);
}

template <class L, class S>
inline void repack_block(const S& src, int64_t b, uint8_t* dst) {
  __m256i g[8];
  __m256 dw, cw;
  load_block<L>(src, b, g, &dw, &cw);
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

// acc + the u8 x s8 products of u and s, 4 per 32-bit lane summed (exact int32): one vpdpbusd on
// AVX-VNNI (rows8_isa.h); maddubs, madd with ones and an add on AVX2 (the maddubs pair sums stay in
// int16 for every operand range used here: |w| <= 128 times |a| <= 127).
EDGELLAMA_ALWAYS_INLINE __m256i dot4_acc(__m256i acc, __m256i u, __m256i s, [[maybe_unused]] __m256i ones) {
#if defined(EDGELLAMA_AVX_VNNI)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
#endif
}

// Exact int32 block sums of 8 rows (lane r) with one token's block: the 8 maddubs are summed in
// int16 (4-bit: 16 products of at most 15 * 127, <= 30480) or, for 5-bit quants (at most 31 * 127),
// in two halves of 8 products each (<= 31496), widened separately.
template <bool kFiveBit>
inline __m256i block_isum(const __m256i* w, const ActBlock* ab, __m256i ones) {
  if constexpr (kVnni) {  // int32 from the start: two chains of 4 vpdpbusd (values 0..15 / 16..31)
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
      lo = dot4_acc(lo, w[k], bcast4(ab->qs + 4 * k), ones);
      hi = dot4_acc(hi, w[k + 4], bcast4(ab->qs + 16 + 4 * k), ones);
    }
    return _mm256_add_epi32(lo, hi);
  }
  __m256i lo = _mm256_maddubs_epi16(w[0], bcast4(ab->qs));
  for (int k = 1; k < 4; ++k) lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(w[k], bcast4(ab->qs + 4 * k)));
  __m256i hi = _mm256_maddubs_epi16(w[4], bcast4(ab->qs + 16));
  for (int k = 5; k < 8; ++k) hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(w[k], bcast4(ab->qs + 4 * k)));
  if constexpr (kFiveBit) return _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
  return _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones);
}

// The float step of every 32-value-block kernel here (da, sa = the token's d and s broadcast):
// acc = fma(float(isum_b), dw_b * da_b, acc); acc = fma(cw_b, sa_b, acc).
inline __m256 finish_legacy(__m256i isum, __m256 dw, __m256 cw, __m256 da, __m256 sa, __m256 s) {
  return _mm256_fmadd_ps(cw, sa, _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), s));
}

template <bool kFiveBit>
inline __m256 step(const __m256i* w, __m256 dw, __m256 cw, const ActBlock* ab, __m256 s, __m256i ones) {
  return finish_legacy(block_isum<kFiveBit>(w, ab, ones), dw, cw, _mm256_broadcast_ss(&ab->d),
                       _mm256_broadcast_ss(&ab->s), s);
}

// T tokens x 8 rows over nb repacked blocks; acc holds the running sums (8 floats per token).
template <bool kFiveBit, int T>
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
      s[t] = step<kFiveBit>(w, dw, cw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b0 + b, s[t], ones);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// 16 rows (two groups, repacked into pka / pkb) x T tokens over nb blocks (4; 2 for 5-bit quants,
// whose values need two int16 sums): the integer sums of isum_pair_avx2.h, widened as block_isum does,
// then per group and token the float sequence of step(). The running sums stay in acca / accb
// (memory: the registers are taken by the integer sums).
// AVX-VNNI sums in int32 from the start, so the 5-bit formats take 4 tokens too (pair_tokens).
template <bool kFiveBit>
constexpr int pair_tokens() { return kFiveBit && !kVnni ? 2 : 4; }

template <bool kFiveBit>
inline void tile_pair(int nb, const uint8_t* pka, const uint8_t* pkb, const uint8_t* a, size_t as, int64_t b0,
                      float* acca, float* accb) {
  constexpr int T = pair_tokens<kFiveBit>();
  for (int b = 0; b < nb; ++b) {
    const uint8_t* wg[2] = {pka + size_t(b) * kBlockBytes, pkb + size_t(b) * kBlockBytes};
    const uint8_t* ab0 = a + size_t(b0 + b) * sizeof(ActBlock);  // token 0's block; token t's at + t * as
    const int8_t* q0 = reinterpret_cast<const ActBlock*>(ab0)->qs;
    __m256i isums[2][T];  // exact int32 block sums of group g, token t
    if constexpr (T == 2)
      isum_pair2_five_i32(wg[0], wg[1], q0, as, isums);
    else
      isum_pair4_i32(wg[0], wg[1], q0, as, isums[0], isums[1]);
    float* acc[2] = {acca, accb};
    for (int t = 0; t < T; ++t) {
      const ActBlock* ab = reinterpret_cast<const ActBlock*>(ab0 + size_t(t) * as);
      const __m256 da = _mm256_broadcast_ss(&ab->d), sa = _mm256_broadcast_ss(&ab->s);
      for (int g = 0; g < 2; ++g) {
        const float* dwcw = reinterpret_cast<const float*>(wg[g] + 8 * 32);
        const __m256i isum = isums[g][t];
        _mm256_storeu_ps(acc[g] + 8 * t, finish_legacy(isum, _mm256_load_ps(dwcw), _mm256_load_ps(dwcw + 8), da, sa,
                                                        _mm256_loadu_ps(acc[g] + 8 * t)));
      }
    }
  }
}

// The T-token decode walk (T <= 4) over a packed group shared by the formats with asm integer cores
// (4-bit and Q8_0: 2-4 tokens): block(b, isum, s) forms block b's integer sums and adds its float
// step to s[0..T-1]. The passes of 4 (group_rows8) call it once per 4 tokens (the last pass with
// the 1-3 left); the 8 activation rows of a 4-stream step with the residual pass are two calls, the
// second reading the group from cache.
template <int T, class Block>
inline void direct_packed(int64_t nb, const PackedSrc& src, float* acc, Block&& block) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    __m256i isum[T];
    block(b, isum, s);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Few tokens (decode): no scratch. The block is transposed in registers and each group of 4 values
// is multiplied with every token as soon as it is unpacked, so only the 4 transposed vectors and the
// int16 sums are live (materializing all 8 groups first spilled the accumulators to the stack).
// The int16 halves and the float sequence are those of block_isum / step.
template <class L, int T, class S>
inline void direct(int64_t nb, const S& src, const uint8_t* a, size_t as, float* acc) {
  if constexpr (T >= 2 && T <= 4 && !L::kFiveBit && std::is_same_v<S, PackedSrc>) {
    // 2-4 tokens of a 4-bit format from a packed group: the integer sums of isum_nibbles_avx2.h (GCC
    // spilled this loop's int16 sums at T = 3 and 4; 1 token, the streaming decode, stays below).
    direct_packed<T>(nb, src, acc, [&](int64_t b, __m256i* isum, __m256* s) EDGELLAMA_ALWAYS_INLINE_LAMBDA {
      isum_nibbles<T>(src.at(b, L::kQsOff), (reinterpret_cast<const ActBlock*>(a) + b)->qs, as, isum);
      const __m256 dw = src.half8(b, 0), cw = offset8<L>(src, b, dw);
      for (int t = 0; t < T; ++t) {
        const ActBlock* ab = reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b;
        s[t] = finish_legacy(isum[t], dw, cw, _mm256_broadcast_ss(&ab->d),
                             _mm256_broadcast_ss(&ab->s), s[t]);
      }
    });
    return;
  }
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked || std::is_same_v<S, RowSrc>) src.prefetch(b);
    const ActBlock* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b;
    __m256i x[4];
    src.q16(b, L::kQsOff, x);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (L::kFiveBit) qh = src.word8(b, L::kQhOff);
    __m256i lo[T], hi[T];  // groups 0..3 / 4..7 (values 0..15 / 16..31), int16 (AVX-VNNI: int32)
    for (int k = 0; k < 4; ++k) {
      __m256i gl = _mm256_and_si256(x[k], m4), gh = _mm256_and_si256(_mm256_srli_epi16(x[k], 4), m4);
      if constexpr (L::kFiveBit) {
        gl = _mm256_or_si256(gl, fifth_bits(qh, k));
        gh = _mm256_or_si256(gh, fifth_bits(qh, k + 4));
      }
      for (int t = 0; t < T; ++t) {
        if constexpr (kVnni) {  // int32 sums (vpdpbusd)
          lo[t] = dot4_acc(k ? lo[t] : _mm256_setzero_si256(), gl, bcast4(ab[t]->qs + 4 * k), ones);
          hi[t] = dot4_acc(k ? hi[t] : _mm256_setzero_si256(), gh, bcast4(ab[t]->qs + 16 + 4 * k), ones);
        } else {
          const __m256i pl = _mm256_maddubs_epi16(gl, bcast4(ab[t]->qs + 4 * k));
          const __m256i ph = _mm256_maddubs_epi16(gh, bcast4(ab[t]->qs + 16 + 4 * k));
          lo[t] = k ? _mm256_add_epi16(lo[t], pl) : pl;
          hi[t] = k ? _mm256_add_epi16(hi[t], ph) : ph;
        }
      }
    }
    const __m256 dw = src.half8(b, 0);
    const __m256 cw = offset8<L>(src, b, dw);
    for (int t = 0; t < T; ++t) {
      const __m256i isum = kVnni         ? _mm256_add_epi32(lo[t], hi[t])
                           : L::kFiveBit ? _mm256_add_epi32(_mm256_madd_epi16(lo[t], ones), _mm256_madd_epi16(hi[t], ones))
                                         : _mm256_madd_epi16(_mm256_add_epi16(lo[t], hi[t]), ones);
      s[t] = finish_legacy(isum, dw, cw, _mm256_broadcast_ss(&ab[t]->d), _mm256_broadcast_ss(&ab[t]->s), s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

template <class L>
struct LegacyFormat {
  static constexpr size_t kW = L::kW;  // bytes of one block in a weight row
  static constexpr int64_t kValues = 32;
  static constexpr int kPerChunk = kBlocksPerChunk;
  static constexpr size_t kBytes = kBlockBytes;
  template <class S>
  static void repack(const S& src, int64_t b, uint8_t* dst) { repack_block<L>(src, b, dst); }
  template <int T>
  static void run_tile(int nb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
    tile<L::kFiveBit, T>(nb, pk, a, as, b0, acc);
  }
  // 16 rows x 4 tokens at a time (4-bit quants), or x 2 tokens (5-bit: two int16 sums per output;
  // AVX-VNNI: 4 tokens for both).
  static constexpr bool kPairTile = true;
  static constexpr int kPairTokens = pair_tokens<L::kFiveBit>();
  static void run_pair_tile(int nb, const uint8_t* pka, const uint8_t* pkb, const uint8_t* a, size_t as, int64_t b0,
                            float* acca, float* accb) {
    tile_pair<L::kFiveBit>(nb, pka, pkb, a, as, b0, acca, accb);
  }
  // 4-bit quants from packed groups: 5-31 tokens as passes of 4 (group_rows8).
  static constexpr int kPassesFrom = L::kFiveBit ? 0 : 5;
  template <class S>
  static bool run_direct(int64_t ntc, int64_t nb, const S& src, const uint8_t* a, size_t as, float* acc) {
    with_token_count<kDirectBelowPacked - 1>(ntc, [&](auto T) { direct<L, decltype(T)::value>(nb, src, a, as, acc); });
    return true;
  }
};

// ---- Q4_K / Q5_K: super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit scales / mins ----------
// For fewer than 4 tokens kernels_avx2.cpp uses its row tiles with the same per-output sequence.
// Scratch per super-block of 8 rows: for sub-block c and group G (values 32c+4G..+3): one vector of
// the 8 rows' quants; per sub-block c: the 8 rows' scales and mins as int16 pairs (s, s) in each
// 32-bit lane (madd operands); d and dmin of the 8 rows. Per (row, token, super-block):
//   isum = sum_c sc_c * sum_i q_i a_i, msum = sum_c mn_c * (bsums[2c] + bsums[2c+1]) (exact ints)
//   acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dmin * da, acc)

constexpr int kSuperPerChunk = 8;
constexpr size_t kKQuantBytes = 64 * 32, kKBlockBytes = kKQuantBytes + 16 * 32 + 2 * 32;

// 8 rows' 8 bytes (x[r], low 64 bits) transposed: out[c] lane r = x[r] byte c, as the int16 pair (v, v).
inline void transpose8x8_pairs(const __m128i* x, __m256i* out) {
  const __m128i a0 = _mm_unpacklo_epi8(x[0], x[1]), a1 = _mm_unpacklo_epi8(x[2], x[3]);
  const __m128i a2 = _mm_unpacklo_epi8(x[4], x[5]), a3 = _mm_unpacklo_epi8(x[6], x[7]);
  const __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);  // c0..3 / c4..7, rows 0..3
  const __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);  // rows 4..7
  __m128i c[4];
  c[0] = _mm_unpacklo_epi32(b0, b2);  // byte 0 of rows 0..7, then byte 1
  c[1] = _mm_unpackhi_epi32(b0, b2);
  c[2] = _mm_unpacklo_epi32(b1, b3);
  c[3] = _mm_unpackhi_epi32(b1, b3);
  for (int q = 0; q < 4; ++q) {
    const __m256i v0 = _mm256_cvtepu8_epi32(c[q]), v1 = _mm256_cvtepu8_epi32(_mm_srli_si128(c[q], 8));
    out[2 * q] = _mm256_or_si256(v0, _mm256_slli_epi32(v0, 16));
    out[2 * q + 1] = _mm256_or_si256(v1, _mm256_slli_epi32(v1, 16));
  }
}

// The (v, v) int16 pair of byte c (0..3) of each 32-bit lane of x.
inline __m256i byte_pairs(__m256i x, int c) {
  const __m256i v = _mm256_and_si256(_mm256_srli_epi32(x, 8 * c), _mm256_set1_epi32(0xFF));
  return _mm256_or_si256(v, _mm256_slli_epi32(v, 16));
}

// Q4_K 6-bit scales / mins of 8 rows: sc[c] / mn[c] lane r = (v, v) int16 pair of row r, sub-block c.
// Lane-wise on the rows' three scale words (kquant_scales.h's scale_min_k4, 4 sub-blocks per word).
template <class S>
EDGELLAMA_ALWAYS_INLINE void scale_vectors_q4k(const S& src, int64_t b, __m256i* sc, __m256i* mn) {
  const __m256i u0 = src.word8(b, 4), u1 = src.word8(b, 8), u2 = src.word8(b, 12);
  const __m256i m6 = _mm256_set1_epi32(0x3f3f3f3f), m4 = _mm256_set1_epi32(0x0f0f0f0f),
                m2 = _mm256_set1_epi32(0x03030303);
  const __m256i s0 = _mm256_and_si256(u0, m6);
  const __m256i s1 = _mm256_or_si256(_mm256_and_si256(u2, m4),
                                     _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), m2), 4));
  const __m256i n0 = _mm256_and_si256(u1, m6);
  const __m256i n1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4),
                                     _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), m2), 4));
  for (int c = 0; c < 4; ++c) {
    sc[c] = byte_pairs(s0, c);
    sc[c + 4] = byte_pairs(s1, c);
    mn[c] = byte_pairs(n0, c);
    mn[c + 4] = byte_pairs(n1, c);
  }
}

// Q4_K: d dmin scales[12] qs[128]; Q5_K: d dmin scales[12] qh[32] qs[128], the fifth bit of value j
// of chunk c is bit c of qh[j]. Same scratch layout for both (quants 0..15 or 0..31).
template <bool kFive, class S>
inline void repack_k45(const S& src, int64_t b, uint8_t* dst) {
  constexpr size_t qs_off = kFive ? 48 : 16, qh_off = 16;
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256i xh[2][4];
  if constexpr (kFive)
    for (int h = 0; h < 2; ++h) src.q16(b, qh_off + 16 * size_t(h), xh[h]);
  __m256i* out = reinterpret_cast<__m256i*>(dst);
  for (int i = 0; i < 4; ++i) {
    for (int h = 0; h < 2; ++h) {
      __m256i x[4];
      src.q16(b, qs_off + 32 * size_t(i) + 16 * size_t(h), x);
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * h + k;
        __m256i lo = _mm256_and_si256(x[k], m4), hi = _mm256_and_si256(_mm256_srli_epi16(x[k], 4), m4);
        if constexpr (kFive) {
          const __m256i b = xh[h][k];  // chunk 2i: bit 2i of each qh byte; chunk 2i+1: bit 2i+1
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(b, 2 * i), one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(b, 2 * i + 1), one), 4));
        }
        _mm256_store_si256(out + (2 * i) * 8 + g, lo);
        _mm256_store_si256(out + (2 * i + 1) * 8 + g, hi);
      }
    }
  }
  scale_vectors_q4k(src, b, out + 64, out + 72);
  float* d = reinterpret_cast<float*>(dst + kKQuantBytes + 16 * 32);
  _mm256_store_ps(d, src.half8(b, 0));
  _mm256_store_ps(d + 8, src.half8(b, 2));
}

inline __m256 finish_q4k(__m256i iacc, const __m256i* mn, __m256 d, __m256 dm, const block_q8_K* ab, __m256 s) {
  __m256i ms = _mm256_madd_epi16(_mm256_load_si256(mn), bcast4(reinterpret_cast<const int8_t*>(ab->bsums)));
  for (int c = 1; c < 8; ++c)
    ms = _mm256_add_epi32(ms, _mm256_madd_epi16(_mm256_load_si256(mn + c),
                                                bcast4(reinterpret_cast<const int8_t*>(ab->bsums + 2 * c))));
  const __m256 da = _mm256_broadcast_ss(&ab->d);
  s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc), _mm256_mul_ps(d, da), s);
  return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dm, da), s);
}

// 5-bit quants (Q5_K): a group's 8 maddubs are summed in two int16 halves of 8 products each (at most
// 8 * 31 * 127 = 31496), as in block_isum above.
template <bool kFive, int T>
inline void tile_q4k(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_loadu_ps(acc + 8 * t);
  for (int sb = 0; sb < nsb; ++sb) {
    const uint8_t* blk = pk + size_t(sb) * kKBlockBytes;
    const __m256i* wq = reinterpret_cast<const __m256i*>(blk);
    const __m256i* scv = reinterpret_cast<const __m256i*>(blk + kKQuantBytes);
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + sb0 + sb;
    __m256i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      __m256i w[8];
      for (int k = 0; k < 8; ++k) w[k] = _mm256_load_si256(wq + 8 * c + k);
      const __m256i sc = _mm256_load_si256(scv + c);
      for (int t = 0; t < T; ++t) {
        const int8_t* q = ab[t]->qs + 32 * c;
        __m256i lo = _mm256_maddubs_epi16(w[0], bcast4(q));
        for (int k = 1; k < 4; ++k) lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(w[k], bcast4(q + 4 * k)));
        __m256i hi = _mm256_maddubs_epi16(w[4], bcast4(q + 16));
        for (int k = 5; k < 8; ++k) hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(w[k], bcast4(q + 4 * k)));
        const __m256i part = kFive ? _mm256_add_epi32(_mm256_madd_epi16(lo, sc), _mm256_madd_epi16(hi, sc))
                                   : _mm256_madd_epi16(_mm256_add_epi16(lo, hi), sc);
        iacc[t] = _mm256_add_epi32(iacc[t], part);
      }
    }
    const __m256 d = _mm256_load_ps(reinterpret_cast<const float*>(blk + kKQuantBytes + 16 * 32));
    const __m256 dm = _mm256_load_ps(reinterpret_cast<const float*>(blk + kKQuantBytes + 16 * 32) + 8);
    for (int t = 0; t < T; ++t) s[t] = finish_q4k(iacc[t], scv + 8, d, dm, ab[t], s[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Q4_K / Q5_K: 16 rows (two groups, repacked into pka / pkb) x T tokens (4; 2 for Q5_K, whose values
// need two int16 sums), the integer sums of each 32-value chunk from isum_pair_avx2.h (the int16
// values tile_q4k forms), then tile_q4k's scale madd and finish_q4k; the running float sums stay in
// acca / accb.
template <bool kFive>
inline void tile_pair_k45(int nsb, const uint8_t* pka, const uint8_t* pkb, const uint8_t* a, size_t as, int64_t sb0,
                          float* acca, float* accb) {
  constexpr int T = kFive ? 2 : 4;
  for (int sb = 0; sb < nsb; ++sb) {
    const uint8_t* blk[2] = {pka + size_t(sb) * kKBlockBytes, pkb + size_t(sb) * kKBlockBytes};
    const uint8_t* ab0 = a + size_t(sb0 + sb) * sizeof(block_q8_K);  // token 0's; token t's at + t * as
    const int8_t* q0 = reinterpret_cast<const block_q8_K*>(ab0)->qs;
    __m256i iacc[2][T];
    for (int c = 0; c < 8; ++c) {
      const uint8_t* wa = blk[0] + 256 * size_t(c);
      const uint8_t* wb = blk[1] + 256 * size_t(c);
      __m256i lo[2][T], hi[2][T];  // 4-bit: lo holds the whole chunk's sum
      if constexpr (kFive)
        isum_pair2_five(wa, wb, q0 + 32 * c, as, lo, hi);
      else
        isum_pair4(wa, wb, q0 + 32 * c, as, lo[0], lo[1]);
      for (int g = 0; g < 2; ++g) {
        const __m256i sc = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk[g] + kKQuantBytes) + c);
        for (int t = 0; t < T; ++t) {
          __m256i part = _mm256_madd_epi16(lo[g][t], sc);
          if constexpr (kFive) part = _mm256_add_epi32(part, _mm256_madd_epi16(hi[g][t], sc));
          iacc[g][t] = c ? _mm256_add_epi32(iacc[g][t], part) : part;
        }
      }
    }
    float* acc[2] = {acca, accb};
    for (int g = 0; g < 2; ++g) {
      const __m256i* scv = reinterpret_cast<const __m256i*>(blk[g] + kKQuantBytes);
      const float* dd = reinterpret_cast<const float*>(blk[g] + kKQuantBytes + 16 * 32);
      const __m256 d = _mm256_load_ps(dd), dm = _mm256_load_ps(dd + 8);
      for (int t = 0; t < T; ++t) {
        const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(ab0 + size_t(t) * as);
        _mm256_storeu_ps(acc[g] + 8 * t, finish_q4k(iacc[g][t], scv + 8, d, dm, ab, _mm256_loadu_ps(acc[g] + 8 * t)));
      }
    }
  }
}

// Few tokens from a packed group: no scratch. Each chunk's quants are unpacked into registers and
// used at once; the integer sums are exact (any order gives the same ints, the int16 bounds are
// those of tile_q4k) and the float sequence is finish_q4k's, so the bits equal tile_q4k's.
template <bool kFive, int T>
inline void direct_k45(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  constexpr size_t qs_off = kFive ? 48 : 16;
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    __m256i sc[8], mn[8];
    scale_vectors_q4k(src, b, sc, mn);
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm256_setzero_si256();
    __m256i xh[2][4];
    if constexpr (kFive) {
      src.q16(b, 16, xh[0]);
      src.q16(b, 32, xh[1]);
    }
    for (int i = 0; i < 4; ++i) {  // chunks 2i (low nibbles) and 2i+1 (high nibbles)
      __m256i lo[T][2], hi[T][2];    // int16 sums of groups 4h..4h+3
      for (int h = 0; h < 2; ++h) {
        __m256i x[4];
        src.q16(b, qs_off + 32 * size_t(i) + 16 * size_t(h), x);
        for (int k = 0; k < 4; ++k) {
          __m256i l = _mm256_and_si256(x[k], m4), u = _mm256_and_si256(_mm256_srli_epi16(x[k], 4), m4);
          if constexpr (kFive) {
            l = _mm256_or_si256(l, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(xh[h][k], 2 * i), one), 4));
            u = _mm256_or_si256(u, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(xh[h][k], 2 * i + 1), one), 4));
          }
          const int g = 4 * h + k;
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 64 * i + 4 * g;
            const __m256i pl = _mm256_maddubs_epi16(l, bcast4(q)), pu = _mm256_maddubs_epi16(u, bcast4(q + 32));
            lo[t][h] = k ? _mm256_add_epi16(lo[t][h], pl) : pl;
            hi[t][h] = k ? _mm256_add_epi16(hi[t][h], pu) : pu;
          }
        }
      }
      for (int t = 0; t < T; ++t) {
        __m256i part;
        if constexpr (kFive)
          part = _mm256_add_epi32(
              _mm256_add_epi32(_mm256_madd_epi16(lo[t][0], sc[2 * i]), _mm256_madd_epi16(lo[t][1], sc[2 * i])),
              _mm256_add_epi32(_mm256_madd_epi16(hi[t][0], sc[2 * i + 1]), _mm256_madd_epi16(hi[t][1], sc[2 * i + 1])));
        else
          part = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(lo[t][0], lo[t][1]), sc[2 * i]),
                                  _mm256_madd_epi16(_mm256_add_epi16(hi[t][0], hi[t][1]), sc[2 * i + 1]));
        iacc[t] = _mm256_add_epi32(iacc[t], part);
      }
    }
    const __m256 d = src.half8(b, 0), dm = src.half8(b, 2);
    for (int t = 0; t < T; ++t) s[t] = finish_q4k(iacc[t], mn, d, dm, ab[t], s[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

template <bool kFive>
struct K45Format {
  static constexpr bool kPairTile = true;
  static constexpr int kPairTokens = kFive ? 2 : 4;  // 5-bit: two int16 sums per output
  static constexpr size_t kW = kFive ? sizeof(block_q5_K) : sizeof(block_q4_K);
  static constexpr int64_t kValues = QK_K;
  static constexpr int kPerChunk = kSuperPerChunk;
  static constexpr size_t kBytes = kKBlockBytes;
  template <class S>
  static void repack(const S& src, int64_t b, uint8_t* dst) { repack_k45<kFive>(src, b, dst); }
  template <int T>
  static void run_tile(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
    tile_q4k<kFive, T>(nsb, pk, a, as, sb0, acc);
  }
  static void run_pair_tile(int nsb, const uint8_t* pka, const uint8_t* pkb, const uint8_t* a, size_t as, int64_t sb0,
                            float* acca, float* accb) {
    tile_pair_k45<kFive>(nsb, pka, pkb, a, as, sb0, acca, accb);
  }
  // Fewer than 4 tokens: kernels_avx2.cpp's row tiles for GGUF rows; packed groups: direct_k45.
  static constexpr int kPassesFrom = 0;  // their direct<4> was slower than repack + tile at 5-8 tokens
  static bool run_direct(int64_t, int64_t, const RowSrc&, const uint8_t*, size_t, float*) { return false; }
  static bool run_direct(int64_t ntc, int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
    with_token_count<kDirectBelowPacked - 1>(ntc, [&](auto T) { direct_k45<kFive, decltype(T)::value>(nsb, src, a, as, acc); });
    return true;
  }
};

// ---- Q2_K / Q3_K / Q6_K: super-blocks of 256 values, 16 sub-blocks of 16 with their own scale
// (kquant_avx2.h's K::q unpacks the quants, 0..3 / 0..7 / 0..63; kquant_scales.h the scales sc and
// the offsets mn: Q2_K's mins; for Q3_K / Q6_K, whose value is q - 4 / q - 32, mn = 4 sc / 32 sc and
// dm = d). Per (row, token, super-block), with exact ints
//   isum = sum_s sc_s * sum_{i in s} q_i a_i,  msum = sum_s mn_s * bsums_s
//   K::kCombined (Q3_K, Q6_K): acc = fma(float(isum - msum), d * da, acc)
//   otherwise (Q2_K):          acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dm * da, acc)
// (the sequence of kernels_avx2.cpp's kSeq row tiles, which take fewer than 4 tokens). Scratch per
// super-block of 8 rows: for 32-value chunk c and group G (values 32c+4G..+3) one vector of the 8
// rows' quants; per sub-block s the scales as int16 pairs (sc, sc); per chunk c the pairs
// (mn_2c, mn_2c+1) to madd with the bsums pair; d and dm of the 8 rows. A maddubs pair sum is at most
// 2 * 63 * 127, so two maddubs (8 products, <= 32004) are summed in int16 before each madd.

constexpr int kSub16SuperPerChunk = 8;
constexpr size_t kSub16QuantBytes = 64 * 32, kSub16ScaleBytes = 16 * 32, kSub16MinBytes = 8 * 32;
constexpr size_t kSub16BlockBytes = kSub16QuantBytes + kSub16ScaleBytes + kSub16MinBytes + 64;

template <class K>
inline void repack_sub16(const uint8_t* const* p, size_t boff, uint8_t* dst) {
  // Each row's 256 quants unpacked in order, then transposed.
  alignas(32) uint8_t rows[8][QK_K];
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 8; ++c) _mm256_store_si256(reinterpret_cast<__m256i*>(rows[r] + 32 * c), K::q(p[r] + boff, c));
  const uint8_t* rp[8] = {rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6], rows[7]};
  __m256i* out = reinterpret_cast<__m256i*>(dst);
  for (int c = 0; c < 8; ++c) {
    transpose_rows(rp, 32 * size_t(c), out + 8 * c);           // groups 0..3: sub-block 2c
    transpose_rows(rp, 32 * size_t(c) + 16, out + 8 * c + 4);  // groups 4..7: sub-block 2c+1
  }
  int16_t* sc = reinterpret_cast<int16_t*>(dst + kSub16QuantBytes);
  int16_t* mn = reinterpret_cast<int16_t*>(dst + kSub16QuantBytes + kSub16ScaleBytes);
  float* d = reinterpret_cast<float*>(dst + kSub16QuantBytes + kSub16ScaleBytes + kSub16MinBytes);
  for (int r = 0; r < 8; ++r) {
    kq::Scales s;
    K::scales(p[r] + boff, &s);
    for (int sb = 0; sb < 16; ++sb) sc[2 * (8 * sb + r)] = sc[2 * (8 * sb + r) + 1] = s.sc[sb];
    for (int c = 0; c < 8; ++c) {
      mn[2 * (8 * c + r)] = s.mn[2 * c];
      mn[2 * (8 * c + r) + 1] = s.mn[2 * c + 1];
    }
    __m256i scv, mn16;
    K::prep(p[r] + boff, &d[r], &d[8 + r], &scv, &mn16);
  }
}

// The same scratch from a packed group, lane-parallel (lane r = row r): quant group g (values
// 32c+4g..+3) of chunk c from the rows' 4-byte words, and each sub-block's scale / offset as int32.
// Q6_K's quants of chunk k (0..3) of half h, group g from the packed triple at p (packed_layout.h):
// q1 = A & 63, q2 = B & 63, q3 = (C & 15) | (A >> 2 & 48), q4 = (C >> 4 & 15) | (B >> 2 & 48).
inline __m256i q6k_quants(const PackedSrc& s, int64_t b, size_t p, int k) {
  const __m256i m0f = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  if (k < 2) return _mm256_and_si256(s.word8(b, p + 4 * size_t(k)), _mm256_set1_epi8(0x3F));
  const __m256i c = s.word8(b, p + 8);
  const __m256i lo = _mm256_and_si256(k == 2 ? c : _mm256_srli_epi16(c, 4), m0f);
  return _mm256_or_si256(lo, _mm256_and_si256(_mm256_srli_epi16(s.word8(b, p + 4 * size_t(k - 2)), 2), m30));
}

template <class K>
struct Sub16Lanes;
template <>
struct Sub16Lanes<Q6_KW> {  // Q6_K's packed form (packed_layout.h): scales, d, triples A B C
  static __m256i q(const PackedSrc& s, int64_t b, int c, int g) {
    const int h = c / 4, k = c % 4;
    return q6k_quants(s, b, q6k_packed_triple(h, g), k);
  }
  static void scales(const PackedSrc& s, int64_t b, __m256i* sc, __m256i* mn, __m256* d, __m256* dm) {
    for (int w = 0; w < 4; ++w) {
      const __m256i x = s.word8(b, kQ6PackedScales + size_t(4 * w));
      for (int j = 0; j < 4; ++j) {
        sc[4 * w + j] = _mm256_srai_epi32(_mm256_slli_epi32(x, 24 - 8 * j), 24);  // int8 scale
        mn[4 * w + j] = _mm256_slli_epi32(sc[4 * w + j], 5);                    // value = qu - 32
      }
    }
    *d = *dm = s.half8(b, kQ6PackedD);
  }
};
template <>
struct Sub16Lanes<Q3_KW> {  // hmask[32] qs[64] scales[12] d: as Q3_KW::q / kq::scales_q3_K per row
  static __m256i q(const PackedSrc& s, int64_t b, int c, int g) {
    const __m256i v = s.word8(b, size_t(32 + 32 * (c / 4) + 4 * g));
    const __m256i hm = s.word8(b, size_t(4 * g));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), _mm256_set1_epi8(3));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hm, c), _mm256_set1_epi8(1));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
  }
  static void scales(const PackedSrc& s, int64_t b, __m256i* sc, __m256i* mn, __m256* d, __m256* dm) {
    const __m256i u0 = s.word8(b, 96), u1 = s.word8(b, 100), u2 = s.word8(b, 104);
    const __m256i m4 = _mm256_set1_epi32(0x0f0f0f0f), m2 = _mm256_set1_epi32(0x03030303);
    auto hi2 = [&](int shift) { return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u2, shift), m2), 4); };
    __m256i w[4];
    w[0] = _mm256_or_si256(_mm256_and_si256(u0, m4), hi2(0));
    w[1] = _mm256_or_si256(_mm256_and_si256(u1, m4), hi2(2));
    w[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u0, 4), m4), hi2(4));
    w[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u1, 4), m4), hi2(6));
    for (int i = 0; i < 16; ++i) {
      const __m256i v = _mm256_and_si256(_mm256_srli_epi32(w[i / 4], 8 * (i % 4)), _mm256_set1_epi32(0xFF));
      sc[i] = _mm256_sub_epi32(v, _mm256_set1_epi32(32));
      mn[i] = _mm256_slli_epi32(sc[i], 2);  // value = qu - 4
    }
    *d = *dm = s.half8(b, 108);
  }
};
template <>
struct Sub16Lanes<Q2_KW> {  // scales[16] qs[64] d dmin: as Q2_KW::q / kq::scales_q2_K per row
  static __m256i q(const PackedSrc& s, int64_t b, int c, int g) {
    const __m256i v = s.word8(b, size_t(16 + 32 * (c / 4) + 4 * g));
    return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), _mm256_set1_epi8(3));
  }
  static void scales(const PackedSrc& s, int64_t b, __m256i* sc, __m256i* mn, __m256* d, __m256* dm) {
    for (int w = 0; w < 4; ++w) {
      const __m256i x = s.word8(b, size_t(4 * w));
      for (int j = 0; j < 4; ++j) {
        const __m256i v = _mm256_and_si256(_mm256_srli_epi32(x, 8 * j), _mm256_set1_epi32(0xFF));
        sc[4 * w + j] = _mm256_and_si256(v, _mm256_set1_epi32(0xF));
        mn[4 * w + j] = _mm256_srli_epi32(v, 4);
      }
    }
    *d = s.half8(b, 80);
    *dm = s.half8(b, 82);
  }
};

inline __m256i pair16(__m256i lo, __m256i hi) {  // int32 lanes -> (lo, hi) int16 pair per lane
  return _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(hi, 16));
}

template <class K>
inline void repack_sub16(const PackedSrc& src, int64_t b, uint8_t* dst) {
  using Ln = Sub16Lanes<K>;
  __m256i* out = reinterpret_cast<__m256i*>(dst);
  for (int c = 0; c < 8; ++c)
    for (int g = 0; g < 8; ++g) _mm256_store_si256(out + 8 * c + g, Ln::q(src, b, c, g));
  __m256i sc[16], mn[16];
  __m256 d, dm;
  Ln::scales(src, b, sc, mn, &d, &dm);
  __m256i* scv = reinterpret_cast<__m256i*>(dst + kSub16QuantBytes);
  __m256i* mnv = reinterpret_cast<__m256i*>(dst + kSub16QuantBytes + kSub16ScaleBytes);
  for (int i = 0; i < 16; ++i) _mm256_store_si256(scv + i, pair16(sc[i], sc[i]));
  for (int c = 0; c < 8; ++c) _mm256_store_si256(mnv + c, pair16(mn[2 * c], mn[2 * c + 1]));
  float* dp = reinterpret_cast<float*>(dst + kSub16QuantBytes + kSub16ScaleBytes + kSub16MinBytes);
  _mm256_store_ps(dp, d);
  _mm256_store_ps(dp + 8, dm);
}

// The end of a super-block for one token (tile_sub16 and the direct kernels alike): the offsets
// msum = sum_c (mn_2c, mn_2c+1) . (bsums[2c], bsums[2c+1]) in exact ints, then
//   kCombined (Q3_K, Q6_K): acc = fma(float(isum - msum), d * da, acc)
//   otherwise (Q2_K):       acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dm * da, acc)
template <bool kCombined>
inline __m256 finish_sub16(__m256i isum, const __m256i* mnv, __m256 d, __m256 dm, const block_q8_K* ab, __m256 s) {
  const int8_t* bs = reinterpret_cast<const int8_t*>(ab->bsums);
  __m256i ms = _mm256_madd_epi16(_mm256_load_si256(mnv), bcast4(bs));
  for (int c = 1; c < 8; ++c) ms = _mm256_add_epi32(ms, _mm256_madd_epi16(_mm256_load_si256(mnv + c), bcast4(bs + 4 * c)));
  const __m256 da = _mm256_broadcast_ss(&ab->d);
  if constexpr (kCombined)
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum, ms)), _mm256_mul_ps(d, da), s);
  s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, da), s);
  return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dm, da), s);
}

template <class K, int T>
inline void tile_sub16(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_loadu_ps(acc + 8 * t);
  for (int sb = 0; sb < nsb; ++sb) {
    const uint8_t* blk = pk + size_t(sb) * kSub16BlockBytes;
    const __m256i* wq = reinterpret_cast<const __m256i*>(blk);
    const __m256i* scv = reinterpret_cast<const __m256i*>(blk + kSub16QuantBytes);
    const __m256i* mnv = reinterpret_cast<const __m256i*>(blk + kSub16QuantBytes + kSub16ScaleBytes);
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + sb0 + sb;
    __m256i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      __m256i w[8];
      for (int k = 0; k < 8; ++k) w[k] = _mm256_load_si256(wq + 8 * c + k);
      const __m256i sc0 = _mm256_load_si256(scv + 2 * c), sc1 = _mm256_load_si256(scv + 2 * c + 1);
      for (int t = 0; t < T; ++t) {
        const int8_t* q = ab[t]->qs + 32 * c;
        __m256i pr[4];
        for (int g = 0; g < 4; ++g)
          pr[g] = _mm256_add_epi16(_mm256_maddubs_epi16(w[2 * g], bcast4(q + 8 * g)),
                                   _mm256_maddubs_epi16(w[2 * g + 1], bcast4(q + 8 * g + 4)));
        const __m256i lo = _mm256_add_epi32(_mm256_madd_epi16(pr[0], sc0), _mm256_madd_epi16(pr[1], sc0));
        const __m256i hi = _mm256_add_epi32(_mm256_madd_epi16(pr[2], sc1), _mm256_madd_epi16(pr[3], sc1));
        iacc[t] = _mm256_add_epi32(iacc[t], _mm256_add_epi32(lo, hi));
      }
    }
    const float* dp = reinterpret_cast<const float*>(blk + kSub16QuantBytes + kSub16ScaleBytes + kSub16MinBytes);
    const __m256 d = _mm256_load_ps(dp), dm = _mm256_load_ps(dp + 8);
    for (int t = 0; t < T; ++t) s[t] = finish_sub16<K::kCombined>(iacc[t], mnv, d, dm, ab[t], s[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// 16 rows (two groups, repacked into pka / pkb) x 4 tokens: tile_sub16's integers from
// isum_pair_avx2.h, then finish_sub16; the running float sums stay in acca / accb.
template <class K>
inline void tile_pair_sub16(int nsb, const uint8_t* pka, const uint8_t* pkb, const uint8_t* a, size_t as, int64_t sb0,
                            float* acca, float* accb) {
  for (int sb = 0; sb < nsb; ++sb) {
    const uint8_t* blk[2] = {pka + size_t(sb) * kSub16BlockBytes, pkb + size_t(sb) * kSub16BlockBytes};
    const __m256i* scv[2] = {reinterpret_cast<const __m256i*>(blk[0] + kSub16QuantBytes),
                             reinterpret_cast<const __m256i*>(blk[1] + kSub16QuantBytes)};
    const uint8_t* ab0 = a + size_t(sb0 + sb) * sizeof(block_q8_K);  // token 0's; token t's at + t * as
    const int8_t* q0 = reinterpret_cast<const block_q8_K*>(ab0)->qs;
    __m256i iacc[2][4];
    for (int g = 0; g < 2; ++g)
      for (int t = 0; t < 4; ++t) iacc[g][t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c)
      isum_pair4_sub16(blk[0] + 256 * size_t(c), blk[1] + 256 * size_t(c), scv[0] + 2 * c, scv[1] + 2 * c, q0 + 32 * c,
                       as, iacc[0], iacc[1]);
    float* acc[2] = {acca, accb};
    for (int g = 0; g < 2; ++g) {
      const __m256i* mnv = reinterpret_cast<const __m256i*>(blk[g] + kSub16QuantBytes + kSub16ScaleBytes);
      const float* dp = reinterpret_cast<const float*>(blk[g] + kSub16QuantBytes + kSub16ScaleBytes + kSub16MinBytes);
      const __m256 d = _mm256_load_ps(dp), dm = _mm256_load_ps(dp + 8);
      for (int t = 0; t < 4; ++t) {
        const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(ab0 + size_t(t) * as);
        _mm256_storeu_ps(acc[g] + 8 * t,
                         finish_sub16<K::kCombined>(iacc[g][t], mnv, d, dm, ab, _mm256_loadu_ps(acc[g] + 8 * t)));
      }
    }
  }
}

// Few tokens from a packed group: no scratch (see direct_k45); the arithmetic is tile_sub16's.
template <class K, int T>
inline void direct_sub16(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  using Ln = Sub16Lanes<K>;
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    __m256i sc[16], mn[16];
    __m256 d, dm;
    Ln::scales(src, b, sc, mn, &d, &dm);
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      __m256i w[8];
      for (int g = 0; g < 8; ++g) w[g] = Ln::q(src, b, c, g);
      const __m256i sc0 = pair16(sc[2 * c], sc[2 * c]), sc1 = pair16(sc[2 * c + 1], sc[2 * c + 1]);
      for (int t = 0; t < T; ++t) {
        const int8_t* q = ab[t]->qs + 32 * c;
        __m256i pr[4];
        for (int g = 0; g < 4; ++g)
          pr[g] = _mm256_add_epi16(_mm256_maddubs_epi16(w[2 * g], bcast4(q + 8 * g)),
                                   _mm256_maddubs_epi16(w[2 * g + 1], bcast4(q + 8 * g + 4)));
        const __m256i lo = _mm256_add_epi32(_mm256_madd_epi16(pr[0], sc0), _mm256_madd_epi16(pr[1], sc0));
        const __m256i hi = _mm256_add_epi32(_mm256_madd_epi16(pr[2], sc1), _mm256_madd_epi16(pr[3], sc1));
        iacc[t] = _mm256_add_epi32(iacc[t], _mm256_add_epi32(lo, hi));
      }
    }
    __m256i mnv[8];
    for (int c = 0; c < 8; ++c) mnv[c] = pair16(mn[2 * c], mn[2 * c + 1]);
    for (int t = 0; t < T; ++t) s[t] = finish_sub16<K::kCombined>(iacc[t], mnv, d, dm, ab[t], s[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Q6_K from a packed group, few tokens: per half h and group g the rows' packed triple (A, B, C:
// packed_layout.h) gives group g of the four chunks at once; the scales
// become int16 pairs with one shuffle and one shift each. Same integer sums and float sequence as
// tile_sub16 (the int16 bounds are its own: two maddubs per sum).
template <int T>
inline void direct_q6k(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    // sc[j]: lane r = (v, v), v = row r's int8 scale j (sign-extended by the arithmetic shift);
    // mnp[c]: (32 * v_2c, 32 * v_2c+1), the offsets of value = qu - 32.
    __m256i sc[16], mnp[8];
    // Shuffles putting byte j (j + 1) of each lane into the high byte of the lane's int16 halves (0x80
    // entries give 0, and stay >= 0x80 after adding j).
    const char z = char(0x80);
    const __m256i sel_sc = _mm256_setr_epi8(z, 0, z, 0, z, 4, z, 4, z, 8, z, 8, z, 12, z, 12, z, 0, z, 0, z, 4, z, 4, z,
                                            8, z, 8, z, 12, z, 12);
    const __m256i sel_mn = _mm256_setr_epi8(z, 0, z, 1, z, 4, z, 5, z, 8, z, 9, z, 12, z, 13, z, 0, z, 1, z, 4, z, 5, z,
                                            8, z, 9, z, 12, z, 13);
#pragma GCC unroll 4
    for (int w = 0; w < 4; ++w) {
      const __m256i x = src.word8(b, kQ6PackedScales + size_t(4 * w));
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        sc[4 * w + j] = _mm256_srai_epi16(_mm256_shuffle_epi8(x, _mm256_add_epi8(sel_sc, _mm256_set1_epi8(char(j)))), 8);
#pragma GCC unroll 2
      for (int j = 0; j < 4; j += 2)
        mnp[(4 * w + j) / 2] = _mm256_slli_epi16(
            _mm256_srai_epi16(_mm256_shuffle_epi8(x, _mm256_add_epi8(sel_mn, _mm256_set1_epi8(char(j)))), 8), 5);
    }
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      for (int gp = 0; gp < 4; ++gp) {  // groups 2gp, 2gp+1: 8 values of sub-block 2c + gp/2
        __m256i v[4][2];                 // [chunk k = 0..3 of this half][group]
        for (int j = 0; j < 2; ++j) {
          const int g = 2 * gp + j;
          for (int k = 0; k < 4; ++k) v[k][j] = q6k_quants(src, b, q6k_packed_triple(h, g), k);
        }
        for (int k = 0; k < 4; ++k) {
          const int c = 4 * h + k;
          const __m256i scv = sc[2 * c + gp / 2];
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 32 * c + 8 * gp;
            const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(v[k][0], bcast4(q)),
                                                _mm256_maddubs_epi16(v[k][1], bcast4(q + 4)));
            iacc[t] = _mm256_add_epi32(iacc[t], _mm256_madd_epi16(pr, scv));
          }
        }
      }
    }
    const __m256 d = src.half8(b, kQ6PackedD);
    for (int t = 0; t < T; ++t) s[t] = finish_sub16<true>(iacc[t], mnp, d, d, ab[t], s[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

template <class K, int T>
inline void direct_sub16_any(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  if constexpr (std::is_same_v<K, Q6_KW>)
    direct_q6k<T>(nsb, src, a, as, acc);
  else
    direct_sub16<K, T>(nsb, src, a, as, acc);
}

template <class K>
struct Sub16Format {
  static constexpr bool kPairTile = true;  // quants <= 63: isum_pair4_sub16's int16 bound
  static constexpr int kPairTokens = 4;
  static constexpr size_t kW = K::kBytes;
  static constexpr int64_t kValues = QK_K;
  static constexpr int kPerChunk = kSub16SuperPerChunk;
  static constexpr size_t kBytes = kSub16BlockBytes;
  static void repack(const RowSrc& src, int64_t b, uint8_t* dst) { repack_sub16<K>(src.p, size_t(b) * kW, dst); }
  static void repack(const PackedSrc& src, int64_t b, uint8_t* dst) { repack_sub16<K>(src, b, dst); }
  template <int T>
  static void run_tile(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
    tile_sub16<K, T>(nsb, pk, a, as, sb0, acc);
  }
  static void run_pair_tile(int nsb, const uint8_t* pka, const uint8_t* pkb, const uint8_t* a, size_t as, int64_t sb0,
                            float* acca, float* accb) {
    tile_pair_sub16<K>(nsb, pka, pkb, a, as, sb0, acca, accb);
  }
  // Fewer than 4 tokens: kernels_avx2.cpp's row tiles for GGUF rows; packed groups: direct_sub16.
  // Q6_K from packed groups: 7-31 tokens (a 4-stream step's logits with their residual rows) as passes
  // of 4 (group_rows8), which beat repack + tile there; Q3_K's and Q2_K's direct<4> do not.
  static constexpr int kPassesFrom = std::is_same_v<K, Q6_KW> ? kDirectBelowPacked : 0;
  static bool run_direct(int64_t, int64_t, const RowSrc&, const uint8_t*, size_t, float*) { return false; }
  static bool run_direct(int64_t ntc, int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
    with_token_count<kDirectBelowPacked - 1>(ntc, [&](auto T) { direct_sub16_any<K, decltype(T)::value>(nsb, src, a, as, acc); });
    return true;
  }
};

// ---- Q8_0: signed int8 quants; maddubs(|w|, sign(a, w)) per group, widened per group (two products
// can exceed int16). Scratch per block of 8 rows: 8 vectors |w|, 8 vectors w, dw[8]. Per output:
//   acc = fma(float(isum_b), dw_b * da_b, acc)

constexpr int kQ8BlocksPerChunk = 32;
constexpr size_t kQ8BlockBytes = 16 * 32 + 32;

template <class S>
EDGELLAMA_ALWAYS_INLINE void load_block_q8(const S& src, int64_t b, __m256i* w, __m256* dw) {
  src.q16(b, 2, w);
  src.q16(b, 18, w + 4);
  *dw = src.half8(b, 0);
}

// The float step of every Q8_0 kernel here: acc = fma(float(isum_b), dw_b * da_b, acc).
inline __m256 finish_q8(__m256i isum, __m256 dw, const ActBlock* ab, __m256 s) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_broadcast_ss(&ab->d)), s);
}

EDGELLAMA_ALWAYS_INLINE __m256 step_q8(const __m256i* wabs, const __m256i* w, __m256 dw, const ActBlock* ab, __m256 s, __m256i ones) {
  __m256i acc = _mm256_setzero_si256();
  if constexpr (kVnni) {  // two chains of 4 vpdpbusd: half the dependent latency of one
    __m256i acc2 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) {
      acc = dot4_acc(acc, wabs[k], _mm256_sign_epi8(bcast4(ab->qs + 4 * k), w[k]), ones);
      acc2 = dot4_acc(acc2, wabs[k + 1], _mm256_sign_epi8(bcast4(ab->qs + 4 * k + 4), w[k + 1]), ones);
    }
    acc = _mm256_add_epi32(acc, acc2);
  } else {  // AVX2: one chain of adds after the independent maddubs / madd pairs
    for (int k = 0; k < 8; ++k) acc = dot4_acc(acc, wabs[k], _mm256_sign_epi8(bcast4(ab->qs + 4 * k), w[k]), ones);
  }
  return finish_q8(acc, dw, ab, s);
}

// 8 rows x 4 tokens (the full tiles): the integer sums of isum_q8_avx2.h, then finish_q8.
inline void tile_q8_4(int nb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
  for (int b = 0; b < nb; ++b) {
    const uint8_t* wq = pk + size_t(b) * kQ8BlockBytes;
    const uint8_t* ab0 = a + size_t(b0 + b) * sizeof(ActBlock);  // token 0's block; token t's at + t * as
    __m256i isum[4];
    isum_q8_4(wq, reinterpret_cast<const ActBlock*>(ab0)->qs, as, isum);
    const __m256 dw = _mm256_load_ps(reinterpret_cast<const float*>(wq + 16 * 32));
    for (int t = 0; t < 4; ++t) {
      const ActBlock* ab = reinterpret_cast<const ActBlock*>(ab0 + size_t(t) * as);
      _mm256_storeu_ps(acc + 8 * t, finish_q8(isum[t], dw, ab, _mm256_loadu_ps(acc + 8 * t)));
    }
  }
}

template <int T>
inline void tile_q8(int nb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_loadu_ps(acc + 8 * t);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int b = 0; b < nb; ++b) {
    const __m256i* wq = reinterpret_cast<const __m256i*>(pk + size_t(b) * kQ8BlockBytes);
    const __m256 dw = _mm256_load_ps(reinterpret_cast<const float*>(wq + 16));
    for (int t = 0; t < T; ++t)
      s[t] = step_q8(wq, wq + 8, dw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b0 + b, s[t], ones);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Few tokens (decode): no transposition. Each row's block is multiplied in its own vector (as in the
// row-tile kernels) and the 8 rows' int32 partial sums are reduced into one vector with lane r = row
// r's exact block sum; the float sequence is then the same as tile_q8's.
template <int T>
inline void direct_q8(int64_t nb, const uint8_t* const* p, const uint8_t* a, size_t as, float* acc) {
  constexpr size_t kW = 34;
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const size_t boff = size_t(b) * kW;
    __m256i w[8], wabs[8];
    for (int r = 0; r < 8; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(p[r] + boff + 8 * kW), _MM_HINT_T0);
      w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[r] + boff + 2));
      wabs[r] = _mm256_abs_epi8(w[r]);
    }
    const __m256 dw = scales8(p, boff);
    for (int t = 0; t < T; ++t) {
      const ActBlock* ab = reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b;
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->qs));
      __m256i pr[8];
      for (int r = 0; r < 8; ++r)
        pr[r] = dot4_acc(_mm256_setzero_si256(), wabs[r], _mm256_sign_epi8(av, w[r]), ones);
      const __m256i h01 = _mm256_hadd_epi32(pr[0], pr[1]), h23 = _mm256_hadd_epi32(pr[2], pr[3]);
      const __m256i h45 = _mm256_hadd_epi32(pr[4], pr[5]), h67 = _mm256_hadd_epi32(pr[6], pr[7]);
      const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
      const __m256i isum = _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
      s[t] = finish_q8(isum, dw, ab, s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Few tokens from a packed group: the transposed vectors are loads; the arithmetic is tile_q8's.
// 2-4 tokens: the integer sums of isum_q8_packed<T> (GCC spilled the 16 weight vectors here).
template <int T>
inline void direct_q8(int64_t nb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  if constexpr (T >= 2 && T <= 4) {
    direct_packed<T>(nb, src, acc, [&](int64_t b, __m256i* isum, __m256* s) EDGELLAMA_ALWAYS_INLINE_LAMBDA {
      isum_q8_packed<T>(src.at(b, 2), (reinterpret_cast<const ActBlock*>(a) + b)->qs, as, isum);
      const __m256 dw = src.half8(b, 0);
      for (int t = 0; t < T; ++t) s[t] = finish_q8(isum[t], dw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b, s[t]);
    });
    return;
  }
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    __m256i w[8], wabs[8];
    __m256 dw;
    load_block_q8(src, b, w, &dw);
    for (int k = 0; k < 8; ++k) wabs[k] = _mm256_abs_epi8(w[k]);
    for (int t = 0; t < T; ++t)
      s[t] = step_q8(wabs, w, dw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b, s[t], ones);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}
template <int T>
inline void direct_q8(int64_t nb, const RowSrc& src, const uint8_t* a, size_t as, float* acc) {
  direct_q8<T>(nb, src.p, a, as, acc);
}

struct Q8Format {
  static constexpr bool kPairTile = false;  // signed quants: the sign op is per (weights, token)
  static constexpr size_t kW = 34;
  static constexpr int64_t kValues = 32;
  static constexpr int kPerChunk = kQ8BlocksPerChunk;
  static constexpr size_t kBytes = kQ8BlockBytes;
  template <class S>
  static void repack(const S& src, int64_t b, uint8_t* dst) {
    __m256i wv[8];
    __m256 dw;
    load_block_q8(src, b, wv, &dw);
    __m256i* out = reinterpret_cast<__m256i*>(dst);
    for (int k = 0; k < 8; ++k) {
      _mm256_store_si256(out + k, _mm256_abs_epi8(wv[k]));
      _mm256_store_si256(out + 8 + k, wv[k]);
    }
    _mm256_store_ps(reinterpret_cast<float*>(out + 16), dw);
  }
  template <int T>
  static void run_tile(int nb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
    if constexpr (T == 4)
      tile_q8_4(nb, pk, a, as, b0, acc);
    else
      tile_q8<T>(nb, pk, a, as, b0, acc);
  }
  // Packed groups: 5-31 tokens as passes of 4 (group_rows8), as the 4-bit formats.
  static constexpr int kPassesFrom = 5;
  template <class S>
  static bool run_direct(int64_t ntc, int64_t nb, const S& src, const uint8_t* a, size_t as, float* acc) {
    with_token_count<kDirectBelowPacked - 1>(ntc, [&](auto T) { direct_q8<decltype(T)::value>(nb, src, a, as, acc); });
    return true;
  }
};

// One group of 8 rows (from src) x ntc tokens into acc[8 * t + r]: F's direct path for fewer than
// kDirectBelow tokens (GGUF rows) or kDirectBelowPacked (packed groups) if it has one; for packed groups
// of a format with F::kPassesFrom (> 0), from that many tokens up to kDirectPassesUpTo, direct passes
// of at most 4 tokens over the group (the later passes read it from cache: no scratch); else chunks of
// blocks repacked into the scratch pk and register tiles of kTile tokens over them.
// The last 1-3 tokens of a chunk (fewer than a full tile) with F's own tile on one repacked group.
template <class F>
inline void rest_tile(int64_t rest, int nbc, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
  switch (rest) {
    case 3: F::template run_tile<3>(nbc, pk, a, as, b0, acc); break;
    case 2: F::template run_tile<2>(nbc, pk, a, as, b0, acc); break;
    case 1: F::template run_tile<1>(nbc, pk, a, as, b0, acc); break;
    default: break;
  }
}

template <class F, class S>
inline void group_rows8(const S& src, int64_t nb, const uint8_t* at, size_t as, int64_t ntc, uint8_t* pk, float* acc) {
  if constexpr (std::is_same_v<S, PackedSrc>) {
    if (F::kPassesFrom > 0 && ntc >= F::kPassesFrom && ntc <= kDirectPassesUpTo) {
      for (int64_t t = 0; t < ntc; t += 4)
        F::run_direct(ntc - t < 4 ? ntc - t : 4, nb, src, at + size_t(t) * as, as, acc + 8 * t);
      return;
    }
  }
  if (ntc < (std::is_same_v<S, PackedSrc> ? kDirectBelowPacked : kDirectBelow) && F::run_direct(ntc, nb, src, at, as, acc))
    return;
  std::memset(acc, 0, sizeof(float) * 8 * size_t(ntc));
  for (int64_t b0 = 0; b0 < nb; b0 += F::kPerChunk) {
    const int nbc = int(nb - b0 < F::kPerChunk ? nb - b0 : F::kPerChunk);
    for (int b = 0; b < nbc; ++b) F::repack(src, b0 + b, pk + size_t(b) * F::kBytes);
    int64_t t = 0;
    for (; t + kTile <= ntc; t += kTile) F::template run_tile<kTile>(nbc, pk, at + size_t(t) * as, as, b0, acc + 8 * t);
    rest_tile<F>(ntc - t, nbc, pk, at + size_t(t) * as, as, b0, acc + 8 * t);
  }
}

// Two groups of 8 rows (srca, srcb) x ntc tokens into acca / accb, for formats with a pair tile: chunks
// of blocks repacked group after group (both groups' scratch in pk; a packed pair is one sequential
// read), tiles of 16 rows x F::kPairTokens tokens, the remaining tokens by each group's own tile. Same
// per-output sequence as group_rows8.
template <class F, class S>
inline void group_pair_rows8(const S& srca, const S& srcb, int64_t nb, const uint8_t* at, size_t as, int64_t ntc,
                             uint8_t* pk, float* acca, float* accb) {
  constexpr int kPer = F::kPerChunk;
  uint8_t* pka = pk;
  uint8_t* pkb = pk + size_t(kPer) * F::kBytes;
  std::memset(acca, 0, sizeof(float) * 8 * size_t(ntc));
  std::memset(accb, 0, sizeof(float) * 8 * size_t(ntc));
  for (int64_t b0 = 0; b0 < nb; b0 += kPer) {
    const int nbc = int(nb - b0 < kPer ? nb - b0 : kPer);
    for (int b = 0; b < nbc; ++b) F::repack(srca, b0 + b, pka + size_t(b) * F::kBytes);
    for (int b = 0; b < nbc; ++b) F::repack(srcb, b0 + b, pkb + size_t(b) * F::kBytes);
    int64_t t = 0;
    for (; t + F::kPairTokens <= ntc; t += F::kPairTokens)
      F::run_pair_tile(nbc, pka, pkb, at + size_t(t) * as, as, b0, acca + 8 * t, accb + 8 * t);
    rest_tile<F>(ntc - t, nbc, pka, at + size_t(t) * as, as, b0, acca + 8 * t);
    rest_tile<F>(ntc - t, nbc, pkb, at + size_t(t) * as, as, b0, accb + 8 * t);
  }
}

// The walk shared by every format F: token chunks (partial sums kept in acc) x groups of 8 rows (two at a
// time where F has a pair tile and the chunk has at least kPairFrom tokens). GGUF rows (packed = false):
// a tail group repeats the last row. Packed (edgellama/packed_layout.h): w is the first group, nr a
// multiple of 8, group k at w + 8k * ws.
template <class F>
void gemm_rows8(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys, bool packed) {
  const int64_t nb = n / F::kValues;
  alignas(32) uint8_t pk[(F::kPairTile ? 2 : 1) * F::kPerChunk * F::kBytes];  // pairs: both groups' chunks
  alignas(32) float acc[2][kTokensPerChunk * 8];
  const auto row_src = [&](int64_t r0) {
    RowSrc src;
    src.bw = F::kW;
    for (int r = 0; r < 8; ++r) src.p[r] = w + size_t(r0 + r < nr ? r0 + r : nr - 1) * ws;  // tail: repeat last row
    return src;
  };
  const auto packed_src = [&](int64_t r0) { return PackedSrc{w + size_t(r0) * ws, F::kW}; };
  for (int64_t t0 = 0; t0 < nt; t0 += kTokensPerChunk) {
    const int64_t ntc = nt - t0 < kTokensPerChunk ? nt - t0 : kTokensPerChunk;
    const uint8_t* at = a + size_t(t0) * as;
    const bool pairs = ntc >= kPairFrom;
    for (int64_t r0 = 0; r0 < nr;) {
      int groups = 1;
      if constexpr (F::kPairTile) {
        if (pairs && r0 + 16 <= nr) {
          if (packed)
            group_pair_rows8<F>(packed_src(r0), packed_src(r0 + 8), nb, at, as, ntc, pk, acc[0], acc[1]);
          else
            group_pair_rows8<F>(row_src(r0), row_src(r0 + 8), nb, at, as, ntc, pk, acc[0], acc[1]);
          groups = 2;
        }
      }
      if (groups == 1) {
        if (packed)
          group_rows8<F>(packed_src(r0), nb, at, as, ntc, pk, acc[0]);
        else
          group_rows8<F>(row_src(r0), nb, at, as, ntc, pk, acc[0]);
      }
      for (int g = 0; g < groups; ++g) {
        const int rr = int(nr - r0 < 8 ? nr - r0 : 8);
        for (int64_t t = 0; t < ntc; ++t)
          for (int r = 0; r < rr; ++r) y[size_t(t0 + t) * ys + size_t(r0 + r)] = acc[g][8 * t + r];
        r0 += 8;
      }
    }
  }
}

}  // namespace

void gemm_q4_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<LegacyFormat<Q4_0L>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q4_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<LegacyFormat<Q4_0L>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q8_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<Q8Format>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q8_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<Q8Format>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q4_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<K45Format<false>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q4_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<K45Format<false>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q5_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<K45Format<true>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q5_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<K45Format<true>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<Sub16Format<Q6_KW>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q6_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<Sub16Format<Q6_KW>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q2_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<Sub16Format<Q2_KW>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q2_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<Sub16Format<Q2_KW>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q3_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<Sub16Format<Q3_KW>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q3_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<Sub16Format<Q3_KW>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q4_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<LegacyFormat<Q4_1L>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q4_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<LegacyFormat<Q4_1L>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q5_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<LegacyFormat<Q5_0L>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q5_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<LegacyFormat<Q5_0L>>(n, w, ws, nr, a, as, nt, y, ys, true);
}
void gemm_q5_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows8<LegacyFormat<Q5_1L>>(n, w, ws, nr, a, as, nt, y, ys, false);
}
void gemm_q5_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_rows8<LegacyFormat<Q5_1L>>(n, w, ws, nr, a, as, nt, y, ys, true);
}

}  // namespace EDGELLAMA_ROWS8_NS
}  // namespace edgellama
