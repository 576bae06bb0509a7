// NEON (dotprod) kernels of IQ4_NL, MXFP4 (32-value blocks against ActQ8x32) and IQ4_XS, TQ1_0,
// TQ2_0 (256-value super-blocks against block_q8_K). Compiled with the NEON flags; internal linkage
// except the entry points declared in entry_points.h (see the top of kernels_neon.cpp).
//
// Weights are unpacked to signed int8 levels, 16 per vector: the 4-bit formats through TBL of the
// nibbles into the level table, TQ2_0 by shifts, TQ1_0 through the shared scalar unpacking
// (iq::tq1_0_unpack: its base-3 digits have no cheap vector form here and the format is rare).
// SDOT multiplies signed by signed directly. Per (row, token) and block the int32 lanes hold the
// block's integer sum (times the sub-block scale for IQ4_XS), converted and scaled with one fma into
// 4 float lanes, reduced at the end: the sequence depends only on the (row, token) pair.
#include <arm_neon.h>

#include <cstring>

#include "../entry_points.h"
#include "../kquant_scales.h"
#include "../tile_walk.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/kernels.h"

#define EL_UNROLL _Pragma("GCC unroll 16")

namespace edgellama {
namespace {

constexpr int kRows = 4;
constexpr int kTokens = 2;

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kq::half_to_float_portable(h);
}

// 16 bytes of nibbles -> levels of values 0..15 (lo) and 16..31 (hi).
inline void nibble_levels(const uint8_t* qs, int8x16_t table, int8x16_t* lo, int8x16_t* hi) {
  const uint8x16_t raw = vld1q_u8(qs);
  *lo = vqtbl1q_s8(table, vandq_u8(raw, vdupq_n_u8(0x0F)));
  *hi = vqtbl1q_s8(table, vshrq_n_u8(raw, 4));
}

struct Iq4NlW {
  static constexpr size_t kBytes = sizeof(iq::block_iq4_nl);
  static const int8_t* values() { return iq::kIq4Values; }
  static float d(const uint8_t* p) { return h2f(p); }
  static constexpr size_t kQsOffset = 2;
};
struct Mxfp4W {
  static constexpr size_t kBytes = sizeof(iq::block_mxfp4);
  static const int8_t* values() { return iq::kMxfp4Values; }
  static float d(const uint8_t* p) { return iq::e8m0_to_float_half(p[0]); }
  static constexpr size_t kQsOffset = 1;
};

template <class W, int R, int T>
void tile32(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  const int8x16_t table = vld1q_s8(W::values());
  float32x4_t acc[R][T];
  EL_UNROLL for (int r = 0; r < R; ++r) EL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t lo[R], hi[R];
    float d[R];
    EL_UNROLL for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * W::kBytes;
      nibble_levels(blk + W::kQsOffset, table, &lo[r], &hi[r]);
      d[r] = W::d(blk);
    }
    EL_UNROLL for (int t = 0; t < T; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
      const int8x16_t a0 = vld1q_s8(ab->qs), a1 = vld1q_s8(ab->qs + 16);
      EL_UNROLL for (int r = 0; r < R; ++r) {
        const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo[r], a0), hi[r], a1);
        acc[r][t] = vfmaq_f32(acc[r][t], vcvtq_f32_s32(s), vdupq_n_f32(d[r] * ab->d));
      }
    }
  }
  EL_UNROLL for (int r = 0; r < R; ++r) EL_UNROLL for (int t = 0; t < T; ++t) y[size_t(t) * ys + size_t(r)] =
      vaddvq_f32(acc[r][t]);
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

// 256-value formats: prep() reads the float scale and the 8 sub-block scales and unpacks what it
// needs into the per-row scratch; q() gives the levels of sub-block c (values 32 c .. 32 c + 31).
struct Iq4XsW {
  static constexpr size_t kBytes = sizeof(iq::block_iq4_xs);
  struct Row {
    const uint8_t* qs;
    int8x16_t table;
  };
  static float prep(const uint8_t* p, int32_t* sc, Row* row, int8_t*) {
    const iq::block_iq4_xs* b = reinterpret_cast<const iq::block_iq4_xs*>(p);
    for (int j = 0; j < 8; ++j) sc[j] = iq::iq4_xs_scale(b, j);
    row->qs = b->qs;
    row->table = vld1q_s8(iq::kIq4Values);
    return h2f(p);
  }
  static void q(const Row& row, int c, int8x16_t* lo, int8x16_t* hi) { nibble_levels(row.qs + 16 * c, row.table, lo, hi); }
};

