// IQ4_XS in the avx512 set: from 4 tokens the 16-row VNNI kernel (gemm_rows16_avx512.cpp, weights
// repacked per call like the K-quants' prefill); below, the packed decode kernel (packed_decode_avx512.cpp)
// on groups of the file's rows packed on the fly (a last partial group repeats its last row). Both follow
// one per-output sequence, so weights packed at load and in the file's layout give the same bits at every
// token count (tests/test_kernels.py, test_packed_weights.py).
// IQ4_NL in the avx512 set: the AVX2 kernel (iquant_avx2.cpp: decode row tiles, prefill on rows
// transcoded to Q8_0) with the 16-row VNNI Q8_0 kernel for prefill. That kernel follows the same
// per-output sequence as the AVX2 rows8 one (gemm_rows8_ref), so avx2 and avx512 give the same bits.
#include "../entry_points.h"
#include "gemm_rows16.h"

#include <algorithm>
#include <vector>

#include "edgellama/iquant_blocks.h"
#include "edgellama/packed_layout.h"

namespace edgellama {

void avx512_gemm_iq4_nl(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys) {
  avx2_gemm_iq4_nl_via(avx512_rows16::gemm_q8_0, n, w, ws, nr, a, as, nt, y, ys);
}

void avx512_gemm_iq4_xs(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys) {
  if (nt >= 4) {
    avx512_rows16::gemm_iq4_xs_prefill(n, w, ws, nr, a, as, nt, y, ys);
    return;
  }
  constexpr int64_t kRows = 2 * kPackRows;
  thread_local std::vector<uint8_t> rows, packed;
  thread_local std::vector<float> out;
  rows.resize(size_t(kRows) * ws);
  packed.resize(size_t(kRows) * ws);
  out.resize(size_t(kRows) * size_t(nt));
  for (int64_t r0 = 0; r0 < nr; r0 += kRows) {
    const int64_t rr = std::min(kRows, nr - r0), groups = (rr + kPackRows - 1) / kPackRows;
    for (int64_t r = 0; r < groups * kPackRows; ++r)
      std::copy_n(w + size_t(r0 + std::min(r, rr - 1)) * ws, ws, rows.data() + size_t(r) * ws);
    for (int64_t g = 0; g < groups; ++g)
      pack_group(GGMLType::IQ4_XS, rows.data() + size_t(g * kPackRows) * ws, ws, packed.data() + size_t(g * kPackRows) * ws);
    avx512_packed::gemm_iq4_xs_packed(n, packed.data(), ws, groups * kPackRows, a, as, nt, out.data(), size_t(kRows));
    for (int64_t t = 0; t < nt; ++t)
      std::copy_n(out.data() + size_t(t) * kRows, rr, y + size_t(t) * ys + size_t(r0));
  }
}

}  // namespace edgellama
