// Scalar reference kernels: the same math as the SIMD kernels (integer dot products per block, the
// same activation quantization) in plain C++. Every SIMD kernel is tested against these.
#include <cmath>
#include <cstring>

#include "../entry_points.h"
#include "../kquant_scales.h"
#include "edgellama/kernels.h"

namespace edgellama {
namespace {

using kq::half_to_float_portable;

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float_portable(h);
}

// ---- activation quantization -------------------------------------------------------------------

void quantize_q8x32(const float* x, void* out, int64_t n) {
  ActQ8x32* y = static_cast<ActQ8x32*>(out);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int q = int(std::nearbyint(x[i] * id));
      y[b].qs[i] = int8_t(q);
      sum += q;
    }
    y[b].d = d;
    y[b].s = d * float(sum);
  }
}

void quantize_q8k(const float* x, void* out, int64_t n) {
  block_q8_K* y = static_cast<block_q8_K*>(out);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float amax = 0.0f;
    for (int i = 0; i < QK_K; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < QK_K; ++i) y[b].qs[i] = int8_t(int(std::nearbyint(x[i] * id)));
    for (int k = 0; k < 16; ++k) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[16 * k + i];
      y[b].bsums[k] = int16_t(s);
    }
    y[b].d = d;
  }
}

// ---- 32-value blocks: dot = d * da * sum(q * a) + c * s ----------------------------------------

struct Legacy {
  int q[32];
  float d, c;
};

void unpack_nibbles(const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0xF;
    q[j + 16] = qs[j] >> 4;
  }
}

void add_high_bits(const uint8_t* qh4, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  for (int j = 0; j < 32; ++j) q[j] |= int((qh >> j) & 1) << 4;
}

void unpack_q4_0(const uint8_t* p, Legacy* u) {
  const block_q4_0* b = reinterpret_cast<const block_q4_0*>(p);
  unpack_nibbles(b->qs, u->q);
  u->d = h2f(p);
  u->c = -8.0f * u->d;
}
void unpack_q4_1(const uint8_t* p, Legacy* u) {
  const block_q4_1* b = reinterpret_cast<const block_q4_1*>(p);
  unpack_nibbles(b->qs, u->q);
  u->d = h2f(p);
  u->c = h2f(p + 2);
}
void unpack_q5_0(const uint8_t* p, Legacy* u) {
  const block_q5_0* b = reinterpret_cast<const block_q5_0*>(p);
  unpack_nibbles(b->qs, u->q);
  add_high_bits(b->qh, u->q);
  u->d = h2f(p);
  u->c = -16.0f * u->d;
}
void unpack_q5_1(const uint8_t* p, Legacy* u) {
  const block_q5_1* b = reinterpret_cast<const block_q5_1*>(p);
  unpack_nibbles(b->qs, u->q);
  add_high_bits(b->qh, u->q);
  u->d = h2f(p);
  u->c = h2f(p + 2);
}
void unpack_q8_0(const uint8_t* p, Legacy* u) {
  const block_q8_0* b = reinterpret_cast<const block_q8_0*>(p);
  for (int j = 0; j < 32; ++j) u->q[j] = b->qs[j];
  u->d = h2f(p);
  u->c = 0.0f;
}

template <void (*Unpack)(const uint8_t*, Legacy*), size_t kBytes>
void gemm_legacy(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                 float* y, size_t ys) {
  const int64_t nb = n / 32;
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as);
      const uint8_t* wr = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        Legacy u;
        Unpack(wr + size_t(b) * kBytes, &u);
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += u.q[j] * ab[b].qs[j];
        acc += u.d * ab[b].d * float(sum) + u.c * ab[b].s;
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

// ---- K-quants ------------------------------------------------------------------------------------

struct KUnpacked {
  int q[256];  // unsigned quants
  kq::Scales s;
  float d, dm;
};

void unpack_q2_K(const uint8_t* p, KUnpacked* u) {
  const block_q2_K* b = reinterpret_cast<const block_q2_K*>(p);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    u->q[e] = (b->qs[h * 32 + l] >> (2 * s)) & 3;
  }
  kq::scales_q2_K(b, &u->s);
  u->d = half_to_float_portable(b->d);
  u->dm = half_to_float_portable(b->dmin);
}
void unpack_q3_K(const uint8_t* p, KUnpacked* u) {
  const block_q3_K* b = reinterpret_cast<const block_q3_K*>(p);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    const int low = (b->qs[h * 32 + l] >> (2 * s)) & 3;
    const int high = (b->hmask[l] >> (h * 4 + s)) & 1;
    u->q[e] = low | (high << 2);
  }
  kq::scales_q3_K(b, &u->s);
  u->d = u->dm = half_to_float_portable(b->d);
}
void unpack_q4_K(const uint8_t* p, KUnpacked* u) {
  const block_q4_K* b = reinterpret_cast<const block_q4_K*>(p);
  for (int c = 0; c < 8; ++c)
    for (int l = 0; l < 32; ++l) u->q[32 * c + l] = (b->qs[32 * (c / 2) + l] >> (4 * (c % 2))) & 0xF;
  kq::scales_q45_K(b->scales, &u->s);
  u->d = half_to_float_portable(b->d);
  u->dm = half_to_float_portable(b->dmin);
}
void unpack_q5_K(const uint8_t* p, KUnpacked* u) {
  const block_q5_K* b = reinterpret_cast<const block_q5_K*>(p);
  for (int c = 0; c < 8; ++c)
    for (int l = 0; l < 32; ++l)
      u->q[32 * c + l] = ((b->qs[32 * (c / 2) + l] >> (4 * (c % 2))) & 0xF) | (((b->qh[l] >> c) & 1) << 4);
  kq::scales_q45_K(b->scales, &u->s);
  u->d = half_to_float_portable(b->d);
  u->dm = half_to_float_portable(b->dmin);
}
void unpack_q6_K(const uint8_t* p, KUnpacked* u) {
  const block_q6_K* b = reinterpret_cast<const block_q6_K*>(p);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128;
    const int low = (b->ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
    const int high = (b->qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
    u->q[e] = low | (high << 4);
  }
  kq::scales_q6_K(b, &u->s);
  u->d = u->dm = half_to_float_portable(b->d);
}

template <void (*Unpack)(const uint8_t*, KUnpacked*), size_t kBytes>
void gemm_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
            size_t ys) {
  const int64_t nb = n / QK_K;
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) {
      const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as);
      const uint8_t* wr = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        KUnpacked u;
        Unpack(wr + size_t(b) * kBytes, &u);
        int32_t sum = 0, msum = 0;
        for (int k = 0; k < 16; ++k) {
          int32_t s = 0;
          for (int i = 0; i < 16; ++i) s += u.q[16 * k + i] * ab[b].qs[16 * k + i];
          sum += u.s.sc[k] * s;
          msum += u.s.mn[k] * ab[b].bsums[k];
        }
        acc += u.d * ab[b].d * float(sum) - u.dm * ab[b].d * float(msum);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

