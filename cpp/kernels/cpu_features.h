// What the CPU *and the OS* let us run, detected once (dispatch.cpp picks the KernelSet from it).
// One file per processor family, each with its per-OS branches:
//   cpu_features_x86.cpp    cpuid + xgetbv (GCC/Clang: <cpuid.h>; MSVC: <intrin.h>), any OS
//   cpu_features_arm64.cpp  Linux: getauxval(AT_HWCAP); macOS: sysctl hw.optional.arm.FEAT_*;
//                           Windows: IsProcessorFeaturePresent
// Each compiles to nothing on the other family; a build for neither gets all-false (scalar).
#pragma once

namespace edgellama {

struct CpuFeatures {
  bool avx2 = false;      // AVX2 + FMA + F16C with YMM state enabled by the OS
  bool avx_vnni = false;  // avx2 + the 256-bit VEX VPDPBUSD (cpuid leaf 7 subleaf 1, EAX bit 4)
  bool avx512 = false;    // F + BW + VL + DQ + VNNI with ZMM state enabled by the OS
  bool neon_dot = false;  // Armv8.2 dot product (SDOT/UDOT)
  bool neon_i8mm = false; // Armv8.6 int8 matrix multiply (SMMLA): the "neon_i8mm" kernel set
};

// Runs the detection (not cached: dispatch.cpp keeps the one result).
CpuFeatures detect_cpu_features();

}  // namespace edgellama
