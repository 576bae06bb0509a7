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

// Keys k0..k0+nk-1 (k0 a multiple of B) into kt[d][B]: the cache holds the block as head_dim runs
// of B keys (k_cache_index), so each run is converted in place of a transposition. Key slots
// nk..B-1 are zero (their scores are computed, then masked); the cache may hold anything there.
static inline void load_k_block(const AttnTileArgs& a, int64_t k0, int64_t nk, float* kt) {
  const int64_t hd = a.head_dim;
  const uint8_t* blk = a.k + size_t(k0 / B) * a.k_block_stride;
  const size_t run = size_t(B) * (a.k_f16 ? 2 : 4);
  for (int64_t d = 0; d < hd; ++d) {
    const uint8_t* keys = blk + size_t(d) * run;
    float* out = kt + d * B;
    for (int64_t kg = 0; kg < B; kg += 8) _mm256_storeu_ps(out + kg, load8(keys, a.k_f16, kg));
    for (int64_t k = nk; k < B; ++k) out[k] = 0.0f;
  }
}

// Values of keys k0..k0+nk-1 into vb[key][hd]: the head's share of the cache block is one run of
// nk x head_dim values (v_cache_index), converted in order.
static inline void load_v_block(const AttnTileArgs& a, int64_t k0, int64_t nk, float* vb) {
  const int64_t hd = a.head_dim;
  const uint8_t* blk = a.v + size_t(k0 / B) * a.v_block_stride;
  const size_t row = size_t(hd) * (a.v_f16 ? 2 : 4);
  for (int64_t k = 0; k < nk; ++k)
    for (int64_t d = 0; d < hd; d += 8) _mm256_storeu_ps(vb + k * hd + d, load8(blk + size_t(k) * row, a.v_f16, d));
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
