// AVX-512 fast-path attention tile (AttnTileArgs in kernels.h): the AVX2 tile's blocked online softmax
// (cpp/kernels/avx2/attention_avx2.cpp) on 512-bit registers. Why: at prefill the tile is the second
// largest cost after the matmuls (TinyLlama IQ4_XS pp512, 1 thread: 12.6% of the samples with the AVX2
// tile) and its work is float FMAs, twice as many per instruction here.
//
// Per block of kAttnBlock = 64 keys (loaded and converted once by the shared attn_blocks loaders):
//   scores of a query row = 4 registers of 16 keys, accumulated over d with a broadcast q[d], for
//   kRows = 4 rows at a time (each loaded K vector feeds 4 rows' FMAs, each V vector likewise);
//   keys outside the row's range are masked (mask registers) -> block max -> p = e^(s - m) ->
//   output rescaled by e^(m_old - m) and p[k] * v[k] accumulated in key order, 16 dims per register.
// head_dim % 16 != 0 goes to the AVX2 tile (the sets only promise head_dim % 8 == 0).
// Same bits as the AVX2 tile: every other step is per key or per dimension lane, in the same order
// (scores over d, the max, e^x's per-lane polynomial, p * v over keys), and the one horizontal sum is
// taken in the AVX2 tile's order below. So a forward pass gives the same bits on both levels (the
// fast path's int8 rounding would otherwise turn last-bit differences into a different error:
// SmolLM2, 120 positions, mean KL 9.5e-4 between the two, as large as either's KL to the exact path).
// GCC 12's AVX-512 intrinsics trip -W(maybe-)uninitialized (GCC bug 105593, see gemm_rows16_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <limits>

#include "../exp_poly.h"
#include "../avx2/attention_blocks_avx2.h"
#include "../avx2/reduce_avx2.h"
#include "../entry_points.h"

namespace edgellama {
namespace {

using attn_blocks::B;
using attn_blocks::maxf;
using attn_blocks::min64;
using attn_blocks::RowBlock;

// e^x: exp_avx2.h's reduction and degree-7 polynomial, 16 lanes (same per-lane arithmetic).
inline __m512 exp16(__m512 x) {
  using namespace exp_poly;
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kMinArg)), _mm512_set1_ps(kMaxArg));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP[0]);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[1]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[2]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[3]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[4]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[5]));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// Rows of the tile handled together: the scores of kRows query rows share each loaded K vector, and
// their p.V sums share each loaded V vector (4 rows x 4 registers of 16 = 16 accumulators of 32 zmm).
// Why: one row at a time did 4 loads per 4 FMAs in both loops, load-bound at ~1/3 of the FMA rate.
// Any kRows consecutive active rows may share: the rows of one token (GQA group) or of consecutive
// tokens (same block of K/V; their valid-key ranges may differ, handled per row below).
constexpr int kRows = 4;
// The "#pragma GCC unroll" on the fixed-count row / register loops below: the accumulator arrays only
// live in registers once those loops are fully unrolled (-O3 does it unasked; -O2 builds did not).


// s[i][g] = q_i . k for the 64 keys of the block (16 per register), each row's FMAs over d in order.
template <int R>
inline void block_scores(const RowBlock* rows, const float* kt, int64_t hd, __m512 s[R][4]) {
  #pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
    #pragma GCC unroll 16
    for (int g = 0; g < 4; ++g) s[i][g] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const float* kd = kt + d * B;
    __m512 k[4];
    #pragma GCC unroll 16
    for (int g = 0; g < 4; ++g) k[g] = _mm512_loadu_ps(kd + 16 * g);
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 qd = _mm512_set1_ps(rows[i].q[d]);
      #pragma GCC unroll 16
      for (int g = 0; g < 4; ++g) s[i][g] = _mm512_fmadd_ps(qd, k[g], s[i][g]);
    }
  }
}

// o[i][0..16*NR) = alpha_i * o_i (or 0 in the row's first block) + sum_k p_i[k] * vb[k][0..16*NR),
// keys in order. Keys below every row's nv feed all rows; the rest (the causal diagonal, where rows
// of consecutive tokens end one key apart) only the rows that see them, so each row adds exactly the
// terms, in exactly the order, of the one-row loop.
template <int R, int NR>
inline void accumulate_v(const RowBlock* rows, int64_t d0, const float (*p)[B], const float* vb, int64_t hd) {
  __m512 acc[R][NR];
  int64_t nv_min = B, nv_max = 0;
  #pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    const __m512 va = _mm512_set1_ps(rows[i].alpha);
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j)
      acc[i][j] = rows[i].first ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_loadu_ps(rows[i].o + d0 + 16 * j), va);
    nv_min = min64(nv_min, rows[i].nv);
    nv_max = rows[i].nv > nv_max ? rows[i].nv : nv_max;
  }
  int64_t k = 0;
  for (; k < nv_min; ++k) {
    const float* v = vb + k * hd + d0;
    __m512 vk[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) vk[j] = _mm512_loadu_ps(v + 16 * j);
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 pk = _mm512_set1_ps(p[i][k]);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(pk, vk[j], acc[i][j]);
    }
  }
  for (; k < nv_max; ++k) {
    const float* v = vb + k * hd + d0;
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      if (k >= rows[i].nv) continue;
      const __m512 pk = _mm512_set1_ps(p[i][k]);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(pk, _mm512_loadu_ps(v + 16 * j), acc[i][j]);
    }
  }
  #pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) _mm512_storeu_ps(rows[i].o + d0 + 16 * j, acc[i][j]);
}

