// AVX-512 VNNI "16 rows per vector" GEMM for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K and IQ4_XS. Compiled with the AVX-512
// flags of this directory (F/BW/VL/DQ/VNNI); only reached through the avx512 KernelSet after dispatch
// checked the CPU and the OS (ZMM state). Includes no header whose external-linkage inline functions
// baseline code also uses (see cpp/kernels/avx2/kernels_avx2.cpp).
//
// The AVX2 rows8 design (gemm_rows8_avx2.cpp) on 512-bit registers, with vpdpbusd doing the u8 x s8
// multiply-adds: for a group of 16 weight rows, each block of 32 values is transposed (in a stack
// scratch per call, never in the model) into 8 vectors; vector k holds, in 32-bit lane r, the
// quants 4k..4k+3 of row r as uint8. One token's 4 activation bytes 4k..4k+3 are broadcast to all
// lanes and one vpdpbusd adds their 4 products into row r's int32 lane, for 16 rows at once. The
// block's exact integer sum isum (no int16 stage, no saturation) is then scaled once per block.
//
// Signed weights (Q8_0) use the offset trick: the repacked weight is w ^ 0x80 = w + 128 as uint8, so
// vpdpbusd gives isum + 128 * sum(a); the accumulator starts at -128 * sum(a) (sum of the token's 32
// activation bytes, computed once per token and block for all 16 rows), which leaves isum exactly.
//
// Per output (row r, token t) the arithmetic is the fixed sequence of the AVX2 rows8 kernels and of
// their scalar reference gemm_rows8_ref (cpp/kernels/scalar/gemm_rows8_ref.cpp):
//   Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, per block b: acc = fma(float(isum_b), dw_b * da_b, acc); acc = fma(cw_b, sa_b, acc)
//                                (Q8_0: no second term)
//   Q2_K, Q4_K, Q5_K per super-block: acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dmin * da, acc)
//   Q3_K, Q6_K (dmin = d):           acc = fma(float(isum - msum), d * da, acc)
// so the results are bit-identical to that reference, to the AVX2 kernels, and independent of how
// many tokens or rows share a call (decode and prefill give the same bits; so do thread splits).
// kernels_avx512.cpp routes decode (1-3 tokens) of Q4_0/Q4_1/Q8_0 to the AVX2 kernels (same
// bits, not slower there) and of the K-quants to its row tiles; the direct (register-transposed)
// decode path below serves Q5_0/Q5_1.
// GCC 12's AVX-512 intrinsics start from _mm*_undefined_*() and trip -W(maybe-)uninitialized
// (GCC bug 105593, fixed in GCC 13): a false positive, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../kquant_scales.h"
#include "act_sum.h"
#include "edgellama/act_reuse.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/kernels.h"
#include "edgellama/packed_layout.h"
#include "edgellama/quant_blocks.h"
#include "gemm_rows16.h"

namespace edgellama {
namespace avx512_rows16 {
namespace {

constexpr int kRows = 16;            // weight rows per vector (one int32 / float lane each)
constexpr int kTokensPerChunk = 256; // tokens whose partial sums are kept between block chunks
constexpr int kTile = 8;             // tokens per register tile (8 int32 + 8 float accumulators)
constexpr int kDirectBelow = 4;      // fewer tokens than this: no repacking (decode)

struct ActBlock {  // = ActQ8x32
  float d;
  float s;
  int8_t qs[32];
};
// The same block with s replaced by -128 * sum(qs), exact: the Q8_0 offset made once per call and
// token (act_q8_offsets) instead of per token, block and row group (kActOffsets below).
struct ActBlockOff {
  float d;
  int32_t off;
  int8_t qs[32];
};
static_assert(sizeof(ActBlockOff) == sizeof(ActBlock) && offsetof(ActBlockOff, qs) == offsetof(ActBlock, qs),
              "one activation layout");

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m512i bcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}

// acc + vpdpbusd(w, the 4 bytes at q broadcast to every lane), with the broadcast folded into the
// instruction as an embedded {1to16} memory operand. GCC 12 emits a separate vpbroadcastd into a
// register for _mm512_set1_epi32(load) instead; in these kernels each broadcast feeds exactly one
// vpdpbusd, so folding halves the instructions of the inner loop.
typedef int32_t __attribute__((may_alias, aligned(1))) i32_alias;
inline __m512i dpbusd_b(__m512i acc, __m512i w, const void* q) {
  asm("vpdpbusd %[q]%{1to16%}, %[w], %[acc]" : [acc] "+v"(acc) : [w] "v"(w), [q] "m"(*static_cast<const i32_alias*>(q)));
  return acc;
}
inline __m512i dpwssd_b(__m512i acc, __m512i w, const void* q) {
  asm("vpdpwssd %[q]%{1to16%}, %[w], %[acc]" : [acc] "+v"(acc) : [w] "v"(w), [q] "m"(*static_cast<const i32_alias*>(q)));
  return acc;
}

inline __m512i load4x128(const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, const uint8_t* p3) {
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0)));
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p2)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p3)), 3);
}

// 16 bytes at byte o of each of the 16 rows, transposed: x[k] lane r = bytes 4k..4k+3 of row r.
// (128-bit lane L of the loads holds rows 4L..4L+3; the unpacks transpose 4x4 dwords per lane.)
inline void transpose16(const uint8_t* const* p, size_t o, __m512i* x) {
  const __m512i a = load4x128(p[0] + o, p[4] + o, p[8] + o, p[12] + o);
  const __m512i b = load4x128(p[1] + o, p[5] + o, p[9] + o, p[13] + o);
  const __m512i c = load4x128(p[2] + o, p[6] + o, p[10] + o, p[14] + o);
  const __m512i d = load4x128(p[3] + o, p[7] + o, p[11] + o, p[15] + o);
  const __m512i ab_lo = _mm512_unpacklo_epi32(a, b), ab_hi = _mm512_unpackhi_epi32(a, b);
  const __m512i cd_lo = _mm512_unpacklo_epi32(c, d), cd_hi = _mm512_unpackhi_epi32(c, d);
  x[0] = _mm512_unpacklo_epi64(ab_lo, cd_lo);
  x[1] = _mm512_unpackhi_epi64(ab_lo, cd_lo);
  x[2] = _mm512_unpacklo_epi64(ab_hi, cd_hi);
  x[3] = _mm512_unpackhi_epi64(ab_hi, cd_hi);
}

// Lane r = byte offset of row r from row 0 (one gather then reads a field of all 16 rows' blocks;
// 16 scalar loads + inserts cost several times more). Rows are < 2^31 / 16 bytes apart in any model.
inline __m512i row_offsets(const uint8_t* const* p) {
  alignas(64) int32_t o[16];
  for (int r = 0; r < 16; ++r) o[r] = int32_t(p[r] - p[0]);
  return _mm512_load_si512(o);
}

// The 4 bytes at byte `at` of each row's block (16 rows), lane r = row r.
inline __m512i gather16(const uint8_t* const* p, __m512i off, size_t at) {
  return _mm512_i32gather_epi32(off, p[0] + at, 1);
}

// fp16 in the low / high half of each lane as 16 floats.
inline __m512 half_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
inline __m512 half_hi(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

// Packed groups (packed_layout.h: 8-row groups; the unit at byte o of row r at 8 * o + r * unit):
// the 16 lanes of a repacked block come from two groups, rows 0-7 from g0 and rows 8-15 from g1.
// 8 rows' 4-byte units at packed offset o, twice -> one vector, lane r = row r (no transpose).
inline __m512i packed_units32(const uint8_t* g0, const uint8_t* g1, size_t o) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g0 + o))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g1 + o)), 1);
}
// 8 rows' 2-byte units (fp16 fields) at packed offset o, twice -> 16 uint16.
inline __m256i packed_units16(const uint8_t* g0, const uint8_t* g1, size_t o) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g0 + o))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(g1 + o)), 1);
}

// ---- Q4_0 / Q4_1 / Q8_0: blocks of 32 values ------------------------------------------------------
// Repacked block (16 rows): 8 vectors of quants (uint8; Q8_0: w ^ 0x80), dw[16], cw[16] (Q8_0: unused).
constexpr size_t kBlockBytes = 10 * 64;
constexpr int kBlocksPerChunk = 32;  // 20 KB of scratch

enum class Kind { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 };

// One row of the table per format: bytes per block, byte offset of the quants, of the fifth bits
// (0: none), of the fp16 minimum (0: none; then cw = kOffset * dw).
template <Kind K>
struct Legacy;
template <> struct Legacy<Kind::Q4_0> { static constexpr size_t kW = 18, kQs = 2, kQh = 0, kMin = 0; static constexpr float kOffset = -8.0f; };
template <> struct Legacy<Kind::Q4_1> { static constexpr size_t kW = 20, kQs = 4, kQh = 0, kMin = 2; static constexpr float kOffset = 0.0f; };
template <> struct Legacy<Kind::Q5_0> { static constexpr size_t kW = 22, kQs = 6, kQh = 2, kMin = 0; static constexpr float kOffset = -16.0f; };
template <> struct Legacy<Kind::Q5_1> { static constexpr size_t kW = 24, kQs = 8, kQh = 4, kMin = 2; static constexpr float kOffset = 0.0f; };
template <> struct Legacy<Kind::Q8_0> { static constexpr size_t kW = 34, kQs = 2, kQh = 0, kMin = 0; static constexpr float kOffset = 0.0f; };

