// Block layouts and unpacking of the non-linear and ternary ggml formats: IQ4_NL, IQ4_XS, TQ1_0,
// TQ2_0, MXFP4. Byte-identical to ggml's layouts (little-endian). This is the one place that says
// how their bits map to values: the dequantization (cpp/quant/dequantize_iquant.cpp), the scalar
// reference kernels, the quantizer and the NEON kernels all unpack through these functions; the
// AVX2 kernels unpack with vector instructions and are tested against the scalar reference.
//
// Everything here is `static` / constexpr (internal linkage): this header is included by
// translation units compiled for different ISAs (see kquant_scales.h for why that matters).
#pragma once
#include <cstdint>
#include <cstring>

#include "edgellama/quant_types.h"

namespace edgellama {
namespace iq {

// IQ4_NL / IQ4_XS: a 4-bit index into 16 non-uniformly spaced int8 levels (denser near zero).
static constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};
// MXFP4: e2m1 (fp4) values, doubled so they are integers; the block scale carries the factor 1/2.
static constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// 32 values: x = d * kIq4Values[q]; byte j holds value j (low nibble) and value j + 16 (high).
struct block_iq4_nl { uint16_t d; uint8_t qs[16]; };
// 256 values in 8 sub-blocks of 32: x = d * (ls - 32) * kIq4Values[q] with a 6-bit sub-block scale
// ls (low 4 bits in scales_l, high 2 bits in scales_h); sub-block j's nibbles in qs[16 j .. 16 j + 15]
// (low nibbles: values 0..15 of the sub-block, high nibbles: 16..31).
struct block_iq4_xs { uint16_t d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; };
// 256 ternary values (-1, 0, 1) packed 5 per byte in base 3 (qs: 160 + 80 values), 4 per byte in qh
// (16 values); x = d * t.
struct block_tq1_0 { uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; uint8_t qh[QK_K / 64]; uint16_t d; };
// 256 values of 2 bits (q - 1: -1..2), x = d * (q - 1).
struct block_tq2_0 { uint8_t qs[QK_K / 4]; uint16_t d; };
// 32 values: x = 2^(e - 128) * kMxfp4Values[q] (e: an e8m0 exponent), nibbles as in IQ4_NL.
struct block_mxfp4 { uint8_t e; uint8_t qs[16]; };

static_assert(sizeof(block_iq4_nl) == 18, "ggml layout");
static_assert(sizeof(block_iq4_xs) == 136, "ggml layout");
static_assert(sizeof(block_tq1_0) == 54, "ggml layout");
static_assert(sizeof(block_tq2_0) == 66, "ggml layout");
static_assert(sizeof(block_mxfp4) == 17, "ggml layout");

// IQ4_XS: the 6-bit scale of sub-block j (0..7), already minus 32 (-32..31).
static inline int iq4_xs_scale(const block_iq4_xs* b, int j) {
  const int low = (b->scales_l[j / 2] >> (4 * (j % 2))) & 0xF;
  const int high = (b->scales_h >> (2 * j)) & 3;
  return (low | (high << 4)) - 32;
}

// IQ4_NL / MXFP4 / IQ4_XS sub-block nibbles: index i (0..31) of a 16-byte group.
static inline int nibble32(const uint8_t* qs16, int i) { return i < 16 ? qs16[i] & 0xF : qs16[i - 16] >> 4; }

// The e8m0 exponent as a float times 1/2 (ggml_e8m0_to_fp32_half): 2^(e - 128), built from bits so
// e = 0 and 1 give the subnormals 2^-128 and 2^-127 exactly.
static inline float e8m0_to_float_half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t(0x00200000) << e : uint32_t(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// TQ1_0: the 256 ternary digits as -1, 0, 1. A byte b holds 5 digits as ceil(n * 256 / 243) for the
// base-3 number n; digit k is the top "trit" of b * 3^k (mod 256): ((b * 3^k) & 255) * 3 >> 8.
// Value order: 32 bytes x 5 digits (value 32 k + m from byte m), then 16 bytes x 5 digits (160 + 16 k
// + m), then the 4 qh bytes x 4 digits (240 + 4 k + m).
static inline int tq1_digit(uint8_t b, int k) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const uint8_t q = uint8_t(b * kPow3[k]);
  return ((uint16_t(q) * 3) >> 8) - 1;
}
static inline void tq1_0_unpack(const block_tq1_0* b, int8_t* q) {
  for (int k = 0; k < 5; ++k)
    for (int m = 0; m < 32; ++m) q[32 * k + m] = int8_t(tq1_digit(b->qs[m], k));
  for (int k = 0; k < 5; ++k)
    for (int m = 0; m < 16; ++m) q[160 + 16 * k + m] = int8_t(tq1_digit(b->qs[32 + m], k));
  for (int k = 0; k < 4; ++k)
    for (int m = 0; m < 4; ++m) q[240 + 4 * k + m] = int8_t(tq1_digit(b->qh[m], k));
}

// TQ2_0: value 128 j + 32 l + m is bits 2l..2l+1 of qs[32 j + m], minus 1.
static inline void tq2_0_unpack(const block_tq2_0* b, int8_t* q) {
  for (int j = 0; j < 2; ++j)
    for (int l = 0; l < 4; ++l)
      for (int m = 0; m < 32; ++m) q[128 * j + 32 * l + m] = int8_t(((b->qs[32 * j + m] >> (2 * l)) & 3) - 1);
}

// IQ4_XS: the 256 levels (kIq4Values) as int8.
static inline void iq4_xs_unpack(const block_iq4_xs* b, int8_t* q) {
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 32; ++i) q[32 * j + i] = kIq4Values[nibble32(b->qs + 16 * j, i)];
}

}  // namespace iq
}  // namespace edgellama