// All head dims of R rows, 64 at a time (R x 4 accumulators), then the 16..48-dim tail.
template <int R>
void accumulate_v_rows(const RowBlock* rows, const float (*p)[B], const float* vb, int64_t hd) {
  int64_t d0 = 0;
  for (; d0 + 64 <= hd; d0 += 64) accumulate_v<R, 4>(rows, d0, p, vb, hd);
  switch ((hd - d0) / 16) {
    case 3: accumulate_v<R, 3>(rows, d0, p, vb, hd); break;
    case 2: accumulate_v<R, 2>(rows, d0, p, vb, hd); break;
    case 1: accumulate_v<R, 1>(rows, d0, p, vb, hd); break;
    default: break;
  }
}

// Per-tile constants of the score -> probability step.
struct SoftmaxConsts {
  __m512 scale, cap, inv_cap2;
  bool capped;
};

// One row's block: scale (and cap) the scores, mask keys outside kv0..nv-1, update the running max
// and sum, write p[0..64) (0 for masked keys) and set the row's alpha. The row's arithmetic of the
// one-row tile, unchanged.
inline void block_softmax(RowBlock& row, __m512 s[4], const SoftmaxConsts& c, float* row_max, float* row_sum,
                          float* p) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i vnv = _mm512_set1_epi32(int(row.nv));
  const __m512i vkv0m1 = _mm512_set1_epi32(int(row.kv0) - 1);
  __mmask16 valid[4];
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int g = 0; g < 4; ++g) {
    const __m512i idx = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * g));
    valid[g] = _mm512_cmpgt_epi32_mask(vnv, idx) & _mm512_cmpgt_epi32_mask(idx, vkv0m1);
    s[g] = _mm512_mul_ps(s[g], c.scale);
    if (c.capped) {
      // c * tanh(s / c) = c * (1 - 2 / (e^(2s/c) + 1)): saturates to +-c for large |s|.
      const __m512 e = exp16(_mm512_mul_ps(s[g], c.inv_cap2));
      s[g] = _mm512_mul_ps(c.cap, _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(e, one))));
    }
    mx = _mm512_mask_max_ps(mx, valid[g], mx, s[g]);
  }
  const int64_t r = row.r;
  const float bmax = _mm512_reduce_max_ps(mx);
  const float m = row.first ? bmax : maxf(row_max[r], bmax);
  row.alpha = row.first ? 0.0f : __builtin_expf(row_max[r] - m);
  const __m512 vm = _mm512_set1_ps(m);
  // The block sum in the AVX2 tile's order (8 lanes, keys 8i..8i+7 added in turn, then its hsum),
  // so the row sum, the only order-dependent step, has the AVX2 tile's bits.
  __m256 sum = _mm256_setzero_ps();
  for (int g = 0; g < 4; ++g) {
    const __m512 e = _mm512_maskz_mov_ps(valid[g], exp16(_mm512_sub_ps(s[g], vm)));
    sum = _mm256_add_ps(sum, _mm512_castps512_ps256(e));
    sum = _mm256_add_ps(sum, _mm512_extractf32x8_ps(e, 1));
    _mm512_storeu_ps(p + 16 * g, e);
  }
  row_max[r] = m;
  row_sum[r] = row.first ? avx2_util::hsum(sum) : row_sum[r] * row.alpha + avx2_util::hsum(sum);
}

// One key block for R rows: scores together, softmax row by row, p.V together.
template <int R>
void process_rows(RowBlock* rows, const float* kt, const float* vb, int64_t hd, const SoftmaxConsts& c,
                  float* row_max, float* row_sum) {
  alignas(64) float p[R][B];
  __m512 s[R][4];
  block_scores<R>(rows, kt, hd, s);
  for (int i = 0; i < R; ++i) block_softmax(rows[i], s[i], c, row_max, row_sum, p[i]);
  accumulate_v_rows<R>(rows, p, vb, hd);
}

void process_rows_any(int n, RowBlock* rows, const float* kt, const float* vb, int64_t hd, const SoftmaxConsts& c,
                      float* row_max, float* row_sum) {
  static_assert(kRows == 4, "one case per row count below");
  switch (n) {
    case 4: process_rows<4>(rows, kt, vb, hd, c, row_max, row_sum); break;
    case 3: process_rows<3>(rows, kt, vb, hd, c, row_max, row_sum); break;
    case 2: process_rows<2>(rows, kt, vb, hd, c, row_max, row_sum); break;
    default: process_rows<1>(rows, kt, vb, hd, c, row_max, row_sum); break;
  }
}

}  // namespace

void avx512_attention_tile(const AttnTileArgs& a) {
  if (a.head_dim % 16 != 0) {
    avx2_attention_tile(a);
    return;
  }
  const int64_t hd = a.head_dim, n_rows = a.n_tok * a.group;
  float* kt = a.scratch;                // [hd][B]
  float* vb = kt + B * hd;              // [B][hd]
  float* row_max = vb + B * hd;
  float* row_sum = row_max + n_rows;
  const bool capped = a.softcap > 0;
  const SoftmaxConsts consts{_mm512_set1_ps(a.scale), _mm512_set1_ps(a.softcap),
                             _mm512_set1_ps(capped ? 2.0f / a.softcap : 0.0f), capped};
  attn_blocks::for_each_row_block<kRows>(a, kt, vb, [&](RowBlock* rows, int n) {
    process_rows_any(n, rows, kt, vb, hd, consts, row_max, row_sum);
  });
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t t = r / a.group, j = r % a.group;
    float* o = a.out + t * a.tok_stride + j * hd;
    const __m512 inv = _mm512_set1_ps(1.0f / row_sum[r]);
    for (int64_t i = 0; i < hd; i += 16) _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), inv));
  }
}

}  // namespace edgellama
