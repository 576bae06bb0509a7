// Stand-alone kernel self-test: every SIMD KernelSet this CPU can run (avx2, avx512 on x86, neon on aarch64
// with dotprod, neon_i8mm with i8mm too: also bit for bit against neon) against the scalar reference, on random and extreme data, without Python. Built
// and run by scripts/test_neon_qemu.sh (natively, and cross-compiled for aarch64 under qemu).
//
//   kernel_selftest [--expect-best ISA] [--expect-dispatched ISA] [--expect-dispatch-error]
//                   [--probe-neon] [--probe-i8mm] [--seed N] [--quick]
//
// --expect-best ISA        also fail unless best_isa() is ISA (and, with EDGELLAMA_ISA unset, the
//                          dispatched set too).
// --expect-dispatched ISA  fail unless active_kernels() (which honours EDGELLAMA_ISA) is ISA.
// --expect-dispatch-error  fail unless active_kernels() throws ArgumentError "... not available ..."
//                          (EDGELLAMA_ISA forcing a level this CPU cannot run: an error, never SIGILL).
// --probe-i8mm       the same for the NEON i8mm (SMMLA) Q8_0 gemm with two tokens: SIGILL on a CPU
//                    without i8mm (e.g. qemu -cpu neoverse-n1, which has dotprod).
// --probe-neon       call the NEON Q8_0 gemm directly, bypassing dispatch (aarch64 builds only). On a
//                    CPU without dotprod this must die with SIGILL: it shows that a run which did not
//                    pick "neon" really was on a CPU that cannot run it.
// Exit status 0 = all checks passed; 1 = a mismatch (each one printed); 2 = usage / setup error.
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../kernels/kquant_scales.h"
#include "edgellama/errors.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/iquant_grid_blocks.h"
#include "edgellama/kernels.h"

using namespace edgellama;