// Q5_0 / Q5_1 fifth bits: value j of a block has bit j of the 32-bit word qh. g[G] lane r holds values
// 4G..4G+3 of row r; add 0x10 to byte i where bit 4G+i of row r's qh is set. qh lives in byte G/2
// (values 4G..4G+3 < 16) or 2 + (G-4)/2, nibble G%2: a byte shuffle copies that qh byte into the 4
// bytes of the lane, a test against (1 << i) << 4*(G%2) per byte gives the mask.
// qh: lane r = the qh word of row r (gathered from the GGUF rows, or one load from packed groups).
inline void add_fifth_bits(__m512i qh, __m512i* g) {
  const __m512i c10 = _mm512_set1_epi8(0x10);
  for (int G = 0; G < 8; ++G) {
    const int byte = G < 4 ? G / 2 : 2 + (G - 4) / 2, nib = 4 * (G % 2);
    const __m512i ctl = _mm512_set4_epi32((12 + byte) * 0x01010101, (8 + byte) * 0x01010101, (4 + byte) * 0x01010101,
                                          byte * 0x01010101);
    const __m512i bits = _mm512_set1_epi32(int(0x08040201u << nib));
    const __mmask64 m = _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, ctl), bits);
    g[G] = _mm512_mask_add_epi8(g[G], m, g[G], c10);
  }
}

// One block of 16 rows (the block at byte boff of each row), transposed into g[8]; dw, cw per lane.
template <Kind K>
inline void load_block(const uint8_t* const* p, __m512i off, size_t boff, __m512i* g, __m512* dw, __m512* cw) {
  if constexpr (K == Kind::Q8_0) {
    transpose16(p, boff + 2, g);
    transpose16(p, boff + 18, g + 4);
    const __m512i flip = _mm512_set1_epi8(-128);
    for (int k = 0; k < 8; ++k) g[k] = _mm512_xor_si512(g[k], flip);
    *dw = half_lo(gather16(p, off, boff));
    *cw = _mm512_setzero_ps();
  } else {
    __m512i x[4];
    transpose16(p, boff + Legacy<K>::kQs, x);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      g[k] = _mm512_and_si512(x[k], m4);                             // values 4k..4k+3 (low nibbles)
      g[k + 4] = _mm512_and_si512(_mm512_srli_epi16(x[k], 4), m4);  // values 16+4k..16+4k+3
    }
    if constexpr (Legacy<K>::kQh != 0) add_fifth_bits(gather16(p, off, boff + Legacy<K>::kQh), g);
    const __m512i dm = gather16(p, off, boff);  // d (and the minimum m right after it, Q4_1 / Q5_1)
    *dw = half_lo(dm);
    *cw = Legacy<K>::kMin ? half_hi(dm) : _mm512_mul_ps(*dw, _mm512_set1_ps(Legacy<K>::kOffset));
  }
}

// The same block from two packed groups (packed_layout.h; rows 0-7 from the block at g0, rows 8-15
// from the one at g1): every 4-byte unit already holds one row per lane, so each quant word is two
// 32-byte loads (no transpose), qh one more, and d (and m) one 2 x 16-byte load of fp16 each.
template <Kind K>
inline void load_block_packed(const uint8_t* g0, const uint8_t* g1, __m512i* g, __m512* dw, __m512* cw) {
  constexpr size_t G = kPackRows;
  *dw = _mm512_cvtph_ps(packed_units16(g0, g1, 0));  // d: the first 2-byte unit of every format
  if constexpr (K == Kind::Q8_0) {
    const __m512i flip = _mm512_set1_epi8(-128);
    for (int k = 0; k < 8; ++k) g[k] = _mm512_xor_si512(packed_units32(g0, g1, G * (2 + 4 * size_t(k))), flip);
    *cw = _mm512_setzero_ps();
  } else {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      const __m512i x = packed_units32(g0, g1, G * (Legacy<K>::kQs + 4 * size_t(k)));
      g[k] = _mm512_and_si512(x, m4);                             // values 4k..4k+3 (low nibbles)
      g[k + 4] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);  // values 16+4k..16+4k+3
    }
    if constexpr (Legacy<K>::kQh != 0) add_fifth_bits(packed_units32(g0, g1, G * Legacy<K>::kQh), g);
    *cw = Legacy<K>::kMin ? _mm512_cvtph_ps(packed_units16(g0, g1, G * Legacy<K>::kMin))
                          : _mm512_mul_ps(*dw, _mm512_set1_ps(Legacy<K>::kOffset));
  }
}

// One token's block: acc = fma(float(isum), dw * da, acc) [+ fma(cw, sa, acc)]. Forced inline: with
// both gemm_rows16 and gemm_rows16_packed using the tiles, GCC 12 kept it out of line for Q4_0..Q5_1
// (a call per token and block, w passed through memory): 25-30% slower tiles (2048x2048, 256 tokens).
// kActOffsets (Q8_0 only): ab is an ActBlockOff, whose off is the -128 * sum(a) computed here otherwise.
template <Kind K, bool kActOffsets = false>
__attribute__((always_inline)) inline __m512 step(const __m512i* w, __m512 dw, __m512 cw, const ActBlock* ab, __m512 s) {
  static_assert(!kActOffsets || K == Kind::Q8_0, "only the offset form has an activation offset");
  // two independent vpdpbusd chains (latency), summed exactly
  __m512i i0 = _mm512_setzero_si512();
  if constexpr (kActOffsets)
    i0 = _mm512_set1_epi32(reinterpret_cast<const ActBlockOff*>(ab)->off);
  else if constexpr (K == Kind::Q8_0)
    i0 = _mm512_set1_epi32(-128 * act_sum32(ab->qs));
  __m512i i1 = _mm512_setzero_si512();
  for (int k = 0; k < 8; k += 2) {
    i0 = dpbusd_b(i0, w[k], ab->qs + 4 * k);
    i1 = dpbusd_b(i1, w[k + 1], ab->qs + 4 * k + 4);
  }
  const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
  s = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(ab->d)), s);
  if constexpr (K != Kind::Q8_0) s = _mm512_fmadd_ps(cw, _mm512_set1_ps(ab->s), s);
  return s;
}

// kActOffsets (Q8_0, packed route): the tiles read the call's activations through act_q8_offsets.
template <Kind K, bool kActOffsets = false>
struct LegacyFormat {
  static constexpr bool kQ8ActOffsets = kActOffsets;
  static constexpr size_t kW = Legacy<K>::kW;
  static constexpr int64_t kValues = 32;
  static constexpr int kPerChunk = kBlocksPerChunk;
  static constexpr size_t kBytes = kBlockBytes;

  static void repack(const uint8_t* const* p, __m512i off, size_t boff, uint8_t* dst) {
    __m512i g[8];
    __m512 dw, cw;
    load_block<K>(p, off, boff, g, &dw, &cw);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int k = 0; k < 8; ++k) _mm512_store_si512(out + k, g[k]);
    _mm512_store_ps(reinterpret_cast<float*>(out + 8), dw);
    _mm512_store_ps(reinterpret_cast<float*>(out + 9), cw);
  }
  // The same repacked block from two packed groups (gemm_rows16_packed).
  static void repack_packed(const uint8_t* g0, const uint8_t* g1, uint8_t* dst) {
    __m512i g[8];
    __m512 dw, cw;
    load_block_packed<K>(g0, g1, g, &dw, &cw);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int k = 0; k < 8; ++k) _mm512_store_si512(out + k, g[k]);
    _mm512_store_ps(reinterpret_cast<float*>(out + 8), dw);
    _mm512_store_ps(reinterpret_cast<float*>(out + 9), cw);
  }

  // T tokens x 16 rows over nb repacked blocks; acc holds the running sums (16 floats per token).
  template <int T>
  static void run_tile(int nb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t b0, float* acc) {
    __m512 s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm512_loadu_ps(acc + kRows * t);
    for (int b = 0; b < nb; ++b) {
      const __m512i* wq = reinterpret_cast<const __m512i*>(pk + size_t(b) * kBytes);
      __m512i w[8];
      for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(wq + k);
      const __m512 dw = _mm512_load_ps(reinterpret_cast<const float*>(wq + 8));
      const __m512 cw = _mm512_load_ps(reinterpret_cast<const float*>(wq + 9));
      for (int t = 0; t < T; ++t)
        s[t] = step<K, kActOffsets>(w, dw, cw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b0 + b, s[t]);
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + kRows * t, s[t]);
  }

  // Few tokens (decode): no scratch, the transposed block is used straight from registers.
  template <int T>
  static void direct(int64_t nb, const uint8_t* const* p, const uint8_t* a, size_t as, float* acc) {
    __m512 s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
    const __m512i off = row_offsets(p);
    for (int64_t b = 0; b < nb; ++b) {
      // the rows' blocks 8 ahead: hides DRAM latency while the weights stream in (never faults)
      for (int r = 0; r < kRows; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(p[r] + size_t(b + 8) * kW), _MM_HINT_T0);
      __m512i w[8];
      __m512 dw, cw;
      load_block<K>(p, off, size_t(b) * kW, w, &dw, &cw);
      for (int t = 0; t < T; ++t) s[t] = step<K>(w, dw, cw, reinterpret_cast<const ActBlock*>(a + size_t(t) * as) + b, s[t]);
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + kRows * t, s[t]);
  }
  static bool run_direct(int64_t ntc, int64_t nb, const uint8_t* const* p, const uint8_t* a, size_t as, float* acc) {
    switch (ntc) {
      case 3: direct<3>(nb, p, a, as, acc); break;
      case 2: direct<2>(nb, p, a, as, acc); break;
      default: direct<1>(nb, p, a, as, acc); break;
    }
    return true;
  }
};

