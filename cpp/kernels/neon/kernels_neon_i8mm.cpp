// AArch64 kernels using the Armv8.6 int8 matrix multiply (SMMLA, vmmlaq_s32). Compiled with
// -march=armv8.2-a+dotprod+i8mm+fp16 (CMakeLists' EDGELLAMA_FLAGS_neon_i8mm, chosen for this file by
// its name); only called after dispatch saw HWCAP2_I8MM (and dotprod). Internal linkage throughout,
// like kernels_neon.cpp, for the same reason (the linker must never pick an i8mm-compiled copy).
//
// What SMMLA does: acc (2x2 int32) += A (2x8 int8) * B^T (2x8 int8). With A = 8 quants of weight rows
// r0 and r1 (one 16-byte register, row r0 in the low half) and B = the same 8 positions of the
// activations of tokens t0 and t1, one instruction gives the four exact dot products
//     lanes (r0.t0, r0.t1, r1.t0, r1.t1)
// where SDOT gives one row x one token. So these kernels work on pairs of rows x pairs of tokens:
// the natural fit for prefill and batched decode. A call with a single token (plain decode) goes to
// the SDOT kernel of the "neon" set, which does not waste half of every SMMLA.
//
// Exactness: per (row, token) the int32 sums per block (legacy) or per super-block (K-quants: the
// sub-block sums times their scales) are the same integers as the SDOT kernels and the scalar
// reference compute, and the float part applies the same operations to each (row, token) element
// as kernels_neon.cpp (same products d_w * d_a, same FMAs in the same block order, same final add),
// so every output is bit-identical to the "neon" set's (kernel_selftest checks this with memcmp).
//
// Tiles: up to 4 rows (two row pairs) x 4 tokens (two token pairs). An odd row or token count
// pairs the last row / token with itself and drops the duplicate lanes at the store.
// Speed: not measured (developed under qemu, which says nothing about timing).
#include <arm_neon.h>

#include <cstring>

#include "../kquant_scales.h"
#include "../tile_walk.h"
#include "block_unpack_neon.h"
#include "edgellama/kernels.h"

#define EL_UNROLL _Pragma("GCC unroll 16")