namespace {

// ---- weight types --------------------------------------------------------------------------------

struct TypeInfo {
  const char* name;
  GGMLType type;
  int block;           // values per block (1 for float types)
  size_t bytes;        // bytes per block (per value for float types)
  int half_off[2];     // byte offsets of the fp16 scale fields in a block (-1: none)
};

const TypeInfo kTypes[] = {
    {"Q4_0", GGMLType::Q4_0, 32, sizeof(block_q4_0), {0, -1}},
    {"Q4_1", GGMLType::Q4_1, 32, sizeof(block_q4_1), {0, 2}},
    {"Q5_0", GGMLType::Q5_0, 32, sizeof(block_q5_0), {0, -1}},
    {"Q5_1", GGMLType::Q5_1, 32, sizeof(block_q5_1), {0, 2}},
    {"Q8_0", GGMLType::Q8_0, 32, sizeof(block_q8_0), {0, -1}},
    {"Q2_K", GGMLType::Q2_K, 256, sizeof(block_q2_K), {int(offsetof(block_q2_K, d)), int(offsetof(block_q2_K, dmin))}},
    {"Q3_K", GGMLType::Q3_K, 256, sizeof(block_q3_K), {int(offsetof(block_q3_K, d)), -1}},
    {"Q4_K", GGMLType::Q4_K, 256, sizeof(block_q4_K), {int(offsetof(block_q4_K, d)), int(offsetof(block_q4_K, dmin))}},
    {"Q5_K", GGMLType::Q5_K, 256, sizeof(block_q5_K), {int(offsetof(block_q5_K, d)), int(offsetof(block_q5_K, dmin))}},
    {"Q6_K", GGMLType::Q6_K, 256, sizeof(block_q6_K), {int(offsetof(block_q6_K, d)), -1}},
    {"IQ4_NL", GGMLType::IQ4_NL, 32, sizeof(iq::block_iq4_nl), {0, -1}},
    {"MXFP4", GGMLType::MXFP4, 32, sizeof(iq::block_mxfp4), {-1, -1}},  // e8m0 scale: see fill_weights
    {"IQ4_XS", GGMLType::IQ4_XS, 256, sizeof(iq::block_iq4_xs), {0, -1}},
    {"TQ1_0", GGMLType::TQ1_0, 256, sizeof(iq::block_tq1_0), {int(offsetof(iq::block_tq1_0, d)), -1}},
    {"TQ2_0", GGMLType::TQ2_0, 256, sizeof(iq::block_tq2_0), {int(offsetof(iq::block_tq2_0, d)), -1}},
    {"IQ3_XXS", GGMLType::IQ3_XXS, 256, sizeof(iq::block_iq3_xxs), {0, -1}},
    {"IQ3_S", GGMLType::IQ3_S, 256, sizeof(iq::block_iq3_s), {0, -1}},
    {"IQ2_XXS", GGMLType::IQ2_XXS, 256, sizeof(iq::block_iq2_xxs), {0, -1}},
    {"IQ2_XS", GGMLType::IQ2_XS, 256, sizeof(iq::block_iq2_xs), {0, -1}},
    {"IQ2_S", GGMLType::IQ2_S, 256, sizeof(iq::block_iq2_s), {0, -1}},
    {"IQ1_S", GGMLType::IQ1_S, 256, sizeof(iq::block_iq1_s), {0, -1}},
    {"IQ1_M", GGMLType::IQ1_M, 256, sizeof(iq::block_iq1_m), {-1, -1}},  // split fp16 d: see fill_weights
    {"F32", GGMLType::F32, 1, 4, {-1, -1}},
    {"F16", GGMLType::F16, 1, 2, {-1, -1}},
    {"BF16", GGMLType::BF16, 1, 2, {-1, -1}},
};

// Weight byte patterns. For quantized types the quant bytes and the fp16 scales vary separately.
enum class WMode { Random, AllFF, AllZero, Alt7F80, BigScale, TinyScale, ZeroScale };
const char* wmode_name(WMode m) {
  switch (m) {
    case WMode::Random: return "random";
    case WMode::AllFF: return "bytes=0xFF";
    case WMode::AllZero: return "bytes=0x00";
    case WMode::Alt7F80: return "bytes=7F/80";
    case WMode::BigScale: return "scale=65504";
    case WMode::TinyScale: return "scale=subnormal";
    case WMode::ZeroScale: return "scale=0";
  }
  return "?";
}

// Activation float patterns.
enum class XMode { Gauss, Big, Small, AllEqual, Zero, Ties, Spike };
const char* xmode_name(XMode m) {
  switch (m) {
    case XMode::Gauss: return "gauss";
    case XMode::Big: return "gauss*1e15";
    case XMode::Small: return "gauss*1e-15";
    case XMode::AllEqual: return "all-equal";
    case XMode::Zero: return "zeros";
    case XMode::Ties: return "half-integer ties";
    case XMode::Spike: return "one spike";
  }
  return "?";
}

std::mt19937_64 g_rng;

uint16_t random_half(int emin, int emax) {  // finite, exponent field in [emin, emax]
  const uint16_t sign = uint16_t((g_rng() & 1) << 15);
  const uint16_t e = uint16_t(emin + int(g_rng() % uint64_t(emax - emin + 1)));
  return uint16_t(sign | (e << 10) | (g_rng() & 0x3FF));
}

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// One weight row of n values at p.
void fill_weights(const TypeInfo& ti, WMode m, uint8_t* p, int64_t n) {
  if (ti.block == 1) {  // float types: random finite values, sign bits random; patterns via bytes
    for (int64_t i = 0; i < n; ++i) {
      if (ti.type == GGMLType::F32) {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        float f = nd(g_rng);
        if (m == WMode::BigScale) f *= 1e18f;
        if (m == WMode::TinyScale) f *= 1e-18f;
        if (m == WMode::AllZero || m == WMode::ZeroScale) f = 0.0f;
        if (m == WMode::AllFF) f = -3.0f;
        if (m == WMode::Alt7F80) f = (i & 1) ? FLT_MAX / 1e20f : -FLT_MAX / 1e20f;
        std::memcpy(p + 4 * i, &f, 4);
      } else {
        uint16_t h;
        if (ti.type == GGMLType::F16) {
          h = random_half(0, 30);  // everything finite, subnormals included
          if (m == WMode::BigScale) h = uint16_t((h & 0x8000) | 0x7BFF);
          if (m == WMode::TinyScale) h = uint16_t((h & 0x8000) | 0x0001);
        } else {  // bf16: exponent field 100..154 (2^-27 .. 2^27)
          h = uint16_t(((g_rng() & 1) << 15) | ((100 + g_rng() % 55) << 7) | (g_rng() & 0x7F));
          if (m == WMode::BigScale) h = uint16_t((h & 0x8000) | (180 << 7) | 0x7F);
          if (m == WMode::TinyScale) h = uint16_t((h & 0x8000) | 0x0001);  // bf16 subnormal
        }
        if (m == WMode::AllZero || m == WMode::ZeroScale) h = 0;
        if (m == WMode::AllFF) h = 0xBC00;  // a negative constant: -1 (f16), -2^-7 (bf16)
        if (m == WMode::Alt7F80)  // largest magnitude of the range used, alternating sign
          h = ti.type == GGMLType::F16 ? ((i & 1) ? 0x7BFF : 0xFBFF) : ((i & 1) ? 0x5A7F : 0xDA7F);
        put_u16(p + 2 * i, h);
      }
    }
    return;
  }
  const int64_t nb = n / ti.block;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = p + size_t(b) * ti.bytes;
    for (size_t i = 0; i < ti.bytes; ++i) {
      switch (m) {
        case WMode::AllFF: blk[i] = 0xFF; break;
        case WMode::AllZero: blk[i] = 0x00; break;
        case WMode::Alt7F80: blk[i] = (i & 1) ? 0x80 : 0x7F; break;
        default: blk[i] = uint8_t(g_rng());
      }
    }
    if (ti.type == GGMLType::MXFP4) {  // e8m0 exponent byte: 2^-18..2^7, or the scale patterns
      blk[0] = uint8_t(110 + g_rng() % 26);
      if (m == WMode::BigScale) blk[0] = 143;   // 2^15, like fp16's largest
      if (m == WMode::TinyScale) blk[0] = 1;    // 2^-127: subnormal
      if (m == WMode::ZeroScale) blk[0] = 0;    // 2^-128 (e8m0 has no zero)
    }
    if (ti.type == GGMLType::IQ1_M) {  // d: the top nibble of each of the four scale words
      uint16_t h = random_half(5, 16);
      if (m == WMode::BigScale) h = 0x7BFF;
      if (m == WMode::TinyScale) h = 0x0001;
      if (m == WMode::ZeroScale) h = 0;
      uint8_t* sc = blk + offsetof(iq::block_iq1_m, scales);
      for (int w = 0; w < 4; ++w) sc[2 * w + 1] = uint8_t((sc[2 * w + 1] & 0x0F) | (((h >> (4 * w)) & 0xF) << 4));
    }
    for (int k = 0; k < 2; ++k) {
      if (ti.half_off[k] < 0) continue;
      uint16_t h = random_half(5, 16);  // ~1e-3 .. 2, both signs
      if (m == WMode::BigScale) h = 0x7BFF;
      if (m == WMode::TinyScale) h = (k == 0) ? 0x0001 : 0x0400;  // smallest subnormal / normal
      if (m == WMode::ZeroScale) h = 0;
      put_u16(blk + ti.half_off[k], h);
    }
  }
}

