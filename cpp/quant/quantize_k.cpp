// K-quant quantizers (256-value super-blocks). Per super-block:
//  1. every sub-block gets its own best float scale (and min) from the weighted searches in
//     quantize.cpp;
//  2. those scales (and mins) are quantized against one half-precision super-block scale;
//  3. every sub-block tries its quantized scale/min and their neighbours (+-1), re-choosing the
//     levels for each, and keeps the pair with the smallest weighted error.
// The reference (from_float) of each type is the same search with uniform weights.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "edgellama/fp16.h"
#include "edgellama/quant_blocks.h"
#include "quantize.h"

namespace edgellama {

using namespace detail;

namespace {

// Signed value of largest magnitude among v[0..n).
float signed_max(const float* v, int n) {
  float amax = 0.0f, s = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(v[i]) > amax) {
      amax = std::fabs(v[i]);
      s = v[i];
    }
  }
  return s;
}

// Asymmetric K-quant super-block: NSUB sub-blocks of SUB values, levels 0..NMAX, scales and mins
// as unsigned integers 0..SMAX against d and dmin. Output: levels, integer scales, mins, d, dmin.
template <int NSUB, int SUB, int NMAX, int SMAX>
void kquant_asym(const float* x, const float* imp, uint8_t* L, uint8_t* sc, uint8_t* mc, uint16_t* d_h,
                 uint16_t* dmin_h) {
  float w[QK_K];
  float s[NSUB], m[NSUB];
  for (int j = 0; j < NSUB; ++j) block_weights(SUB, imp ? imp + j * SUB : nullptr, w + j * SUB);
  float max_s = 0.0f, max_m = 0.0f;
  for (int j = 0; j < NSUB; ++j) {
    s[j] = search_asym(SUB, x + j * SUB, w + j * SUB, NMAX, true, nullptr, &m[j]);  // levels: below
    m[j] = -m[j];  // stored as a non-negative amount subtracted
    max_s = std::max(max_s, s[j]);
    max_m = std::max(max_m, m[j]);
  }
  *d_h = float_to_fp16(max_s / SMAX);
  *dmin_h = float_to_fp16(max_m / SMAX);
  const float d = fp16_to_float(*d_h), dmin = fp16_to_float(*dmin_h);
  for (int j = 0; j < NSUB; ++j) {
    const float* xs = x + j * SUB;
    const float* ws = w + j * SUB;
    const int sc0 = d > 0 ? clampi(nearest_int(s[j] / d), 0, SMAX) : 0;
    const int mc0 = dmin > 0 ? clampi(nearest_int(m[j] / dmin), 0, SMAX) : 0;
    // the (up to 9) neighbours' errors in one batch, compared in the order listed
    int ca[9], cb[9], nc = 0;
    float dls[9], mls[9];
    for (int ds = -1; ds <= 1; ++ds) {
      const int a = sc0 + ds;
      if (a < 0 || a > SMAX) continue;
      for (int dm = -1; dm <= 1; ++dm) {
        const int b = mc0 + dm;
        if (b < 0 || b > SMAX) continue;
        ca[nc] = a;
        cb[nc] = b;
        dls[nc] = d * float(a);
        mls[nc] = dmin * float(b);
        ++nc;
      }
    }
    double errs[9];
    error_asym_many(SUB, xs, ws, dls, mls, nc, NMAX, errs);
    double best = INFINITY;
    sc[j] = uint8_t(sc0);
    mc[j] = uint8_t(mc0);
    for (int c = 0; c < nc; ++c) {
      if (errs[c] < best) {
        best = errs[c];
        sc[j] = uint8_t(ca[c]);
        mc[j] = uint8_t(cb[c]);
      }
    }
    levels_asym(SUB, xs, ws, d * float(sc[j]), dmin * float(mc[j]), NMAX, L + j * SUB);
  }
}

