// The rows8 kernels (cpp/kernels/avx2/gemm_rows8_avx2.cpp) compiled a second time for AVX-VNNI: the
// same walks, tiles and float sequence, with the integer cores summing u8 x s8 products by the
// 256-bit VEX vpdpbusd (rows8_isa.h explains the switch; the exported functions are
// edgellama::avx_vnni_rows8::gemm_*). Compiled with -mavxvnni (CMakeLists.txt, only where the
// compiler and assembler support it) and only called through the avx_vnni KernelSet, which dispatch
// hands out after cpuid leaf 7.1 showed AVX-VNNI.
#define EDGELLAMA_AVX_VNNI 1
#include "../avx2/gemm_rows8_avx2.cpp"
