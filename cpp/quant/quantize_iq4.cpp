// IQ4_NL and IQ4_XS quantizers. Both store, per 32 values, 4-bit indices into the 16 non-uniform
// levels iq::kIq4Values (-127 .. 113) times a scale; IQ4_NL has one fp16 scale per 32 values, IQ4_XS
// one fp16 scale per 256 values times a 6-bit signed integer (-32..31) per 32.
//
// Per 32 values the scale is chosen by a search that minimises the weighted squared error
// sum_i w_i (x_i - d * level(L_i))^2 with (imp = the imatrix column weight per value, or 1 without one;
// see row_weights below)
//   w_i = (imp_i + kImportanceShrink * mean(imp)) * sqrt(sigma2 + x_i^2),  sigma2 = 2 mean(x^2) over the row:
// the imatrix is an estimate from a few thousand calibration tokens, so it is shrunk towards its row
// mean (columns that were quiet in calibration still count), and, as llama.cpp's i-quant search does,
// sharpened towards large values. Both lowered the KL against the source on SmolLM2 (issue 17: an
// IQ1_M file, whose tensors are mostly IQ4_NL, 1.227 -> 1.150; the plain imatrix weighting was the
// better fit to the imatrix but the worse model). Without an imatrix the sharpening alone (w = 1 before)
// took TinyLlama-shape random F16 -> IQ4_NL from KL 0.15808 to 0.15648 (llama-quantize 0.15634).
//   candidates: d such that the value of largest magnitude lands on (or near) either end level:
//     1/d = (end + k) / xmax, end in {-127, 113}, k in -7..7 (the levels are asymmetric, so both
//     signs of d are tried); for each candidate every value takes its nearest level and d is refit
//     by least squares for those levels, d = sum w x q / sum w q^2; the candidate with the largest
//     (sum w x q)^2 / sum w q^2 (= the smallest error for its levels) wins.
//   the winner is rounded to what the block stores and the levels re-chosen for the stored scale.
// IQ4_XS then puts the 8 sub-block scales on one fp16 super-block scale D = -max/t (the scale of
// largest magnitude maps to -t, the end with the larger range), tries each sub-block's integer
// scale and its neighbours (+-1), keeping the one with the smallest error, and keeps the t in
// {32, 31.5, 31} with the smallest total error (TinyLlama-shape random F16, no imatrix: KL 0.16692
// with t = 32 alone -> 0.16044; llama-quantize 0.16239).
// (llama.cpp's quantize_row_iq4_nl_impl searches the same kind of candidates; this is our own
// implementation of the idea, with a lookup table for the nearest level.)
#include <cmath>
#include <cstring>
#include <algorithm>
#include <initializer_list>
#include <vector>

#include "edgellama/fp16.h"
#include "edgellama/iquant_blocks.h"
#include "quantize.h"

