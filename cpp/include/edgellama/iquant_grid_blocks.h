// Block layouts and unpacking of the grid i-quants: IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S,
// IQ1_M. Byte-identical to ggml's layouts (little-endian). Like iquant_blocks.h for the other
// non-linear formats, this is the one place that says how their bits map to values: the
// dequantization (cpp/quant/dequantize_iquant_grid.cpp) and the scalar kernels unpack through the
// unpack_<type> functions below; the AVX2 and NEON kernels (cpp/kernels/*/iquant_grid_*.cpp) read the
// scales through scales_<type> and build the same levels with vector instructions (tested against the
// scalar kernels).
//
// Every one of these formats is, per 256-value super-block, a fp16 scale d, sixteen small stored
// scale numbers ls (one per 16 values; formats with one per 32 repeat it) and 256 levels q taken
// from a table of grid points (edgellama/iq_grids.h, generated from gguf-py) times stored signs:
//   value = d * kGridScale[type] * (2 ls + 1) * q
// with q = grid value * sign, except IQ1_S / IQ1_M, whose values are d (2 ls + 1) (grid +- 1/8):
// there q = 8 grid +- 1 (grid in -1, 0, 1) and the factor 1/8 goes into kGridScale. So all seven
// unpack to the same GridBlock, and the kernels compute one integer sum
//   sum_j (2 ls_j + 1) * sum_{i in 16-value group j} q_i a_i
// per super-block (|q| <= 62, 2 ls + 1 <= 31: well inside int32) and one float product.
// The dequantization repeats gguf-py's float operations per type (dequantize_iquant_grid.cpp).
//
// Everything here is `static` / constexpr or inline data (internal linkage or one shared copy of
// plain data): this header is included by translation units compiled for different ISAs.
#pragma once
#include <cstdint>
#include <cstring>

#include "edgellama/iq_grids.h"
#include "edgellama/quant_types.h"