// IQ4_NL (packed groups only): a Q4_0-shaped block whose nibbles index the int8 levels kIq4Values. The
// set's GGUF-layout prefill transcodes rows to Q8_0 (levels as int8, the same d) for the Q8_0 kernel;
// here the levels are looked up (vpshufb) straight into the Q8_0 repacked block (w ^ 0x80), so the Q8_0
// tiles run the same sequence on the same values: same bits.
struct IQ4NLFormat : LegacyFormat<Kind::Q8_0, true> {
  static constexpr size_t kW = sizeof(iq::block_iq4_nl);
  static void repack(const uint8_t* const*, __m512i, size_t, uint8_t*) = delete;  // GGUF rows: via Q8_0
  static void repack_packed(const uint8_t* g0, const uint8_t* g1, uint8_t* dst) {
    constexpr size_t G = kPackRows;
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8(-128);
    // the levels already flipped to level + 128 as uint8 (the Q8_0 offset form)
    const __m512i levels = _mm512_xor_si512(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iq::kIq4Values))), flip);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int k = 0; k < 4; ++k) {  // qs word k: values 4k..4k+3 (low nibbles), 16+4k..16+4k+3 (high)
      const __m512i x = packed_units32(g0, g1, G * (offsetof(iq::block_iq4_nl, qs) + 4 * size_t(k)));
      _mm512_store_si512(out + k, _mm512_shuffle_epi8(levels, _mm512_and_si512(x, m4)));
      _mm512_store_si512(out + k + 4, _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x, 4), m4)));
    }
    _mm512_store_ps(reinterpret_cast<float*>(out + 8), _mm512_cvtph_ps(packed_units16(g0, g1, 0)));
    _mm512_store_ps(reinterpret_cast<float*>(out + 9), _mm512_setzero_ps());
  }
};

// ---- Q4_K: super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit scales / mins ----------------
// Repacked super-block (16 rows): for sub-block c and group G (values 32c+4G..+3) one vector of the
// 16 rows' quants (64 vectors); per sub-block c the scales as int32 (8 vectors); the mins of
// sub-blocks 2j, 2j+1 as the int16 pair (mn_2j, mn_2j+1) per lane (4 vectors at kKMin + j);
// d[16], dmin[16]. Per (row, token, super-block):
//   isum = sum_c sc_c * (sum_i q_i a_i over sub-block c)      (vpdpbusd, then vpmulld: exact int32)
//   msum = sum_c mn_c * S_c                                  (4 vpdpwssd: exact int32)
// where S_c = bsums[2c] + bsums[2c+1], the sum of the token's 32 activations of sub-block c (|S_c| <=
// 32 * 128: int16), made once per call and token by act_sub32_sums (kSub32Sums below). The same
// integer as the 8 vpdpwssd of (mn_c, mn_c) against (bsums[2c], bsums[2c+1]), in half the instructions.
constexpr int kSuperPerChunk = 4;
constexpr size_t kKQuant = 64, kKScale = 64, kKMin = 72, kKD = 80, kKDm = 81;  // vector offsets
constexpr size_t kKBlockBytes = 82 * 64;                                      // 5.2 KB

// The two integer parts of a repacked 32-value-sub-block super-block (Q4_K, Q5_K, IQ4_XS layout: quant
// vectors 8c + k, int32 scales at kKScale + c, int16 offset pairs at kKMin + c) against T tokens:
//   iacc[t] = sum_c sc_c * (sum over sub-block c of q a)   (vpdpbusd, then vpmulld: exact int32)
template <int T>
inline void sub32_sums(const __m512i* blk, const block_q8_K* const* ab, __m512i* iacc) {
  for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
  for (int c = 0; c < 8; ++c) {
    __m512i w[8];
    for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(blk + 8 * c + k);
    const __m512i sc = _mm512_load_si512(blk + kKScale + c);
    for (int t = 0; t < T; ++t) {
      const int8_t* q = ab[t]->qs + 32 * c;
      __m512i p0 = dpbusd_b(_mm512_setzero_si512(), w[0], q);
      __m512i p1 = dpbusd_b(_mm512_setzero_si512(), w[1], q + 4);
      for (int k = 2; k < 8; k += 2) {
        p0 = dpbusd_b(p0, w[k], q + 4 * k);
        p1 = dpbusd_b(p1, w[k + 1], q + 4 * k + 4);
      }
      iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(_mm512_add_epi32(p0, p1), sc));
    }
  }
}
//   msum = sum_c mn_c * S_c, ab->bsums[c] = S_c (act_sub32_sums): pairs j = (2j, 2j+1)   (exact int32)
inline __m512i sub32_offsets(const __m512i* blk, const block_q8_K* ab) {
  __m512i ms = _mm512_setzero_si512();
  for (int j = 0; j < 4; ++j)
    ms = dpwssd_b(ms, _mm512_load_si512(blk + kKMin + j), ab->bsums + 2 * j);
  return ms;
}

// Q5_K: the same with a fifth bit per value (bit c of qh byte l = value l of chunk c), added in the
// repack; sequence and scales as Q4_K (d, dmin, scales[12] sit at the same offsets).
template <bool kQ5>
struct KFormat45 {
  static constexpr size_t kW = kQ5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
  static constexpr int64_t kValues = QK_K;
  static constexpr int kPerChunk = kSuperPerChunk;
  static constexpr size_t kBytes = kKBlockBytes;
  static constexpr bool kSub32Sums = true;  // activations through act_sub32_sums

