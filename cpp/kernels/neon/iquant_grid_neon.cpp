// NEON (dotprod) kernels of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M): the
// shared loop (../iquant_grid_gemm.h: unpack a super-block once, use it for up to 16 tokens) with a
// vector unpacking and a 256-value dot product of SDOTs, one per 16-value group, each multiplied by
// its group scale 2 ls + 1 in int32: the scalar reference's integers exactly.
//   Unpacking: scale numbers and d from the shared header (scales_<type>); the levels 16 at a time:
// two 8-value grid points (or four 4-value IQ3 points) from edgellama/iq_grids.h in one vector, times
// the +-1 sign bytes (kIqSignBytes); IQ1: (grid << 3) + the +-1 delta bytes. The GridBlock is the
// scalar unpacking's byte for byte (scripts/test_neon_qemu.sh compares the results with scalar).
#include <arm_neon.h>

#include "../entry_points.h"
#include "../iquant_grid_gemm.h"

namespace edgellama {
namespace {  // internal linkage (see entry_points.h)
namespace grid_neon {

using namespace iq;

inline int8x16_t pair(uint64_t lo, uint64_t hi) { return vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(lo), vcreate_u64(hi))); }
inline int8x16_t quad(uint32_t v0, uint32_t v1, uint32_t v2, uint32_t v3) {
  return pair(uint64_t(v0) | (uint64_t(v1) << 32), uint64_t(v2) | (uint64_t(v3) << 32));
}
// 16 levels: grid values times two words of sign bytes (kIqSignBytes of a plain sign byte, or
// kIqKsignBytes of 7 stored sign bits).
inline void put16(int8_t* q, int8x16_t grid, uint64_t s0, uint64_t s1) { vst1q_s8(q, vmulq_s8(grid, pair(s0, s1))); }
// IQ1: 8 * grid (grid in -1, 0, 1) + delta bytes (+-1).
inline void put16_iq1(int8_t* q, int8x16_t grid, int8x16_t delta) { vst1q_s8(q, vaddq_s8(vshlq_n_s8(grid, 3), delta)); }
// 8 delta bytes, +1 or (sign bit set) -1, without a branch (the delta bits of real blocks are random).
inline uint64_t delta8(unsigned bit) {
  const uint64_t neg = 0ull - uint64_t(bit != 0);
  return (neg & ~0ull) | (~neg & 0x0101010101010101ull);
}

void unpack_iq2_xxs(const void* p, GridBlock* u) {
  const block_iq2_xxs* b = static_cast<const block_iq2_xxs*>(p);
  scales_iq2_xxs(p, u);
  for (int j = 0; j < 8; ++j) {
    const uint32_t idx = load_u32(b->qs + 4 * j), aux = load_u32(b->qs + 4 * j + 2);
    put16(u->q + 32 * j, pair(kIq2xxsGrid[idx & 255], kIq2xxsGrid[(idx >> 8) & 255]), kIqKsignBytes[aux & 127],
          kIqKsignBytes[(aux >> 7) & 127]);
    put16(u->q + 32 * j + 16, pair(kIq2xxsGrid[(idx >> 16) & 255], kIq2xxsGrid[idx >> 24]),
          kIqKsignBytes[(aux >> 14) & 127], kIqKsignBytes[(aux >> 21) & 127]);
  }
}

void unpack_iq2_xs(const void* p, GridBlock* u) {
  const block_iq2_xs* b = static_cast<const block_iq2_xs*>(p);
  scales_iq2_xs(p, u);
  for (int k = 0; k < 32; k += 2) {
    const uint16_t* qs = b->qs + k;
    put16(u->q + 8 * k, pair(kIq2xsGrid[qs[0] & 511], kIq2xsGrid[qs[1] & 511]), kIqKsignBytes[qs[0] >> 9],
          kIqKsignBytes[qs[1] >> 9]);
  }
}

void unpack_iq2_s(const void* p, GridBlock* u) {
  const block_iq2_s* b = static_cast<const block_iq2_s*>(p);
  scales_iq2_s(p, u);
  for (int k = 0; k < 32; k += 2)
    put16(u->q + 8 * k, pair(kIq2sGrid[iq2_s_index(b, k)], kIq2sGrid[iq2_s_index(b, k + 1)]), kIqSignBytes[b->qs[32 + k]],
          kIqSignBytes[b->qs[33 + k]]);
}

void unpack_iq3_xxs(const void* p, GridBlock* u) {
  const block_iq3_xxs* b = static_cast<const block_iq3_xxs*>(p);
  scales_iq3_xxs(p, u);
  for (int j = 0; j < 8; ++j) {
    const uint8_t* i = b->qs + 8 * j;
    const uint32_t aux = load_u32(b->qs + QK_K / 4 + 4 * j);
    put16(u->q + 32 * j, quad(kIq3xxsGrid[i[0]], kIq3xxsGrid[i[1]], kIq3xxsGrid[i[2]], kIq3xxsGrid[i[3]]),
          kIqKsignBytes[aux & 127], kIqKsignBytes[(aux >> 7) & 127]);
    put16(u->q + 32 * j + 16, quad(kIq3xxsGrid[i[4]], kIq3xxsGrid[i[5]], kIq3xxsGrid[i[6]], kIq3xxsGrid[i[7]]),
          kIqKsignBytes[(aux >> 14) & 127], kIqKsignBytes[(aux >> 21) & 127]);
  }
}

void unpack_iq3_s(const void* p, GridBlock* u) {
  const block_iq3_s* b = static_cast<const block_iq3_s*>(p);
  scales_iq3_s(p, u);
  for (int k = 0; k < 64; k += 4)
    put16(u->q + 4 * k,
          quad(kIq3sGrid[iq3_s_index(b, k)], kIq3sGrid[iq3_s_index(b, k + 1)], kIq3sGrid[iq3_s_index(b, k + 2)],
               kIq3sGrid[iq3_s_index(b, k + 3)]),
          kIqSignBytes[b->signs[k / 2]], kIqSignBytes[b->signs[k / 2 + 1]]);
}

void unpack_iq1_s(const void* p, GridBlock* u) {
  const block_iq1_s* b = static_cast<const block_iq1_s*>(p);
  scales_iq1_s(p, u);
  for (int j = 0; j < 8; ++j) {
    const unsigned qh = b->qh[j];
    const uint8_t* qs = b->qs + 4 * j;
    const int8x16_t delta = vdupq_n_s8(int8_t(1 - 2 * int(qh >> 15)));
    put16_iq1(u->q + 32 * j, pair(kIq1sGrid[qs[0] | ((qh << 8) & 0x700)], kIq1sGrid[qs[1] | ((qh << 5) & 0x700)]), delta);
    put16_iq1(u->q + 32 * j + 16, pair(kIq1sGrid[qs[2] | ((qh << 2) & 0x700)], kIq1sGrid[qs[3] | ((qh >> 1) & 0x700)]),
              delta);
  }
}

void unpack_iq1_m(const void* p, GridBlock* u) {
  const block_iq1_m* b = static_cast<const block_iq1_m*>(p);
  scales_iq1_m(p, u);
  for (int k = 0; k < 32; k += 2) {
    const unsigned n0 = iq1_m_nibble(b, k), n1 = iq1_m_nibble(b, k + 1);
    put16_iq1(u->q + 8 * k, pair(kIq1sGrid[b->qs[k] | ((n0 & 7) << 8)], kIq1sGrid[b->qs[k + 1] | ((n1 & 7) << 8)]),
              vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(delta8(n0 & 8)), vcreate_u64(delta8(n1 & 8)))));
  }
}

}  // namespace grid_neon

int32_t dot_grid_neon(const iq::GridBlock& u, const int8_t* a) {
  int32x4_t acc = vdupq_n_s32(0);
  for (int j = 0; j < 16; ++j) {
    const int32x4_t s = vdotq_s32(vdupq_n_s32(0), vld1q_s8(u.q + 16 * j), vld1q_s8(a + 16 * j));
    acc = vmlaq_n_s32(acc, s, 2 * int32_t(u.ls[j]) + 1);
  }
  return vaddvq_s32(acc);
}

}  // namespace

#define EL_GRID_FUSED(ns, type) nullptr  // no fused decode path
EL_GRID_GEMMS(neon, grid_neon, dot_grid_neon)

}  // namespace edgellama