struct Tq2W {
  static constexpr size_t kBytes = sizeof(iq::block_tq2_0);
  struct Row {
    const uint8_t* qs;
  };
  static float prep(const uint8_t* p, int32_t* sc, Row* row, int8_t*) {
    for (int j = 0; j < 8; ++j) sc[j] = 1;
    row->qs = p;
    return h2f(p + offsetof(iq::block_tq2_0, d));
  }
  // value 128 j + 32 l + m = bits 2l, 2l+1 of qs[32 j + m], minus 1
  static void q(const Row& row, int c, int8x16_t* lo, int8x16_t* hi) {
    const int8x16_t shift = vdupq_n_s8(int8_t(-2 * (c % 4)));
    const uint8x16_t three = vdupq_n_u8(3);
    const uint8_t* p = row.qs + 32 * (c / 4);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p), shift), three)), vdupq_n_s8(1));
    *hi = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p + 16), shift), three)), vdupq_n_s8(1));
  }
};

struct Tq1W {
  static constexpr size_t kBytes = sizeof(iq::block_tq1_0);
  struct Row {
    const int8_t* q;
  };
  static float prep(const uint8_t* p, int32_t* sc, Row* row, int8_t* scratch) {
    for (int j = 0; j < 8; ++j) sc[j] = 1;
    iq::tq1_0_unpack(reinterpret_cast<const iq::block_tq1_0*>(p), scratch);
    row->q = scratch;
    return h2f(p + offsetof(iq::block_tq1_0, d));
  }
  static void q(const Row& row, int c, int8x16_t* lo, int8x16_t* hi) {
    *lo = vld1q_s8(row.q + 32 * c);
    *hi = vld1q_s8(row.q + 32 * c + 16);
  }
};

template <class W, int R, int T>
void tile256(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  float32x4_t acc[R][T];
  EL_UNROLL for (int r = 0; r < R; ++r) EL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
  alignas(16) int8_t scratch[R][QK_K];
  for (int64_t b = 0; b < nb; ++b) {
    typename W::Row row[R];
    int32_t sc[R][8];
    float d[R];
    EL_UNROLL for (int r = 0; r < R; ++r) d[r] = W::prep(w + size_t(r) * ws + size_t(b) * W::kBytes, sc[r], &row[r],
                                                       scratch[r]);
    const block_q8_K* ab[T];
    EL_UNROLL for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    int32x4_t iacc[R][T];
    EL_UNROLL for (int r = 0; r < R; ++r) EL_UNROLL for (int t = 0; t < T; ++t) iacc[r][t] = vdupq_n_s32(0);
    for (int c = 0; c < 8; ++c) {
      int8x16_t lo[R], hi[R];
      EL_UNROLL for (int r = 0; r < R; ++r) W::q(row[r], c, &lo[r], &hi[r]);
      EL_UNROLL for (int t = 0; t < T; ++t) {
        const int8x16_t a0 = vld1q_s8(ab[t]->qs + 32 * c), a1 = vld1q_s8(ab[t]->qs + 32 * c + 16);
        EL_UNROLL for (int r = 0; r < R; ++r) {
          const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo[r], a0), hi[r], a1);
          iacc[r][t] = vmlaq_n_s32(iacc[r][t], s, sc[r][c]);
        }
      }
    }
    EL_UNROLL for (int t = 0; t < T; ++t) EL_UNROLL for (int r = 0; r < R; ++r) acc[r][t] =
        vfmaq_f32(acc[r][t], vcvtq_f32_s32(iacc[r][t]), vdupq_n_f32(d[r] * ab[t]->d));
  }
  EL_UNROLL for (int r = 0; r < R; ++r) EL_UNROLL for (int t = 0; t < T; ++t) y[size_t(t) * ys + size_t(r)] =
      vaddvq_f32(acc[r][t]);
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

}  // namespace

void neon_gemm_iq4_nl(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  walk_tiles<Tile32<Iq4NlW>::Of, kRows, kTokens>(n / 32, w, ws, nr, a, as, nt, y, ys);
}
void neon_gemm_mxfp4(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                     float* y, size_t ys) {
  walk_tiles<Tile32<Mxfp4W>::Of, kRows, kTokens>(n / 32, w, ws, nr, a, as, nt, y, ys);
}
void neon_gemm_iq4_xs(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  walk_tiles<Tile256<Iq4XsW>::Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}
void neon_gemm_tq1_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                     float* y, size_t ys) {
  walk_tiles<Tile256<Tq1W>::Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}
void neon_gemm_tq2_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                     float* y, size_t ys) {
  walk_tiles<Tile256<Tq2W>::Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

}  // namespace edgellama
