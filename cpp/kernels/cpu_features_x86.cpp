// x86 / x86-64 feature detection: cpuid leaves 1 and 7 for the instruction sets, xgetbv(0) for the
// register state the OS saves on a context switch (a CPU with AVX-512 under an OS that does not
// save ZMM state must not run AVX-512 code). Compiled for the baseline ISA.
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#include <cstdint>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>  // __cpuid, __cpuidex, _xgetbv (MSVC; no /arch flag needed)
#else
#include <cpuid.h>   // GCC, Clang, clang-cl, MinGW
#endif

#include "cpu_features.h"

namespace edgellama {
namespace {

// cpuid with a sub-leaf; false when the leaf is above the highest one the CPU supports.
bool cpuid(unsigned leaf, unsigned subleaf, unsigned r[4]) {
#if defined(_MSC_VER) && !defined(__clang__)
  int max_leaf[4];
  __cpuid(max_leaf, int(leaf & 0x80000000u));
  if (unsigned(max_leaf[0]) < leaf) return false;
  int out[4];
  __cpuidex(out, int(leaf), int(subleaf));
  for (int i = 0; i < 4; ++i) r[i] = unsigned(out[i]);
  return true;
#else
  return __get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3]) != 0;
#endif
}

uint64_t xgetbv0() {
#if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#else
  uint32_t eax, edx;
  // xgetbv with ecx = 0 (raw bytes: the baseline compile flags do not allow the mnemonic intrinsic).
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
#endif
}

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
  unsigned r1[4], r7[4];  // eax, ebx, ecx, edx
  if (!cpuid(1, 0, r1)) return f;
  const unsigned c = r1[2];
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_ok = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
  const bool zmm_ok = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!cpuid(7, 0, r7)) return f;
  const unsigned b7 = r7[1], c7 = r7[2];
  const bool avx2 = b7 & (1u << 5);
  f.avx2 = ymm_ok && avx2 && fma && f16c;
  const bool avx512f = b7 & (1u << 16), avx512dq = b7 & (1u << 17), avx512bw = b7 & (1u << 30),
             avx512vl = b7 & (1u << 31), vnni = c7 & (1u << 11);
  f.avx512 = f.avx2 && zmm_ok && avx512f && avx512dq && avx512bw && avx512vl && vnni;
  // AVX-VNNI: its own bit in leaf 7 subleaf 1 (subleaf 0's EAX gives the highest subleaf); YMM state
  // only, so a CPU may have it without AVX-512 (Alder Lake and later) or with it (Zen 5, Sapphire Rapids).
  unsigned r71[4];
  if (r7[0] >= 1 && cpuid(7, 1, r71)) f.avx_vnni = f.avx2 && (r71[0] & (1u << 4));
  return f;
}

}  // namespace edgellama
#endif