  static void repack(const uint8_t* const* p, __m512i, size_t boff, uint8_t* dst) {
    constexpr size_t qs_off = kQ5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    __m512i qh[8];  // Q5_K: qh[G] lane r = qh bytes 4G..4G+3 of row r
    if constexpr (kQ5) {
      transpose16(p, boff + offsetof(block_q5_K, qh), qh);
      transpose16(p, boff + offsetof(block_q5_K, qh) + 16, qh + 4);
    }
    for (int i = 0; i < 4; ++i) {    // 32 bytes of qs: sub-blocks 2i (low nibbles) and 2i+1 (high)
      for (int h = 0; h < 2; ++h) {  // bytes 16h..16h+15: groups 4h..4h+3
        __m512i x[4];
        transpose16(p, boff + qs_off + 32 * size_t(i) + 16 * size_t(h), x);
        for (int k = 0; k < 4; ++k) {
          const int g = 4 * h + k;
          __m512i lo = _mm512_and_si512(x[k], m4), hi = _mm512_and_si512(_mm512_srli_epi16(x[k], 4), m4);
          if constexpr (kQ5) {
            const __m512i one = _mm512_set1_epi8(1);
            lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[g], 2 * i), one), 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[g], 2 * i + 1), one), 4));
          }
          _mm512_store_si512(out + (2 * i) * 8 + g, lo);
          _mm512_store_si512(out + (2 * i + 1) * 8 + g, hi);
        }
      }
    }
    // scales, mins, d, dmin: per-row scalar work, amortized over the tokens of the call
    int32_t* sc = reinterpret_cast<int32_t*>(out + kKScale);
    int32_t* mn = reinterpret_cast<int32_t*>(out + kKMin);
    float* d = reinterpret_cast<float*>(out + kKD);
    float* dm = reinterpret_cast<float*>(out + kKDm);
    for (int r = 0; r < kRows; ++r) {
      const block_q4_K* b = reinterpret_cast<const block_q4_K*>(p[r] + boff);
      int m[8];
      for (int c = 0; c < 8; ++c) kq::scale_min_k4(c, b->scales, &sc[16 * c + r], &m[c]);
      for (int j = 0; j < 4; ++j) mn[16 * j + r] = m[2 * j] | (m[2 * j + 1] << 16);
      d[r] = _cvtsh_ss(b->d);
      dm[r] = _cvtsh_ss(b->dmin);
    }
  }

  // The same repacked block from two packed groups (packed_layout.h; rows 0-7 from the block at g0,
  // rows 8-15 from the one at g1): every 4-byte unit already holds one row per lane, so a quant
  // vector is two 32-byte loads (no transpose) and the 6-bit scales / mins of scale_min_k4 are
  // unpacked in vectors from the three scale words.
  static void repack_packed(const uint8_t* g0, const uint8_t* g1, uint8_t* dst) {
    constexpr size_t G = kPackRows;
    constexpr size_t qs_off = kQ5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    __m512i qh[8];  // Q5_K: qh[g] lane r = qh bytes 4g..4g+3 of row r
    if constexpr (kQ5)
      for (int g = 0; g < 8; ++g) qh[g] = packed_units32(g0, g1, G * (offsetof(block_q5_K, qh) + 4 * size_t(g)));
    for (int i = 0; i < 4; ++i) {  // 32 bytes of qs: sub-blocks 2i (low nibbles) and 2i+1 (high)
      for (int g = 0; g < 8; ++g) {
        const __m512i x = packed_units32(g0, g1, G * (qs_off + 32 * size_t(i) + 4 * size_t(g)));
        __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        if constexpr (kQ5) {
          const __m512i one = _mm512_set1_epi8(1);
          lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[g], 2 * i), one), 4));
          hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[g], 2 * i + 1), one), 4));
        }
        _mm512_store_si512(out + (2 * i) * 8 + g, lo);
        _mm512_store_si512(out + (2 * i + 1) * 8 + g, hi);
      }
    }
    // scales[12] as three words per lane: byte j of word w is scales[4w + j] (scale_min_k4, per lane)
    constexpr size_t sc_off = offsetof(block_q4_K, scales);
    static_assert(offsetof(block_q5_K, scales) == sc_off && offsetof(block_q5_K, dmin) == offsetof(block_q4_K, dmin),
                  "Q4_K and Q5_K share the header");
    const __m512i w0 = packed_units32(g0, g1, G * sc_off), w1 = packed_units32(g0, g1, G * (sc_off + 4)),
                  w2 = packed_units32(g0, g1, G * (sc_off + 8));
    const __m512i m6 = _mm512_set1_epi32(63), m4d = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
    __m512i mn_even = _mm512_setzero_si512();
    for (int c = 0; c < 8; ++c) {
      __m512i sc, mn;
      if (c < 4) {  // sc = q[c] & 63, mn = q[c + 4] & 63
        sc = _mm512_and_si512(_mm512_srli_epi32(w0, 8 * c), m6);
        mn = _mm512_and_si512(_mm512_srli_epi32(w1, 8 * c), m6);
      } else {  // j = c - 4: sc = q[c + 4] & 15 | (q[j] >> 6) << 4, mn = q[c + 4] >> 4 | (q[c] >> 6) << 4
        const int j = c - 4;
        sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 8 * j), m4d),
                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 8 * j + 6), m2), 4));
        mn = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 8 * j + 4), m4d),
                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 8 * j + 6), m2), 4));
      }
      _mm512_store_si512(out + kKScale + c, sc);
      if (c % 2 == 0)
        mn_even = mn;
      else  // the pair (mn_c-1, mn_c) of sub32_offsets
        _mm512_store_si512(out + kKMin + c / 2, _mm512_or_si512(mn_even, _mm512_slli_epi32(mn, 16)));
    }
    _mm512_store_ps(reinterpret_cast<float*>(out + kKD),
                    _mm512_cvtph_ps(packed_units16(g0, g1, G * offsetof(block_q4_K, d))));
    _mm512_store_ps(reinterpret_cast<float*>(out + kKDm),
                    _mm512_cvtph_ps(packed_units16(g0, g1, G * offsetof(block_q4_K, dmin))));
  }

  template <int T>
  static void run_tile(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
    __m512 s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm512_loadu_ps(acc + kRows * t);
    for (int sb = 0; sb < nsb; ++sb) {
      const __m512i* blk = reinterpret_cast<const __m512i*>(pk + size_t(sb) * kBytes);
      const block_q8_K* ab[T];
      for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + sb0 + sb;
      __m512i iacc[T];
      sub32_sums<T>(blk, ab, iacc);
      const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(blk + kKD));
      const __m512 dm = _mm512_load_ps(reinterpret_cast<const float*>(blk + kKDm));
      for (int t = 0; t < T; ++t) {
        const __m512i ms = sub32_offsets(blk, ab[t]);
        const __m512 da = _mm512_set1_ps(ab[t]->d);
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, da), s[t]);
        s[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dm, da), s[t]);
      }
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + kRows * t, s[t]);
  }

  // Decode (1-3 tokens) goes to the row tiles of kernels_avx512.cpp (same sequence): no direct path here.
  static bool run_direct(int64_t, int64_t, const uint8_t* const*, const uint8_t*, size_t, float*) { return false; }
};

// ---- IQ4_XS: super-blocks of 256 values, 8 sub-blocks of 32, value = (ls_c - 32) * kIq4Values[nibble] ----
// The only signed-weight format here whose activations are Q8_K, so the offset goes on the activation
// side: the weights stay signed (the level itself, looked up by vpshufb) and each call's activation
// bytes are flipped once to a + 128 as uint8 (act_u8 below; shared by every row group of the call).
// vpdpbusd(a + 128, v) gives dot_c + 128 * W_c with W_c = sum_i v_i over sub-block c of the row, a
// constant of the weights: the offset of a whole super-block, 128 * sum_c sc_c * W_c, is one int32 per
// row made at repack time, so a token costs one subtraction instead of the 8 vpdpwssd of the bsums
// form (IQ4_XS 16-row kernel, 64 tokens in L1/L2, 1 thread: ~9% of its time).
// Repacked like Q4_K: 64 quant vectors (sub-block c, group G) of int8 levels, sc_c = ls_c - 32 as
// int32 (8 vectors), the offsets as one int32 vector at kKMin, d[16]. Per (row, token, super-block):
//   isum = sum_c sc_c * (sum_i v_i (a_i + 128)) - 128 * sum_c sc_c * W_c = sum_c sc_c * (sum_i v_i a_i)
//   acc = fma(float(isum), d * da, acc)      (exact int32: |sc_c * dot'_c| < 32 * 32 * 127 * 255 < 2^25)
// the sequence of the set's packed IQ4_XS kernel (packed_decode_avx512.cpp), so prefill, decode and the
// packed layout give the same bits.
struct IQ4XSFormat {
  static constexpr size_t kW = sizeof(iq::block_iq4_xs);
  static constexpr int64_t kValues = QK_K;
  static constexpr int kPerChunk = kSuperPerChunk;
  static constexpr size_t kBytes = kKBlockBytes;
  static constexpr bool kUnsignedActs = true;

  static void repack(const uint8_t* const* p, __m512i, size_t boff, uint8_t* dst) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i levels = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iq::kIq4Values)));
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int c = 0; c < 8; ++c) {  // sub-block c: 16 bytes, values 32c+j (low nibble), 32c+16+j (high)
      __m512i x[4];
      transpose16(p, boff + offsetof(iq::block_iq4_xs, qs) + 16 * size_t(c), x);
      for (int k = 0; k < 4; ++k) {
        _mm512_store_si512(out + 8 * c + k, _mm512_shuffle_epi8(levels, _mm512_and_si512(x[k], m4)));
        _mm512_store_si512(out + 8 * c + 4 + k,
                           _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x[k], 4), m4)));
      }
    }
    int32_t* sc = reinterpret_cast<int32_t*>(out + kKScale);
    float* d = reinterpret_cast<float*>(out + kKD);
    for (int r = 0; r < kRows; ++r) {
      const iq::block_iq4_xs* b = reinterpret_cast<const iq::block_iq4_xs*>(p[r] + boff);
      for (int c = 0; c < 8; ++c) sc[16 * c + r] = iq::iq4_xs_scale(b, c);
      d[r] = _cvtsh_ss(b->d);
    }
    store_offsets(out);
  }

  // The same repacked block from the packed layout (packed_layout.h: 8-row groups, 2-byte units for
  // d and scales_h, 4-byte units for the rest, unit at byte o of row r at 8 * o + r * unit): rows 0-7
  // from the block at g0, rows 8-15 from the one at g1. The units already have one row per lane, so
  // no transpose: the quants are two 32-byte loads per vector, the scales are unpacked in vectors.
  static void repack_packed(const uint8_t* g0, const uint8_t* g1, uint8_t* dst) {
    auto join256 = [&](size_t o) { return packed_units32(g0, g1, o); };
    auto join128 = [&](size_t o) { return packed_units16(g0, g1, o); };
    constexpr size_t G = kPackRows;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i levels = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iq::kIq4Values)));
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int c = 0; c < 8; ++c)
      for (int k = 0; k < 4; ++k) {  // unit 4c + k of qs: bytes 16c + 4k .. +3 of each row
        const __m512i x = join256(G * (offsetof(iq::block_iq4_xs, qs) + 16 * size_t(c) + 4 * size_t(k)));
        _mm512_store_si512(out + 8 * c + k, _mm512_shuffle_epi8(levels, _mm512_and_si512(x, m4)));
        _mm512_store_si512(out + 8 * c + 4 + k,
                           _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x, 4), m4)));
      }
    const __m512i lo = join256(G * offsetof(iq::block_iq4_xs, scales_l));                         // 4 bytes
    const __m512i hi = _mm512_cvtepu16_epi32(join128(G * offsetof(iq::block_iq4_xs, scales_h)));  // 2 bytes
    for (int c = 0; c < 8; ++c) {  // iq4_xs_scale: nibble c of scales_l | bits 2c, 2c+1 of scales_h << 4, - 32
      const __m512i l = _mm512_and_si512(_mm512_srli_epi32(lo, 4 * c), _mm512_set1_epi32(0xF));
      const __m512i h = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hi, 2 * c), _mm512_set1_epi32(3)), 4);
      _mm512_store_si512(out + kKScale + c, _mm512_sub_epi32(_mm512_or_si512(l, h), _mm512_set1_epi32(32)));
    }
    _mm512_store_ps(reinterpret_cast<float*>(out + kKD), _mm512_cvtph_ps(join128(G * offsetof(iq::block_iq4_xs, d))));
    store_offsets(out);
  }

  // offset = 128 * sum_c sc_c * W_c, W_c = the row's levels of sub-block c summed (vpdpbusd by ones)
  static void store_offsets(__m512i* out) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i off = _mm512_setzero_si512();
    for (int c = 0; c < 8; ++c) {
      __m512i wsum = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) wsum = _mm512_dpbusd_epi32(wsum, ones, _mm512_load_si512(out + 8 * c + k));
      off = _mm512_add_epi32(off, _mm512_mullo_epi32(wsum, _mm512_load_si512(out + kKScale + c)));
    }
    _mm512_store_si512(out + kKMin, _mm512_slli_epi32(off, 7));
  }

  template <int T>
  static void run_tile(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
    __m512 s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm512_loadu_ps(acc + kRows * t);
    for (int sb = 0; sb < nsb; ++sb) {
      const __m512i* blk = reinterpret_cast<const __m512i*>(pk + size_t(sb) * kBytes);
      const block_q8_K* ab[T];  // activation bytes already + 128 (act_u8)
      for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + sb0 + sb;
      const __m512i off = _mm512_load_si512(blk + kKMin);
      __m512i iacc[T];
      for (int t = 0; t < T; ++t) iacc[t] = _mm512_sub_epi32(_mm512_setzero_si512(), off);
      for (int c = 0; c < 8; ++c) {
        __m512i w[8];
        for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(blk + 8 * c + k);
        const __m512i sc = _mm512_load_si512(blk + kKScale + c);
        for (int t = 0; t < T; ++t) {
          const int8_t* q = ab[t]->qs + 32 * c;
          __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bcast4(q), w[0]);
          __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bcast4(q + 4), w[1]);
          for (int k = 2; k < 8; k += 2) {
            p0 = _mm512_dpbusd_epi32(p0, bcast4(q + 4 * k), w[k]);
            p1 = _mm512_dpbusd_epi32(p1, bcast4(q + 4 * k + 4), w[k + 1]);
          }
          iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(_mm512_add_epi32(p0, p1), sc));
        }
      }
      const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(blk + kKD));
      for (int t = 0; t < T; ++t)
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, _mm512_set1_ps(ab[t]->d)), s[t]);
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + kRows * t, s[t]);
  }

  // Decode (1-3 tokens) goes to the packed kernel (iquant_avx512.cpp): no direct path here.
  static bool run_direct(int64_t, int64_t, const uint8_t* const*, const uint8_t*, size_t, float*) { return false; }
};