namespace edgellama {

using namespace detail;

namespace {

using iq::kIq4Values;

// Nearest level index for v, by the half-unit interval of v: the levels are integers, so every
// midpoint between two neighbours is a multiple of 1/2 and one entry per [k/2, (k+1)/2) is exact
// (a value exactly on a midpoint takes the upper level).
struct NearestLevel {
  uint8_t idx[512];  // interval k/2 .. (k+1)/2 for k = -256 .. 255
  NearestLevel() : idx{} {
    for (int k = -256; k < 256; ++k) {
      const float v = 0.5f * float(k) + 0.25f;  // inside the interval, never on a midpoint
      int best = 0;
      for (int i = 1; i < 16; ++i)
        if (std::fabs(v - float(kIq4Values[i])) < std::fabs(v - float(kIq4Values[best]))) best = i;
      idx[k + 256] = uint8_t(best);
    }
  }
  int operator()(float v) const {
    const float t = 2.0f * v;
    if (!(t >= -256.0f)) return 0;  // also NaN
    if (t >= 255.0f) return 15;
    return idx[int(std::floor(t)) + 256];
  }
};

const NearestLevel& nearest_level() {
  static const NearestLevel table;
  return table;
}

constexpr int kTries = 7;
constexpr float kTinyBlock = 1e-15f;  // below this max |x| a sub-block is stored as zeros

// Weighted error of x ~= d * level(L) with each L the nearest level to x / d.
double levels_for(const float* x, const float* w, float d, uint8_t* L) {
  const NearestLevel& near = nearest_level();
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  double err = 0.0;
  for (int i = 0; i < 32; ++i) {
    L[i] = uint8_t(near(id * x[i]));
    const double e = double(x[i]) - double(d) * kIq4Values[L[i]];
    err += w[i] * e * e;
  }
  return err;
}

// Best float scale for 32 values (the search described at the top); 0 for an all-tiny block.
float best_scale(const float* x, const float* w) {
  const NearestLevel& near = nearest_level();
  float amax = 0.0f, xmax = 0.0f;
  for (int i = 0; i < 32; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      xmax = x[i];
    }
  if (!(amax >= kTinyBlock) || !std::isfinite(amax)) return 0.0f;
  float best_d = 0.0f, best_score = -1.0f;
  for (const int end : {int(kIq4Values[0]), int(kIq4Values[15])}) {
    for (int k = -kTries; k <= kTries; ++k) {
      const float id = float(end + k) / xmax;
      float sxq = 0.0f, sqq = 0.0f;
      for (int i = 0; i < 32; ++i) {
        const float q = kIq4Values[near(id * x[i])];
        sxq += w[i] * x[i] * q;
        sqq += w[i] * q * q;
      }
      if (sqq > 0.0f && sxq * sxq > best_score * sqq) {
        best_score = sxq * sxq / sqq;
        best_d = sxq / sqq;
      }
    }
  }
  return best_d;
}

// Weight of a large value relative to the imatrix shrinkage target (see the top): 0.3 of the mean.
// Measured on SmolLM2's IQ1_M file (KL of its IQ4_NL tensors re-quantized): 0 -> 1.207 (sharpening
// only), 0.1 -> 1.170, 0.3 -> 1.150, 1.0 -> 1.160.
constexpr double kImportanceShrink = 0.3;

// The search weights of a row of n values (the formula at the top; without importance imp = 1).
void row_weights(const float* x, const float* importance, int64_t n, float* w) {
  auto imp = [importance](int64_t i) { return importance ? double(importance[i]) : 1.0; };
  double sum_imp = 0, sum_x2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum_imp += imp(i);
    sum_x2 += double(x[i]) * x[i];
  }
  if (!(sum_imp > 0) || !std::isfinite(sum_x2)) {  // all-zero importance, or a non-finite row
    block_weights(int(n), nullptr, w);
    return;
  }
  // On the row's own scale (x / max|x|: sqrt(sigma2 + x^2) neither overflows for 1e30 rows nor
  // underflows for subnormal ones, and scaling the row does not change the weights).
  double amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(double(x[i])));
  if (!(amax > 0)) {
    for (int64_t i = 0; i < n; ++i) w[i] = float(imp(i) + kImportanceShrink * sum_imp / double(n));
    return;
  }
  const double sigma2 = 2.0 * (sum_x2 / (amax * amax)) / double(n);
  const double floor = kImportanceShrink * sum_imp / double(n);
  for (int64_t i = 0; i < n; ++i) {
    const double xn = x[i] / amax;
    w[i] = float((imp(i) + floor) * std::sqrt(sigma2 + xn * xn));
  }
}

uint16_t to_fp16_clamped(float d) {
  const float kMax = 65504.0f;
  return float_to_fp16(d > kMax ? kMax : (d < -kMax ? -kMax : d));
}

// IQ4_NL's stored scale, refined after the search: the search picks a float scale by its levels'
// score, but the block stores it in fp16 and its levels are re-chosen for that scale, which can move
// some of them. Until nothing improves (at most 8 rounds; 1-2 almost always): the least-squares
// scale of the current levels and the two fp16 neighbours of the stored scale are tried, each with
// its own nearest levels, and the lowest weighted error is kept, so the stored scale is never worse
// than the search's own and no fp16 neighbour beats it (test_quantize_iq4; before, 3-4 % of the
// blocks of random rows had a better neighbour). IQ4_XS keeps its scales (their grid is D x integer).
uint16_t refine_nl_scale(const float* x, const float* w, uint16_t dh, uint8_t* L) {
  double best_err = levels_for(x, w, fp16_to_float(dh), L);
  uint8_t tmp[32];
  for (int it = 0; it < 8; ++it) {
    double sxq = 0, sqq = 0;
    for (int i = 0; i < 32; ++i) {
      const double q = kIq4Values[L[i]];
      sxq += double(w[i]) * x[i] * q;
      sqq += double(w[i]) * q * q;
    }
    uint16_t cand[3];
    int nc = 0;
    if (sqq > 0 && std::isfinite(sxq)) cand[nc++] = to_fp16_clamped(float(sxq / sqq));
    const uint16_t mag = dh & 0x7fff, sign = dh & 0x8000;
    if (mag > 0) cand[nc++] = uint16_t(sign | (mag - 1));
    if (mag + 1 < 0x7c00) cand[nc++] = uint16_t(sign | (mag + 1));
    bool improved = false;
    for (int c = 0; c < nc; ++c) {
      if (cand[c] == dh) continue;
      const double err = levels_for(x, w, fp16_to_float(cand[c]), tmp);
      if (err < best_err) {
        best_err = err;
        dh = cand[c];
        std::memcpy(L, tmp, sizeof tmp);
        improved = true;
      }
    }
    if (!improved) break;
  }
  return dh;
}