// ---- float weights against float activations ----------------------------------------------------

inline float load_f32(const uint8_t* p, int64_t i) {
  float f;
  std::memcpy(&f, p + 4 * i, 4);
  return f;
}
inline float load_f16(const uint8_t* p, int64_t i) { return h2f(p + 2 * i); }
inline float load_bf16(const uint8_t* p, int64_t i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <float (*Load)(const uint8_t*, int64_t)>
void gemm_float(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) {
      const uint8_t* wr = w + size_t(r) * ws;
      const float* x = reinterpret_cast<const float*>(a + size_t(t) * as);
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = 0; i < n; ++i) acc[i % 8] += Load(wr, i) * x[i];
      y[size_t(t) * ys + size_t(r)] =
          ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
  }
}

constexpr KernelSet make_scalar() {
  KernelSet k{};
  k.name = "scalar";
  k.quantize_q8x32 = quantize_q8x32;
  k.quantize_q8k = quantize_q8k;
  k.gemm[int(GGMLType::F32)] = gemm_float<load_f32>;
  k.gemm[int(GGMLType::F16)] = gemm_float<load_f16>;
  k.gemm[int(GGMLType::BF16)] = gemm_float<load_bf16>;
  k.gemm[int(GGMLType::Q4_0)] = gemm_legacy<unpack_q4_0, sizeof(block_q4_0)>;
  k.gemm[int(GGMLType::Q4_1)] = gemm_legacy<unpack_q4_1, sizeof(block_q4_1)>;
  k.gemm[int(GGMLType::Q5_0)] = gemm_legacy<unpack_q5_0, sizeof(block_q5_0)>;
  k.gemm[int(GGMLType::Q5_1)] = gemm_legacy<unpack_q5_1, sizeof(block_q5_1)>;
  k.gemm[int(GGMLType::Q8_0)] = gemm_legacy<unpack_q8_0, sizeof(block_q8_0)>;
  k.gemm[int(GGMLType::Q2_K)] = gemm_k<unpack_q2_K, sizeof(block_q2_K)>;
  k.gemm[int(GGMLType::Q3_K)] = gemm_k<unpack_q3_K, sizeof(block_q3_K)>;
  k.gemm[int(GGMLType::Q4_K)] = gemm_k<unpack_q4_K, sizeof(block_q4_K)>;
  k.gemm[int(GGMLType::Q5_K)] = gemm_k<unpack_q5_K, sizeof(block_q5_K)>;
  k.gemm[int(GGMLType::Q6_K)] = gemm_k<unpack_q6_K, sizeof(block_q6_K)>;
  k.gemm[int(GGMLType::IQ4_NL)] = scalar_gemm_iq4_nl;  // iquant_scalar.cpp
  k.gemm[int(GGMLType::IQ4_XS)] = scalar_gemm_iq4_xs;
  k.gemm[int(GGMLType::TQ1_0)] = scalar_gemm_tq1_0;
  k.gemm[int(GGMLType::IQ2_XXS)] = scalar_gemm_iq2_xxs;
  k.gemm[int(GGMLType::IQ2_XS)] = scalar_gemm_iq2_xs;
  k.gemm[int(GGMLType::IQ2_S)] = scalar_gemm_iq2_s;
  k.gemm[int(GGMLType::IQ3_XXS)] = scalar_gemm_iq3_xxs;
  k.gemm[int(GGMLType::IQ3_S)] = scalar_gemm_iq3_s;
  k.gemm[int(GGMLType::IQ1_S)] = scalar_gemm_iq1_s;
  k.gemm[int(GGMLType::IQ1_M)] = scalar_gemm_iq1_m;
  k.gemm[int(GGMLType::TQ2_0)] = scalar_gemm_tq2_0;
  k.gemm[int(GGMLType::MXFP4)] = scalar_gemm_mxfp4;
  k.attn_tile = scalar_attention_tile;
  k.silu_mul = scalar_silu_mul;
  return k;
}

}  // namespace

const KernelSet kScalarKernels = make_scalar();

}  // namespace edgellama
