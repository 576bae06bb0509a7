// IQ4_NL in the avx512 set: the AVX2 kernel (iquant_avx2.cpp: decode row tiles, prefill on rows
// transcoded to Q8_0) with the 16-row VNNI Q8_0 kernel for prefill. That kernel follows the same
// per-output sequence as the AVX2 rows8 one (gemm_rows8_ref), so avx2 and avx512 give the same bits.
#include "../entry_points.h"
#include "gemm_rows16.h"

namespace edgellama {

void avx512_gemm_iq4_nl(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys) {
  avx2_gemm_iq4_nl_via(avx512_rows16::gemm_q8_0, n, w, ws, nr, a, as, nt, y, ys);
}

}  // namespace edgellama
