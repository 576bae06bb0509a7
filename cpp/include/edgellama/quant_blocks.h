// Block layouts of the ggml quantization formats, byte-identical to ggml's (little-endian).
// d / m fields are IEEE half floats stored as uint16_t (see fp16.h).
#pragma once
#include <cstdint>

#include "edgellama/quant_types.h"

namespace edgellama {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;

struct block_q4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };                 // x = d * (q - 8)
struct block_q4_1 { uint16_t d, m; uint8_t qs[QK4_1 / 2]; };              // x = d * q + m
struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };  // x = d * (q - 16)
struct block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
struct block_q8_0 { uint16_t d; int8_t qs[QK8_0]; };                      // x = d * q
struct block_q8_1 { uint16_t d, s; int8_t qs[QK8_1]; };                   // s = d * sum(q)

// K-quants: 256-value super-blocks made of 16 or 8 sub-blocks with their own scales.
struct block_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; };
struct block_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct block_q4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

static_assert(sizeof(block_q4_0) == 18, "ggml layout");
static_assert(sizeof(block_q4_1) == 20, "ggml layout");
static_assert(sizeof(block_q5_0) == 22, "ggml layout");
static_assert(sizeof(block_q5_1) == 24, "ggml layout");
static_assert(sizeof(block_q8_0) == 34, "ggml layout");
static_assert(sizeof(block_q8_1) == 36, "ggml layout");
static_assert(sizeof(block_q2_K) == 84, "ggml layout");
static_assert(sizeof(block_q3_K) == 110, "ggml layout");
static_assert(sizeof(block_q4_K) == 144, "ggml layout");
static_assert(sizeof(block_q5_K) == 176, "ggml layout");
static_assert(sizeof(block_q6_K) == 210, "ggml layout");
static_assert(sizeof(block_q8_K) == 292, "ggml layout");

// The 6-bit scale/min pair j (0..7) packed in the 12 scale bytes of Q4_K and Q5_K.
inline void k_quant_scale_min(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The 6-bit signed scale i (0..15) packed in the 12 scale bytes of Q3_K, already minus 32.
inline int q3_k_scale(int i, const uint8_t* s) {
  const int low = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
  const int high = (s[8 + (i % 4)] >> (2 * (i / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace edgellama
