// Reference dequantization of IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4: bit-identical to
// gguf.quants.dequantize (same float operations in the same order, no FMA contraction: the core is
// compiled with -ffp-contract=off). The bit layouts live in edgellama/iquant_blocks.h.
#include <cstring>

#include "dequantize.h"
#include "edgellama/fp16.h"
#include "edgellama/iquant_blocks.h"

namespace edgellama {

using namespace iq;

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const block_iq4_nl* b = static_cast<const block_iq4_nl*>(src);
  for (int64_t i = 0; i < n / 32; ++i, dst += 32) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < 32; ++j) dst[j] = d * float(kIq4Values[nibble32(b[i].qs, j)]);
  }
}

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
  const block_iq4_xs* b = static_cast<const block_iq4_xs*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < 8; ++j, dst += 32) {
      const float dl = d * float(iq4_xs_scale(&b[i], j));  // gguf-py rounds d * scale to float32 first
      for (int k = 0; k < 32; ++k) dst[k] = dl * float(kIq4Values[nibble32(b[i].qs + 16 * j, k)]);
    }
  }
}

void dequantize_tq1_0(const void* src, float* dst, int64_t n) {
  const block_tq1_0* b = static_cast<const block_tq1_0*>(src);
  int8_t q[QK_K];
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d);
    tq1_0_unpack(&b[i], q);
    for (int k = 0; k < QK_K; ++k) dst[k] = d * float(q[k]);
  }
}

void dequantize_tq2_0(const void* src, float* dst, int64_t n) {
  const block_tq2_0* b = static_cast<const block_tq2_0*>(src);
  int8_t q[QK_K];
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d);
    tq2_0_unpack(&b[i], q);
    for (int k = 0; k < QK_K; ++k) dst[k] = d * float(q[k]);
  }
}

void dequantize_mxfp4(const void* src, float* dst, int64_t n) {
  const block_mxfp4* b = static_cast<const block_mxfp4*>(src);
  for (int64_t i = 0; i < n / 32; ++i, dst += 32) {
    const float d = e8m0_to_float_half(b[i].e);
    for (int j = 0; j < 32; ++j) dst[j] = d * float(kMxfp4Values[nibble32(b[i].qs, j)]);
  }
}

}  // namespace edgellama