// Per-thread memo of one activation rewrite (act_reuse.h): the matmul call's tasks hand the kernel
// the same activations again and again; within one call id the first task's rewrite is reused. Four
// entries: a call's tasks alternate between its token chunks, and a task of main + residual rows
// (512 rows of activations) is two kernel chunks of 256.
template <class Block>
class ActMemo {
 public:
  // The buffer for (a, as, nt, nb) of the current call; *ready says it already holds the rewrite.
  Block* get(const uint8_t* a, size_t as, int64_t nt, int64_t nb, bool* ready) {
    const uint64_t call = current_act_call_id();
    for (Entry& e : entries_)
      if (call != 0 && e.call == call && e.src == a && e.as == as && e.nt == nt && e.nb == nb) {
        *ready = true;
        return e.buf.data();
      }
    Entry& e = entries_[next_];
    next_ = (next_ + 1) % kEntries;
    e.call = call;
    e.src = a;
    e.as = as;
    e.nt = nt;
    e.nb = nb;
    if (e.buf.size() < size_t(nt) * size_t(nb)) e.buf.resize(size_t(nt) * size_t(nb));
    *ready = false;
    return e.buf.data();
  }

 private:
  struct Entry {
    uint64_t call = 0;
    const uint8_t* src = nullptr;
    size_t as = 0;
    int64_t nt = 0, nb = 0;
    std::vector<Block> buf;
  };
  static constexpr int kEntries = 4;
  Entry entries_[kEntries];
  int next_ = 0;
};

// The rewrite of a call's nt x nb activation blocks (token t at a + t * as) into memo's buffer, one
// per_block(src, dst) per block, unless the memo already holds it for this call.
template <class Src, class Dst, class PerBlock>
const uint8_t* rewrite_acts(ActMemo<Dst>& memo, const uint8_t* a, size_t as, int64_t nt, int64_t nb,
                            PerBlock per_block) {
  bool ready = false;
  Dst* const buf = memo.get(a, as, nt, nb, &ready);
  if (!ready)
    for (int64_t t = 0; t < nt; ++t) {
      const Src* src = reinterpret_cast<const Src*>(a + size_t(t) * as);
      Dst* dst = buf + size_t(nb) * size_t(t);
      for (int64_t b = 0; b < nb; ++b) per_block(src[b], dst[b]);
    }
  return reinterpret_cast<const uint8_t*>(buf);
}

// The activations of a call with every quant byte flipped to a + 128 (uint8), for formats with
// kUnsignedActs: one pass over nt x nb Q8_K blocks, reused by every row group of the call. The copy
// lives in a per-thread memo (ActMemo: reused by the later tasks of the same matmul call).
const uint8_t* act_u8(const uint8_t* a, size_t as, int64_t nt, int64_t nb) {
  thread_local ActMemo<block_q8_K> memo;
  return rewrite_acts<block_q8_K>(memo, a, as, nt, nb, [](const block_q8_K& src, block_q8_K& dst) {
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    dst.d = src.d;
    for (int i = 0; i < QK_K; i += 64)
      _mm512_storeu_si512(dst.qs + i, _mm512_xor_si512(_mm512_loadu_si512(src.qs + i), flip));
  });
}

// The activations of a call with bsums[c] = S_c = bsums[2c] + bsums[2c+1] for c < 8 (the exact sum
// of sub-block c's 32 values, int16; bsums[8..15] zero), for formats with kSub32Sums (Q4_K, Q5_K:
// sub32_offsets then needs 4 vpdpwssd per token and super-block instead of 8). Quants and d are
// copied as they are; one pass per call, shared by every row group and task (ActMemo).
const uint8_t* act_sub32_sums(const uint8_t* a, size_t as, int64_t nt, int64_t nb) {
  thread_local ActMemo<block_q8_K> memo;
  return rewrite_acts<block_q8_K>(memo, a, as, nt, nb, [](const block_q8_K& src, block_q8_K& dst) {
    const __m256i ones = _mm256_set1_epi16(1);
    dst.d = src.d;
    for (int i = 0; i < QK_K; i += 64) _mm512_storeu_si512(dst.qs + i, _mm512_loadu_si512(src.qs + i));
    const __m256i pairs = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src.bsums)), ones);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst.bsums), _mm256_cvtepi32_epi16(pairs));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst.bsums + 8), _mm_setzero_si128());
  });
}

template <class F, class = void>
struct Sub32Sums : std::false_type {};
template <class F>
struct Sub32Sums<F, std::void_t<decltype(F::kSub32Sums)>> : std::bool_constant<F::kSub32Sums> {};

template <class F, class = void>
struct Q8ActOffsets : std::false_type {};
template <class F>
struct Q8ActOffsets<F, std::void_t<decltype(F::kQ8ActOffsets)>> : std::bool_constant<F::kQ8ActOffsets> {};

// kQ8ActOffsets: the call's nt x nb activation blocks as ActBlockOff (s -> -128 * sum(qs), exact), one
// pass reused by every row group and task of the call (ActMemo, as act_u8).
const uint8_t* act_q8_offsets(const uint8_t* a, size_t as, int64_t nt, int64_t nb) {
  thread_local ActMemo<ActBlockOff> memo;
  return rewrite_acts<ActBlock>(memo, a, as, nt, nb, [](const ActBlock& src, ActBlockOff& dst) {
    dst.d = src.d;
    dst.off = -128 * act_sum32(src.qs);
    std::memcpy(dst.qs, src.qs, sizeof(dst.qs));
  });
}

template <class F, class = void>
struct UnsignedActs : std::false_type {};
template <class F>
struct UnsignedActs<F, std::void_t<decltype(F::kUnsignedActs)>> : std::bool_constant<F::kUnsignedActs> {};

