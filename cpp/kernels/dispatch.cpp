// Picks the KernelSet once: the best level the CPU *and the OS* support (cpu_features.h: x86 cpuid +
// xgetbv; aarch64 hwcaps / sysctl / IsProcessorFeaturePresent), or the level EDGELLAMA_ISA names.
// Compiled for the baseline ISA like the rest of the core.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "edgellama/errors.h"
#include "edgellama/kernels.h"

#include "cpu_features.h"

namespace edgellama {

namespace {

const CpuFeatures& features() {
  static const CpuFeatures f = detect_cpu_features();  // cpu_features_<family>.cpp
  return f;
}

// A higher tier's set: a copy of the lower tier's set with the higher tier's kernels put over it,
// built on first use (a function-local static: no dependence on the order in which globals of other
// files are initialized, and no code of either ISA runs to build it; it is plain data copying,
// compiled for the baseline ISA here). Types without a kernel of the higher tier keep the lower one.
// avx512 = avx2 + kAvx512Overrides; neon_i8mm = neon + kNeonI8mmOverrides.
[[maybe_unused]] KernelSet merge_over(const KernelSet& base, const KernelSet& over) {  // unused on other families
  KernelSet k = base;
  k.name = over.name;
  if (over.quantize_q8x32) k.quantize_q8x32 = over.quantize_q8x32;
  if (over.quantize_q8k) k.quantize_q8k = over.quantize_q8k;
  for (int i = 0; i < kMaxTypeId; ++i)
    if (over.gemm[i]) k.gemm[i] = over.gemm[i];
  if (over.attn_tile) k.attn_tile = over.attn_tile;
  if (over.silu_mul) k.silu_mul = over.silu_mul;
  // A packed kernel must give gemm[]'s bits: where `over` brings its own gemm[], only its own packed
  // entry (possibly none: matmul then unpacks groups for gemm[]) goes with it.
  for (int i = 0; i < kMaxTypeId; ++i)
    if (over.gemm[i] || over.gemm_packed[i]) k.gemm_packed[i] = over.gemm_packed[i];
  for (int i = 0; i < kMaxTypeId; ++i)
    if (over.gemm[i] || over.gemm_packed_many[i]) k.gemm_packed_many[i] = over.gemm_packed_many[i];
  if (over.packed_max_tokens) k.packed_max_tokens = over.packed_max_tokens;
  return k;
}

#if defined(EDGELLAMA_X86)
const KernelSet& avx512_set() {
  static const KernelSet k = merge_over(kAvx2Kernels, kAvx512Overrides);
  return k;
}
#if defined(EDGELLAMA_HAVE_AVX_VNNI)
const KernelSet& avx_vnni_set() {
  static const KernelSet k = merge_over(kAvx2Kernels, kAvxVnniOverrides);
  return k;
}
#endif
#endif
#if defined(EDGELLAMA_ARM64)
const KernelSet& neon_i8mm_set() {
  static const KernelSet k = merge_over(kNeonKernels, kNeonI8mmOverrides);
  return k;
}
#endif

// Levels this build has kernels for. NEON without the dot-product extension (e.g. Cortex-A53/A72)
// falls back to scalar: the NEON set uses SDOT throughout.
const KernelSet* set_for(const std::string& isa) {
  if (isa == "scalar") return &kScalarKernels;
#if defined(EDGELLAMA_X86)
  if (isa == "avx2") return features().avx2 ? &kAvx2Kernels : nullptr;
#if defined(EDGELLAMA_HAVE_AVX_VNNI)
  if (isa == "avx_vnni") return features().avx_vnni ? &avx_vnni_set() : nullptr;
#endif
  if (isa == "avx512") return features().avx512 ? &avx512_set() : nullptr;
#endif
#if defined(EDGELLAMA_ARM64)
  if (isa == "neon") return features().neon_dot ? &kNeonKernels : nullptr;
  // The i8mm set keeps the SDOT kernels for single tokens and the types without an SMMLA kernel.
  if (isa == "neon_i8mm") return features().neon_dot && features().neon_i8mm ? &neon_i8mm_set() : nullptr;
#endif
  return nullptr;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

const KernelSet& pick() {
  const char* env = std::getenv("EDGELLAMA_ISA");
  if (env && *env) {
    const std::string want(env);
    const std::vector<std::string> known{"scalar", "avx2", "avx_vnni", "avx512", "neon", "neon_i8mm"};
    if (std::find(known.begin(), known.end(), want) == known.end())
      throw ArgumentError("EDGELLAMA_ISA='" + want + "' is not a known level (" + join(known) + ")");
    const KernelSet* k = set_for(want);
    if (!k)
      throw ArgumentError("EDGELLAMA_ISA='" + want + "' is not available on this CPU/build (available: " +
                          join(available_isas()) + ")");
    return *k;
  }
  return *set_for(best_isa());
}

}  // namespace

ActFormat act_format(GGMLType t) {
  switch (t) {
    case GGMLType::F32:
    case GGMLType::F16:
    case GGMLType::BF16:
      return ActFormat::F32;
    case GGMLType::Q4_0:
    case GGMLType::Q4_1:
    case GGMLType::Q5_0:
    case GGMLType::Q5_1:
    case GGMLType::Q8_0:
    case GGMLType::IQ4_NL:
    case GGMLType::MXFP4:
      return ActFormat::Q8x32;
    case GGMLType::Q2_K:
    case GGMLType::Q3_K:
    case GGMLType::Q4_K:
    case GGMLType::Q5_K:
    case GGMLType::Q6_K:
    case GGMLType::IQ4_XS:
    case GGMLType::TQ1_0:
    case GGMLType::TQ2_0:
    case GGMLType::IQ2_XXS:
    case GGMLType::IQ2_XS:
    case GGMLType::IQ2_S:
    case GGMLType::IQ3_XXS:
    case GGMLType::IQ3_S:
    case GGMLType::IQ1_S:
    case GGMLType::IQ1_M:
      return ActFormat::Q8K;
    default:
      return ActFormat::None;
  }
}

size_t act_row_bytes(ActFormat f, int64_t n) {
  switch (f) {
    case ActFormat::F32: return size_t(n) * sizeof(float);
    case ActFormat::Q8x32: return size_t(n / 32) * sizeof(ActQ8x32);
    case ActFormat::Q8K: return size_t(n / QK_K) * sizeof(block_q8_K);
    default: return 0;
  }
}

std::vector<std::string> available_isas() {
  std::vector<std::string> v{"scalar"};
#if defined(EDGELLAMA_X86)
  if (features().avx2) v.push_back("avx2");
#if defined(EDGELLAMA_HAVE_AVX_VNNI)
  if (features().avx_vnni) v.push_back("avx_vnni");  // implies avx2; listed below avx512 (best last)
#endif
  if (features().avx512) v.push_back("avx512");  // implies avx2 (detect() requires it)
#endif
#if defined(EDGELLAMA_ARM64)
  if (features().neon_dot) v.push_back("neon");
  if (features().neon_dot && features().neon_i8mm) v.push_back("neon_i8mm");
#endif
  return v;
}

std::string best_isa() { return available_isas().back(); }

const KernelSet* kernels_for(const std::string& isa) { return set_for(isa); }

const KernelSet& active_kernels() {
  static const KernelSet& k = pick();
  return k;
}

}  // namespace edgellama
