// Which integer product the rows8 kernels (gemm_rows8_avx2.cpp and its isum_*_avx2.h cores) are
// compiled for. cpp/kernels/avx2/ builds them with AVX2: u8 x s8 products by vpmaddubsw into int16
// pairs, widened by vpmaddwd. cpp/kernels/avx_vnni/ compiles the same sources a second time with
// EDGELLAMA_AVX_VNNI defined and -mavxvnni: the cores then use the 256-bit VEX vpdpbusd (4 products
// per 32-bit lane summed into int32 in one instruction: Intel Alder Lake and later, Zen 5), and the
// exported functions live in their own namespace so the two copies never meet at link time. Every
// core returns exact int32 sums either way (no int16 step can overflow in either form), so both
// copies give the same bits as the scalar reference.
#pragma once

#if defined(EDGELLAMA_AVX_VNNI) && !(defined(__GNUC__) || defined(__clang__))
#error "the AVX-VNNI rows8 cores are GNU asm: CMakeLists.txt builds cpp/kernels/avx_vnni/ with GCC / Clang only"
#endif

#if defined(EDGELLAMA_AVX_VNNI)
#define EDGELLAMA_ROWS8_NS avx_vnni_rows8
#else
#define EDGELLAMA_ROWS8_NS avx2_rows8
#endif

namespace edgellama {
namespace EDGELLAMA_ROWS8_NS {
#if defined(EDGELLAMA_AVX_VNNI)
constexpr bool kVnni = true;
#else
constexpr bool kVnni = false;
#endif
}  // namespace EDGELLAMA_ROWS8_NS
}  // namespace edgellama
