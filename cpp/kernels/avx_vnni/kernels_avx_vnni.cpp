// The table of what the AVX-VNNI tier overrides (data only, like kAvx512Overrides): the 32-value
// block formats, whose rows8 kernels have vpdpbusd integer cores (gemm_rows8_avx_vnni.cpp), for the
// GGUF layout and packed groups alike, and IQ4_NL, which prefills as Q8_0 (transcoded rows).
// dispatch.cpp builds the avx_vnni KernelSet from a copy of kAvx2Kernels with these entries put over
// it; the K-quants, the other i-quants, float formats, attention and SwiGLU keep their AVX2 kernels
// (the K-quant cores multiply int16 sums by sub-block scales, which vpdpbusd does not shorten).
#define EDGELLAMA_AVX_VNNI 1
#include "../avx2/gemm_rows8.h"
#include "../entry_points.h"
#include "edgellama/kernels.h"
#include "edgellama/quant_blocks.h"

namespace edgellama {
namespace {

// IQ4_NL: the AVX2 decode tiles below 4 tokens, from 4 tokens the rows transcoded to Q8_0 and run
// through this tier's Q8_0 kernel (iquant_avx2.cpp's avx2_gemm_iq4_nl_via, as the avx512 set does).
void gemm_iq4_nl(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                 float* y, size_t ys) {
  avx2_gemm_iq4_nl_via(avx_vnni_rows8::gemm_q8_0, n, w, ws, nr, a, as, nt, y, ys);
}

constexpr KernelSet make_overrides() {
  KernelSet k{};
  k.name = "avx_vnni";
  k.gemm[int(GGMLType::Q4_0)] = avx_vnni_rows8::gemm_q4_0;
  k.gemm[int(GGMLType::Q4_1)] = avx_vnni_rows8::gemm_q4_1;
  k.gemm[int(GGMLType::Q5_0)] = avx_vnni_rows8::gemm_q5_0;
  k.gemm[int(GGMLType::Q5_1)] = avx_vnni_rows8::gemm_q5_1;
  k.gemm[int(GGMLType::Q8_0)] = avx_vnni_rows8::gemm_q8_0;
  k.gemm[int(GGMLType::IQ4_NL)] = gemm_iq4_nl;
  k.gemm_packed[int(GGMLType::Q4_0)] = avx_vnni_rows8::gemm_q4_0_packed;
  k.gemm_packed[int(GGMLType::Q4_1)] = avx_vnni_rows8::gemm_q4_1_packed;
  k.gemm_packed[int(GGMLType::Q5_0)] = avx_vnni_rows8::gemm_q5_0_packed;
  k.gemm_packed[int(GGMLType::Q5_1)] = avx_vnni_rows8::gemm_q5_1_packed;
  k.gemm_packed[int(GGMLType::Q8_0)] = avx_vnni_rows8::gemm_q8_0_packed;
  return k;
}

}  // namespace

const KernelSet kAvxVnniOverrides = make_overrides();

}  // namespace edgellama