namespace edgellama {
namespace iq {

// ggml's block layouts (d is a fp16 bit pattern).
struct block_iq2_xxs { uint16_t d; uint16_t qs[QK_K / 8]; };
struct block_iq2_xs { uint16_t d; uint16_t qs[QK_K / 8]; uint8_t scales[QK_K / 32]; };
struct block_iq2_s { uint16_t d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t scales[QK_K / 32]; };
struct block_iq3_xxs { uint16_t d; uint8_t qs[3 * QK_K / 8]; };
struct block_iq3_s { uint16_t d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t signs[QK_K / 8]; uint8_t scales[QK_K / 64]; };
struct block_iq1_s { uint16_t d; uint8_t qs[QK_K / 8]; uint16_t qh[QK_K / 32]; };
struct block_iq1_m { uint8_t qs[QK_K / 8]; uint8_t qh[QK_K / 16]; uint8_t scales[QK_K / 32]; };

static_assert(sizeof(block_iq2_xxs) == 66, "ggml layout");
static_assert(sizeof(block_iq2_xs) == 74, "ggml layout");
static_assert(sizeof(block_iq2_s) == 82, "ggml layout");
static_assert(sizeof(block_iq3_xxs) == 98, "ggml layout");
static_assert(sizeof(block_iq3_s) == 110, "ggml layout");
static_assert(sizeof(block_iq1_s) == 50, "ggml layout");
static_assert(sizeof(block_iq1_m) == 56, "ggml layout");

// One unpacked super-block.
struct GridBlock {
  int8_t q[QK_K];   // levels (see above)
  uint8_t ls[16];   // the stored scale number of each 16-value group (0..15, IQ1: 0..7)
  uint16_t d;       // the fp16 super-block scale, as stored (IQ1_M: assembled from its scale bytes)
};

// The power-of-two factor of each type's value (value = d * kGridScale * (2 ls + 1) * q), i.e. the
// float constant the kernels multiply by: ggml's d * (0.5 + ls) * 0.25 = d (2 ls + 1) / 8 for IQ2_*,
// d * (0.5 + ls) * 0.5 = d (2 ls + 1) / 4 for IQ3_XXS, d (1 + 2 ls) for IQ3_S, and the 1/8 of q = 8 (grid
// +- 1/8) for IQ1_*.
static inline float grid_scale(GGMLType t) {
  switch (t) {
    case GGMLType::IQ3_XXS: return 0.25f;
    case GGMLType::IQ3_S: return 1.0f;
    default: return 0.125f;  // IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M
  }
}

// 8 grid bytes (one uint64 word) times 8 sign factors (one kIqSignBytes word): q[k] = g[k] * s[k].
static inline void put8_signed(int8_t* q, uint64_t grid, uint8_t sign_bits) {
  int8_t g[8], s[8];
  std::memcpy(g, &grid, 8);
  std::memcpy(s, &kIqSignBytes[sign_bits], 8);
  for (int k = 0; k < 8; ++k) q[k] = int8_t(g[k] * s[k]);
}
// Two 4-value IQ3 grid points and a sign byte for their 8 values.
static inline void put8_signed_2x4(int8_t* q, uint32_t grid_lo, uint32_t grid_hi, uint8_t sign_bits) {
  put8_signed(q, uint64_t(grid_lo) | (uint64_t(grid_hi) << 32), sign_bits);
}
// IQ1: 8 grid values in -1, 0, 1 and the group's delta sign: q = 8 grid + 1 (delta +1/8) or - 1.
static inline void put8_iq1(int8_t* q, uint64_t grid, bool negative_delta) {
  int8_t g[8];
  std::memcpy(g, &grid, 8);
  for (int k = 0; k < 8; ++k) q[k] = int8_t(8 * g[k] + (negative_delta ? -1 : 1));
}

static inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// IQ2_XXS: per 32 values two uint32: the first holds 4 grid indices (one byte each, 8 values each), the
// second 4 x 7 sign bits (kIqSigns) and the scale in its top 4 bits.
static inline void scales_iq2_xxs(const void* p, GridBlock* u) {
  const block_iq2_xxs* b = static_cast<const block_iq2_xxs*>(p);
  u->d = b->d;
  for (int j = 0; j < 8; ++j) u->ls[2 * j] = u->ls[2 * j + 1] = uint8_t(load_u32(b->qs + 4 * j + 2) >> 28);
}
static inline void unpack_iq2_xxs(const void* p, GridBlock* u) {
  const block_iq2_xxs* b = static_cast<const block_iq2_xxs*>(p);
  scales_iq2_xxs(p, u);
  for (int j = 0; j < 8; ++j) {
    const uint32_t idx = load_u32(b->qs + 4 * j), aux = load_u32(b->qs + 4 * j + 2);
    for (int l = 0; l < 4; ++l)
      put8_signed(u->q + 32 * j + 8 * l, kIq2xxsGrid[(idx >> (8 * l)) & 255], kIqSigns[(aux >> (7 * l)) & 127]);
  }
}

// IQ2_XS: per 8 values a uint16: 9-bit grid index, 7 sign bits (kIqSigns); a 4-bit scale per 16 values.
static inline void scales_iq2_xs(const void* p, GridBlock* u) {
  const block_iq2_xs* b = static_cast<const block_iq2_xs*>(p);
  u->d = b->d;
  for (int j = 0; j < 8; ++j) {
    u->ls[2 * j] = b->scales[j] & 15;
    u->ls[2 * j + 1] = b->scales[j] >> 4;
  }
}
static inline void unpack_iq2_xs(const void* p, GridBlock* u) {
  const block_iq2_xs* b = static_cast<const block_iq2_xs*>(p);
  scales_iq2_xs(p, u);
  for (int k = 0; k < 32; ++k) put8_signed(u->q + 8 * k, kIq2xsGrid[b->qs[k] & 511], kIqSigns[b->qs[k] >> 9]);
}

// IQ2_S: per 8 values a grid index (8 low bits in qs[k], 2 high bits in qh[k / 4]) and a plain sign
// byte (qs[32 + k]); a 4-bit scale per 16 values.
static inline int iq2_s_index(const block_iq2_s* b, int k) { return b->qs[k] | (((b->qh[k / 4] >> (2 * (k % 4))) & 3) << 8); }
static inline void scales_iq2_s(const void* p, GridBlock* u) {
  const block_iq2_s* b = static_cast<const block_iq2_s*>(p);
  u->d = b->d;
  for (int j = 0; j < 8; ++j) {
    u->ls[2 * j] = b->scales[j] & 15;
    u->ls[2 * j + 1] = b->scales[j] >> 4;
  }
}
static inline void unpack_iq2_s(const void* p, GridBlock* u) {
  const block_iq2_s* b = static_cast<const block_iq2_s*>(p);
  scales_iq2_s(p, u);
  for (int k = 0; k < 32; ++k) put8_signed(u->q + 8 * k, kIq2sGrid[iq2_s_index(b, k)], b->qs[32 + k]);
}

// IQ3_XXS: 64 grid-index bytes (4 values each), then per 32 values a uint32 of 4 x 7 sign bits and the
// scale in the top 4 bits.
static inline void scales_iq3_xxs(const void* p, GridBlock* u) {
  const block_iq3_xxs* b = static_cast<const block_iq3_xxs*>(p);
  u->d = b->d;
  for (int j = 0; j < 8; ++j) u->ls[2 * j] = u->ls[2 * j + 1] = uint8_t(load_u32(b->qs + QK_K / 4 + 4 * j) >> 28);
}
static inline void unpack_iq3_xxs(const void* p, GridBlock* u) {
  const block_iq3_xxs* b = static_cast<const block_iq3_xxs*>(p);
  scales_iq3_xxs(p, u);
  for (int j = 0; j < 8; ++j) {
    const uint32_t aux = load_u32(b->qs + QK_K / 4 + 4 * j);
    for (int l = 0; l < 4; ++l) {
      const uint8_t* g = b->qs + 8 * j + 2 * l;
      put8_signed_2x4(u->q + 32 * j + 8 * l, kIq3xxsGrid[g[0]], kIq3xxsGrid[g[1]], kIqSigns[(aux >> (7 * l)) & 127]);
    }
  }
}

// IQ3_S: per 4 values a grid index (8 low bits in qs[k], the 9th is bit k % 8 of qh[k / 8]); a plain
// sign byte per 8 values; a 4-bit scale per 32 values.
static inline int iq3_s_index(const block_iq3_s* b, int i) { return b->qs[i] | (((b->qh[i / 8] >> (i % 8)) & 1) << 8); }
static inline void scales_iq3_s(const void* p, GridBlock* u) {
  const block_iq3_s* b = static_cast<const block_iq3_s*>(p);
  u->d = b->d;
  for (int j = 0; j < 8; ++j) u->ls[2 * j] = u->ls[2 * j + 1] = (b->scales[j / 2] >> (4 * (j % 2))) & 15;
}
static inline void unpack_iq3_s(const void* p, GridBlock* u) {
  const block_iq3_s* b = static_cast<const block_iq3_s*>(p);
  scales_iq3_s(p, u);
  for (int k = 0; k < 32; ++k)
    put8_signed_2x4(u->q + 8 * k, kIq3sGrid[iq3_s_index(b, 2 * k)], kIq3sGrid[iq3_s_index(b, 2 * k + 1)], b->signs[k]);
}

// IQ1_S: per 8 values an 11-bit grid index (8 bits in qs[k], 3 in qh[k / 4]); per 32 values a uint16
// qh with those index bits (bits 0..11), a 3-bit scale (12..14) and the delta sign (15).
static inline void scales_iq1_s(const void* p, GridBlock* u) {
  const block_iq1_s* b = static_cast<const block_iq1_s*>(p);
  u->d = b->d;
  for (int j = 0; j < 8; ++j) u->ls[2 * j] = u->ls[2 * j + 1] = uint8_t((b->qh[j] >> 12) & 7);
}
static inline void unpack_iq1_s(const void* p, GridBlock* u) {
  const block_iq1_s* b = static_cast<const block_iq1_s*>(p);
  scales_iq1_s(p, u);
  for (int j = 0; j < 8; ++j) {
    const unsigned qh = b->qh[j];
    for (int l = 0; l < 4; ++l)
      put8_iq1(u->q + 32 * j + 8 * l, kIq1sGrid[b->qs[4 * j + l] | (((qh >> (3 * l)) & 7) << 8)], (qh & 0x8000) != 0);
  }
}

// IQ1_M: the fp16 d is the top 4 bits of its four uint16 scale words (word w gives bits 4w..4w+3);
// per 8 values an 11-bit grid index (qs[k], and bits 0..2 of nibble k % 2 of qh[k / 2]) whose nibble
// bit 3 is the delta sign; a 3-bit scale per 16 values (bits 3m..3m+2 of scale word m / 4, m % 4).
static inline uint16_t iq1_m_d(const block_iq1_m* b) {
  uint16_t sc[4];
  std::memcpy(sc, b->scales, 8);
  return uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
}
static inline void scales_iq1_m(const void* p, GridBlock* u) {
  const block_iq1_m* b = static_cast<const block_iq1_m*>(p);
  u->d = iq1_m_d(b);
  uint16_t sc[4];
  std::memcpy(sc, b->scales, 8);
  for (int m = 0; m < 16; ++m) u->ls[m] = uint8_t((sc[m / 4] >> (3 * (m % 4))) & 7);
}
// IQ1_M: nibble k of qh (k = 0..31): 3 high grid-index bits and the delta sign (bit 3).
static inline unsigned iq1_m_nibble(const block_iq1_m* b, int k) { return (b->qh[k / 2] >> (4 * (k % 2))) & 15; }
static inline void unpack_iq1_m(const void* p, GridBlock* u) {
  const block_iq1_m* b = static_cast<const block_iq1_m*>(p);
  scales_iq1_m(p, u);
  for (int k = 0; k < 32; ++k) {
    const unsigned nib = iq1_m_nibble(b, k);
    put8_iq1(u->q + 8 * k, kIq1sGrid[b->qs[k] | ((nib & 7) << 8)], (nib & 8) != 0);
  }
}

}  // namespace iq
}  // namespace edgellama