void fill_x(XMode m, float* x, int64_t n) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const float scale = std::exp(std::uniform_real_distribution<float>(-3.0f, 3.0f)(g_rng));
  for (int64_t i = 0; i < n; ++i) {
    switch (m) {
      case XMode::Gauss: x[i] = nd(g_rng) * scale; break;
      case XMode::Big: x[i] = nd(g_rng) * 1e15f; break;
      case XMode::Small: x[i] = nd(g_rng) * 1e-15f; break;
      case XMode::AllEqual: x[i] = -0.37f; break;
      case XMode::Zero: x[i] = 0.0f; break;
      // amax 127 -> d = 1, id = 1: every value is an exact .5 tie (round-half-even decides)
      case XMode::Ties: x[i] = (i % 32 == 0) ? 127.0f : float(int64_t(g_rng() % 254) - 127) + 0.5f; break;
      case XMode::Spike: x[i] = (i % 97 == 3) ? 5e3f : nd(g_rng) * 1e-2f; break;
    }
  }
  if (m != XMode::Zero && m != XMode::AllEqual && n > 1) x[n - 1] = -x[n - 1];
}

// ---- comparison ------------------------------------------------------------------------------------

int g_failures = 0;
long g_cases = 0, g_outputs = 0;
double g_worst = 0.0;  // largest |diff| / tolerance seen (for the report)

void fail(const std::string& msg) {
  if (g_failures < 50) std::fprintf(stderr, "MISMATCH: %s\n", msg.c_str());
  ++g_failures;
}

// Tolerance. Both kernels form the same exact integers (int8 x int8 products summed in int32 never
// round: |sum| < 2^31 for every format), but a SIMD kernel may split a block's integer sum into up
// to 8 int32 lanes (AVX2: 8 lanes of 4 products; NEON folds them back to the exact block sum) and
// convert each lane to float on its own. So an output is a sum of N float terms tau_j: per block up
// to 8 lane terms d_w*d_a*S_lane plus, for the activation-sum part, c*s (legacy: 1 term) or
// dm*d_a*mn_k*bsum_k (K-quants: up to 8 lane terms); float types: the n products w_i*x_i. Hence
// N <= 16*nb for quantized types, N = n for float types. Each term is formed with at most 3
// roundings (scale product, int->float conversion when |S| >= 2^24, multiply) and the N terms are
// summed in any order and association, with or without FMA, adding at most N - 1 roundings along
// any path. With u = 2^-24 (float unit roundoff) each kernel is within gamma_(N+2) * M of the exact
// value, where M >= sum_j |tau_j| and gamma_k = k*u/(1-k*u); two kernels agree to within
// 2 * gamma_(N+2) * M. We allow 2 * (N + 4) * u * M * 1.01, plus an absolute floor for terms in
// float's subnormal range (there relative bounds fail; each of ~4N operations is then off by at
// most half the smallest subnormal, 2^-150).
//   M is computed here, independently of the kernels, from absolute values so that it bounds every
// way of splitting the integer sums: M = sum_blocks |d_w| d_a sum_i |sc_k(i)| qmax |a_i|
// + |c s_b| (legacy) or |dm| d_a sum_k |mn_k| |bsum_k| (K-quants), qmax = the largest quant
// magnitude of the format; float types: M = sum_i |w_i x_i|. Using qmax instead of the actual quant
// overestimates M by about 2x on random data, which keeps the bound sound and still ~1e-5 relative
// for n = 512: a single wrong quant or scale moves the result by far more.
double tolerance(int64_t n_terms, double m) {
  const double u = std::ldexp(1.0, -24);
  return 2.0 * double(n_terms + 4) * u * m * 1.01 + 4.0 * double(n_terms + 4) * std::ldexp(1.0, -150);
}

