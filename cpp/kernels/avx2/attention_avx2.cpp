// AVX2 + FMA + F16C fast-path attention tile (AttnTileArgs in kernels.h): same blocked online
// softmax as the scalar reference (cpp/kernels/scalar/attention_scalar.cpp), vectorized.
//
// Per block of kAttnBlock = 64 key positions:
//   K is converted (F16C) and transposed once into kt[d][64], so the scores of a query row for 8 keys
//   are one register accumulated over d with a broadcast q[d] (no horizontal sums); V is
//   converted once into vb[64][head_dim]. Both are reused by every row of the tile (all query heads
//   of the GQA group x the tile's tokens).
//   Per row: scores -> mask past the row's last key -> block max -> p = e^(s - m) (exp_avx2.h) ->
//   output rescaled by e^(m_old - m) and accumulated p[k] * v[k] in key order.
//   kRows = 2 rows at a time share each loaded K vector (scores, 32 keys per pass) and each loaded V
//   vector (p.V, 32 dims per pass): 8 accumulators + 4 loaded vectors of the 16 ymm registers, 0.75
//   loads per FMA instead of 1.125 row by row. Each row's arithmetic and order are those of the
//   one-row loop, so the bits (and the AVX-512 tile's agreement with them) do not change.
// Helpers are in an anonymous namespace (see kernels_avx2.cpp); avx2_attention_tile is the entry.
#include <immintrin.h>

#include <limits>

#include "../entry_points.h"
#include "attention_blocks_avx2.h"
#include "exp_avx2.h"
#include "reduce_avx2.h"

namespace edgellama {
namespace {

using attn_blocks::B;
using attn_blocks::maxf;
using attn_blocks::min64;
using attn_blocks::RowBlock;

using avx2_util::hmax;
using avx2_util::hsum;

constexpr int kRows = 2;
// The "#pragma GCC unroll" on the fixed-count row / register loops below: the accumulator arrays only
// live in registers once those loops are fully unrolled (-O3 does it unasked; -O2 builds did not).


// s[i][0..64) = q_i . k for the keys of the block, each row's FMAs over d in order; 32 keys a pass.
template <int R>
inline void block_scores(const RowBlock* rows, const float* kt, int64_t hd, float (*s)[B]) {
  for (int64_t h = 0; h < B; h += 32) {
    __m256 acc[R][4];
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
      #pragma GCC unroll 16
      for (int g = 0; g < 4; ++g) acc[i][g] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; ++d) {
      const float* kd = kt + d * B + h;
      __m256 k[4];
      #pragma GCC unroll 16
      for (int g = 0; g < 4; ++g) k[g] = _mm256_loadu_ps(kd + 8 * g);
      #pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const __m256 qd = _mm256_broadcast_ss(rows[i].q + d);
        #pragma GCC unroll 16
        for (int g = 0; g < 4; ++g) acc[i][g] = _mm256_fmadd_ps(qd, k[g], acc[i][g]);
      }
    }
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
      #pragma GCC unroll 16
      for (int g = 0; g < 4; ++g) _mm256_storeu_ps(s[i] + h + 8 * g, acc[i][g]);
  }
}

// o[i][d0..d0+8*NR) = alpha_i * o_i (or 0 in the row's first block) + sum_k p_i[k] * vb[k][...], keys
// in order. Keys below every row's nv feed all rows; the rest (the causal diagonal, where rows of
// consecutive tokens end one key apart) only the rows that see them, so each row adds exactly the
// terms, in exactly the order, of the one-row loop.
template <int R, int NR>
inline void accumulate_v(const RowBlock* rows, int64_t d0, const float (*p)[B], const float* vb, int64_t hd) {
  __m256 acc[R][NR];
  int64_t nv_min = B, nv_max = 0;
  #pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    const __m256 va = _mm256_set1_ps(rows[i].alpha);
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j)
      acc[i][j] = rows[i].first ? _mm256_setzero_ps() : _mm256_mul_ps(_mm256_loadu_ps(rows[i].o + d0 + 8 * j), va);
    nv_min = min64(nv_min, rows[i].nv);
    nv_max = rows[i].nv > nv_max ? rows[i].nv : nv_max;
  }
  int64_t k = 0;
  for (; k < nv_min; ++k) {
    const float* v = vb + k * hd + d0;
    __m256 vk[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) vk[j] = _mm256_loadu_ps(v + 8 * j);
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m256 pk = _mm256_broadcast_ss(p[i] + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(pk, vk[j], acc[i][j]);
    }
  }
  for (; k < nv_max; ++k) {
    const float* v = vb + k * hd + d0;
    #pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      if (k >= rows[i].nv) continue;
      const __m256 pk = _mm256_broadcast_ss(p[i] + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(pk, _mm256_loadu_ps(v + 8 * j), acc[i][j]);
    }
  }
  #pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) _mm256_storeu_ps(rows[i].o + d0 + 8 * j, acc[i][j]);
}

