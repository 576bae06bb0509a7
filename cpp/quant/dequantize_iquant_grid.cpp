// Reference dequantization of the grid i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S,
// IQ1_M): bit-identical to gguf.quants.dequantize (same float operations in the same order, no FMA
// contraction: the core is compiled with -ffp-contract=off). The bit layouts and the unpacking live
// in edgellama/iquant_grid_blocks.h.
//
// Every format unpacks to levels q and a scale number ls per 16 values (GridBlock); what differs is
// how gguf-py / ggml turn d and ls into the float factor of a value. One function per type says that.
#include "dequantize.h"
#include "edgellama/fp16.h"
#include "edgellama/iquant_grid_blocks.h"

namespace edgellama {

using namespace iq;

namespace {

// x = (d * (0.5 + ls) * kQuarterOrHalf) * grid * sign: IQ2_* (1/4) and IQ3_XXS (1/2). gguf-py multiplies
// by the grid value and then by the +-1 sign; since the level q = grid * sign, db * q is the same
// float (negation is exact, and a NaN db stays the same NaN either way).
template <void (*Unpack)(const void*, GridBlock*), size_t kBytes, int kHalves>
void dequantize_half_offset(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  const float factor = kHalves == 1 ? 0.5f : 0.25f;
  GridBlock u;
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    Unpack(p + size_t(i) * kBytes, &u);
    const float d = fp16_to_float(u.d);
    for (int j = 0; j < 16; ++j) {
      const float db = d * (0.5f + float(u.ls[j])) * factor;
      for (int k = 16 * j; k < 16 * j + 16; ++k) dst[k] = db * float(u.q[k]);
    }
  }
}

// IQ3_S: x = (d * (1 + 2 ls)) * grid * sign.
void dequantize_odd_scale(const GridBlock& u, float* dst) {
  const float d = fp16_to_float(u.d);
  for (int j = 0; j < 16; ++j) {
    const float db = d * float(1 + 2 * u.ls[j]);
    for (int k = 16 * j; k < 16 * j + 16; ++k) dst[k] = db * float(u.q[k]);
  }
}

// IQ1_S / IQ1_M: x = (d * (2 ls + 1)) * (grid + delta), delta = +-1/8; q = 8 (grid + delta) exactly,
// so grid + delta = q * 0.125 exactly.
void dequantize_iq1(const GridBlock& u, float* dst) {
  const float d = fp16_to_float(u.d);
  for (int j = 0; j < 16; ++j) {
    const float dl = d * float(2 * u.ls[j] + 1);
    for (int k = 16 * j; k < 16 * j + 16; ++k) dst[k] = dl * (float(u.q[k]) * 0.125f);
  }
}

template <void (*Unpack)(const void*, GridBlock*), size_t kBytes, void (*Scale)(const GridBlock&, float*)>
void dequantize_with(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  GridBlock u;
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    Unpack(p + size_t(i) * kBytes, &u);
    Scale(u, dst);
  }
}

}  // namespace

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) {
  dequantize_half_offset<unpack_iq2_xxs, sizeof(block_iq2_xxs), 2>(src, dst, n);
}
void dequantize_iq2_xs(const void* src, float* dst, int64_t n) {
  dequantize_half_offset<unpack_iq2_xs, sizeof(block_iq2_xs), 2>(src, dst, n);
}
void dequantize_iq2_s(const void* src, float* dst, int64_t n) {
  dequantize_half_offset<unpack_iq2_s, sizeof(block_iq2_s), 2>(src, dst, n);
}
void dequantize_iq3_xxs(const void* src, float* dst, int64_t n) {
  dequantize_half_offset<unpack_iq3_xxs, sizeof(block_iq3_xxs), 1>(src, dst, n);
}
void dequantize_iq3_s(const void* src, float* dst, int64_t n) {
  dequantize_with<unpack_iq3_s, sizeof(block_iq3_s), dequantize_odd_scale>(src, dst, n);
}
void dequantize_iq1_s(const void* src, float* dst, int64_t n) {
  dequantize_with<unpack_iq1_s, sizeof(block_iq1_s), dequantize_iq1>(src, dst, n);
}
void dequantize_iq1_m(const void* src, float* dst, int64_t n) {
  dequantize_with<unpack_iq1_m, sizeof(block_iq1_m), dequantize_iq1>(src, dst, n);
}

}  // namespace edgellama
