// AArch64 NEON kernels using the Armv8.2 dot-product instructions (SDOT, vdotq_s32). Compiled with
// -march=armv8.2-a+dotprod+fp16; only called after dispatch saw HWCAP_ASIMDDP. Everything is in an
// anonymous namespace (internal linkage) and the only helpers used from shared headers are the
// `static` ones of kquant_scales.h, so the linker can never pick a dotprod-compiled copy of a
// function for the baseline code (same rule as the AVX2 file).
//
// Register blocking: every kernel computes an R-row x T-token tile, unpacking each weight block once
// into registers and reusing it for T tokens, while each activation block is reused for R rows.
// Per (row, token) the SDOT results stay int32 vectors; at the end of a block (32 values) or
// super-block (256 values) the four rows' vectors are folded with pairwise adds into one vector whose
// lanes are the rows' exact integer sums. Scales are applied there, in float, four rows at a time,
// so the per-block integer sums are the same integers the scalar reference computes.
// Tiles: 4 rows (the four float lanes) x 3 tokens for the int8 kernels, 4 x 4 for float weights;
// sizes chosen so the tile's vectors fit the 32 registers (checked for spills in the GCC output).
#include <arm_neon.h>

#include <cstring>

#include "../entry_points.h"
#include "../kquant_scales.h"
#include "../tile_walk.h"
#include "block_unpack_neon.h"  // the weight formats Q4_0W ... Q6_KW, shared with kernels_neon_i8mm.cpp
#include "edgellama/kernels.h"

// Full unrolling of the small constant-trip loops over tile rows / tokens, so that the tile's
// vectors live in registers: GCC -O2 otherwise keeps some of them as runtime loops over stack arrays.
#define EL_UNROLL _Pragma("GCC unroll 16")

namespace edgellama {
namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// ---- activation quantization (bit-identical to the scalar reference) ----------------------------

inline float max_abs(const float* x, int n) {  // n multiple of 16
  float32x4_t m0 = vdupq_n_f32(0.0f), m1 = m0, m2 = m0, m3 = m0;
  for (int i = 0; i < n; i += 16) {
    m0 = vmaxq_f32(m0, vabsq_f32(vld1q_f32(x + i)));
    m1 = vmaxq_f32(m1, vabsq_f32(vld1q_f32(x + i + 4)));
    m2 = vmaxq_f32(m2, vabsq_f32(vld1q_f32(x + i + 8)));
    m3 = vmaxq_f32(m3, vabsq_f32(vld1q_f32(x + i + 12)));
  }
  return vmaxvq_f32(vmaxq_f32(vmaxq_f32(m0, m1), vmaxq_f32(m2, m3)));
}

// 16 floats -> 16 int8: x * id rounded to nearest, ties to even (FCVTNS), like nearbyint() in the
// default rounding mode. |x * id| <= 127 (+ rounding) so the narrowing never saturates.
inline int8x16_t quant16(const float* x, float32x4_t id) {
  const int32x4_t i0 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x), id));
  const int32x4_t i1 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 4), id));
  const int32x4_t i2 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 8), id));
  const int32x4_t i3 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 12), id));
  const int16x8_t h0 = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
  const int16x8_t h1 = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
  return vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
}

void quantize_q8x32(const float* x, void* out, int64_t n) {
  ActQ8x32* y = static_cast<ActQ8x32*>(out);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    const float d = max_abs(x, 32) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float32x4_t vid = vdupq_n_f32(id);
    const int8x16_t q0 = quant16(x, vid), q1 = quant16(x + 16, vid);
    vst1q_s8(y[b].qs, q0);
    vst1q_s8(y[b].qs + 16, q1);
    const int sum = vaddlvq_s8(q0) + vaddlvq_s8(q1);
    y[b].d = d;
    y[b].s = d * float(sum);
  }
}

void quantize_q8k(const float* x, void* out, int64_t n) {
  block_q8_K* y = static_cast<block_q8_K*>(out);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    const float d = max_abs(x, QK_K) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float32x4_t vid = vdupq_n_f32(id);
    for (int k = 0; k < 16; ++k) {
      const int8x16_t q = quant16(x + 16 * k, vid);
      vst1q_s8(y[b].qs + 16 * k, q);
      y[b].bsums[k] = int16_t(vaddlvq_s8(q));
    }
    y[b].d = d;
  }
}

#ifndef EDGELLAMA_PREFETCH_ROWS
#define EDGELLAMA_PREFETCH_ROWS 4
#endif
constexpr int kPrefetchRows = EDGELLAMA_PREFETCH_ROWS;  // prefetch distance, in weight rows

