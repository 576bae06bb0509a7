#include "gemm_rows8_ref.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#include "../kquant_scales.h"
#include "edgellama/fp16.h"
#include "edgellama/kernels.h"
#include "edgellama/quant_types.h"

namespace edgellama {
namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_float(h);
}

template <bool kQ41>
void ref_q4(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
            size_t ys) {
  constexpr size_t kW = kQ41 ? 20 : 18;
  constexpr int off = kQ41 ? 4 : 2;
  for (int64_t t = 0; t < nt; ++t) {
    const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const uint8_t* row = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = row + size_t(b) * kW;
        int32_t isum = 0;
        for (int j = 0; j < 16; ++j) {
          isum += int32_t(blk[off + j] & 0x0F) * ab[b].qs[j];
          isum += int32_t(blk[off + j] >> 4) * ab[b].qs[j + 16];
        }
        const float dw = half(blk);
        const float cw = kQ41 ? half(blk + 2) : -8.0f * dw;
        const float scale = dw * ab[b].d;
        acc = std::fma(float(isum), scale, acc);
        acc = std::fma(cw, ab[b].s, acc);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

void ref_q8_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
              size_t ys) {
  for (int64_t t = 0; t < nt; ++t) {
    const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const uint8_t* row = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = row + size_t(b) * 34;
        int32_t isum = 0;
        for (int j = 0; j < 32; ++j) isum += int32_t(int8_t(blk[2 + j])) * ab[b].qs[j];
        acc = std::fma(float(isum), half(blk) * ab[b].d, acc);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

// Q4_K, and Q5_K (kQ5: the fifth bit of value l of chunk c is bit c of qh[l]) with the same sequence.
template <bool kQ5>
void ref_q4k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
             size_t ys) {
  using Block = typename std::conditional<kQ5, block_q5_K, block_q4_K>::type;
  for (int64_t t = 0; t < nt; ++t) {
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const Block* wb = reinterpret_cast<const Block*>(w + size_t(r) * ws);
      float acc = 0.0f;
      for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0, msum = 0;
        for (int c = 0; c < 8; ++c) {
          int sc, mn;
          kq::scale_min_k4(c, wb[b].scales, &sc, &mn);
          int32_t part = 0;
          for (int j = 0; j < 32; ++j) {
            const uint8_t byte = wb[b].qs[32 * (c / 2) + j];
            int32_t q = c % 2 ? byte >> 4 : byte & 0x0F;
            if constexpr (kQ5) q |= ((wb[b].qh[j] >> c) & 1) << 4;
            part += q * ab[b].qs[32 * c + j];
          }
          isum += sc * part;
          msum += mn * (int32_t(ab[b].bsums[2 * c]) + int32_t(ab[b].bsums[2 * c + 1]));
        }
        acc = std::fma(float(isum), fp16_to_float(wb[b].d) * ab[b].d, acc);
        acc = std::fma(-float(msum), fp16_to_float(wb[b].dmin) * ab[b].d, acc);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

// Q6_K (the AVX-512 rows16 kernel's sequence; d doubles as dmin, the -32 offset folded into mn = 32 sc):
// per super-block isum = sum_k sc_k * sum_{i in sub-block k} qu_i a_i, msum = sum_k 32 sc_k * bsums_k,
// acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), d * da, acc).
void ref_q6k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
             size_t ys) {
  for (int64_t t = 0; t < nt; ++t) {
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const block_q6_K* wb = reinterpret_cast<const block_q6_K*>(w + size_t(r) * ws);
      float acc = 0.0f;
      for (int64_t b = 0; b < n / QK_K; ++b) {
        kq::Scales s;
        kq::scales_q6_K(&wb[b], &s);
        int32_t isum = 0, msum = 0;
        for (int k = 0; k < 16; ++k) {
          int32_t part = 0;
          for (int i = 0; i < 16; ++i) {
            const int v = 16 * k + i, h = v / 128, l = v % 32, quarter = (v % 128) / 32;  // ggml's Q6_K layout
            const uint8_t lb = wb[b].ql[64 * h + l + 32 * (quarter % 2)];
            const int lo = quarter < 2 ? lb & 0x0F : lb >> 4;
            const int hi = (wb[b].qh[32 * h + l] >> (2 * quarter)) & 3;
            part += int32_t(lo | hi << 4) * ab[b].qs[v];
          }
          isum += s.sc[k] * part;
          msum += s.mn[k] * int32_t(ab[b].bsums[k]);
        }
        const float scale = fp16_to_float(wb[b].d) * ab[b].d;
        acc = std::fma(float(isum), scale, acc);
        acc = std::fma(-float(msum), scale, acc);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

// Q2_K / Q3_K (the AVX-512 rows16 kernels' sequence; scales and offsets from kquant_scales.h, Q3_K's
// dmin = d): per super-block isum = sum_k sc_k * sum_{i in sub-block k} qu_i a_i, msum = sum_k mn_k bsums_k,
// acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dmin * da, acc).
template <bool kQ3>
void ref_q23k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
              size_t ys) {
  using Block = typename std::conditional<kQ3, block_q3_K, block_q2_K>::type;
  for (int64_t t = 0; t < nt; ++t) {
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const Block* wb = reinterpret_cast<const Block*>(w + size_t(r) * ws);
      float acc = 0.0f;
      for (int64_t b = 0; b < n / QK_K; ++b) {
        kq::Scales s;
        float dmin;
        if constexpr (kQ3) {
          kq::scales_q3_K(&wb[b], &s);
          dmin = fp16_to_float(wb[b].d);
        } else {
          kq::scales_q2_K(&wb[b], &s);
          dmin = fp16_to_float(wb[b].dmin);
        }
        int32_t isum = 0, msum = 0;
        for (int k = 0; k < 16; ++k) {
          int32_t part = 0;
          for (int i = 0; i < 16; ++i) {
            const int v = 16 * k + i, c = v / 32, l = v % 32;  // chunk c, value l (ggml's layout)
            int q = (wb[b].qs[32 * (c / 4) + l] >> (2 * (c % 4))) & 3;
            if constexpr (kQ3) q |= ((wb[b].hmask[l] >> c) & 1) << 2;
            part += int32_t(q) * ab[b].qs[v];
          }
          isum += s.sc[k] * part;
          msum += s.mn[k] * int32_t(ab[b].bsums[k]);
        }
        acc = std::fma(float(isum), fp16_to_float(wb[b].d) * ab[b].d, acc);
        acc = std::fma(-float(msum), dmin * ab[b].d, acc);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

}  // namespace

GemmRefFn gemm_rows8_ref(GGMLType type) {
  if (type == GGMLType::Q4_0) return ref_q4<false>;
  if (type == GGMLType::Q4_1) return ref_q4<true>;
  if (type == GGMLType::Q4_K) return ref_q4k<false>;
  if (type == GGMLType::Q5_K) return ref_q4k<true>;
  if (type == GGMLType::Q6_K) return ref_q6k;
  if (type == GGMLType::Q2_K) return ref_q23k<false>;
  if (type == GGMLType::Q3_K) return ref_q23k<true>;
  if (type == GGMLType::Q8_0) return ref_q8_0;
  return nullptr;
}

}  // namespace edgellama
