// Scalar reference kernels of IQ4_NL, MXFP4 (32-value blocks against ActQ8x32) and IQ4_XS, TQ1_0,
// TQ2_0 (256-value super-blocks against block_q8_K). Every weight value is unpacked (through
// edgellama/iquant_blocks.h, the same unpacking the dequantization uses) to a signed int8 level;
// the dot product of a block is then one exact integer sum and one float scale:
//   32-value blocks:   acc += dw * da * float(sum_i q[i] * a[i])
//   256-value blocks:  acc += dw * da * float(sum_j sc[j] * sum_{i in sub-block j} q[i] * a[i])
// with sc[j] the IQ4_XS 6-bit sub-block scale (minus 32) or 1 for the ternary formats. The SIMD
// kernels compute the same integers and are tested against these on random inputs.
#include <cstring>

#include "../entry_points.h"
#include "../kquant_scales.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/kernels.h"

namespace edgellama {
namespace {

using namespace iq;

// One 32-value block: its 32 levels and its float scale.
struct Block32 {
  int8_t q[32];
  float d;
};

void unpack_iq4_nl(const uint8_t* p, Block32* u) {
  const block_iq4_nl* b = reinterpret_cast<const block_iq4_nl*>(p);
  for (int i = 0; i < 32; ++i) u->q[i] = kIq4Values[nibble32(b->qs, i)];
  u->d = kq::half_to_float_portable(b->d);
}
void unpack_mxfp4(const uint8_t* p, Block32* u) {
  const block_mxfp4* b = reinterpret_cast<const block_mxfp4*>(p);
  for (int i = 0; i < 32; ++i) u->q[i] = kMxfp4Values[nibble32(b->qs, i)];
  u->d = e8m0_to_float_half(b->e);
}

template <void (*Unpack)(const uint8_t*, Block32*), size_t kBytes>
void gemm_block32(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                  float* y, size_t ys) {
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as);
      const uint8_t* wr = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < n / 32; ++b) {
        Block32 u;
        Unpack(wr + size_t(b) * kBytes, &u);
        int sum = 0;
        for (int i = 0; i < 32; ++i) sum += int(u.q[i]) * ab[b].qs[i];
        acc += u.d * ab[b].d * float(sum);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

// One 256-value super-block: its levels, the scale of each 32-value sub-block and the float scale.
struct Block256 {
  int8_t q[QK_K];
  int sc[8];
  float d;
};

void unpack_iq4_xs(const uint8_t* p, Block256* u) {
  const block_iq4_xs* b = reinterpret_cast<const block_iq4_xs*>(p);
  iq4_xs_unpack(b, u->q);
  for (int j = 0; j < 8; ++j) u->sc[j] = iq4_xs_scale(b, j);
  u->d = kq::half_to_float_portable(b->d);
}
void unpack_tq1_0(const uint8_t* p, Block256* u) {
  const block_tq1_0* b = reinterpret_cast<const block_tq1_0*>(p);
  tq1_0_unpack(b, u->q);
  for (int j = 0; j < 8; ++j) u->sc[j] = 1;
  u->d = kq::half_to_float_portable(b->d);
}
void unpack_tq2_0(const uint8_t* p, Block256* u) {
  const block_tq2_0* b = reinterpret_cast<const block_tq2_0*>(p);
  tq2_0_unpack(b, u->q);
  for (int j = 0; j < 8; ++j) u->sc[j] = 1;
  u->d = kq::half_to_float_portable(b->d);
}

template <void (*Unpack)(const uint8_t*, Block256*), size_t kBytes>
void gemm_block256(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                   float* y, size_t ys) {
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) {
      const block_q8_K* ab = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as);
      const uint8_t* wr = w + size_t(r) * ws;
      float acc = 0.0f;
      for (int64_t b = 0; b < n / QK_K; ++b) {
        Block256 u;
        Unpack(wr + size_t(b) * kBytes, &u);
        int32_t sum = 0;
        for (int j = 0; j < 8; ++j) {
          int32_t s = 0;
          for (int i = 32 * j; i < 32 * j + 32; ++i) s += int32_t(u.q[i]) * ab[b].qs[i];
          sum += u.sc[j] * s;
        }
        acc += u.d * ab[b].d * float(sum);
      }
      y[size_t(t) * ys + size_t(r)] = acc;
    }
  }
}

}  // namespace

// Named entry points for the KernelSet tables (entry_points.h).
#define EL_SCALAR_GEMM(name, kernel)                                                                          \
  void name(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y, \
            size_t ys) {                                                                                        \
    kernel(n, w, ws, nr, a, as, nt, y, ys);                                                                     \
  }
EL_SCALAR_GEMM(scalar_gemm_iq4_nl, (gemm_block32<unpack_iq4_nl, sizeof(block_iq4_nl)>))
EL_SCALAR_GEMM(scalar_gemm_mxfp4, (gemm_block32<unpack_mxfp4, sizeof(block_mxfp4)>))
EL_SCALAR_GEMM(scalar_gemm_iq4_xs, (gemm_block256<unpack_iq4_xs, sizeof(block_iq4_xs)>))
EL_SCALAR_GEMM(scalar_gemm_tq1_0, (gemm_block256<unpack_tq1_0, sizeof(block_tq1_0)>))
EL_SCALAR_GEMM(scalar_gemm_tq2_0, (gemm_block256<unpack_tq2_0, sizeof(block_tq2_0)>))
#undef EL_SCALAR_GEMM

}  // namespace edgellama
