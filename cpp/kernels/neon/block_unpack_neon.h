// Weight-block unpacking for the AArch64 kernels: each GGUF block format decoded into int8x16
// vectors of quants, shared by the SDOT kernels (kernels_neon.cpp) and the SMMLA kernels
// (kernels_neon_i8mm.cpp), so that both multiply exactly the same integers. Everything is in an
// anonymous namespace (internal linkage, like tile_walk.h): each kernel file gets its own copy
// compiled with its own -march flags, and the linker can never pick one file's copy for the other.
// Uses only base NEON (no dotprod/i8mm instruction), so both files' flags accept it.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../kquant_scales.h"
#include "edgellama/kernels.h"

#ifndef EL_UNROLL
#define EL_UNROLL _Pragma("GCC unroll 16")
#endif

namespace edgellama {
namespace {

// ---- 32-value block formats ----------------------------------------------------------------------
// Each format: kBytes, kOffset (0: no activation-sum term; >0: c = -kOffset * d; <0: c = the half at
// byte 2), q() = 32 quants as two int8x16 (values 0..15 and 16..31), all non-negative except Q8_0.
// dot = d * da * sum(q * a) + c * s.

inline void nibbles32(const uint8_t* qs, int8x16_t* q) {  // value j: low nibble of byte j, j+16: high
  const uint8x16_t v = vld1q_u8(qs);
  q[0] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
  q[1] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}

inline void add_high_bits32(const uint8_t* qh4, int8x16_t* q) {  // bit j of the 32-bit word -> +16
  uint32_t x;
  std::memcpy(&x, qh4, 4);
  const uint8x16_t w = vreinterpretq_u8_u32(vdupq_n_u32(x));
  static const uint8_t kIdx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                   2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bits = vld1q_u8(kBit);
  const uint8x16_t lo = vqtbl1q_u8(w, vld1q_u8(kIdx));
  const uint8x16_t hi = vqtbl1q_u8(w, vld1q_u8(kIdx + 16));
  const uint8x16_t sixteen = vdupq_n_u8(0x10);
  q[0] = vorrq_s8(q[0], vreinterpretq_s8_u8(vandq_u8(vtstq_u8(lo, bits), sixteen)));
  q[1] = vorrq_s8(q[1], vreinterpretq_s8_u8(vandq_u8(vtstq_u8(hi, bits), sixteen)));
}

struct Q4_0W {
  static constexpr size_t kBytes = 18;
  static constexpr int kOffset = 8;
  static void q(const uint8_t* b, int8x16_t* v) { nibbles32(b + 2, v); }
};
struct Q4_1W {
  static constexpr size_t kBytes = 20;
  static constexpr int kOffset = -1;
  static void q(const uint8_t* b, int8x16_t* v) { nibbles32(b + 4, v); }
};
struct Q5_0W {
  static constexpr size_t kBytes = 22;
  static constexpr int kOffset = 16;
  static void q(const uint8_t* b, int8x16_t* v) {
    nibbles32(b + 6, v);
    add_high_bits32(b + 2, v);
  }
};
struct Q5_1W {
  static constexpr size_t kBytes = 24;
  static constexpr int kOffset = -1;
  static void q(const uint8_t* b, int8x16_t* v) {
    nibbles32(b + 8, v);
    add_high_bits32(b + 4, v);
  }
};
struct Q8_0W {
  static constexpr size_t kBytes = 34;
  static constexpr int kOffset = 0;
  static void q(const uint8_t* b, int8x16_t* v) {
    v[0] = vld1q_s8(reinterpret_cast<const int8_t*>(b + 2));
    v[1] = vld1q_s8(reinterpret_cast<const int8_t*>(b + 18));
  }
};
// ---- K-quant super-blocks ------------------------------------------------------------------------
// Each format: kBytes, prep() = the super-block's 16 sub-block scales and mins (kquant_scales.h) and
// its half scales d and dmin, q(c) = the 32 unsigned quants of chunk c (0..7: sub-blocks 2c, 2c+1).

inline uint8x16_t shr_u8(uint8x16_t v, int s) { return vshlq_u8(v, vdupq_n_s8(int8_t(-s))); }
inline int8x16_t as_s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

struct Q2_KW {
  static constexpr size_t kBytes = sizeof(block_q2_K);
  static void prep(const uint8_t* p, kq::Scales* s, uint16_t* d, uint16_t* dm) {
    const block_q2_K* b = reinterpret_cast<const block_q2_K*>(p);
    kq::scales_q2_K(b, s);
    *d = b->d;
    *dm = b->dmin;
  }
  static void q(const uint8_t* p, int c, int8x16_t* v) {
    const block_q2_K* b = reinterpret_cast<const block_q2_K*>(p);
    const uint8x16_t m3 = vdupq_n_u8(3);
    const uint8_t* src = b->qs + 32 * (c / 4);
    v[0] = as_s8(vandq_u8(shr_u8(vld1q_u8(src), 2 * (c % 4)), m3));
    v[1] = as_s8(vandq_u8(shr_u8(vld1q_u8(src + 16), 2 * (c % 4)), m3));
  }
};
struct Q3_KW {
  static constexpr size_t kBytes = sizeof(block_q3_K);
  static void prep(const uint8_t* p, kq::Scales* s, uint16_t* d, uint16_t* dm) {
    const block_q3_K* b = reinterpret_cast<const block_q3_K*>(p);
    kq::scales_q3_K(b, s);
    *d = *dm = b->d;
  }
  static void q(const uint8_t* p, int c, int8x16_t* v) {
    const block_q3_K* b = reinterpret_cast<const block_q3_K*>(p);
    const uint8x16_t m3 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);
    const uint8_t* src = b->qs + 32 * (c / 4);
    EL_UNROLL
    for (int h = 0; h < 2; ++h) {
      const uint8x16_t low = vandq_u8(shr_u8(vld1q_u8(src + 16 * h), 2 * (c % 4)), m3);
      const uint8x16_t high = vandq_u8(shr_u8(vld1q_u8(b->hmask + 16 * h), c), m1);
      v[h] = as_s8(vorrq_u8(low, vshlq_n_u8(high, 2)));
    }
  }
};
struct Q4_KW {
  static constexpr size_t kBytes = sizeof(block_q4_K);
  static void prep(const uint8_t* p, kq::Scales* s, uint16_t* d, uint16_t* dm) {
    const block_q4_K* b = reinterpret_cast<const block_q4_K*>(p);
    kq::scales_q45_K(b->scales, s);
    *d = b->d;
    *dm = b->dmin;
  }
  static void q(const uint8_t* p, int c, int8x16_t* v) {
    const block_q4_K* b = reinterpret_cast<const block_q4_K*>(p);
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    const uint8_t* src = b->qs + 32 * (c / 2);
    v[0] = as_s8(vandq_u8(shr_u8(vld1q_u8(src), 4 * (c % 2)), m4));
    v[1] = as_s8(vandq_u8(shr_u8(vld1q_u8(src + 16), 4 * (c % 2)), m4));
  }
};
struct Q5_KW {
  static constexpr size_t kBytes = sizeof(block_q5_K);
  static void prep(const uint8_t* p, kq::Scales* s, uint16_t* d, uint16_t* dm) {
    const block_q5_K* b = reinterpret_cast<const block_q5_K*>(p);
    kq::scales_q45_K(b->scales, s);
    *d = b->d;
    *dm = b->dmin;
  }
  static void q(const uint8_t* p, int c, int8x16_t* v) {
    const block_q5_K* b = reinterpret_cast<const block_q5_K*>(p);
    const uint8x16_t m4 = vdupq_n_u8(0xF), m1 = vdupq_n_u8(1);
    const uint8_t* src = b->qs + 32 * (c / 2);
    EL_UNROLL
    for (int h = 0; h < 2; ++h) {
      const uint8x16_t low = vandq_u8(shr_u8(vld1q_u8(src + 16 * h), 4 * (c % 2)), m4);
      const uint8x16_t high = vandq_u8(shr_u8(vld1q_u8(b->qh + 16 * h), c), m1);
      v[h] = as_s8(vorrq_u8(low, vshlq_n_u8(high, 4)));
    }
  }
};
struct Q6_KW {
  static constexpr size_t kBytes = sizeof(block_q6_K);
  static void prep(const uint8_t* p, kq::Scales* s, uint16_t* d, uint16_t* dm) {
    const block_q6_K* b = reinterpret_cast<const block_q6_K*>(p);
    kq::scales_q6_K(b, s);
    *d = *dm = b->d;
  }
  static void q(const uint8_t* p, int c, int8x16_t* v) {
    const block_q6_K* b = reinterpret_cast<const block_q6_K*>(p);
    const int h = c / 4, k = c % 4;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m3 = vdupq_n_u8(3);
    const uint8_t* lsrc = b->ql + h * 64 + 32 * (k % 2);
    const uint8_t* hsrc = b->qh + h * 32;
    EL_UNROLL
    for (int i = 0; i < 2; ++i) {
      const uint8x16_t low = vandq_u8(shr_u8(vld1q_u8(lsrc + 16 * i), 4 * (k / 2)), m4);
      const uint8x16_t high = vandq_u8(shr_u8(vld1q_u8(hsrc + 16 * i), 2 * k), m3);
      v[i] = as_s8(vorrq_u8(low, vshlq_n_u8(high, 4)));
    }
  }
};

}  // namespace
}  // namespace edgellama
