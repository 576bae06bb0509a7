// AVX-512 fast-path attention tile (AttnTileArgs in kernels.h): the AVX2 tile's blocked online softmax
// (cpp/kernels/avx2/attention_avx2.cpp) on 512-bit registers. Why: at prefill the tile is the second
// largest cost after the matmuls (TinyLlama IQ4_XS pp512, 1 thread: 12.6% of the samples with the AVX2
// tile) and its work is float FMAs, twice as many per instruction here.
//
// Per block of kAttnBlock = 64 keys (loaded and converted once by the shared attn_blocks loaders):
//   scores of one query row = 4 registers of 16 keys, accumulated over d with a broadcast q[d];
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

#include "../avx2/attention_blocks_avx2.h"
#include "../avx2/reduce_avx2.h"
#include "../entry_points.h"

namespace edgellama {
namespace {

using attn_blocks::B;
using attn_blocks::maxf;
using attn_blocks::min64;

// e^x: exp_avx2.h's reduction and degree-7 polynomial, 16 lanes (same per-lane arithmetic).
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// o[0..16*NR) = alpha * o (or 0 on the first block) + sum_k p[k] * vb[k][0..16*NR), keys in order.
template <int NR>
inline void accumulate_v(float* o, const float* p, const float* vb, int64_t hd, int64_t nv, bool first,
                         float alpha) {
  __m512 acc[NR];
  const __m512 va = _mm512_set1_ps(alpha);
  for (int j = 0; j < NR; ++j) acc[j] = first ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_loadu_ps(o + 16 * j), va);
  for (int64_t k = 0; k < nv; ++k) {
    const __m512 pk = _mm512_set1_ps(p[k]);
    const float* v = vb + k * hd;
    for (int j = 0; j < NR; ++j) acc[j] = _mm512_fmadd_ps(pk, _mm512_loadu_ps(v + 16 * j), acc[j]);
  }
  for (int j = 0; j < NR; ++j) _mm512_storeu_ps(o + 16 * j, acc[j]);
}

void accumulate_v_any(float* o, const float* p, const float* vb, int64_t hd, int64_t nv, bool first, float alpha) {
  for (int64_t d0 = 0; d0 < hd; d0 += 128) {
    const float* v = vb + d0;
    float* od = o + d0;
    switch (min64(8, (hd - d0) / 16)) {
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
  float* p = row_sum + n_rows;          // [B]
  const int64_t max_keys = a.n_keys0 + a.n_tok - 1;
  const __m512 vscale = _mm512_set1_ps(a.scale);
  const bool capped = a.softcap > 0;
  const __m512 vcap = _mm512_set1_ps(a.softcap), vinv_cap2 = _mm512_set1_ps(capped ? 2.0f / a.softcap : 0.0f);
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  auto first_key = [&](int64_t keys) -> int64_t { return a.window > 0 && keys > a.window ? keys - a.window : 0; };
  const int64_t k_begin = first_key(a.n_keys0) / B * B;
  for (int64_t k0 = k_begin; k0 < max_keys; k0 += B) {
    const int64_t nk = min64(B, max_keys - k0);
    attn_blocks::load_k_block(a, k0, nk, kt);
    attn_blocks::load_v_block(a, k0, nk, vb);
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t t = r / a.group, j = r % a.group;
      const int64_t keys = a.n_keys0 + t;
      const int64_t lo = first_key(keys);
      if (keys <= k0 || lo >= k0 + nk) continue;  // this row's keys ended earlier / start later
      const int64_t nv = min64(nk, keys - k0);
      const bool first = k0 == lo / B * B;
      const float* q = a.q + t * a.tok_stride + j * hd;
      float* o = a.out + t * a.tok_stride + j * hd;

      __m512 s[4];
      for (int g = 0; g < 4; ++g) s[g] = _mm512_setzero_ps();
      for (int64_t d = 0; d < hd; ++d) {
        const __m512 qd = _mm512_set1_ps(q[d]);
        const float* kd = kt + d * B;
        for (int g = 0; g < 4; ++g) s[g] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kd + 16 * g), s[g]);
      }
      // Valid keys of the block: kv0 <= k < nv (kv0 > 0 only in a windowed row's first block).
      const __m512i vnv = _mm512_set1_epi32(int(nv));
      const __m512i vkv0m1 = _mm512_set1_epi32(int(lo > k0 ? lo - k0 : 0) - 1);
      __mmask16 valid[4];
      __m512 mx = neg_inf;
      for (int g = 0; g < 4; ++g) {
        const __m512i idx = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * g));
        valid[g] = _mm512_cmpgt_epi32_mask(vnv, idx) & _mm512_cmpgt_epi32_mask(idx, vkv0m1);
        s[g] = _mm512_mul_ps(s[g], vscale);
        if (capped) {
          // c * tanh(s / c) = c * (1 - 2 / (e^(2s/c) + 1)): saturates to +-c for large |s|.
          const __m512 e = exp16(_mm512_mul_ps(s[g], vinv_cap2));
          s[g] = _mm512_mul_ps(vcap, _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(e, one))));
        }
        mx = _mm512_mask_max_ps(mx, valid[g], mx, s[g]);
      }
      const float bmax = _mm512_reduce_max_ps(mx);
      const float m = first ? bmax : maxf(row_max[r], bmax);
      const float alpha = first ? 0.0f : __builtin_expf(row_max[r] - m);
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
      row_sum[r] = first ? avx2_util::hsum(sum) : row_sum[r] * alpha + avx2_util::hsum(sum);
      accumulate_v_any(o, p, vb, hd, nv, first, alpha);
    }
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t t = r / a.group, j = r % a.group;
    float* o = a.out + t * a.tok_stride + j * hd;
    const __m512 inv = _mm512_set1_ps(1.0f / row_sum[r]);
    for (int64_t i = 0; i < hd; i += 16) _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), inv));
  }
}

}  // namespace edgellama