double half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kq::half_to_float_portable(h);
}

int qmax_of(GGMLType t) {
  switch (t) {
    case GGMLType::Q4_0: case GGMLType::Q4_1: case GGMLType::Q4_K: return 15;
    case GGMLType::Q5_0: case GGMLType::Q5_1: case GGMLType::Q5_K: return 31;
    case GGMLType::Q8_0: return 128;
    case GGMLType::Q2_K: return 3;
    case GGMLType::Q3_K: return 7;
    case GGMLType::Q6_K: return 63;
    case GGMLType::IQ4_NL: case GGMLType::IQ4_XS: return 127;
    case GGMLType::MXFP4: return 12;
    case GGMLType::TQ1_0: return 1;
    case GGMLType::TQ2_0: return 2;
    case GGMLType::IQ2_XXS: case GGMLType::IQ2_XS: case GGMLType::IQ2_S: return 0x2b;  // grid levels 8, 25, 43
    case GGMLType::IQ3_XXS: return 0x3e;                                                 // ... up to 62
    case GGMLType::IQ3_S: return 15;
    case GGMLType::IQ1_S: case GGMLType::IQ1_M: return 9;  // 8 * grid +- 1
    default: return 0;
  }
}

bool is_iquant(GGMLType t) {
  return t == GGMLType::IQ4_NL || t == GGMLType::IQ4_XS || t == GGMLType::TQ1_0 || t == GGMLType::TQ2_0 ||
         t == GGMLType::MXFP4;
}

// M for the formats of iquant_blocks.h: no offset term; per 32 values one scale (the block's, or
// IQ4_XS's d times its sub-block scale |ls - 32|) times qmax times sum |a|.
double magnitude_iquant(const TypeInfo& ti, const uint8_t* w, const uint8_t* a, int64_t nb, double qmax) {
  double m = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + size_t(b) * ti.bytes;
    const double d = ti.type == GGMLType::MXFP4 ? double(iq::e8m0_to_float_half(blk[0]))
                                                : std::fabs(half_at(blk + ti.half_off[0]));
    if (ti.block == 32) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a) + b;
      double sa = 0.0;
      for (int i = 0; i < 32; ++i) sa += std::abs(int(ab->qs[i]));
      m += d * double(ab->d) * qmax * sa;
      continue;
    }
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a) + b;
    for (int j = 0; j < 8; ++j) {
      const double sc = ti.type == GGMLType::IQ4_XS
                            ? std::abs(iq::iq4_xs_scale(reinterpret_cast<const iq::block_iq4_xs*>(blk), j))
                            : 1.0;
      double sa = 0.0;
      for (int i = 0; i < 32; ++i) sa += std::abs(int(ab->qs[32 * j + i]));
      m += d * double(ab->d) * sc * qmax * sa;
    }
  }
  return m;
}

bool is_grid(GGMLType t) {
  switch (t) {
    case GGMLType::IQ3_XXS: case GGMLType::IQ3_S: case GGMLType::IQ2_XXS: case GGMLType::IQ2_XS:
    case GGMLType::IQ2_S: case GGMLType::IQ1_S: case GGMLType::IQ1_M: return true;
    default: return false;
  }
}

