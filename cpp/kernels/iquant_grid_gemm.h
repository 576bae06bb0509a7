// The gemm loop of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M), shared by
// the scalar reference and the SIMD kernels: each ISA file instantiates it with its own 256-value
// integer dot product (the only part that differs), so every ISA computes the same integers in the
// same float sequence:
//   per (row, token): acc += (d * grid_scale(type)) * d_a * float(sum_j (2 ls_j + 1) * sum_{i in 16-group j} q_i a_i)
// over the super-blocks in order (see edgellama/iquant_grid_blocks.h for q, ls and grid_scale).
// A super-block is unpacked once (edgellama/iquant_grid_blocks.h, the same unpacking the
// dequantization uses) and used for up to kGridTokenChunk tokens.
//
// Internal linkage only (static / anonymous namespace): included by translation units compiled for
// different ISAs.
#pragma once
#include <algorithm>
#include <cstdint>

#include "edgellama/iquant_grid_blocks.h"
#include "edgellama/kernels.h"
#include "kquant_scales.h"

namespace edgellama {
namespace {

constexpr int kGridTokenChunk = 16;

// Dot: int32_t (const iq::GridBlock& u, const int8_t* a) -- the integer sum above for one super-block
// against 256 activation values.
// Fused (optional): int32_t (const void* block, const block_q8_K* a, uint16_t* d) -- the same integer
// sum straight from the packed block without a GridBlock, and the block's fp16 d; used for single
// tokens (decode), where a super-block is used once and unpacking it to memory is most of the work.
using FusedDotFn = int32_t (*)(const void*, const block_q8_K*, uint16_t*);
template <void (*Unpack)(const void*, iq::GridBlock*), size_t kBytes, GGMLType kType,
          int32_t (*Dot)(const iq::GridBlock&, const int8_t*), FusedDotFn Fused = nullptr>
void gemm_grid(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  const float scale = iq::grid_scale(kType);
  const int64_t nb = n / QK_K;
  if (Fused != nullptr && nt == 1) {  // same integers, same float sequence as below
    const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a);
    for (int64_t r = 0; r < nr; ++r) {
      const uint8_t* wr = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        uint16_t dbits;
        const int32_t sum = Fused(wr + size_t(b) * kBytes, &ab[b], &dbits);
        const float d = kq::half_to_float_portable(dbits) * scale;
        acc += d * ab[b].d * float(sum);
      }
      y[size_t(r)] = acc;
    }
    return;
  }
  iq::GridBlock u;
  for (int64_t t0 = 0; t0 < nt; t0 += kGridTokenChunk) {
    const int64_t tn = std::min<int64_t>(kGridTokenChunk, nt - t0);
    for (int64_t r = 0; r < nr; ++r) {
      const uint8_t* wr = w + size_t(r) * ws;
      float acc[kGridTokenChunk] = {};
      for (int64_t b = 0; b < nb; ++b) {
        Unpack(wr + size_t(b) * kBytes, &u);
        const float d = kq::half_to_float_portable(u.d) * scale;
        for (int64_t t = 0; t < tn; ++t) {
          const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t0 + t) * as) + b;
          acc[t] += d * ab->d * float(Dot(u, ab->qs));
        }
      }
      for (int64_t t = 0; t < tn; ++t) y[size_t(t0 + t) * ys + size_t(r)] = acc[t];
    }
  }
}

}  // namespace
}  // namespace edgellama

// Defines prefix##_gemm_<type> for the seven types with the given Dot and the unpack_<type> functions of
// namespace unpack_ns (iq:: for the shared scalar unpacking; an ISA may bring vector versions that
// produce the same GridBlock), one line per type.
// EL_GRID_FUSED(unpack_ns, type) names unpack_ns::fused_<type> where an ISA has one, else nullptr:
// define it before expanding EL_GRID_GEMMS.
#define EL_GRID_GEMMS(prefix, unpack_ns, dot)                                                             \
  EL_GRID_GEMM(prefix##_gemm_iq2_xxs, unpack_ns::unpack_iq2_xxs, block_iq2_xxs, IQ2_XXS, dot, EL_GRID_FUSED(unpack_ns, iq2_xxs)) \
  EL_GRID_GEMM(prefix##_gemm_iq2_xs, unpack_ns::unpack_iq2_xs, block_iq2_xs, IQ2_XS, dot, EL_GRID_FUSED(unpack_ns, iq2_xs))     \
  EL_GRID_GEMM(prefix##_gemm_iq2_s, unpack_ns::unpack_iq2_s, block_iq2_s, IQ2_S, dot, EL_GRID_FUSED(unpack_ns, iq2_s))         \
  EL_GRID_GEMM(prefix##_gemm_iq3_xxs, unpack_ns::unpack_iq3_xxs, block_iq3_xxs, IQ3_XXS, dot, EL_GRID_FUSED(unpack_ns, iq3_xxs)) \
  EL_GRID_GEMM(prefix##_gemm_iq3_s, unpack_ns::unpack_iq3_s, block_iq3_s, IQ3_S, dot, EL_GRID_FUSED(unpack_ns, iq3_s))         \
  EL_GRID_GEMM(prefix##_gemm_iq1_s, unpack_ns::unpack_iq1_s, block_iq1_s, IQ1_S, dot, EL_GRID_FUSED(unpack_ns, iq1_s))         \
  EL_GRID_GEMM(prefix##_gemm_iq1_m, unpack_ns::unpack_iq1_m, block_iq1_m, IQ1_M, dot, EL_GRID_FUSED(unpack_ns, iq1_m))
#define EL_GRID_GEMM(name, unpack, block, type, dot, fused)                                                 \
  void name(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, \
            float* y, size_t ys) {                                                                         \
    gemm_grid<unpack, sizeof(iq::block), GGMLType::type, dot, fused>(n, w, ws, nr, a, as, nt, y, ys);       \
  }
