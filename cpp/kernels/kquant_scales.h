// K-quant super-block scales in the one form every kernel uses:
//   dot(block, act) = d * da * sum_k sc[k] * sum_{i in sub k} qu[i] * a[i]
//                   - dm * da * sum_k mn[k] * bsum[k]
// over the 16 sub-blocks k of 16 values, where qu are the unsigned quants (0..2^bits-1) and bsum[k]
// the activation sums of sub-block k. Offset formats (Q3_K, Q6_K) fold their offset into mn with
// dm = d. Everything here is `static` (internal linkage): this header is included by translation
// units compiled for different ISAs, and an inline function with external linkage could be merged
// with an AVX2-compiled copy by the linker and then run on a CPU without AVX2.
#pragma once
#include <cstdint>
#include <cstring>

#include "edgellama/quant_blocks.h"

namespace edgellama {
namespace kq {

struct Scales {
  int16_t sc[16];
  int16_t mn[16];
};

static inline float half_to_float_portable(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

static inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

static inline void scales_q2_K(const block_q2_K* b, Scales* s) {
  for (int k = 0; k < 16; ++k) {
    s->sc[k] = int16_t(b->scales[k] & 0xF);
    s->mn[k] = int16_t(b->scales[k] >> 4);
  }
}

static inline void scales_q3_K(const block_q3_K* b, Scales* s) {
  for (int k = 0; k < 16; ++k) {
    const int low = k < 8 ? (b->scales[k] & 0xF) : (b->scales[k - 8] >> 4);
    const int high = (b->scales[8 + (k % 4)] >> (2 * (k / 4))) & 3;
    const int v = (low | (high << 4)) - 32;
    s->sc[k] = int16_t(v);
    s->mn[k] = int16_t(4 * v);  // value = qu - 4
  }
}

static inline void scales_q45_K(const uint8_t* scales12, Scales* s) {
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    scale_min_k4(j, scales12, &sc, &mn);
    s->sc[2 * j] = s->sc[2 * j + 1] = int16_t(sc);
    s->mn[2 * j] = s->mn[2 * j + 1] = int16_t(mn);
  }
}

static inline void scales_q6_K(const block_q6_K* b, Scales* s) {
  for (int k = 0; k < 16; ++k) {
    s->sc[k] = int16_t(b->scales[k]);
    s->mn[k] = int16_t(32 * b->scales[k]);  // value = qu - 32
  }
}

}  // namespace kq
}  // namespace edgellama