// ---- helpers for 4-row vectors ----------------------------------------------------------------------

// Lanes r < R: the horizontal sum of v[r]; lanes >= R: 0. Exact for int32.
template <int R>
inline int32x4_t fold_rows(const int32x4_t* v) {
  const int32x4_t z = vdupq_n_s32(0);
  const int32x4_t p01 = vpaddq_s32(v[0], R > 1 ? v[1] : z);
  const int32x4_t p23 = R > 2 ? vpaddq_s32(v[2], R > 3 ? v[3] : z) : z;
  return vpaddq_s32(p01, p23);
}
template <int R>
inline float32x4_t fold_rows_f(const float32x4_t* v) {
  const float32x4_t z = vdupq_n_f32(0.0f);
  const float32x4_t p01 = vpaddq_f32(v[0], R > 1 ? v[1] : z);
  const float32x4_t p23 = R > 2 ? vpaddq_f32(v[2], R > 3 ? v[3] : z) : z;
  return vpaddq_f32(p01, p23);
}

// Four half floats at p[r * stride] (r < R, else 0) -> float32x4.
template <int R>
inline float32x4_t halves_rows(const uint8_t* p, size_t stride) {
  uint16x4_t h = vdup_n_u16(0);
  h = vset_lane_u16(load_u16(p), h, 0);
  if (R > 1) h = vset_lane_u16(load_u16(p + stride), h, 1);
  if (R > 2) h = vset_lane_u16(load_u16(p + 2 * stride), h, 2);
  if (R > 3) h = vset_lane_u16(load_u16(p + 3 * stride), h, 3);
  return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

template <int R>
inline void store_rows(float* y, float32x4_t v) {
  if (R == 4) {
    vst1q_f32(y, v);
  } else {
    float tmp[4];
    vst1q_f32(tmp, v);
    for (int r = 0; r < R; ++r) y[r] = tmp[r];
  }
}

// ---- 32-value blocks (formats Q4_0W ... Q8_0W: block_unpack_neon.h) -------------------------------
// dot = d * da * sum(q * a) + c * s.

template <class W, int R, int T>
void tile_legacy(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  static_assert(R <= 4, "rows are the four lanes of one vector");
  float32x4_t acc[T], corr[T];  // lanes = rows
  EL_UNROLL
  for (int t = 0; t < T; ++t) acc[t] = corr[t] = vdupq_n_f32(0.0f);
  const int32x4_t zero = vdupq_n_s32(0);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + size_t(b) * W::kBytes;
    int8x16_t q[R][2];
    EL_UNROLL
    for (int r = 0; r < R; ++r) {
      // The same block of the next tile's rows: hides memory latency when the weights stream in
      // (decode). A prefetch never faults, so running past the matrix is harmless.
      __builtin_prefetch(blk + size_t(r + kPrefetchRows) * ws);
      W::q(blk + size_t(r) * ws, q[r]);
    }
    const float32x4_t dw = halves_rows<R>(blk, ws);
    float32x4_t cw = vdupq_n_f32(0.0f);
    if (W::kOffset > 0) cw = vmulq_n_f32(dw, -float(W::kOffset));
    if (W::kOffset < 0) cw = halves_rows<R>(blk + 2, ws);
    EL_UNROLL
    for (int t = 0; t < T; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
      const int8x16_t a0 = vld1q_s8(ab->qs), a1 = vld1q_s8(ab->qs + 16);
      int32x4_t p[R];
      EL_UNROLL
      for (int r = 0; r < R; ++r) p[r] = vdotq_s32(vdotq_s32(zero, q[r][0], a0), q[r][1], a1);
      const float32x4_t sum = vcvtq_f32_s32(fold_rows<R>(p));
      acc[t] = vfmaq_f32(acc[t], sum, vmulq_n_f32(dw, ab->d));
      if (W::kOffset != 0) corr[t] = vfmaq_n_f32(corr[t], cw, ab->s);
    }
  }
  EL_UNROLL
  for (int t = 0; t < T; ++t) store_rows<R>(y + size_t(t) * ys, vaddq_f32(acc[t], corr[t]));
}

constexpr int kRows = 4;  // tile rows (weights): the four lanes of a float32x4

template <class W>
struct LegacyTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_legacy<W, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

template <class W>
void gemm_legacy(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                 float* y, size_t ys) {
  walk_tiles<LegacyTile<W>::template Of, kRows, 3>(n / 32, w, ws, nr, a, as, nt, y, ys);
}

