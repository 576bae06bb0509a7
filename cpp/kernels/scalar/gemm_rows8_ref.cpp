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

// The 32-value block formats with 4-bit quants (kQh = 0) or 5-bit quants (fifth bit j of the 32-bit
// word at byte kQh = value j); cw = the fp16 minimum at byte kMin, or kOffset * dw when kMin = 0.
template <size_t kW, size_t kQs, size_t kQh, size_t kMin, int kOffset>
void ref_legacy(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  for (int64_t t = 0; t < nt; ++t) {
    const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const uint8_t* row = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = row + size_t(b) * kW;
        uint32_t qh = 0;
        if (kQh) std::memcpy(&qh, blk + kQh, 4);
        int32_t isum = 0;
        for (int j = 0; j < 16; ++j) {
          const int32_t lo = int32_t(blk[kQs + j] & 0x0F) | int32_t((qh >> j) & 1) << 4;
          const int32_t hi = int32_t(blk[kQs + j] >> 4) | int32_t((qh >> (j + 16)) & 1) << 4;
          isum += lo * ab[b].qs[j];
          isum += hi * ab[b].qs[j + 16];
        }
        const float dw = half(blk);
        const float cw = kMin ? half(blk + kMin) : float(kOffset) * dw;
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

// Q4_K and Q5_K (kFive: the fifth bit of value j of sub-block c is bit c of qh[j]).
template <bool kFive>
void ref_k45(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
             size_t ys) {
  using Block = typename std::conditional<kFive, block_q5_K, block_q4_K>::type;
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
            if constexpr (kFive) q |= ((wb[b].qh[j] >> c) & 1) << 4;
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

// The K-quants with 16-value sub-blocks: unsigned quant of value e, in the layouts of ggml.
int quant_q2k(const block_q2_K& b, int e) { return (b.qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }
int quant_q3k(const block_q3_K& b, int e) {
  const int h = e / 128, s = (e % 128) / 32, l = e % 32;
  return ((b.qs[32 * h + l] >> (2 * s)) & 3) | ((b.hmask[l] >> (4 * h + s)) & 1) << 2;
}
int quant_q6k(const block_q6_K& b, int e) {
  const int h = e / 128, r = e % 128;
  return ((b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0xF) | ((b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3) << 4;
}
void scales_of(const block_q2_K& b, kq::Scales* s, float* d, float* dm) {
  kq::scales_q2_K(&b, s);
  *d = fp16_to_float(b.d);
  *dm = fp16_to_float(b.dmin);
}
void scales_of(const block_q3_K& b, kq::Scales* s, float* d, float* dm) {
  kq::scales_q3_K(&b, s);
  *d = *dm = fp16_to_float(b.d);
}
void scales_of(const block_q6_K& b, kq::Scales* s, float* d, float* dm) {
  kq::scales_q6_K(&b, s);
  *d = *dm = fp16_to_float(b.d);
}

// isum = sum_s sc_s sum_{i in s} q_i a_i, msum = sum_s mn_s bsums_s (exact ints); kCombined (the
// offset formats Q3_K / Q6_K, dm = d): acc = fma(float(isum - msum), d*da, acc); otherwise
// acc = fma(float(isum), d*da, acc); acc = fma(-float(msum), dm*da, acc).
template <class Block, int (*Quant)(const Block&, int), bool kCombined>
void ref_sub16(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  for (int64_t t = 0; t < nt; ++t) {
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as);
    for (int64_t r = 0; r < nr; ++r) {
      const Block* wb = reinterpret_cast<const Block*>(w + size_t(r) * ws);
      float acc = 0.0f;
      for (int64_t b = 0; b < n / QK_K; ++b) {
        kq::Scales s;
        float d, dm;
        scales_of(wb[b], &s, &d, &dm);
        int32_t isum = 0, msum = 0;
        for (int sb = 0; sb < 16; ++sb) {
          int32_t part = 0;
          for (int i = 16 * sb; i < 16 * sb + 16; ++i) part += Quant(wb[b], i) * ab[b].qs[i];
          isum += s.sc[sb] * part;
          msum += s.mn[sb] * int32_t(ab[b].bsums[sb]);
        }
        if (kCombined) {
          acc = std::fma(float(isum - msum), d * ab[b].d, acc);
        } else {
          acc = std::fma(float(isum), d * ab[b].d, acc);
          acc = std::fma(-float(msum), dm * ab[b].d, acc);
        }
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

}  // namespace

GemmRefFn gemm_rows8_ref(GGMLType type) {
  // block bytes, quants at, fifth bits at (0: none), minimum at (0: none), offset (x dw)
  if (type == GGMLType::Q4_0) return ref_legacy<18, 2, 0, 0, -8>;
  if (type == GGMLType::Q4_1) return ref_legacy<20, 4, 0, 2, 0>;
  if (type == GGMLType::Q5_0) return ref_legacy<22, 6, 2, 0, -16>;
  if (type == GGMLType::Q5_1) return ref_legacy<24, 8, 4, 2, 0>;
  if (type == GGMLType::Q4_K) return ref_k45<false>;
  if (type == GGMLType::Q5_K) return ref_k45<true>;
  if (type == GGMLType::Q8_0) return ref_q8_0;
  if (type == GGMLType::Q2_K) return ref_sub16<block_q2_K, quant_q2k, false>;
  if (type == GGMLType::Q3_K) return ref_sub16<block_q3_K, quant_q3k, true>;
  if (type == GGMLType::Q6_K) return ref_sub16<block_q6_K, quant_q6k, true>;
  return nullptr;
}

}  // namespace edgellama