// M for the grid i-quants: per 16 values |d| grid_scale (2 ls + 1) qmax sum |a| (d and ls read through
// the shared unpacking; qmax is the format's largest level, not the block's).
double magnitude_grid(const TypeInfo& ti, const uint8_t* w, const uint8_t* a, int64_t nb, double qmax) {
  double m = 0.0;
  iq::GridBlock u;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + size_t(b) * ti.bytes;
    switch (ti.type) {
      case GGMLType::IQ3_XXS: iq::unpack_iq3_xxs(blk, &u); break;
      case GGMLType::IQ3_S: iq::unpack_iq3_s(blk, &u); break;
      case GGMLType::IQ2_XXS: iq::unpack_iq2_xxs(blk, &u); break;
      case GGMLType::IQ2_XS: iq::unpack_iq2_xs(blk, &u); break;
      case GGMLType::IQ2_S: iq::unpack_iq2_s(blk, &u); break;
      case GGMLType::IQ1_S: iq::unpack_iq1_s(blk, &u); break;
      default: iq::unpack_iq1_m(blk, &u); break;
    }
    const double d = std::fabs(double(kq::half_to_float_portable(u.d))) * iq::grid_scale(ti.type);
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a) + b;
    for (int j = 0; j < 16; ++j) {
      double sa = 0.0;
      for (int i = 0; i < 16; ++i) sa += std::abs(int(ab->qs[16 * j + i]));
      m += d * double(ab->d) * (2 * u.ls[j] + 1) * qmax * sa;
    }
  }
  return m;
}

// M (see tolerance()) for weight row w and activation row a (already in the kernel's format).
double magnitude(const TypeInfo& ti, const uint8_t* w, const uint8_t* a, int64_t n) {
  double m = 0.0;
  if (ti.block == 1) {
    const float* x = reinterpret_cast<const float*>(a);
    for (int64_t i = 0; i < n; ++i) {
      double wi;
      if (ti.type == GGMLType::F32) {
        float f;
        std::memcpy(&f, w + 4 * i, 4);
        wi = f;
      } else if (ti.type == GGMLType::F16) {
        wi = half_at(w + 2 * i);
      } else {
        uint16_t h;
        std::memcpy(&h, w + 2 * i, 2);
        const uint32_t bits = uint32_t(h) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        wi = f;
      }
      m += std::fabs(wi * double(x[i]));
    }
    return m;
  }
  const double qmax = qmax_of(ti.type);
  const int64_t nb = n / ti.block;
  if (is_iquant(ti.type)) return magnitude_iquant(ti, w, a, nb, qmax);
  if (is_grid(ti.type)) return magnitude_grid(ti, w, a, nb, qmax);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + size_t(b) * ti.bytes;
    const double d = std::fabs(half_at(blk + ti.half_off[0]));
    if (ti.block == 32) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a) + b;
      double sa = 0.0;
      for (int i = 0; i < 32; ++i) sa += std::abs(int(ab->qs[i]));
      double c = 0.0;
      if (ti.type == GGMLType::Q4_0) c = 8.0 * d;
      if (ti.type == GGMLType::Q5_0) c = 16.0 * d;
      if (ti.half_off[1] >= 0) c = std::fabs(half_at(blk + ti.half_off[1]));
      m += d * double(ab->d) * qmax * sa + c * std::fabs(double(ab->s));
    } else {
      const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a) + b;
      kq::Scales sc;
      switch (ti.type) {
        case GGMLType::Q2_K: kq::scales_q2_K(reinterpret_cast<const block_q2_K*>(blk), &sc); break;
        case GGMLType::Q3_K: kq::scales_q3_K(reinterpret_cast<const block_q3_K*>(blk), &sc); break;
        case GGMLType::Q4_K: kq::scales_q45_K(reinterpret_cast<const block_q4_K*>(blk)->scales, &sc); break;
        case GGMLType::Q5_K: kq::scales_q45_K(reinterpret_cast<const block_q5_K*>(blk)->scales, &sc); break;
        default: kq::scales_q6_K(reinterpret_cast<const block_q6_K*>(blk), &sc); break;
      }
      const double dm = ti.half_off[1] >= 0 ? std::fabs(half_at(blk + ti.half_off[1])) : d;
      double si = 0.0, so = 0.0;
      for (int k = 0; k < 16; ++k) {
        double sa = 0.0;
        for (int i = 0; i < 16; ++i) sa += std::abs(int(ab->qs[16 * k + i]));
        si += std::abs(int(sc.sc[k])) * qmax * sa;
        so += std::abs(int(sc.mn[k])) * std::abs(int(ab->bsums[k]));
      }
      m += d * double(ab->d) * si + dm * double(ab->d) * so;
    }
  }
  return m;
}

struct Shape {
  int rows, toks;
};

long g_identical_checked = 0;  // cases compared bit for bit with a lower tier

// The set whose outputs `isa` must reproduce bit for bit (nullptr: only the scalar tolerance).
const char* bit_identical_to(const KernelSet& isa) {
  return std::string(isa.name) == "neon_i8mm" ? "neon" : nullptr;
}