// ---- K-quants --------------------------------------------------------------------------------------
// Per 32-value chunk c (0..7) of a super-block: 32 unsigned quants (two int8x16: sub-blocks 2c and
// 2c+1). Per (row, token) the SDOT of each 16-value sub-block k is multiplied by its scale sc[k] into
// an int32 accumulator (exact: |sum| < 2^31 for every format), folded to the row lanes once per
// super-block and converted to float there, like the scalar reference's float(sum).

template <class K, int R, int T>
void tile_k(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  float32x4_t acc[T];  // lanes = rows
  EL_UNROLL
  for (int t = 0; t < T; ++t) acc[t] = vdupq_n_f32(0.0f);
  const int32x4_t zero = vdupq_n_s32(0);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[R];
    kq::Scales s[R];
    uint16_t dh[4] = {0, 0, 0, 0}, dmh[4] = {0, 0, 0, 0};  // half scales, lane = row
    EL_UNROLL
    for (int r = 0; r < R; ++r) {
      blk[r] = w + size_t(r) * ws + size_t(b) * K::kBytes;
      for (size_t off = 0; off < K::kBytes; off += 64) __builtin_prefetch(blk[r] + kPrefetchRows * ws + off);
      K::prep(blk[r], &s[r], &dh[r], &dmh[r]);
    }
    const float32x4_t d = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dh)));
    const float32x4_t dm = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dmh)));
    const block_q8_K* ab[T];
    EL_UNROLL
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    int32x4_t iacc[T][R];
    EL_UNROLL
    for (int t = 0; t < T; ++t)
      EL_UNROLL
      for (int r = 0; r < R; ++r) iacc[t][r] = zero;
    // Not unrolled: with the 8 chunks interleaved the 4x3 tile's 12 accumulators + 8 quant vectors
    // spill heavily (checked in the generated code); the shift amounts are then run-time values.
#pragma GCC unroll 1
    for (int c = 0; c < 8; ++c) {
      int8x16_t q[R][2];
      EL_UNROLL
      for (int r = 0; r < R; ++r) K::q(blk[r], c, q[r]);
      EL_UNROLL
      for (int t = 0; t < T; ++t) {
        const int8x16_t a0 = vld1q_s8(ab[t]->qs + 32 * c), a1 = vld1q_s8(ab[t]->qs + 32 * c + 16);
        EL_UNROLL
        for (int r = 0; r < R; ++r) {
          iacc[t][r] = vmlaq_n_s32(iacc[t][r], vdotq_s32(zero, q[r][0], a0), s[r].sc[2 * c]);
          iacc[t][r] = vmlaq_n_s32(iacc[t][r], vdotq_s32(zero, q[r][1], a1), s[r].sc[2 * c + 1]);
        }
      }
    }
    int16x8_t mn[R][2];
    EL_UNROLL
    for (int r = 0; r < R; ++r) {
      mn[r][0] = vld1q_s16(s[r].mn);
      mn[r][1] = vld1q_s16(s[r].mn + 8);
    }
    EL_UNROLL
    for (int t = 0; t < T; ++t) {
      const int16x8_t b0 = vld1q_s16(ab[t]->bsums), b1 = vld1q_s16(ab[t]->bsums + 8);
      int32x4_t m[R];
      EL_UNROLL
      for (int r = 0; r < R; ++r) {
        int32x4_t v = vmull_s16(vget_low_s16(mn[r][0]), vget_low_s16(b0));
        v = vmlal_high_s16(v, mn[r][0], b0);
        v = vmlal_s16(v, vget_low_s16(mn[r][1]), vget_low_s16(b1));
        m[r] = vmlal_high_s16(v, mn[r][1], b1);
      }
      const float da = ab[t]->d;
      acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(fold_rows<R>(iacc[t])), vmulq_n_f32(d, da));
      acc[t] = vfmsq_f32(acc[t], vcvtq_f32_s32(fold_rows<R>(m)), vmulq_n_f32(dm, da));
    }
  }
  EL_UNROLL
  for (int t = 0; t < T; ++t) store_rows<R>(y + size_t(t) * ys, acc[t]);
}

template <class K>
struct KTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_k<K, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

