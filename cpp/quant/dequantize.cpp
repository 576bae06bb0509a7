#include "dequantize.h"

#include <cstring>

#include "edgellama/fp16.h"
#include "edgellama/quant_blocks.h"

namespace edgellama {

void dequantize_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = fp16_to_float(h);
  }
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = bf16_to_float(h);
  }
}

// The legacy 32-value formats store the low nibbles of value j and j+16 in byte j.

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const block_q4_0* b = static_cast<const block_q4_0*>(src);
  for (int64_t i = 0; i < n / QK4_0; ++i, dst += QK4_0) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      dst[j] = d * float((b[i].qs[j] & 0xF) - 8);
      dst[j + 16] = d * float((b[i].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const block_q4_1* b = static_cast<const block_q4_1*>(src);
  for (int64_t i = 0; i < n / QK4_1; ++i, dst += QK4_1) {
    const float d = fp16_to_float(b[i].d), m = fp16_to_float(b[i].m);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      dst[j] = d * float(b[i].qs[j] & 0xF) + m;
      dst[j + 16] = d * float(b[i].qs[j] >> 4) + m;
    }
  }
}

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const block_q5_0* b = static_cast<const block_q5_0*>(src);
  for (int64_t i = 0; i < n / QK5_0; ++i, dst += QK5_0) {
    const float d = fp16_to_float(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);  // bit j = 5th bit of value j
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      dst[j] = d * float(lo - 16);
      dst[j + 16] = d * float(hi - 16);
    }
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const block_q5_1* b = static_cast<const block_q5_1*>(src);
  for (int64_t i = 0; i < n / QK5_1; ++i, dst += QK5_1) {
    const float d = fp16_to_float(b[i].d), m = fp16_to_float(b[i].m);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      dst[j] = d * float(lo) + m;
      dst[j + 16] = d * float(hi) + m;
    }
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const block_q8_0* b = static_cast<const block_q8_0*>(src);
  for (int64_t i = 0; i < n / QK8_0; ++i, dst += QK8_0) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < QK8_0; ++j) dst[j] = float(b[i].qs[j]) * d;
  }
}

void dequantize_q8_1(const void* src, float* dst, int64_t n) {
  const block_q8_1* b = static_cast<const block_q8_1*>(src);
  for (int64_t i = 0; i < n / QK8_1; ++i, dst += QK8_1) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < QK8_1; ++j) dst[j] = float(b[i].qs[j]) * d;
  }
}

// Q2_K: 16 sub-blocks of 16 values; scale byte = (min << 4) | scale. Values are 2-bit fields:
// value h*128 + s*32 + l lives in bits 2s..2s+1 of qs[h*32 + l]; its sub-block is its index / 16.
void dequantize_q2_K(const void* src, float* dst, int64_t n) {
  const block_q2_K* b = static_cast<const block_q2_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d), dmin = fp16_to_float(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, s = (e % 128) / 32, l = e % 32;
      const uint8_t sc = b[i].scales[e / 16];
      const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
      const int q = (b[i].qs[h * 32 + l] >> (2 * s)) & 3;
      dst[e] = dl * float(q) - ml;
    }
  }
}

// Q3_K: 2 low bits as in Q2_K, the third bit in hmask (bit h*4+s of hmask[l]); a cleared high bit
// means "subtract 4". 16 signed 6-bit scales.
void dequantize_q3_K(const void* src, float* dst, int64_t n) {
  const block_q3_K* b = static_cast<const block_q3_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, s = (e % 128) / 32, l = e % 32;
      const float dl = d * float(q3_k_scale(e / 16, b[i].scales));
      const int low = (b[i].qs[h * 32 + l] >> (2 * s)) & 3;
      const int high = (b[i].hmask[l] >> (h * 4 + s)) & 1;
      dst[e] = dl * float(low - (high ? 0 : 4));
    }
  }
}

// Q4_K: 8 sub-blocks of 32 values, 6-bit scale and min each. Value 64*k + l (l < 32) is the low
// nibble of qs[32k + l], value 64*k + 32 + l the high nibble.
void dequantize_q4_K(const void* src, float* dst, int64_t n) {
  const block_q4_K* b = static_cast<const block_q4_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d), dmin = fp16_to_float(b[i].dmin);
    for (int sb = 0; sb < 8; ++sb) {
      uint8_t sc, m;
      k_quant_scale_min(sb, b[i].scales, &sc, &m);
      const float dl = d * float(sc), ml = dmin * float(m);
      const uint8_t* q = b[i].qs + 32 * (sb / 2);
      const int shift = 4 * (sb % 2);
      for (int l = 0; l < 32; ++l) dst[sb * 32 + l] = dl * float((q[l] >> shift) & 0xF) - ml;
    }
  }
}

// Q5_K: Q4_K plus a fifth bit: bit sb of qh[l] for value 32*sb + l.
void dequantize_q5_K(const void* src, float* dst, int64_t n) {
  const block_q5_K* b = static_cast<const block_q5_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d), dmin = fp16_to_float(b[i].dmin);
    for (int sb = 0; sb < 8; ++sb) {
      uint8_t sc, m;
      k_quant_scale_min(sb, b[i].scales, &sc, &m);
      const float dl = d * float(sc), ml = dmin * float(m);
      const uint8_t* q = b[i].qs + 32 * (sb / 2);
      const int shift = 4 * (sb % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0xF) | (((b[i].qh[l] >> sb) & 1) << 4);
        dst[sb * 32 + l] = dl * float(v) - ml;
      }
    }
  }
}

// Q6_K: value h*128 + r takes its low nibble from ql[h*64 + r%64] (high nibble when r >= 64) and
// two high bits from qh[h*32 + r%32] at bit 2*(r/32); minus 32; 16 signed 8-bit scales.
void dequantize_q6_K(const void* src, float* dst, int64_t n) {
  const block_q6_K* b = static_cast<const block_q6_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_float(b[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, r = e % 128;
      const int low = (b[i].ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
      const int high = (b[i].qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
      const float dl = d * float(b[i].scales[e / 16]);
      dst[e] = dl * float((low | (high << 4)) - 32);
    }
  }
}

void dequantize_q8_K(const void* src, float* dst, int64_t n) {
  const block_q8_K* b = static_cast<const block_q8_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    for (int j = 0; j < QK_K; ++j) dst[j] = b[i].d * float(b[i].qs[j]);
  }
}

}  // namespace edgellama