// Symmetric K-quant super-block: levels LO..HI, signed integer scales SLO..SHI against d.
template <int NSUB, int SUB, int LO, int HI, int SLO, int SHI>
void kquant_sym(const float* x, const float* imp, int8_t* L, int* sc, uint16_t* d_h) {
  float w[QK_K];
  float s[NSUB];
  for (int j = 0; j < NSUB; ++j) block_weights(SUB, imp ? imp + j * SUB : nullptr, w + j * SUB);
  for (int j = 0; j < NSUB; ++j) s[j] = search_sym(SUB, x + j * SUB, w + j * SUB, LO, HI, nullptr);  // levels: below
  const float vmax = signed_max(s, NSUB);
  // The largest scale maps to the negative end of the integer range (it has one more value).
  *d_h = float_to_fp16(vmax / float(SLO));
  const float d = fp16_to_float(*d_h);
  for (int j = 0; j < NSUB; ++j) {
    const float* xs = x + j * SUB;
    const float* ws = w + j * SUB;
    const int sc0 = d != 0.0f ? clampi(nearest_int(s[j] / d), SLO, SHI) : 0;
    // the (up to 3) neighbours' errors in one batch, compared in the order listed
    int ca[3], nc = 0;
    float dls[3];
    for (int ds = -1; ds <= 1; ++ds) {
      const int a = sc0 + ds;
      if (a < SLO || a > SHI) continue;
      ca[nc] = a;
      dls[nc] = d * float(a);
      ++nc;
    }
    double errs[3];
    error_sym_many(SUB, xs, ws, dls, nc, LO, HI, errs);
    double best = INFINITY;
    sc[j] = sc0;
    for (int c = 0; c < nc; ++c) {
      if (errs[c] < best) {
        best = errs[c];
        sc[j] = ca[c];
      }
    }
    levels_sym(SUB, xs, ws, d * float(sc[j]), LO, HI, L + j * SUB);
  }
}

// Pack 4-bit scale/min pairs of Q4_K/Q5_K into their 12 bytes (inverse of k_quant_scale_min).
void pack_scale_min_k4(const uint8_t* sc, const uint8_t* mc, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = uint8_t(q[j] | (sc[j] & 63));
      q[j + 4] = uint8_t(q[j + 4] | (mc[j] & 63));
    } else {
      q[j + 4] = uint8_t((sc[j] & 0xF) | ((mc[j] & 0xF) << 4));
      q[j - 4] = uint8_t(q[j - 4] | ((sc[j] >> 4) << 6));
      q[j] = uint8_t(q[j] | ((mc[j] >> 4) << 6));
    }
  }
}

}  // namespace

void quantize_q2_K_search(const float* x, void* y, int64_t n, const float* imp) {
  block_q2_K* b = static_cast<block_q2_K*>(y);
  uint8_t L[QK_K], sc[16], mc[16];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float* im = imp ? imp + i * QK_K : nullptr;
    kquant_asym<16, 16, 3, 15>(x, im, L, sc, mc, &b[i].d, &b[i].dmin);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = uint8_t(sc[j] | (mc[j] << 4));
    // value h * 128 + 32 s + l goes to bits 2s of byte h * 32 + l
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* q = L + h * 128 + l;
        b[i].qs[h * 32 + l] = uint8_t(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
      }
  }
}

void quantize_q3_K_search(const float* x, void* y, int64_t n, const float* imp) {
  block_q3_K* b = static_cast<block_q3_K*>(y);
  int8_t L[QK_K];
  int sc[16];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float* im = imp ? imp + i * QK_K : nullptr;
    kquant_sym<16, 16, -4, 3, -32, 31>(x, im, L, sc, &b[i].d);
    std::memset(b[i].scales, 0, 12);
    for (int j = 0; j < 16; ++j) {
      const int v = sc[j] + 32;  // 0..63
      if (j < 8) {
        b[i].scales[j] = uint8_t(b[i].scales[j] | (v & 0xF));
      } else {
        b[i].scales[j - 8] = uint8_t(b[i].scales[j - 8] | ((v & 0xF) << 4));
      }
      b[i].scales[8 + (j % 4)] = uint8_t(b[i].scales[8 + (j % 4)] | ((v >> 4) << (2 * (j / 4))));
    }
    // level q = L + 4 (0..7) of value h * 128 + 32 s + l: its low 2 bits go to bits 2s of byte
    // h * 32 + l of qs, its bit 2 to bit 4h + s of hmask[l]
    uint8_t q[QK_K];
    for (int e = 0; e < QK_K; ++e) q[e] = uint8_t(L[e] + 4);
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* v = q + h * 128 + l;
        b[i].qs[h * 32 + l] = uint8_t((v[0] & 3) | ((v[32] & 3) << 2) | ((v[64] & 3) << 4) | ((v[96] & 3) << 6));
      }
    for (int l = 0; l < 32; ++l) {
      unsigned m = 0;
      for (int hs = 0; hs < 8; ++hs) m |= unsigned(q[32 * hs + l] >> 2) << hs;  // hs = 4h + s
      b[i].hmask[l] = uint8_t(m);
    }
  }
}