template <class K>
void gemm_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
            size_t ys) {
  walk_tiles<KTile<K>::template Of, kRows, 3>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

// ---- float weights ----------------------------------------------------------------------------------

struct F32W {
  static float32x4_t load4(const uint8_t* p, int64_t i) { return vld1q_f32(reinterpret_cast<const float*>(p) + i); }
  static float load1(const uint8_t* p, int64_t i) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
};
struct F16W {
  static float32x4_t load4(const uint8_t* p, int64_t i) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p) + i)));
  }
  static float load1(const uint8_t* p, int64_t i) { return kq::half_to_float_portable(load_u16(p + 2 * i)); }
};
struct BF16W {
  static float32x4_t load4(const uint8_t* p, int64_t i) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p) + i), 16));
  }
  static float load1(const uint8_t* p, int64_t i) {
    const uint32_t u = uint32_t(load_u16(p + 2 * i)) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <class F, int R, int T>
void tile_float(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  float32x4_t acc[T][R];
  EL_UNROLL
  for (int t = 0; t < T; ++t)
    EL_UNROLL
    for (int r = 0; r < R; ++r) acc[t][r] = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t wv[R];
    EL_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = F::load4(w + size_t(r) * ws, i);
    EL_UNROLL
    for (int t = 0; t < T; ++t) {
      const float32x4_t xv = vld1q_f32(reinterpret_cast<const float*>(a + size_t(t) * as) + i);
      EL_UNROLL
      for (int r = 0; r < R; ++r) acc[t][r] = vfmaq_f32(acc[t][r], wv[r], xv);
    }
  }
  EL_UNROLL
  for (int t = 0; t < T; ++t) {
    float32x4_t s = fold_rows_f<R>(acc[t]);
    if (i < n) {
      const float* x = reinterpret_cast<const float*>(a + size_t(t) * as);
      float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      EL_UNROLL
      for (int r = 0; r < R; ++r)
        for (int64_t j = i; j < n; ++j) tail[r] += F::load1(w + size_t(r) * ws, j) * x[j];
      s = vaddq_f32(s, vld1q_f32(tail));
    }
    store_rows<R>(y + size_t(t) * ys, s);
  }
}

template <class F>
struct FloatTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_float<F, R, T>(n, w, ws, a, as, y, ys);
    }
  };
};

template <class F>
void gemm_float(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  walk_tiles<FloatTile<F>::template Of, kRows, 4>(n, w, ws, nr, a, as, nt, y, ys);
}

constexpr KernelSet make_neon() {
  KernelSet k{};
  k.name = "neon";
  k.quantize_q8x32 = quantize_q8x32;
  k.quantize_q8k = quantize_q8k;
  k.gemm[int(GGMLType::F32)] = gemm_float<F32W>;
  k.gemm[int(GGMLType::F16)] = gemm_float<F16W>;
  k.gemm[int(GGMLType::BF16)] = gemm_float<BF16W>;
  k.gemm[int(GGMLType::Q4_0)] = gemm_legacy<Q4_0W>;
  k.gemm[int(GGMLType::Q4_1)] = gemm_legacy<Q4_1W>;
  k.gemm[int(GGMLType::Q5_0)] = gemm_legacy<Q5_0W>;
  k.gemm[int(GGMLType::Q5_1)] = gemm_legacy<Q5_1W>;
  k.gemm[int(GGMLType::Q8_0)] = gemm_legacy<Q8_0W>;
  k.gemm[int(GGMLType::Q2_K)] = gemm_k<Q2_KW>;
  k.gemm[int(GGMLType::Q3_K)] = gemm_k<Q3_KW>;
  k.gemm[int(GGMLType::Q4_K)] = gemm_k<Q4_KW>;
  k.gemm[int(GGMLType::Q5_K)] = gemm_k<Q5_KW>;
  k.gemm[int(GGMLType::Q6_K)] = gemm_k<Q6_KW>;
  k.gemm[int(GGMLType::IQ4_NL)] = neon_gemm_iq4_nl;  // iquant_neon.cpp
  k.gemm[int(GGMLType::IQ4_XS)] = neon_gemm_iq4_xs;
  k.gemm[int(GGMLType::TQ1_0)] = neon_gemm_tq1_0;
  k.gemm[int(GGMLType::IQ2_XXS)] = neon_gemm_iq2_xxs;
  k.gemm[int(GGMLType::IQ2_XS)] = neon_gemm_iq2_xs;
  k.gemm[int(GGMLType::IQ2_S)] = neon_gemm_iq2_s;
  k.gemm[int(GGMLType::IQ3_XXS)] = neon_gemm_iq3_xxs;
  k.gemm[int(GGMLType::IQ3_S)] = neon_gemm_iq3_s;
  k.gemm[int(GGMLType::IQ1_S)] = neon_gemm_iq1_s;
  k.gemm[int(GGMLType::IQ1_M)] = neon_gemm_iq1_m;
  k.gemm[int(GGMLType::TQ2_0)] = neon_gemm_tq2_0;
  k.gemm[int(GGMLType::MXFP4)] = neon_gemm_mxfp4;
  return k;
}

}  // namespace

const KernelSet kNeonKernels = make_neon();

}  // namespace edgellama