// All head dims of R rows, 32 at a time (R x 4 accumulators), then the 8..24-dim tail.
template <int R>
void accumulate_v_rows(const RowBlock* rows, const float (*p)[B], const float* vb, int64_t hd) {
  int64_t d0 = 0;
  for (; d0 + 32 <= hd; d0 += 32) accumulate_v<R, 4>(rows, d0, p, vb, hd);
  switch ((hd - d0) / 8) {
    case 3: accumulate_v<R, 3>(rows, d0, p, vb, hd); break;
    case 2: accumulate_v<R, 2>(rows, d0, p, vb, hd); break;
    case 1: accumulate_v<R, 1>(rows, d0, p, vb, hd); break;
    default: break;
  }
}

// Per-tile constants of the score -> probability step.
struct SoftmaxConsts {
  __m256 scale, cap, inv_cap2;
  bool capped;
};

// One row's block: scale (and cap) the scores s[0..64), mask keys outside kv0..nv-1, update the
// running max and sum, write p[0..64) (0 for masked keys) and set the row's alpha.
inline void block_softmax(RowBlock& row, const float* scores, const SoftmaxConsts& c, float* row_max,
                          float* row_sum, float* p) {
  using avx2_math::exp_ps;
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i vnv = _mm256_set1_epi32(int(row.nv));
  const __m256i vkv0m1 = _mm256_set1_epi32(int(row.kv0) - 1);
  __m256 s[8], valid[8];
  __m256 mx = neg_inf;
  for (int g = 0; g < 8; ++g) {
    const __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * g));
    valid[g] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(vnv, idx), _mm256_cmpgt_epi32(idx, vkv0m1)));
    s[g] = _mm256_mul_ps(_mm256_loadu_ps(scores + 8 * g), c.scale);
    if (c.capped) {
      // c * tanh(s / c) = c * (1 - 2 / (e^(2s/c) + 1)): saturates to +-c for large |s|.
      const __m256 e = exp_ps(_mm256_mul_ps(s[g], c.inv_cap2));
      s[g] = _mm256_mul_ps(c.cap, _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one))));
    }
    mx = _mm256_max_ps(mx, _mm256_blendv_ps(neg_inf, s[g], valid[g]));
  }
  const int64_t r = row.r;
  const float bmax = hmax(mx);
  const float m = row.first ? bmax : maxf(row_max[r], bmax);
  row.alpha = row.first ? 0.0f : __builtin_expf(row_max[r] - m);
  const __m256 vm = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  for (int g = 0; g < 8; ++g) {
    const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(s[g], vm)), valid[g]);
    sum = _mm256_add_ps(sum, e);
    _mm256_storeu_ps(p + 8 * g, e);
  }
  row_max[r] = m;
  row_sum[r] = row.first ? hsum(sum) : row_sum[r] * row.alpha + hsum(sum);
}

// One key block for R rows: scores together, softmax row by row, p.V together.
template <int R>
void process_rows(RowBlock* rows, const float* kt, const float* vb, int64_t hd, const SoftmaxConsts& c,
                  float* row_max, float* row_sum) {
  alignas(32) float s[R][B];
  alignas(32) float p[R][B];
  block_scores<R>(rows, kt, hd, s);
  for (int i = 0; i < R; ++i) block_softmax(rows[i], s[i], c, row_max, row_sum, p[i]);
  accumulate_v_rows<R>(rows, p, vb, hd);
}

}  // namespace

void avx2_attention_tile(const AttnTileArgs& a) {
  const int64_t hd = a.head_dim, n_rows = a.n_tok * a.group;
  float* kt = a.scratch;                // [hd][B]
  float* vb = kt + B * hd;              // [B][hd]
  float* row_max = vb + B * hd;
  float* row_sum = row_max + n_rows;
  const bool capped = a.softcap > 0;
  const SoftmaxConsts consts{_mm256_set1_ps(a.scale), _mm256_set1_ps(a.softcap),
                             _mm256_set1_ps(capped ? 2.0f / a.softcap : 0.0f), capped};
  static_assert(kRows == 2, "a run is kRows rows or the one left over");
  attn_blocks::for_each_row_block<kRows>(a, kt, vb, [&](RowBlock* rows, int n) {
    if (n == kRows)
      process_rows<kRows>(rows, kt, vb, hd, consts, row_max, row_sum);
    else
      process_rows<1>(rows, kt, vb, hd, consts, row_max, row_sum);
  });
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t t = r / a.group, j = r % a.group;
    float* o = a.out + t * a.tok_stride + j * hd;
    const __m256 inv = _mm256_set1_ps(1.0f / row_sum[r]);
    for (int64_t i = 0; i < hd; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), inv));
  }
}

}  // namespace edgellama
