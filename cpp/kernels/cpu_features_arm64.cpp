// aarch64 feature detection. Only the OS can tell (the ID registers are privileged), each its own way:
//   Linux:   getauxval(AT_HWCAP / AT_HWCAP2) bits, as the kernel reports them
//   macOS:   sysctlbyname("hw.optional.arm.FEAT_DotProd" / "FEAT_I8MM") -> int 0/1 (every Apple
//            M-series chip has DotProd; M2 and later have I8MM)
//   Windows: IsProcessorFeaturePresent(PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE)
// Any other OS: nothing detected, so the scalar kernels run (correct, never SIGILL).
#if defined(__aarch64__) || defined(_M_ARM64)

#if defined(__linux__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#elif defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#endif

#include "cpu_features.h"

namespace edgellama {
namespace {

#if defined(__APPLE__)
// The FEAT_* names exist from macOS 12 on; `if_unknown` answers for older versions (macOS 11 on
// an M1), where the name is missing.
bool sysctl_flag(const char* name, bool if_unknown) {
  int value = 0;
  size_t size = sizeof value;
  if (sysctlbyname(name, &value, &size, nullptr, 0) != 0) return if_unknown;
  return value != 0;
}
#endif

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
  f.neon_dot = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  f.neon_i8mm = (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#elif defined(__APPLE__)
  // Every Apple-silicon Mac (M1 and later) has DotProd, so a macOS too old to say is an M1-era
  // system that has it; I8MM (M2 and later) is assumed absent unless reported.
  f.neon_dot = sysctl_flag("hw.optional.arm.FEAT_DotProd", /*if_unknown=*/true);
  f.neon_i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM", /*if_unknown=*/false);
#elif defined(_WIN32)
#ifndef PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE
#define PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE 43
#endif
  f.neon_dot = IsProcessorFeaturePresent(PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE) != 0;
#endif
  return f;
}

}  // namespace edgellama
#endif