void pack_nibbles(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
}

}  // namespace

void quantize_iq4_nl_search(const float* x, void* y, int64_t n, const float* imp) {
  iq::block_iq4_nl* b = static_cast<iq::block_iq4_nl*>(y);
  std::vector<float> weights(static_cast<size_t>(n));
  row_weights(x, imp, n, weights.data());
  uint8_t L[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    const float* w = weights.data() + 32 * i;
    b[i].d = refine_nl_scale(x, w, to_fp16_clamped(best_scale(x, w)), L);
    pack_nibbles(L, b[i].qs);
  }
}

void quantize_iq4_xs_search(const float* x, void* y, int64_t n, const float* imp) {
  iq::block_iq4_xs* b = static_cast<iq::block_iq4_xs*>(y);
  std::vector<float> weights(static_cast<size_t>(n));
  row_weights(x, imp, n, weights.data());
  float s[8];
  uint8_t L[32];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float* w = weights.data() + QK_K * i;
    float smax = 0.0f;
    for (int j = 0; j < 8; ++j) {
      s[j] = best_scale(x + 32 * j, w + 32 * j);
      if (std::fabs(s[j]) > std::fabs(smax)) smax = s[j];
    }
    // Super-block scale candidates: the largest sub-block scale mapped to -32, -31.5 or -31 (a
    // slightly larger D can give every other sub-block a closer integer scale); the candidate
    // whose 8 sub-blocks have the smallest total weighted error is stored.
    int best_ls[8] = {};
    uint16_t best_dh = to_fp16_clamped(-smax / 32.0f);
    double best_total = INFINITY;
    for (const float top : {32.0f, 31.5f, 31.0f}) {
      const uint16_t dh = to_fp16_clamped(-smax / top);
      const float d = fp16_to_float(dh);
      int ls[8];
      double total = 0;
      for (int j = 0; j < 8 && total < best_total; ++j) {
        const float* xs = x + 32 * j;
        const float* ws = w + 32 * j;
        const int l0 = d != 0.0f ? clampi(nearest_int(s[j] / d), -32, 31) : 0;
        ls[j] = l0;
        double best_err = INFINITY;
        for (int l = l0 - 1; l <= l0 + 1; ++l) {
          if (l < -32 || l > 31) continue;
          const double err = levels_for(xs, ws, d * float(l), L);
          if (err < best_err) {
            best_err = err;
            ls[j] = l;
          }
        }
        total += best_err;
      }
      if (total < best_total) {
        best_total = total;
        best_dh = dh;
        std::memcpy(best_ls, ls, sizeof ls);
      }
    }
    b[i].d = best_dh;
    const float d = fp16_to_float(best_dh);
    b[i].scales_h = 0;
    std::memset(b[i].scales_l, 0, sizeof b[i].scales_l);
    for (int j = 0; j < 8; ++j) {
      const int best_l = best_ls[j];
      levels_for(x + 32 * j, w + 32 * j, d * float(best_l), L);
      pack_nibbles(L, b[i].qs + 16 * j);
      const int u = best_l + 32;  // 0..63: low 4 bits in scales_l, high 2 in scales_h
      b[i].scales_l[j / 2] |= uint8_t((u & 0xF) << (4 * (j % 2)));
      b[i].scales_h |= uint16_t((u >> 4) << (2 * j));
    }
  }
}

void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t n) { quantize_iq4_nl_search(x, y, n, nullptr); }
void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t n) { quantize_iq4_xs_search(x, y, n, nullptr); }

}  // namespace edgellama
