// Scalar reference of the fast-path attention tile (kernels.h, AttnTileArgs): the same blocked
// online-softmax algorithm as the SIMD kernels, in plain C++ with std::exp. The SIMD kernels are
// tested against this one; it also serves head dims the SIMD kernels do not handle.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../kquant_scales.h"
#include "edgellama/kernels.h"

namespace edgellama {
namespace {

// n values of one cached position (f16 or f32) as floats.
void widen(const uint8_t* row, bool f16, int64_t n, float* out) {
  if (!f16) {
    std::memcpy(out, row, size_t(n) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    out[i] = kq::half_to_float_portable(h);
  }
}

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) acc[i % 8] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

}  // namespace

void scalar_attention_tile(const AttnTileArgs& a) {
  const int64_t hd = a.head_dim, n_rows = a.n_tok * a.group;
  float* kb = a.scratch;                // [kAttnBlock][hd]
  float* vb = kb + kAttnBlock * hd;     // [kAttnBlock][hd]
  float* row_max = vb + kAttnBlock * hd;
  float* row_sum = row_max + n_rows;
  float* p = row_sum + n_rows;          // [kAttnBlock]
  const int64_t max_keys = a.n_keys0 + a.n_tok - 1;
  // First key of a row that sees `keys` keys; blocks wholly before the tile's first row's first key
  // are skipped (sliding-window layers cost O(window), not O(context)).
  auto first_key = [&](int64_t keys) { return a.window > 0 ? std::max<int64_t>(0, keys - a.window) : 0; };
  const int64_t k_begin = first_key(a.n_keys0) / kAttnBlock * kAttnBlock;
  for (int64_t k0 = k_begin; k0 < max_keys; k0 += kAttnBlock) {
    const int64_t nk = std::min(kAttnBlock, max_keys - k0);
    for (int64_t k = 0; k < nk; ++k) {
      // the key's head_dim values are kAttnBlock apart in its block (k_cache_index)
      const uint8_t* key = a.k + size_t(k0 / kAttnBlock) * a.k_block_stride;
      for (int64_t d = 0; d < hd; ++d) widen(key + size_t(d * kAttnBlock + k) * (a.k_f16 ? 2 : 4), a.k_f16, 1, kb + k * hd + d);
      widen(a.v + size_t(k0 / kAttnBlock) * a.v_block_stride + size_t(k * hd) * (a.v_f16 ? 2 : 4), a.v_f16, hd, vb + k * hd);
    }
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t t = r / a.group, j = r % a.group;
      const int64_t keys = a.n_keys0 + t;
      const int64_t lo = first_key(keys);
      if (keys <= k0 || lo >= k0 + nk) continue;  // this row's keys ended earlier / start later
      const int64_t nv = std::min(nk, keys - k0);
      const int64_t kv0 = std::max<int64_t>(0, lo - k0);  // keys before the window get p = 0
      const float* q = a.q + t * a.tok_stride + j * hd;
      float* o = a.out + t * a.tok_stride + j * hd;
      float bmax = -INFINITY;
      for (int64_t k = kv0; k < nv; ++k) {
        float sc = dot(q, kb + k * hd, hd) * a.scale;
        if (a.softcap > 0) sc = a.softcap * std::tanh(sc / a.softcap);
        p[k] = sc;
        bmax = std::max(bmax, p[k]);
      }
      // The row's first block: nothing to rescale. Later blocks: rescale the sum and output so far
      // to the new running max.
      const bool first = k0 == lo / kAttnBlock * kAttnBlock;
      const float m = first ? bmax : std::max(row_max[r], bmax);
      const float alpha = first ? 0.0f : std::exp(row_max[r] - m);
      float sum = 0.0f;
      for (int64_t k = 0; k < nv; ++k) {
        p[k] = k < kv0 ? 0.0f : std::exp(p[k] - m);
        sum += p[k];
      }
      row_max[r] = m;
      row_sum[r] = first ? sum : row_sum[r] * alpha + sum;
      for (int64_t i = 0; i < hd; ++i) {
        float acc = first ? 0.0f : o[i] * alpha;
        for (int64_t k = 0; k < nv; ++k) acc += p[k] * vb[k * hd + i];
        o[i] = acc;
      }
    }
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t t = r / a.group, j = r % a.group;
    float* o = a.out + t * a.tok_stride + j * hd;
    const float inv = 1.0f / row_sum[r];
    for (int64_t i = 0; i < hd; ++i) o[i] *= inv;
  }
}

}  // namespace edgellama