// ---- Q6_K: super-blocks of 256 values, 16 sub-blocks of 16 with int8 scales, quants 0..63 (-32) ----
// The IQ4_XS form (see there): signed weights v = q - 32 (-32..31) against the call's activations
// flipped to a + 128 (act_u8), and the offset of a whole super-block, 128 * sum_k sc_k * W_k
// (W_k = sum of v over sub-block k), one int32 per row made at repack time; a token then costs one
// subtraction instead of the 8 vpdpwssd of the bsums form (msum = sum_k 32 sc_k bsums_k).
// Repacked super-block (16 rows): 64 quant vectors of v (chunk c = values 32c..32c+31, group G = 4
// values, as for Q4_K), the 16 sub-block scales as int32 (16 vectors), the offsets (one vector at
// kQ6Off), d[16]. Per (row, token, super-block), exact int32 (|.| < 16 * 128 * 16 * 32 * 255 < 2^28):
//   isum - msum = sum_k sc_k * (sum_i v_i (a_i + 128)) - 128 * sum_k sc_k * W_k = sum_k sc_k sum_i (q_i - 32) a_i
//   acc = fma(float(isum - msum), d * da, acc)   (the AVX2 kernels' combined step)
// (the sequence of gemm_rows8_ref for Q6_K), so the bits are those of the bsums form.
constexpr size_t kQ6Scale = 64, kQ6Off = 80, kQ6D = 88;  // vector offsets
constexpr size_t kQ6BlockBytes = 89 * 64;                // 5.6 KB

constexpr size_t kK23Scale = 64, kK23Min = 80, kK23D = 88, kK23Dm = 89;
constexpr size_t kK23BlockBytes = 90 * 64;
static_assert(kQ6Scale == kK23Scale && kQ6D == kK23D, "one sub16 layout");

// The tile of the 16-value sub-block formats (Q2_K, Q3_K, Q6_K: one repacked layout, offsets
// kK23Scale/kK23Min/kK23D/kK23Dm): exact int32 isum / msum per super-block, then kCombined (Q3_K, Q6_K:
// dmin = d) acc = fma(float(isum - msum), d*da, acc), else (Q2_K) acc = fma(float(isum), d*da, acc);
// acc = fma(-float(msum), dmin*da, acc).
template <bool kCombined, int T>
void sub16_tile(int nsb, const uint8_t* pk, size_t kBytes, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_loadu_ps(acc + kRows * t);
  for (int sb = 0; sb < nsb; ++sb) {
    const __m512i* blk = reinterpret_cast<const __m512i*>(pk + size_t(sb) * kBytes);
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + sb0 + sb;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    for (int c = 0; c < 8; ++c) {
      __m512i w[8];
      for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(blk + 8 * c + k);
      const __m512i sc0 = _mm512_load_si512(blk + kK23Scale + 2 * c);
      const __m512i sc1 = _mm512_load_si512(blk + kK23Scale + 2 * c + 1);
      for (int t = 0; t < T; ++t) {
        const int8_t* q = ab[t]->qs + 32 * c;
        __m512i p0 = dpbusd_b(_mm512_setzero_si512(), w[0], q);
        __m512i p1 = dpbusd_b(_mm512_setzero_si512(), w[4], q + 16);
        for (int k = 1; k < 4; ++k) {
          p0 = dpbusd_b(p0, w[k], q + 4 * k);
          p1 = dpbusd_b(p1, w[k + 4], q + 16 + 4 * k);
        }
        iacc[t] = _mm512_add_epi32(iacc[t], _mm512_add_epi32(_mm512_mullo_epi32(p0, sc0), _mm512_mullo_epi32(p1, sc1)));
      }
    }
    const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(blk + kK23D));
    const __m512 dm = kCombined ? d : _mm512_load_ps(reinterpret_cast<const float*>(blk + kK23Dm));
    for (int t = 0; t < T; ++t) {
      __m512i ms = _mm512_setzero_si512();
      for (int j = 0; j < 8; ++j)
        ms = dpwssd_b(ms, _mm512_load_si512(blk + kK23Min + j), ab[t]->bsums + 2 * j);
      const __m512 da = _mm512_set1_ps(ab[t]->d);
      if constexpr (kCombined) {  // dmin = d: the combined step of the AVX2 kernels
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(iacc[t], ms)), _mm512_mul_ps(d, da), s[t]);
      } else {
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, da), s[t]);
        s[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dm, da), s[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + kRows * t, s[t]);
}

struct Q6KFormat {
  static constexpr size_t kW = sizeof(block_q6_K);
  static constexpr int64_t kValues = QK_K;
  static constexpr int kPerChunk = kSuperPerChunk;
  static constexpr size_t kBytes = kQ6BlockBytes;
  static constexpr bool kUnsignedActs = true;

  static void repack(const uint8_t* const* p, __m512i, size_t boff, uint8_t* dst) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3), m32 = _mm512_set1_epi8(32);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int h = 0; h < 2; ++h) {  // values 128h..128h+127: ql bytes 64h..64h+63, qh bytes 32h..32h+31
      __m512i qh[8];
      transpose16(p, boff + offsetof(block_q6_K, qh) + 32 * size_t(h), qh);
      transpose16(p, boff + offsetof(block_q6_K, qh) + 32 * size_t(h) + 16, qh + 4);
      for (int seg = 0; seg < 2; ++seg) {  // ql bytes 64h + 32seg..: chunks 4h + seg (low) and 4h + seg + 2 (high)
        __m512i ql[8];
        transpose16(p, boff + offsetof(block_q6_K, ql) + 64 * size_t(h) + 32 * size_t(seg), ql);
        transpose16(p, boff + offsetof(block_q6_K, ql) + 64 * size_t(h) + 32 * size_t(seg) + 16, ql + 4);
        for (int nib = 0; nib < 2; ++nib) {
          const int k = seg + 2 * nib, c = 4 * h + k;  // qh bits 2k..2k+1 hold the high bits of chunk c
          for (int G = 0; G < 8; ++G) {
            const __m512i lo = _mm512_and_si512(nib ? _mm512_srli_epi16(ql[G], 4) : ql[G], m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qh[G], 2 * k), m2);
            _mm512_store_si512(out + 8 * c + G, _mm512_sub_epi8(_mm512_or_si512(lo, _mm512_slli_epi16(hi, 4)), m32));
          }
        }
      }
    }
    int32_t* sc = reinterpret_cast<int32_t*>(out + kQ6Scale);
    float* d = reinterpret_cast<float*>(out + kQ6D);
    for (int r = 0; r < kRows; ++r) {
      const block_q6_K* b = reinterpret_cast<const block_q6_K*>(p[r] + boff);
      for (int k = 0; k < 16; ++k) sc[16 * k + r] = b->scales[k];
      d[r] = _cvtsh_ss(b->d);
    }
    store_offsets(out);
  }

  // offset = 128 * sum_k sc_k * W_k; sub-block k = groups 4 (k % 2) .. +3 of chunk k / 2
  static void store_offsets(__m512i* out) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i off = _mm512_setzero_si512();
    for (int k = 0; k < 16; ++k) {
      __m512i wsum = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) wsum = _mm512_dpbusd_epi32(wsum, ones, _mm512_load_si512(out + 8 * (k / 2) + 4 * (k % 2) + i));
      off = _mm512_add_epi32(off, _mm512_mullo_epi32(wsum, _mm512_load_si512(out + kQ6Scale + k)));
    }
    _mm512_store_si512(out + kQ6Off, _mm512_slli_epi32(off, 7));
  }

  // The same repacked block from two packed groups (rows 0-7 from the block at g0, 8-15 from g1).
  // Q6_K's packed form (packed_layout.h) holds, per half h and 4-value group g, the words A, B, C
  // whose byte l carries the quants of values 128h + l + {0, 32, 64, 96} = chunks 4h + {0, 1, 2, 3},
  // group g:  q1 = A & 63, q2 = B & 63, q3 = (A >> 6) << 4 | C & 15, q4 = (B >> 6) << 4 | C >> 4
  // (bytewise), one row per lane already: no transpose. Scales / offsets / d as in repack.
  static void repack_packed(const uint8_t* g0, const uint8_t* g1, uint8_t* dst) {
    constexpr size_t G = kPackRows;
    const __m512i m63 = _mm512_set1_epi8(63), m15 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30),
                  m32 = _mm512_set1_epi8(32);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 8; ++g) {
        const size_t at = G * q6k_packed_triple(h, g);
        const __m512i A = packed_units32(g0, g1, at), B = packed_units32(g0, g1, at + 4 * G),
                      C = packed_units32(g0, g1, at + 8 * G);
        // (x >> 2) & 0x30 moves bits 6-7 of each byte to 4-5 (the 16-bit shift's carry-in is masked off)
        const __m512i q3 = _mm512_or_si512(_mm512_and_si512(C, m15), _mm512_and_si512(_mm512_srli_epi16(A, 2), m30));
        const __m512i q4 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(C, 4), m15),
                                           _mm512_and_si512(_mm512_srli_epi16(B, 2), m30));
        _mm512_store_si512(out + 8 * (4 * h + 0) + g, _mm512_sub_epi8(_mm512_and_si512(A, m63), m32));
        _mm512_store_si512(out + 8 * (4 * h + 1) + g, _mm512_sub_epi8(_mm512_and_si512(B, m63), m32));
        _mm512_store_si512(out + 8 * (4 * h + 2) + g, _mm512_sub_epi8(q3, m32));
        _mm512_store_si512(out + 8 * (4 * h + 3) + g, _mm512_sub_epi8(q4, m32));
      }
    // scales[16] (int8) as four words per lane: sc_k = byte k % 4 of word k / 4, sign-extended
    for (int k = 0; k < 16; ++k) {
      const __m512i word = packed_units32(g0, g1, G * (kQ6PackedScales + 4 * size_t(k / 4)));
      _mm512_store_si512(out + kQ6Scale + k, _mm512_srai_epi32(_mm512_slli_epi32(word, 24 - 8 * (k % 4)), 24));
    }
    _mm512_store_ps(reinterpret_cast<float*>(out + kQ6D), _mm512_cvtph_ps(packed_units16(g0, g1, G * kQ6PackedD)));
    store_offsets(out);
  }

  // T tokens (activation bytes already + 128, act_u8) x 16 rows over nsb repacked super-blocks.
  template <int T>
  static void run_tile(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
    __m512 s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm512_loadu_ps(acc + kRows * t);
    for (int sb = 0; sb < nsb; ++sb) {
      const __m512i* blk = reinterpret_cast<const __m512i*>(pk + size_t(sb) * kBytes);
      const block_q8_K* ab[T];
      for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + sb0 + sb;
      const __m512i off = _mm512_load_si512(blk + kQ6Off);
      __m512i iacc[T];
      for (int t = 0; t < T; ++t) iacc[t] = _mm512_sub_epi32(_mm512_setzero_si512(), off);
      for (int c = 0; c < 8; ++c) {
        __m512i w[8];
        for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(blk + 8 * c + k);
        const __m512i sc0 = _mm512_load_si512(blk + kQ6Scale + 2 * c);
        const __m512i sc1 = _mm512_load_si512(blk + kQ6Scale + 2 * c + 1);
        for (int t = 0; t < T; ++t) {
          const int8_t* q = ab[t]->qs + 32 * c;  // unsigned (a + 128): the broadcast operand is the u8 one
          __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bcast4(q), w[0]);
          __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bcast4(q + 16), w[4]);
          for (int k = 1; k < 4; ++k) {
            p0 = _mm512_dpbusd_epi32(p0, bcast4(q + 4 * k), w[k]);
            p1 = _mm512_dpbusd_epi32(p1, bcast4(q + 16 + 4 * k), w[k + 4]);
          }
          iacc[t] = _mm512_add_epi32(iacc[t], _mm512_add_epi32(_mm512_mullo_epi32(p0, sc0), _mm512_mullo_epi32(p1, sc1)));
        }
      }
      const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(blk + kQ6D));
      for (int t = 0; t < T; ++t)
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, _mm512_set1_ps(ab[t]->d)), s[t]);
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + kRows * t, s[t]);
  }

  static bool run_direct(int64_t, int64_t, const uint8_t* const*, const uint8_t*, size_t, float*) { return false; }
};