namespace edgellama {
namespace {

constexpr int kRows = 4;    // tile rows: two SMMLA row pairs
constexpr int kTokens = 4;  // tile tokens: two SMMLA token pairs
constexpr int kPrefetchRows = 4;

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Two rows' 32 quants (two int8x16 each: values 0..15, 16..31) -> the four SMMLA operands
// op[j] = [row0 values 8j..8j+7 | row1 values 8j..8j+7]. The same function interleaves two tokens'
// activations, so both sides index the 32 positions the same way.
inline void interleave_pair(const int8x16_t* v0, const int8x16_t* v1, int8x16_t* op) {
  EL_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int64x2_t a = vreinterpretq_s64_s8(v0[h]), b = vreinterpretq_s64_s8(v1[h]);
    op[2 * h] = vreinterpretq_s8_s64(vzip1q_s64(a, b));
    op[2 * h + 1] = vreinterpretq_s8_s64(vzip2q_s64(a, b));
  }
}

inline void load_act_pair(const int8_t* a0, const int8_t* a1, int8x16_t* op) {
  const int8x16_t v0[2] = {vld1q_s8(a0), vld1q_s8(a0 + 16)};
  const int8x16_t v1[2] = {vld1q_s8(a1), vld1q_s8(a1 + 16)};
  interleave_pair(v0, v1, op);
}

// (h0, h0, h1, h1) -> float: a row pair's half scales in the lane order of an SMMLA result.
inline float32x4_t halves_pair(const uint8_t* p0, const uint8_t* p1) {
  const uint16_t h[4] = {load_u16(p0), load_u16(p0), load_u16(p1), load_u16(p1)};
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

// (f0, f1, f0, f1): a token pair's activation scalars in the lane order of an SMMLA result.
inline float32x4_t tokens_pair(float f0, float f1) {
  const float f[4] = {f0, f1, f0, f1};
  return vld1q_f32(f);
}

// Store the tile: v[p][u] holds lanes (r0.t0, r0.t1, r1.t0, r1.t1) of row pair p, token pair u.
// uzp1/uzp2 of the two row pairs give tokens t0 / t1 as four row lanes; duplicate lanes are dropped.
template <int R, int T>
inline void store_tile(float32x4_t (*v)[(T + 1) / 2], float* y, size_t ys) {
  constexpr int RP = (R + 1) / 2;
  EL_UNROLL
  for (int u = 0; u < (T + 1) / 2; ++u) {
    const float32x4_t hi = RP > 1 ? v[RP - 1][u] : v[0][u];
    const float32x4_t rows_t0 = vuzp1q_f32(v[0][u], hi), rows_t1 = vuzp2q_f32(v[0][u], hi);
    float tmp[2][4];
    vst1q_f32(tmp[0], rows_t0);
    vst1q_f32(tmp[1], rows_t1);
    EL_UNROLL
    for (int k = 0; k < 2; ++k) {
      if (2 * u + k >= T) break;  // the duplicate of an odd last token
      float* yt = y + size_t(2 * u + k) * ys;
      if (R == 4) {
        vst1q_f32(yt, k == 0 ? rows_t0 : rows_t1);
      } else {
        for (int r = 0; r < R; ++r) yt[r] = tmp[k][r];
      }
    }
  }
}

// ---- 32-value blocks: dot = d * da * sum(q * a) + c * s ---------------------------------------------

template <class W, int R, int T>
void tile_legacy_mm(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  constexpr int RP = (R + 1) / 2, TP = (T + 1) / 2;
  float32x4_t acc[RP][TP], corr[RP][TP];
  EL_UNROLL
  for (int p = 0; p < RP; ++p)
    EL_UNROLL
    for (int u = 0; u < TP; ++u) acc[p][u] = corr[p][u] = vdupq_n_f32(0.0f);
  const int32x4_t zero = vdupq_n_s32(0);
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t wop[RP][4];
    float32x4_t dw[RP], cw[RP];
    EL_UNROLL
    for (int p = 0; p < RP; ++p) {
      const uint8_t* b0 = w + size_t(2 * p) * ws + size_t(b) * W::kBytes;
      const uint8_t* b1 = w + size_t(2 * p + 1 < R ? 2 * p + 1 : R - 1) * ws + size_t(b) * W::kBytes;
      __builtin_prefetch(b0 + kPrefetchRows * ws);  // never faults: running past the matrix is harmless
      __builtin_prefetch(b1 + kPrefetchRows * ws);
      int8x16_t q0[2], q1[2];
      W::q(b0, q0);
      W::q(b1, q1);
      interleave_pair(q0, q1, wop[p]);
      dw[p] = halves_pair(b0, b1);
      cw[p] = vdupq_n_f32(0.0f);
      if (W::kOffset > 0) cw[p] = vmulq_n_f32(dw[p], -float(W::kOffset));
      if (W::kOffset < 0) cw[p] = halves_pair(b0 + 2, b1 + 2);
    }
    EL_UNROLL
    for (int u = 0; u < TP; ++u) {
      const ActQ8x32* a0 = reinterpret_cast<const ActQ8x32*>(a + size_t(2 * u) * as) + b;
      const ActQ8x32* a1 = reinterpret_cast<const ActQ8x32*>(a + size_t(2 * u + 1 < T ? 2 * u + 1 : T - 1) * as) + b;
      int8x16_t aop[4];
      load_act_pair(a0->qs, a1->qs, aop);
      const float32x4_t da = tokens_pair(a0->d, a1->d);
      const float32x4_t sa = tokens_pair(a0->s, a1->s);
      EL_UNROLL
      for (int p = 0; p < RP; ++p) {
        int32x4_t s = vmmlaq_s32(zero, wop[p][0], aop[0]);
        s = vmmlaq_s32(s, wop[p][1], aop[1]);
        s = vmmlaq_s32(s, wop[p][2], aop[2]);
        s = vmmlaq_s32(s, wop[p][3], aop[3]);
        // The SDOT kernel's float steps, per element: acc += float(S) * (d_w * d_a); corr += c * s.
        acc[p][u] = vfmaq_f32(acc[p][u], vcvtq_f32_s32(s), vmulq_f32(dw[p], da));
        if (W::kOffset != 0) corr[p][u] = vfmaq_f32(corr[p][u], cw[p], sa);
      }
    }
  }
  EL_UNROLL
  for (int p = 0; p < RP; ++p)
    EL_UNROLL
    for (int u = 0; u < TP; ++u) acc[p][u] = vaddq_f32(acc[p][u], corr[p][u]);
  store_tile<R, T>(acc, y, ys);
}

template <class W>
struct LegacyTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_legacy_mm<W, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// ---- K-quants: per super-block sum_k sc[k] * dot_k (int32) and sum_k mn[k] * bsum[k] ---------------

// Exact int32 sum of mn[k] * bsums[k] over the 16 sub-blocks (products < 2^15 * 2^12).
inline int32_t mins_dot(const int16_t* mn, const int16_t* bsums) {
  const int16x8_t m0 = vld1q_s16(mn), m1 = vld1q_s16(mn + 8);
  const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
  int32x4_t v = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
  v = vmlal_high_s16(v, m0, b0);
  v = vmlal_s16(v, vget_low_s16(m1), vget_low_s16(b1));
  v = vmlal_high_s16(v, m1, b1);
  return vaddvq_s32(v);
}

template <class K, int R, int T>
void tile_k_mm(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  constexpr int RP = (R + 1) / 2, TP = (T + 1) / 2;
  float32x4_t acc[RP][TP];
  EL_UNROLL
  for (int p = 0; p < RP; ++p)
    EL_UNROLL
    for (int u = 0; u < TP; ++u) acc[p][u] = vdupq_n_f32(0.0f);
  const int32x4_t zero = vdupq_n_s32(0);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[2 * RP];
    kq::Scales s[2 * RP];
    uint16_t dh[2 * RP], dmh[2 * RP];
    EL_UNROLL
    for (int r = 0; r < 2 * RP; ++r) {  // row 2*RP-1 may be a duplicate of row R-1
      blk[r] = w + size_t(r < R ? r : R - 1) * ws + size_t(b) * K::kBytes;
      if (r < R)
        for (size_t off = 0; off < K::kBytes; off += 64) __builtin_prefetch(blk[r] + kPrefetchRows * ws + off);
      K::prep(blk[r], &s[r], &dh[r], &dmh[r]);
    }
    // Sub-block scales in SMMLA lane order (sc_r0, sc_r0, sc_r1, sc_r1), per row pair and sub-block.
    int32_t scv[RP][16][4];
    float32x4_t d[RP], dm[RP];
    EL_UNROLL
    for (int p = 0; p < RP; ++p) {
      for (int k = 0; k < 16; ++k) {
        scv[p][k][0] = scv[p][k][1] = s[2 * p].sc[k];
        scv[p][k][2] = scv[p][k][3] = s[2 * p + 1].sc[k];
      }
      const uint16_t hd[4] = {dh[2 * p], dh[2 * p], dh[2 * p + 1], dh[2 * p + 1]};
      const uint16_t hm[4] = {dmh[2 * p], dmh[2 * p], dmh[2 * p + 1], dmh[2 * p + 1]};
      d[p] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hd)));
      dm[p] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hm)));
    }
    const block_q8_K* ab[2 * TP];
    EL_UNROLL
    for (int t = 0; t < 2 * TP; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t < T ? t : T - 1) * as) + b;
    int32x4_t iacc[RP][TP];
    EL_UNROLL
    for (int p = 0; p < RP; ++p)
      EL_UNROLL
      for (int u = 0; u < TP; ++u) iacc[p][u] = zero;
    // Not unrolled (as in the SDOT kernel): the shift amounts of K::q are then run-time values, and
    // the tile's 4 accumulators + 8 weight operands + 4 activation operands stay in registers.