void quantize_q4_K_search(const float* x, void* y, int64_t n, const float* imp) {
  block_q4_K* b = static_cast<block_q4_K*>(y);
  uint8_t L[QK_K], sc[8], mc[8];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float* im = imp ? imp + i * QK_K : nullptr;
    kquant_asym<8, 32, 15, 63>(x, im, L, sc, mc, &b[i].d, &b[i].dmin);
    pack_scale_min_k4(sc, mc, b[i].scales);
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) b[i].qs[32 * k + l] = uint8_t(L[64 * k + l] | (L[64 * k + 32 + l] << 4));
  }
}

void quantize_q5_K_search(const float* x, void* y, int64_t n, const float* imp) {
  block_q5_K* b = static_cast<block_q5_K*>(y);
  uint8_t L[QK_K], sc[8], mc[8];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float* im = imp ? imp + i * QK_K : nullptr;
    kquant_asym<8, 32, 31, 63>(x, im, L, sc, mc, &b[i].d, &b[i].dmin);
    pack_scale_min_k4(sc, mc, b[i].scales);
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * k + l] = uint8_t((L[64 * k + l] & 0xF) | ((L[64 * k + 32 + l] & 0xF) << 4));
    // bit 4 of the level of value 32 sb + l goes to bit sb of qh[l]
    for (int l = 0; l < 32; ++l) {
      unsigned h = 0;
      for (int sb = 0; sb < 8; ++sb) h |= unsigned((L[32 * sb + l] >> 4) & 1) << sb;
      b[i].qh[l] = uint8_t(h);
    }
  }
}

void quantize_q6_K_search(const float* x, void* y, int64_t n, const float* imp) {
  block_q6_K* b = static_cast<block_q6_K*>(y);
  int8_t L[QK_K];
  int sc[16];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float* im = imp ? imp + i * QK_K : nullptr;
    kquant_sym<16, 16, -32, 31, -128, 127>(x, im, L, sc, &b[i].d);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = int8_t(sc[j]);
    // level q = L + 32 (0..63) of value h * 128 + 32 s + l: its low nibble goes to nibble s / 2 of
    // ql[h * 64 + 32 (s % 2) + l], its top 2 bits to bits 2s of qh[h * 32 + l]
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const int8_t* v = L + h * 128 + l;
        const int q0 = v[0] + 32, q1 = v[32] + 32, q2 = v[64] + 32, q3 = v[96] + 32;
        b[i].ql[h * 64 + l] = uint8_t((q0 & 0xF) | ((q2 & 0xF) << 4));
        b[i].ql[h * 64 + 32 + l] = uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4));
        b[i].qh[h * 32 + l] = uint8_t((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
      }
  }
}

void quantize_row_q2_K_ref(const float* x, void* y, int64_t n) { quantize_q2_K_search(x, y, n, nullptr); }
void quantize_row_q3_K_ref(const float* x, void* y, int64_t n) { quantize_q3_K_search(x, y, n, nullptr); }
void quantize_row_q4_K_ref(const float* x, void* y, int64_t n) { quantize_q4_K_search(x, y, n, nullptr); }
void quantize_row_q5_K_ref(const float* x, void* y, int64_t n) { quantize_q5_K_search(x, y, n, nullptr); }
void quantize_row_q6_K_ref(const float* x, void* y, int64_t n) { quantize_q6_K_search(x, y, n, nullptr); }

// Q8_K (activation format of the K-quants): d = max / -128 like ggml, sums of 16 per group.
void quantize_row_q8_K_ref(const float* x, void* y, int64_t n) {
  block_q8_K* b = static_cast<block_q8_K*>(y);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float vmax = signed_max(x, QK_K);
    if (vmax == 0.0f) {
      std::memset(&b[i], 0, sizeof b[i]);
      continue;
    }
    const float iscale = -128.0f / vmax;
    for (int j = 0; j < QK_K; ++j) b[i].qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b[i].qs[g * 16 + j];
      b[i].bsums[g] = int16_t(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

}  // namespace edgellama