// ---- Q2_K / Q3_K: super-blocks of 256 values, 16 sub-blocks of 16, 2-bit quants (+ a third bit) -----
// Chunk c (values 32c..32c+31): value l = (qs[32*(c/4) + l] >> 2*(c%4)) & 3, Q3_K | ((hmask[l] >> c) & 1) << 2.
// Repacked like Q6_K (quants, int32 scales, (mn, mn') int16 pairs) plus d and dmin. Scales / offsets
// from kquant_scales.h: Q2_K sc = 4-bit scale, mn = 4-bit min with dmin; Q3_K sc = 6-bit scale - 32,
// mn = 4 sc with dmin = d. Sequence (gemm_rows8_ref): Q2_K as Q4_K; Q3_K combined as Q6_K.

template <bool kQ3>
struct K23Format {
  using Block = typename std::conditional<kQ3, block_q3_K, block_q2_K>::type;
  static constexpr size_t kW = sizeof(Block);
  static constexpr int64_t kValues = QK_K;
  static constexpr int kPerChunk = kSuperPerChunk;
  static constexpr size_t kBytes = kK23BlockBytes;

  static void repack(const uint8_t* const* p, __m512i, size_t boff, uint8_t* dst) {
    const __m512i m2 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    __m512i hm[8];
    if constexpr (kQ3) {
      transpose16(p, boff + offsetof(block_q3_K, hmask), hm);
      transpose16(p, boff + offsetof(block_q3_K, hmask) + 16, hm + 4);
    }
    for (int j = 0; j < 2; ++j) {  // qs bytes 32j..32j+31: chunks 4j..4j+3
      __m512i x[8];
      transpose16(p, boff + offsetof(Block, qs) + 32 * size_t(j), x);
      transpose16(p, boff + offsetof(Block, qs) + 32 * size_t(j) + 16, x + 4);
      for (int sft = 0; sft < 4; ++sft) {
        const int c = 4 * j + sft;
        for (int G = 0; G < 8; ++G) {
          __m512i q = _mm512_and_si512(_mm512_srli_epi16(x[G], 2 * sft), m2);
          if constexpr (kQ3) q = _mm512_or_si512(q, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hm[G], c), one), 2));
          _mm512_store_si512(out + 8 * c + G, q);
        }
      }
    }
    int32_t* sc = reinterpret_cast<int32_t*>(out + kK23Scale);
    int32_t* mn = reinterpret_cast<int32_t*>(out + kK23Min);
    float* d = reinterpret_cast<float*>(out + kK23D);
    float* dm = reinterpret_cast<float*>(out + kK23Dm);
    for (int r = 0; r < kRows; ++r) {
      const Block* b = reinterpret_cast<const Block*>(p[r] + boff);
      kq::Scales ks;
      if constexpr (kQ3) kq::scales_q3_K(b, &ks); else kq::scales_q2_K(b, &ks);
      for (int k = 0; k < 16; ++k) sc[16 * k + r] = ks.sc[k];
      for (int jj = 0; jj < 8; ++jj)
        mn[16 * jj + r] = int32_t(uint32_t(uint16_t(ks.mn[2 * jj])) | uint32_t(uint16_t(ks.mn[2 * jj + 1])) << 16);
      d[r] = _cvtsh_ss(b->d);
      if constexpr (kQ3) dm[r] = d[r]; else dm[r] = _cvtsh_ss(b->dmin);
    }
  }

  // The same repacked block from two packed groups (packed_layout.h; rows 0-7 from the block at g0,
  // rows 8-15 from the one at g1): the qs / hmask words are two 32-byte loads each (no transpose) and
  // the scales of kquant_scales.h are unpacked in vectors from the scale words, one row per lane.
  static void repack_packed(const uint8_t* g0, const uint8_t* g1, uint8_t* dst) {
    constexpr size_t G = kPackRows;
    const __m512i m2 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    __m512i* out = reinterpret_cast<__m512i*>(dst);
    __m512i hm[8];  // Q3_K: hm[G] lane r = hmask bytes 4G..4G+3 of row r
    if constexpr (kQ3)
      for (int k = 0; k < 8; ++k) hm[k] = packed_units32(g0, g1, G * (offsetof(block_q3_K, hmask) + 4 * size_t(k)));
    for (int j = 0; j < 2; ++j)  // qs bytes 32j..32j+31: chunks 4j..4j+3
      for (int k = 0; k < 8; ++k) {
        const __m512i x = packed_units32(g0, g1, G * (offsetof(Block, qs) + 32 * size_t(j) + 4 * size_t(k)));
        for (int sft = 0; sft < 4; ++sft) {
          const int c = 4 * j + sft;
          __m512i q = _mm512_and_si512(_mm512_srli_epi16(x, 2 * sft), m2);
          if constexpr (kQ3) q = _mm512_or_si512(q, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hm[k], c), one), 2));
          _mm512_store_si512(out + 8 * c + k, q);
        }
      }
    // scales: byte i of the scale field is byte i % 4 of its word i / 4 (lane r = row r)
    const __m512i m4 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), lo16 = _mm512_set1_epi32(0xFFFF);
    __m512i sw[4];
    for (int w = 0; w < (kQ3 ? 3 : 4); ++w) sw[w] = packed_units32(g0, g1, G * (offsetof(Block, scales) + 4 * size_t(w)));
    __m512i mn_even = _mm512_setzero_si512();
    for (int k = 0; k < 16; ++k) {
      __m512i sc, mn;
      if constexpr (kQ3) {  // scales_q3_K: v = (low | high << 4) - 32, mn = 4 v
        const int lb = k % 8, lsh = 8 * (lb % 4) + (k < 8 ? 0 : 4);
        const __m512i low = _mm512_and_si512(_mm512_srli_epi32(sw[lb / 4], lsh), m4);
        const __m512i high = _mm512_and_si512(_mm512_srli_epi32(sw[2], 8 * (k % 4) + 2 * (k / 4)), m3);
        sc = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
        mn = _mm512_slli_epi32(sc, 2);
      } else {  // scales_q2_K: sc = scales[k] & 15, mn = scales[k] >> 4
        const __m512i b = _mm512_srli_epi32(sw[k / 4], 8 * (k % 4));
        sc = _mm512_and_si512(b, m4);
        mn = _mm512_and_si512(_mm512_srli_epi32(b, 4), m4);
      }
      _mm512_store_si512(out + kK23Scale + k, sc);
      if (k % 2 == 0)
        mn_even = _mm512_and_si512(mn, lo16);
      else  // the int16 pair (mn_k-1, mn_k)
        _mm512_store_si512(out + kK23Min + k / 2, _mm512_or_si512(mn_even, _mm512_slli_epi32(mn, 16)));
    }
    const __m512 d = _mm512_cvtph_ps(packed_units16(g0, g1, G * offsetof(Block, d)));
    _mm512_store_ps(reinterpret_cast<float*>(out + kK23D), d);
    if constexpr (kQ3)
      _mm512_store_ps(reinterpret_cast<float*>(out + kK23Dm), d);
    else
      _mm512_store_ps(reinterpret_cast<float*>(out + kK23Dm), _mm512_cvtph_ps(packed_units16(g0, g1, G * offsetof(block_q2_K, dmin))));
  }

  template <int T>
  static void run_tile(int nsb, const uint8_t* pk, const uint8_t* a, size_t as, int64_t sb0, float* acc) {
    sub16_tile<kQ3, T>(nsb, pk, kBytes, a, as, sb0, acc);
  }

  static bool run_direct(int64_t, int64_t, const uint8_t* const*, const uint8_t*, size_t, float*) { return false; }
};