void check_gemm(const KernelSet& isa, const TypeInfo& ti, int64_t n, const Shape& sh, WMode wm, XMode xm) {
  const KernelSet& ref = kScalarKernels;
  const int id = int(ti.type);
  const ActFormat af = act_format(ti.type);
  const size_t row_bytes = ti.block == 1 ? size_t(n) * ti.bytes : size_t(n / ti.block) * ti.bytes;
  const size_t ws = row_bytes + 8 * (g_rng() % 3);  // padded strides: the kernels must honour them
  const size_t arow = act_row_bytes(af, n);
  const size_t as = arow + 4 * (g_rng() % 3);
  const size_t ys = size_t(sh.rows) + (g_rng() % 3);

  std::vector<uint8_t> w(ws * size_t(sh.rows) + 64);
  for (int r = 0; r < sh.rows; ++r) fill_weights(ti, wm, w.data() + size_t(r) * ws, n);
  std::vector<float> x(size_t(sh.toks) * size_t(n));
  for (int t = 0; t < sh.toks; ++t) fill_x(xm, x.data() + size_t(t) * size_t(n), n);

  // Activations: quantized with the scalar reference; the ISA's quantizer must give the same bytes.
  std::vector<uint8_t> a(as * size_t(sh.toks) + 64, 0);
  for (int t = 0; t < sh.toks; ++t) {
    const float* xt = x.data() + size_t(t) * size_t(n);
    uint8_t* at = a.data() + size_t(t) * as;
    if (af == ActFormat::F32) {
      std::memcpy(at, xt, arow);
      continue;
    }
    const QuantizeActFn qr = af == ActFormat::Q8x32 ? ref.quantize_q8x32 : ref.quantize_q8k;
    const QuantizeActFn qi = af == ActFormat::Q8x32 ? isa.quantize_q8x32 : isa.quantize_q8k;
    qr(xt, at, n);
    std::vector<uint8_t> mine(arow + 1, 0xAB);
    qi(xt, mine.data(), n);
    if (std::memcmp(mine.data(), at, arow) != 0 || mine[arow] != 0xAB) {
      size_t off = 0;
      while (off < arow && mine[off] == at[off]) ++off;
      fail(std::string(isa.name) + " quantize_" + (af == ActFormat::Q8x32 ? "q8x32" : "q8k") + " n=" +
           std::to_string(n) + " x=" + xmode_name(xm) + ": bytes differ from scalar at offset " + std::to_string(off));
    }
  }

  const float kSentinel = -1234.5f;
  std::vector<float> y_ref(ys * size_t(sh.toks), kSentinel), y_isa(ys * size_t(sh.toks), kSentinel);
  ref.gemm[id](n, w.data(), ws, sh.rows, a.data(), as, sh.toks, y_ref.data(), ys);
  isa.gemm[id](n, w.data(), ws, sh.rows, a.data(), as, sh.toks, y_isa.data(), ys);
  ++g_cases;
  // A tier that only reorganizes the integer work of the tier below it must give its bits: the
  // SMMLA kernels (neon_i8mm) form the same int32 sums as the SDOT kernels (neon) and apply the same
  // float operations per output, so the outputs must be identical, not just within tolerance.
  if (const char* same_as = bit_identical_to(isa)) {
    const KernelSet* base = kernels_for(same_as);
    if (!base) {
      fail(std::string(isa.name) + " is available but " + same_as + " is not");
    } else {
      std::vector<float> y_base(ys * size_t(sh.toks), kSentinel);
      base->gemm[id](n, w.data(), ws, sh.rows, a.data(), as, sh.toks, y_base.data(), ys);
      ++g_identical_checked;
      for (size_t i = 0; i < y_base.size(); ++i)
        if (std::memcmp(&y_base[i], &y_isa[i], sizeof(float)) != 0) {
          char buf[240];
          std::snprintf(buf, sizeof buf, "%s %s n=%lld rows=%d toks=%d w=%s x=%s out[%zu]: %.9g, %s gives %.9g (must be bit-identical)",
                        isa.name, ti.name, (long long)n, sh.rows, sh.toks, wmode_name(wm), xmode_name(xm), i,
                        double(y_isa[i]), same_as, double(y_base[i]));
          fail(buf);
          break;
        }
    }
  }

  // Magnitude M per output and the number of float terms N (see tolerance()).
  const int64_t n_terms = ti.block == 1 ? n : 16 * (n / ti.block);
  std::vector<double> mag(ys * size_t(sh.toks), 0.0);
  for (int t = 0; t < sh.toks; ++t)
    for (int r = 0; r < sh.rows; ++r)
      mag[size_t(t) * ys + size_t(r)] = magnitude(ti, w.data() + size_t(r) * ws, a.data() + size_t(t) * as, n);

  for (int t = 0; t < sh.toks; ++t)
    for (size_t r = 0; r < ys; ++r) {
      const size_t i = size_t(t) * ys + r;
      const std::string where = std::string(isa.name) + " " + ti.name + " n=" + std::to_string(n) + " rows=" +
                                std::to_string(sh.rows) + " toks=" + std::to_string(sh.toks) + " w=" + wmode_name(wm) +
                                " x=" + xmode_name(xm) + " out[t=" + std::to_string(t) + "][r=" + std::to_string(r) + "]";
      if (int(r) >= sh.rows) {  // padding between output rows must not be written
        if (y_isa[i] != kSentinel) fail(where + ": wrote outside the tile (stride padding)");
        continue;
      }
      ++g_outputs;
      const double yr = y_ref[i], yi = y_isa[i];
      if (!std::isfinite(yr) || !std::isfinite(yi)) {
        fail(where + ": non-finite result (scalar " + std::to_string(yr) + ", simd " + std::to_string(yi) + ")");
        continue;
      }
      const double tol = tolerance(n_terms, mag[i]);
      if (std::fabs(yi - yr) / tol > g_worst) g_worst = std::fabs(yi - yr) / tol;
      if (std::fabs(yi - yr) > tol) {
        char buf[200];
        std::snprintf(buf, sizeof buf, ": simd %.9g vs scalar %.9g, |diff| %.3g > tol %.3g (M %.3g)", yi, yr,
                      std::fabs(yi - yr), tol, mag[i]);
        fail(where + buf);
      }
    }
}

