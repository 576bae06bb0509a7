// K and V block loaders and the block walk of the fast-path attention tiles (AttnTileArgs in
// kernels.h), shared by the AVX2 tile (attention_avx2.cpp) and the AVX-512 one
// (cpp/kernels/avx512/attention_avx512.cpp): both keep a block of kAttnBlock keys as
// kt[d][kAttnBlock] (K transposed, f32) and vb[key][head_dim] and register-block several rows.
// Only included by ISA kernel files; static inline = internal linkage, so no AVX2 copy can leak to
// baseline code (see kernels_avx2.cpp). Requires head_dim % 8 == 0.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "edgellama/kernels.h"

namespace edgellama {
namespace attn_blocks {

// No std::min / std::exp here: those are inline functions with external linkage that baseline code
// also instantiates, and an AVX2-compiled copy must never be the one the linker keeps.
static inline int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }
static inline float maxf(float x, float y) { return x > y ? x : y; }

constexpr int64_t B = kAttnBlock;
static_assert(kAttnBlock == 64, "a block of scores is 8 AVX2 / 4 AVX-512 registers");

static inline __m256 load8(const uint8_t* row, bool f16, int64_t i) {
  if (f16) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
}

static inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Keys k0..k0+nk-1 into kt[d][B]; key slots nk..B-1 are zero (their scores are computed, then masked).
static inline void load_k_block(const AttnTileArgs& a, int64_t k0, int64_t nk, float* kt) {
  const int64_t hd = a.head_dim;
  for (int64_t kg = 0; kg < B; kg += 8) {
    for (int64_t d = 0; d < hd; d += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = kg + i < nk ? load8(a.k + size_t(k0 + kg + i) * a.k_stride, a.k_f16, d) : _mm256_setzero_ps();
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(kt + (d + i) * B + kg, r[i]);
    }
  }
}

static inline void load_v_block(const AttnTileArgs& a, int64_t k0, int64_t nk, float* vb) {
  const int64_t hd = a.head_dim;
  for (int64_t k = 0; k < nk; ++k) {
    const uint8_t* row = a.v + size_t(k0 + k) * a.v_stride;
    for (int64_t d = 0; d < hd; d += 8) _mm256_storeu_ps(vb + k * hd + d, load8(row, a.v_f16, d));
  }
}

// One query row's share of a key block: everything the tiles' row steps need, and its output.
struct RowBlock {
  const float* q;
  float* o;
  int64_t r;    // row index (row_max / row_sum)
  int64_t nv;   // keys 0..nv-1 of the block are at or before the row's last key
  int64_t kv0;  // keys before kv0 are before the row's window (kv0 > 0 only in its first block)
  bool first;   // the row's first block: no running max / sum / output yet
  float alpha;  // e^(m_old - m): how much the row's earlier output is scaled down
};

// The tile's walk over key blocks: from the first block any row sees, load each block's K and V into
// kt / vb, then hand the rows that see some key of it to process(rows, n), in order, in runs of at
// most R (consecutive active rows: of one token's GQA group or of consecutive tokens).
template <int R, class Process>
static inline void for_each_row_block(const AttnTileArgs& a, float* kt, float* vb, Process&& process) {
  const int64_t hd = a.head_dim, n_rows = a.n_tok * a.group;
  const int64_t max_keys = a.n_keys0 + a.n_tok - 1;
  // First key of a row that sees `keys` keys (sliding window); blocks before the tile's first key
  // are skipped.
  auto first_key = [&](int64_t keys) -> int64_t { return a.window > 0 && keys > a.window ? keys - a.window : 0; };
  const int64_t k_begin = first_key(a.n_keys0) / B * B;
  for (int64_t k0 = k_begin; k0 < max_keys; k0 += B) {
    const int64_t nk = min64(B, max_keys - k0);
    load_k_block(a, k0, nk, kt);
    load_v_block(a, k0, nk, vb);
    RowBlock rows[R];
    int n = 0;
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t t = r / a.group, j = r % a.group;
      const int64_t keys = a.n_keys0 + t;
      const int64_t lo = first_key(keys);
      if (keys <= k0 || lo >= k0 + nk) continue;  // this row's keys ended earlier / start later
      rows[n++] = RowBlock{a.q + t * a.tok_stride + j * hd, a.out + t * a.tok_stride + j * hd, r,
                           min64(nk, keys - k0), lo > k0 ? lo - k0 : 0, k0 == lo / B * B, 0.0f};
      if (n == R) {
        process(rows, n);
        n = 0;
      }
    }
    if (n > 0) process(rows, n);
  }
}

}  // namespace attn_blocks
}  // namespace edgellama