// The walk shared by every format F: token chunks (partial sums kept in acc) x groups of 16 rows
// (a tail group repeats the last row; its extra lanes are computed and dropped) x chunks of blocks
// repacked into the stack scratch, then register tiles of kTile tokens; fewer than kDirectBelow
// tokens use F's direct path if it has one.
template <class F, int T>
inline void run_tile_n(int ntc_left, int nbc, const uint8_t* pk, const uint8_t* at, size_t as, int64_t b0,
                       float* acc) {
  if constexpr (T > 0) {
    if (ntc_left == T) {
      F::template run_tile<T>(nbc, pk, at, as, b0, acc);
      return;
    }
    run_tile_n<F, T - 1>(ntc_left, nbc, pk, at, as, b0, acc);
  }
}

template <class F>
void gemm_rows16(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                 float* y, size_t ys) {
  static_assert(!Q8ActOffsets<F>::value, "activations in the offset form: gemm_rows16_packed only");
  const int64_t nb = n / F::kValues;
  alignas(64) uint8_t pk[F::kPerChunk * F::kBytes];
  alignas(64) float acc[kTokensPerChunk * kRows];
  for (int64_t t0 = 0; t0 < nt; t0 += kTokensPerChunk) {
    const int64_t ntc = nt - t0 < kTokensPerChunk ? nt - t0 : kTokensPerChunk;
    const uint8_t* at = a + size_t(t0) * as;
    size_t ats = as;  // stride of at
    if constexpr (UnsignedActs<F>::value) {  // such formats have no direct path: every count takes the tiles
      at = act_u8(at, as, ntc, nb);
      ats = size_t(nb) * sizeof(block_q8_K);
    }
    if constexpr (Sub32Sums<F>::value) {  // no direct path: every token count takes the tiles
      at = act_sub32_sums(at, as, ntc, nb);
      ats = size_t(nb) * sizeof(block_q8_K);
    }
    for (int64_t r0 = 0; r0 < nr; r0 += kRows) {
      const uint8_t* p[kRows];
      for (int r = 0; r < kRows; ++r) p[r] = w + size_t(r0 + r < nr ? r0 + r : nr - 1) * ws;
      const int rr = int(nr - r0 < kRows ? nr - r0 : kRows);
      if (ntc >= kDirectBelow || !F::run_direct(ntc, nb, p, at, ats, acc)) {
        std::memset(acc, 0, sizeof(float) * kRows * size_t(ntc));
        for (int64_t b0 = 0; b0 < nb; b0 += F::kPerChunk) {
          const int nbc = int(nb - b0 < F::kPerChunk ? nb - b0 : F::kPerChunk);
          const __m512i off = row_offsets(p);
          for (int b = 0; b < nbc; ++b) F::repack(p, off, size_t(b0 + b) * F::kW, pk + size_t(b) * F::kBytes);
          int64_t t = 0;
          for (; t + kTile <= ntc; t += kTile)
            F::template run_tile<kTile>(nbc, pk, at + size_t(t) * ats, ats, b0, acc + kRows * t);
          if (t < ntc)
            run_tile_n<F, kTile - 1>(int(ntc - t), nbc, pk, at + size_t(t) * ats, ats, b0, acc + kRows * t);
        }
      }
      for (int64_t t = 0; t < ntc; ++t)
        for (int r = 0; r < rr; ++r) y[size_t(t0 + t) * ys + size_t(r0 + r)] = acc[kRows * t + r];
    }
  }
}

// Rows [0, nr) of packed groups (nr a multiple of kPackRows, the layout of packed_layout.h) times nt
// tokens: gemm_rows16 with F::repack_packed reading two groups per 16 rows (a lone last group is read
// twice, its copy's lanes dropped). Called once per task for all its rows, so the per-call work
// (act_u8) is shared by every row group; the GGUF route unpacks and calls per 16 rows.
template <class F>
void gemm_rows16_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys) {
  const int64_t nb = n / F::kValues;
  const size_t group_bytes = size_t(kPackRows) * ws, block_bytes = size_t(kPackRows) * F::kW;
  alignas(64) uint8_t pk[F::kPerChunk * F::kBytes];
  alignas(64) float acc[kTokensPerChunk * kRows];
  for (int64_t t0 = 0; t0 < nt; t0 += kTokensPerChunk) {
    const int64_t ntc = nt - t0 < kTokensPerChunk ? nt - t0 : kTokensPerChunk;
    const uint8_t* at = a + size_t(t0) * as;
    size_t ats = as;  // stride of at
    if constexpr (UnsignedActs<F>::value) {
      at = act_u8(at, as, ntc, nb);
      ats = size_t(nb) * sizeof(block_q8_K);
    }
    if constexpr (Sub32Sums<F>::value) {
      at = act_sub32_sums(at, as, ntc, nb);
      ats = size_t(nb) * sizeof(block_q8_K);
    }
    if constexpr (Q8ActOffsets<F>::value) {
      at = act_q8_offsets(at, as, ntc, nb);
      ats = size_t(nb) * sizeof(ActBlockOff);
    }
    for (int64_t r0 = 0; r0 < nr; r0 += kRows) {
      const uint8_t* g0 = w + size_t(r0 / kPackRows) * group_bytes;
      const uint8_t* g1 = r0 + kRows <= nr ? g0 + group_bytes : g0;
      const int rr = int(nr - r0 < kRows ? nr - r0 : kRows);
      std::memset(acc, 0, sizeof(float) * kRows * size_t(ntc));
      for (int64_t b0 = 0; b0 < nb; b0 += F::kPerChunk) {
        const int nbc = int(nb - b0 < F::kPerChunk ? nb - b0 : F::kPerChunk);
        for (int b = 0; b < nbc; ++b)
          F::repack_packed(g0 + size_t(b0 + b) * block_bytes, g1 + size_t(b0 + b) * block_bytes, pk + size_t(b) * F::kBytes);
        int64_t t = 0;
        for (; t + kTile <= ntc; t += kTile)
          F::template run_tile<kTile>(nbc, pk, at + size_t(t) * ats, ats, b0, acc + kRows * t);
        if (t < ntc) run_tile_n<F, kTile - 1>(int(ntc - t), nbc, pk, at + size_t(t) * ats, ats, b0, acc + kRows * t);
      }
      for (int64_t t = 0; t < ntc; ++t)
        for (int r = 0; r < rr; ++r) y[size_t(t0 + t) * ys + size_t(r0 + r)] = acc[kRows * t + r];
    }
  }
}

}  // namespace

void gemm_q4_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows16<LegacyFormat<Kind::Q4_0>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows16<LegacyFormat<Kind::Q4_1>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows16<LegacyFormat<Kind::Q5_0>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows16<LegacyFormat<Kind::Q5_1>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q8_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows16<LegacyFormat<Kind::Q8_0>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  gemm_rows16<Q6KFormat>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q2_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys) {
  gemm_rows16<K23Format<false>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q3_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys) {
  gemm_rows16<K23Format<true>>(n, w, ws, nr, a, as, nt, y, ys);
}
// K-quants from 4 tokens up (the repack is amortized); kernels_avx512.cpp sends decode to row tiles
// with the same per-output sequence, so the bits never depend on the token count.
void gemm_q4_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys) {
  gemm_rows16<KFormat45<false>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys) {
  gemm_rows16<KFormat45<true>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_iq4_xs_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                         float* y, size_t ys) {
  gemm_rows16<IQ4XSFormat>(n, w, ws, nr, a, as, nt, y, ys);
}

void gemm_q4_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<KFormat45<false>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<KFormat45<true>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q6_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<Q6KFormat>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_0_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<LegacyFormat<Kind::Q4_0>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_1_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<LegacyFormat<Kind::Q4_1>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_0_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<LegacyFormat<Kind::Q5_0>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_1_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<LegacyFormat<Kind::Q5_1>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q8_0_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<LegacyFormat<Kind::Q8_0, true>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_iq4_nl_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                                int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<IQ4NLFormat>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q2_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<K23Format<false>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q3_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<K23Format<true>>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_iq4_xs_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                                int64_t nt, float* y, size_t ys) {
  gemm_rows16_packed<IQ4XSFormat>(n, w, ws, nr, a, as, nt, y, ys);
}

}  // namespace avx512_rows16
}  // namespace edgellama
