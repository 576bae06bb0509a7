// Processors with no SIMD kernels in this build (neither x86 nor aarch64): nothing detected, the
// scalar kernels run.
#if !(defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86) || \
      defined(__aarch64__) || defined(_M_ARM64))
#include "cpu_features.h"

namespace edgellama {
CpuFeatures detect_cpu_features() { return CpuFeatures(); }
}  // namespace edgellama
#endif