#pragma GCC unroll 1
    for (int c = 0; c < 8; ++c) {
      int8x16_t wop[RP][4];
      int32x4_t sc0[RP], sc1[RP];
      EL_UNROLL
      for (int p = 0; p < RP; ++p) {
        int8x16_t q0[2], q1[2];
        K::q(blk[2 * p], c, q0);
        K::q(blk[2 * p + 1], c, q1);
        interleave_pair(q0, q1, wop[p]);
        sc0[p] = vld1q_s32(scv[p][2 * c]);
        sc1[p] = vld1q_s32(scv[p][2 * c + 1]);
      }
      EL_UNROLL
      for (int u = 0; u < TP; ++u) {
        int8x16_t aop[4];
        load_act_pair(ab[2 * u]->qs + 32 * c, ab[2 * u + 1]->qs + 32 * c, aop);
        EL_UNROLL
        for (int p = 0; p < RP; ++p) {
          const int32x4_t lo = vmmlaq_s32(vmmlaq_s32(zero, wop[p][0], aop[0]), wop[p][1], aop[1]);  // sub-block 2c
          const int32x4_t hi = vmmlaq_s32(vmmlaq_s32(zero, wop[p][2], aop[2]), wop[p][3], aop[3]);  // 2c + 1
          iacc[p][u] = vmlaq_s32(iacc[p][u], lo, sc0[p]);
          iacc[p][u] = vmlaq_s32(iacc[p][u], hi, sc1[p]);
        }
      }
    }
    EL_UNROLL
    for (int u = 0; u < TP; ++u) {
      const float32x4_t da = tokens_pair(ab[2 * u]->d, ab[2 * u + 1]->d);
      EL_UNROLL
      for (int p = 0; p < RP; ++p) {
        const int32_t m[4] = {mins_dot(s[2 * p].mn, ab[2 * u]->bsums), mins_dot(s[2 * p].mn, ab[2 * u + 1]->bsums),
                              mins_dot(s[2 * p + 1].mn, ab[2 * u]->bsums),
                              mins_dot(s[2 * p + 1].mn, ab[2 * u + 1]->bsums)};
        // The SDOT kernel's float steps, per element: acc += float(I) * (d * da); acc -= float(M) * (dm * da).
        acc[p][u] = vfmaq_f32(acc[p][u], vcvtq_f32_s32(iacc[p][u]), vmulq_f32(d[p], da));
        acc[p][u] = vfmsq_f32(acc[p][u], vcvtq_f32_s32(vld1q_s32(m)), vmulq_f32(dm[p], da));
      }
    }
  }
  store_tile<R, T>(acc, y, ys);
}

