// AVX-512 (F/BW/VL/DQ/VNNI) kernels and the table of what they override. Compiled with the AVX-512
// flags of this directory; everything here is only called after dispatch saw the CPU and the OS
// support AVX-512 with ZMM state. Same linkage rules as cpp/kernels/avx2/kernels_avx2.cpp: internal
// linkage, no header with external-linkage inline functions that baseline code also uses.
//
// kAvx512Overrides is data only: the types with an AVX-512 kernel. dispatch.cpp builds the avx512
// KernelSet from a copy of kAvx2Kernels with these entries replaced, so every type the AVX2 set
// handles is still handled (by its AVX2 kernel) and the activation quantizers, attention and SwiGLU
// stay the AVX2 ones (same bytes / bits as scalar where the tests require it).
// GCC 12's AVX-512 intrinsics start from _mm*_undefined_*() and trip -W(maybe-)uninitialized
// (GCC bug 105593, fixed in GCC 13): a false positive, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "../tile_walk.h"
#include "edgellama/kernels.h"
#include "gemm_rows16.h"

namespace edgellama {
namespace {

// ---- float weights (F32 / F16 / BF16 against float activations) ----------------------------------
// Per (row, token): 16-lane FMA accumulation over the multiples of 16, one fixed lane reduction, then
// the scalar tail; the tile shape never changes an output's sequence.

struct F32W {
  static __m512 load16(const uint8_t* p, int64_t i) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p) + i); }
  static float load1(const uint8_t* p, int64_t i) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
};
struct F16W {
  static __m512 load16(const uint8_t* p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
  }
  static float load1(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return _cvtsh_ss(h);
  }
};
struct BF16W {
  static __m512 load16(const uint8_t* p, int64_t i) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static float load1(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <class F, int R, int T>
void tile_float(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = F::load16(w + size_t(r) * ws, i);
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(reinterpret_cast<const float*>(a + size_t(t) * as) + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const float* x = reinterpret_cast<const float*>(a + size_t(t) * as);
    for (int r = 0; r < R; ++r) {
      float s = _mm512_reduce_add_ps(acc[r][t]);
      for (int64_t j = i; j < n; ++j) s += F::load1(w + size_t(r) * ws, j) * x[j];
      y[size_t(t) * ys + size_t(r)] = s;
    }
  }
}

template <class F>
struct FloatTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_float<F, R, T>(n, w, ws, a, as, y, ys);
    }
  };
};

constexpr int kFloatRows = 4, kFloatTokens = 4;

template <class F>
void gemm_float(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  walk_tiles<FloatTile<F>::template Of, kFloatRows, kFloatTokens>(n, w, ws, nr, a, as, nt, y, ys);
}

// Q4_K: the 16-row VNNI kernel from 4 tokens up (its repack is amortized); fewer tokens (decode) go
// to the AVX2 set's Q4_K kernel, whose per-output arithmetic is the same sequence (rows8 reference),
// so an output's bits do not depend on the token count.
void gemm_q4_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  if (nt >= 4)
    avx512_rows16::gemm_q4_k_prefill(n, w, ws, nr, a, as, nt, y, ys);
  else
    kAvx2Kernels.gemm[int(GGMLType::Q4_K)](n, w, ws, nr, a, as, nt, y, ys);
}

constexpr KernelSet make_overrides() {
  KernelSet k{};
  k.name = "avx512";
  k.gemm[int(GGMLType::F32)] = gemm_float<F32W>;
  k.gemm[int(GGMLType::F16)] = gemm_float<F16W>;
  k.gemm[int(GGMLType::BF16)] = gemm_float<BF16W>;
  k.gemm[int(GGMLType::Q4_0)] = avx512_rows16::gemm_q4_0;
  k.gemm[int(GGMLType::Q4_1)] = avx512_rows16::gemm_q4_1;
  k.gemm[int(GGMLType::Q5_0)] = avx512_rows16::gemm_q5_0;
  k.gemm[int(GGMLType::Q5_1)] = avx512_rows16::gemm_q5_1;
  k.gemm[int(GGMLType::Q8_0)] = avx512_rows16::gemm_q8_0;
  k.gemm[int(GGMLType::Q4_K)] = gemm_q4_k;
  k.gemm[int(GGMLType::Q6_K)] = avx512_rows16::gemm_q6_k;
  return k;
}

}  // namespace

const KernelSet kAvx512Overrides = make_overrides();

}  // namespace edgellama