void run_isa(const KernelSet& isa, bool quick) {
  const long cases0 = g_cases;
  g_worst = 0.0;
  const int fails0 = g_failures;
  for (const TypeInfo& ti : kTypes) {
    if (!isa.gemm[int(ti.type)]) {
      fail(std::string(isa.name) + " has no gemm for " + ti.name + " (the scalar set has one)");
      continue;
    }
    std::vector<int64_t> ns;
    if (ti.block == 32) ns = {32, 64, 288, 256, 512};
    else if (ti.block == 256) ns = {256, 512, 768};
    else ns = {32, 3, 37, 64, 288, 256, 512};
    // Every tile tail (1..7 rows x 1..5 tokens) on random data for every size; the extreme patterns
    // on shapes that hit full and partial tiles.
    for (int64_t n : ns) {
      for (int rows = 1; rows <= 7; ++rows)
        for (int toks = 1; toks <= 5; ++toks) check_gemm(isa, ti, n, {rows, toks}, WMode::Random, XMode::Gauss);
      // Longer token runs: several full token tiles plus a tail (8 = two 4-token tiles; 17 = odd).
      for (int toks : {8, 17})
        for (int rows : {1, 5}) check_gemm(isa, ti, n, {rows, toks}, WMode::Random, XMode::Gauss);
      if (quick) break;
    }
    const int64_t n2 = ti.block == 1 ? 64 : 2 * ti.block;
    for (WMode wm : {WMode::Random, WMode::AllFF, WMode::AllZero, WMode::Alt7F80, WMode::BigScale, WMode::TinyScale,
                     WMode::ZeroScale})
      for (XMode xm : {XMode::Gauss, XMode::Big, XMode::Small, XMode::AllEqual, XMode::Zero, XMode::Ties, XMode::Spike})
        for (Shape sh : {Shape{7, 5}, Shape{2, 3}, Shape{4, 4}, Shape{3, 2}}) {
          check_gemm(isa, ti, n2, sh, wm, xm);
          if (quick) break;
        }
  }
  std::printf("%s: %ld gemm cases (%zu weight types, activation quantizers checked in each), %s; worst "
              "|diff|/tolerance %.3g\n",
              isa.name, g_cases - cases0, sizeof(kTypes) / sizeof(kTypes[0]), g_failures == fails0 ? "all match scalar" : "MISMATCHES", g_worst);
  if (const char* same_as = bit_identical_to(isa))
    std::printf("%s: %ld of these cases compared bit for bit with %s: %s\n", isa.name, g_identical_checked, same_as,
                g_failures == fails0 ? "all identical" : "MISMATCHES");
}

}  // namespace