template <class K>
struct KTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_k_mm<K, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// ---- entry points: one token -> the SDOT kernel; two or more -> SMMLA tiles -------------------------

template <class W, GGMLType kType>
void gemm_legacy_mm(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                    float* y, size_t ys) {
  if (nt < 2) return kNeonKernels.gemm[int(kType)](n, w, ws, nr, a, as, nt, y, ys);
  walk_tiles<LegacyTile<W>::template Of, kRows, kTokens>(n / 32, w, ws, nr, a, as, nt, y, ys);
}

template <class K, GGMLType kType>
void gemm_k_mm(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  if (nt < 2) return kNeonKernels.gemm[int(kType)](n, w, ws, nr, a, as, nt, y, ys);
  walk_tiles<KTile<K>::template Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

// Only the entries this tier brings; dispatch puts them over the "neon" set (merge_over), which
// supplies everything else (quantizers, float and i-quant kernels).
constexpr KernelSet make_neon_i8mm() {
  KernelSet k{};
  k.name = "neon_i8mm";
  k.gemm[int(GGMLType::Q4_0)] = gemm_legacy_mm<Q4_0W, GGMLType::Q4_0>;
  k.gemm[int(GGMLType::Q4_1)] = gemm_legacy_mm<Q4_1W, GGMLType::Q4_1>;
  k.gemm[int(GGMLType::Q5_0)] = gemm_legacy_mm<Q5_0W, GGMLType::Q5_0>;
  k.gemm[int(GGMLType::Q5_1)] = gemm_legacy_mm<Q5_1W, GGMLType::Q5_1>;
  k.gemm[int(GGMLType::Q8_0)] = gemm_legacy_mm<Q8_0W, GGMLType::Q8_0>;
  k.gemm[int(GGMLType::Q2_K)] = gemm_k_mm<Q2_KW, GGMLType::Q2_K>;
  k.gemm[int(GGMLType::Q3_K)] = gemm_k_mm<Q3_KW, GGMLType::Q3_K>;
  k.gemm[int(GGMLType::Q4_K)] = gemm_k_mm<Q4_KW, GGMLType::Q4_K>;
  k.gemm[int(GGMLType::Q5_K)] = gemm_k_mm<Q5_KW, GGMLType::Q5_K>;
  k.gemm[int(GGMLType::Q6_K)] = gemm_k_mm<Q6_KW, GGMLType::Q6_K>;
  return k;
}

}  // namespace

const KernelSet kNeonI8mmOverrides = make_neon_i8mm();

}  // namespace edgellama
