// AVX2 + FMA + F16C fast-path attention tile (AttnTileArgs in kernels.h): same blocked online
// softmax as the scalar reference (cpp/kernels/scalar/attention_scalar.cpp), vectorized.
//
// Per block of kAttnBlock = 64 key positions:
//   K is converted (F16C) and transposed once into kt[d][64], so the scores of one query row for 64
//   keys are 8 registers accumulated over d with a broadcast q[d] (no horizontal sums); V is
//   converted once into vb[64][head_dim]. Both are reused by every row of the tile (all query heads
//   of the GQA group x the tile's tokens).
//   Per row: scores -> mask past the row's last key -> block max -> p = e^(s - m) (exp_avx2.h) ->
//   output rescaled by e^(m_old - m) and accumulated p[k] * v[k] in key order, 64 dims in registers.
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
using attn_blocks::load_k_block;
using attn_blocks::load_v_block;
using attn_blocks::maxf;
using attn_blocks::min64;

using avx2_util::hmax;
using avx2_util::hsum;

// o[0..8*NR) = alpha * o (or 0 on the first block) + sum_k p[k] * vb[k][0..8*NR), keys in order.
template <int NR>
inline void accumulate_v(float* o, const float* p, const float* vb, int64_t hd, int64_t nv, bool first,
                         float alpha) {
  __m256 acc[NR];
  const __m256 va = _mm256_set1_ps(alpha);
  for (int j = 0; j < NR; ++j) acc[j] = first ? _mm256_setzero_ps() : _mm256_mul_ps(_mm256_loadu_ps(o + 8 * j), va);
  for (int64_t k = 0; k < nv; ++k) {
    const __m256 pk = _mm256_broadcast_ss(p + k);
    const float* v = vb + k * hd;
    for (int j = 0; j < NR; ++j) acc[j] = _mm256_fmadd_ps(pk, _mm256_loadu_ps(v + 8 * j), acc[j]);
  }
  for (int j = 0; j < NR; ++j) _mm256_storeu_ps(o + 8 * j, acc[j]);
}

void accumulate_v_any(float* o, const float* p, const float* vb, int64_t hd, int64_t nv, bool first, float alpha) {
  for (int64_t d0 = 0; d0 < hd; d0 += 64) {
    const float* v = vb + d0;
    float* od = o + d0;
    switch (min64(8, (hd - d0) / 8)) {
      case 8: accumulate_v<8>(od, p, v, hd, nv, first, alpha); break;
      case 7: accumulate_v<7>(od, p, v, hd, nv, first, alpha); break;
      case 6: accumulate_v<6>(od, p, v, hd, nv, first, alpha); break;
      case 5: accumulate_v<5>(od, p, v, hd, nv, first, alpha); break;
      case 4: accumulate_v<4>(od, p, v, hd, nv, first, alpha); break;
      case 3: accumulate_v<3>(od, p, v, hd, nv, first, alpha); break;
      case 2: accumulate_v<2>(od, p, v, hd, nv, first, alpha); break;
      default: accumulate_v<1>(od, p, v, hd, nv, first, alpha); break;
    }
  }
}

}  // namespace

void avx2_attention_tile(const AttnTileArgs& a) {
  using avx2_math::exp_ps;
  const int64_t hd = a.head_dim, n_rows = a.n_tok * a.group;
  float* kt = a.scratch;                // [hd][B]
  float* vb = kt + B * hd;              // [B][hd]
  float* row_max = vb + B * hd;
  float* row_sum = row_max + n_rows;
  float* p = row_sum + n_rows;          // [B]
  const int64_t max_keys = a.n_keys0 + a.n_tok - 1;
  const __m256 vscale = _mm256_set1_ps(a.scale);
  const bool capped = a.softcap > 0;
  const __m256 vcap = _mm256_set1_ps(a.softcap), vinv_cap2 = _mm256_set1_ps(capped ? 2.0f / a.softcap : 0.0f);
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // First key of a row that sees `keys` keys (sliding window); blocks before the tile's first key
  // are skipped.
  auto first_key = [&](int64_t keys) -> int64_t { return a.window > 0 && keys > a.window ? keys - a.window : 0; };
  const int64_t k_begin = first_key(a.n_keys0) / B * B;
  for (int64_t k0 = k_begin; k0 < max_keys; k0 += B) {
    const int64_t nk = min64(B, max_keys - k0);
    load_k_block(a, k0, nk, kt);
    load_v_block(a, k0, nk, vb);
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t t = r / a.group, j = r % a.group;
      const int64_t keys = a.n_keys0 + t;
      const int64_t lo = first_key(keys);
      if (keys <= k0 || lo >= k0 + nk) continue;  // this row's keys ended earlier / start later
      const int64_t nv = min64(nk, keys - k0);
      const bool first = k0 == lo / B * B;
      const float* q = a.q + t * a.tok_stride + j * hd;
      float* o = a.out + t * a.tok_stride + j * hd;

      __m256 s[8];
      for (int g = 0; g < 8; ++g) s[g] = _mm256_setzero_ps();
      for (int64_t d = 0; d < hd; ++d) {
        const __m256 qd = _mm256_broadcast_ss(q + d);
        const float* kd = kt + d * B;
        for (int g = 0; g < 8; ++g) s[g] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 8 * g), s[g]);
      }
      // Valid keys of the block: kv0 <= k < nv (kv0 > 0 only in a windowed row's first block).
      const __m256i vnv = _mm256_set1_epi32(int(nv));
      const __m256i vkv0m1 = _mm256_set1_epi32(int(lo > k0 ? lo - k0 : 0) - 1);
      __m256 valid[8];
      __m256 mx = neg_inf;
      for (int g = 0; g < 8; ++g) {
        const __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * g));
        valid[g] = _mm256_castsi256_ps(
            _mm256_and_si256(_mm256_cmpgt_epi32(vnv, idx), _mm256_cmpgt_epi32(idx, vkv0m1)));
        s[g] = _mm256_mul_ps(s[g], vscale);
        if (capped) {
          // c * tanh(s / c) = c * (1 - 2 / (e^(2s/c) + 1)): saturates to +-c for large |s|.
          const __m256 e = exp_ps(_mm256_mul_ps(s[g], vinv_cap2));
          s[g] = _mm256_mul_ps(vcap, _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one))));
        }
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(neg_inf, s[g], valid[g]));
      }
      const float bmax = hmax(mx);
      const float m = first ? bmax : maxf(row_max[r], bmax);
      const float alpha = first ? 0.0f : __builtin_expf(row_max[r] - m);
      const __m256 vm = _mm256_set1_ps(m);
      __m256 sum = _mm256_setzero_ps();
      for (int g = 0; g < 8; ++g) {
        const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(s[g], vm)), valid[g]);
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(p + 8 * g, e);
      }
      row_max[r] = m;
      row_sum[r] = first ? hsum(sum) : row_sum[r] * alpha + hsum(sum);
      accumulate_v_any(o, p, vb, hd, nv, first, alpha);
    }
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t t = r / a.group, j = r % a.group;
    float* o = a.out + t * a.tok_stride + j * hd;
    const __m256 inv = _mm256_set1_ps(1.0f / row_sum[r]);
    for (int64_t i = 0; i < hd; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), inv));
  }
}

}  // namespace edgellama