int main(int argc, char** argv) {
  std::string expect_best, expect_dispatched;
  bool probe_neon = false, probe_i8mm = false, quick = false, expect_dispatch_error = false;
  unsigned long long seed = 20261123;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--expect-best" && i + 1 < argc) expect_best = argv[++i];
    else if (arg == "--expect-dispatched" && i + 1 < argc) expect_dispatched = argv[++i];
    else if (arg == "--expect-dispatch-error") expect_dispatch_error = true;
    else if (arg == "--probe-neon") probe_neon = true;
    else if (arg == "--probe-i8mm") probe_i8mm = true;
    else if (arg == "--quick") quick = true;
    else if (arg == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr,
                   "usage: %s [--expect-best ISA] [--expect-dispatched ISA] [--expect-dispatch-error] "
                   "[--probe-neon] [--probe-i8mm] [--seed N] [--quick]\n",
                   argv[0]);
      return 2;
    }
  }
  g_rng.seed(seed);

  if (probe_neon) {
#if defined(EDGELLAMA_ARM64)
    // Bypasses dispatch on purpose. One Q8_0 block of zeros: executes SDOT.
    std::vector<uint8_t> w(sizeof(block_q8_0), 0), a(sizeof(ActQ8x32), 0);
    float y = 1.0f;
    std::printf("probe: calling the NEON (dotprod) Q8_0 gemm directly...\n");
    std::fflush(stdout);
    kNeonKernels.gemm[int(GGMLType::Q8_0)](32, w.data(), w.size(), 1, a.data(), a.size(), 1, &y, 1);
    std::printf("probe: returned %g: this CPU executes SDOT\n", double(y));
    return 0;
#else
    std::fprintf(stderr, "--probe-neon: not an aarch64 build\n");
    return 2;
#endif
  }

  if (probe_i8mm) {
#if defined(EDGELLAMA_ARM64)
    // Bypasses dispatch on purpose. Two tokens x one Q8_0 block of zeros: executes SMMLA.
    std::vector<uint8_t> w(sizeof(block_q8_0), 0), a(2 * sizeof(ActQ8x32), 0);
    float y[2] = {1.0f, 1.0f};
    std::printf("probe: calling the NEON i8mm (SMMLA) Q8_0 gemm directly...\n");
    std::fflush(stdout);
    kNeonI8mmOverrides.gemm[int(GGMLType::Q8_0)](32, w.data(), w.size(), 1, a.data(), sizeof(ActQ8x32), 2, y, 1);
    std::printf("probe: returned %g: this CPU executes SMMLA\n", double(y[0]));
    return 0;
#else
    std::fprintf(stderr, "--probe-i8mm: not an aarch64 build\n");
    return 2;
#endif
  }

  const std::vector<std::string> isas = available_isas();
  std::string list;
  for (const std::string& s : isas) list += (list.empty() ? "" : ", ") + s;
  const char* env = std::getenv("EDGELLAMA_ISA");
  std::string dispatched, dispatch_error;
  try {
    dispatched = active_kernels().name;
  } catch (const ArgumentError& e) {
    dispatch_error = e.what();
  }
  std::printf("available ISAs: %s; best: %s; dispatched: %s (EDGELLAMA_ISA=%s)\n", list.c_str(), best_isa().c_str(),
              dispatch_error.empty() ? dispatched.c_str() : ("error: " + dispatch_error).c_str(), env ? env : "");
  if (expect_dispatch_error) {
    if (dispatch_error.empty() || dispatch_error.find("not available") == std::string::npos)
      fail("expected EDGELLAMA_ISA to be refused with 'not available', got dispatched=" + dispatched);
  } else if (!dispatch_error.empty()) {
    fail("dispatch failed: " + dispatch_error);
  }
  if (!expect_dispatched.empty() && dispatched != expect_dispatched)
    fail("dispatched set is '" + dispatched + "', expected " + expect_dispatched);

  if (isas.empty() || isas.front() != "scalar") fail("available_isas() must start with scalar");
  if (isas.back() != best_isa()) fail("best_isa() is not the last available ISA");
  for (const char* name : {"scalar", "avx2", "avx_vnni", "avx512", "neon", "neon_i8mm"}) {
    bool listed = false;
    for (const std::string& s : isas) listed |= (s == name);
    const KernelSet* k = kernels_for(name);
    if (listed && (!k || std::string(k->name) != name)) fail(std::string("kernels_for(") + name + ") is wrong");
    if (!listed && k) fail(std::string("kernels_for(") + name + ") returns a set the CPU was not reported to run");
  }
  if (!expect_best.empty()) {
    if (best_isa() != expect_best) fail("best_isa() is " + best_isa() + ", expected " + expect_best);
    if (!(env && *env) && dispatched != expect_best)
      fail("dispatched set is '" + dispatched + "', expected " + expect_best);
  }

  int checked = 0;
  for (const std::string& s : isas) {
    if (s == "scalar") continue;
    const KernelSet* k = kernels_for(s);
    if (!k) continue;
    run_isa(*k, quick);
    ++checked;
  }
  if (checked == 0) std::printf("no SIMD kernel set on this CPU: only dispatch was checked\n");

  if (g_failures) {
    std::fprintf(stderr, "FAILED: %d mismatches (%ld cases, %ld outputs compared)\n", g_failures, g_cases, g_outputs);
    return 1;
  }
  std::printf("PASS: %d SIMD set(s), %ld gemm cases, %ld outputs compared\n", checked, g_cases, g_outputs);
  return 0;
}
