// Compute kernels behind matmul(): one KernelSet per ISA (scalar reference, AVX2, ...), picked once
// at load from cpuid / hwcaps (cpp/kernels/dispatch.cpp); EDGELLAMA_ISA=scalar|avx2|avx512|neon
// forces a level.
//
// Activation formats (internal, not byte-identical to ggml's):
//   weights Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 -> ActQ8x32 per 32 values: float d, float s = d*sum(qs), int8 qs
//   weights Q2_K..Q6_K               -> block_q8_K per 256 values (float d, int8 qs, int16 bsums[16])
//   weights F32/F16/BF16             -> the float activations themselves
// Quantization: d = max|x| / 127, q = round-to-nearest-even(x / d) (as x * (1/d)); every ISA produces
// the same bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "edgellama/quant_blocks.h"
#include "edgellama/quant_types.h"

namespace edgellama {

struct ActQ8x32 {
  float d;
  float s;
  int8_t qs[32];
};
static_assert(sizeof(ActQ8x32) == 40, "packed activation block");

enum class ActFormat { F32, Q8x32, Q8K, None };

// The activation format for a weight type (None: no int8/float kernel for that weight type).
ActFormat act_format(GGMLType weight_type);
// Bytes of one activation row of n values (n a multiple of the format's block size).
size_t act_row_bytes(ActFormat f, int64_t n);
inline int64_t act_block_size(ActFormat f) { return f == ActFormat::Q8x32 ? 32 : f == ActFormat::Q8K ? 256 : 1; }

// Quantize n floats (n a multiple of the block size) into the activation format.
using QuantizeActFn = void (*)(const float* x, void* out, int64_t n);

// Tiled product: y[t * y_stride + r] = dot(weight row r, activation row t) for r < nr, t < nt.
// n = values per row; weight rows are w_stride bytes apart, activation rows a_stride bytes apart.
using GemmFn = void (*)(int64_t n, const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* a,
                        size_t a_stride, int64_t nt, float* y, size_t y_stride);

constexpr int kMaxTypeId = 40;

// ---- attention (fast path) -----------------------------------------------------------------------
// Causal attention (optionally soft-capped and sliding-window, see the last fields) of a tile of
// query rows that share one KV head (a GQA group): n_tok consecutive
// tokens x group query heads. Keys are walked in blocks of kAttnBlock positions whose boundaries are
// absolute positions (0, 64, 128, ...), with an online softmax (running max and sum per row). Each
// row's arithmetic depends only on its own query and keys, never on the tile it was computed in, so
// the result is the same for any n_threads and n_batch.
constexpr int64_t kAttnBlock = 64;

// n rounded up to whole kAttnBlock blocks (cache regions, the ring, copies of whole blocks).
constexpr int64_t whole_attn_blocks(int64_t n) { return (n + kAttnBlock - 1) / kAttnBlock * kAttnBlock; }

// K/V cache layout: positions in blocks of kAttnBlock (a sequence's region starts at a block
// boundary), so that one head's share of a block -- what an attention tile reads for a key block --
// is one contiguous run of kAttnBlock x head_dim values, read in one sequential pass:
// - K: inside a block, column c (one of the kv_width values of a position) of the block's 64
//   positions is contiguous: element (row, c) at
//     (row / kAttnBlock) * kv_width * kAttnBlock + c * kAttnBlock + row % kAttnBlock,
//   so a head's key block is head_dim runs of 64 keys, converted straight into the [d][key] form the
//   scores are computed from (per key the same FMA chain over d: the same bits as from a
//   position-major cache) with no transposition;
// - V: inside a block, head by head, each head's 64 positions of head_dim values (position-major, as
//   p.V is accumulated key by key): element (row, c) at
//     (row / kAttnBlock) * kv_width * kAttnBlock + (c / head_dim) * head_dim * kAttnBlock
//       + (row % kAttnBlock) * head_dim + c % head_dim.
// Position-major V rows of all heads, 384 bytes apart for one head's 128 (SmolLM2), were the latency
// that bound decode at long contexts once K was blocked.
inline size_t k_cache_index(int64_t row, int64_t col, int64_t kv_width) {
  return size_t(row / kAttnBlock) * size_t(kv_width * kAttnBlock) + size_t(col * kAttnBlock + row % kAttnBlock);
}
inline size_t v_cache_index(int64_t row, int64_t col, int64_t kv_width, int64_t head_dim) {
  return size_t(row / kAttnBlock) * size_t(kv_width * kAttnBlock) +
         size_t((col / head_dim) * head_dim * kAttnBlock + (row % kAttnBlock) * head_dim + col % head_dim);
}

struct AttnTileArgs {
  int64_t head_dim;
  int64_t n_tok, group;      // rows: (t, j) for t < n_tok, j < group
  const float* q;            // row (t, j) at q + t * tok_stride + j * head_dim
  float* out;                // same layout as q
  int64_t tok_stride;        // floats between consecutive tokens of q and out
  int64_t n_keys0;           // keys (positions 0..n_keys0-1) seen by token 0; token t sees n_keys0 + t
  // K of key block b (keys 64b..64b+63) of this head at k + b * k_block_stride: head_dim runs of
  // kAttnBlock keys, run d = dimension d of the block's keys (k_cache_index). f16 or f32.
  const uint8_t* k;
  // V of key block b of this head at v + b * v_block_stride: kAttnBlock keys x head_dim values
  // (v_cache_index). f16 or f32.
  const uint8_t* v;
  size_t k_block_stride, v_block_stride;  // bytes
  bool k_f16, v_f16;
  float scale;               // score = scale * dot(q, k)
  float* scratch;            // attn_scratch_floats(head_dim, n_tok * group) floats
  // Soft-capping (gemma2): score = softcap * tanh(score / softcap) when > 0.
  float softcap = 0.0f;
  // Sliding window: a row that sees keys 0..n-1 attends only to the last `window` of them
  // (max(0, n - window)..n-1) when > 0; whole blocks before the tile's first key are never read.
  int64_t window = 0;
};
using AttnTileFn = void (*)(const AttnTileArgs& a);

// SwiGLU gate, fast path: g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i]. Element i's
// arithmetic must not depend on n or on i's place in the call (tails included), so any split of a
// row into calls gives the same bits.
using SiluMulFn = void (*)(float* g, const float* u, int64_t n);

// Scratch for one tile: the converted K and V blocks, the running max and sum of each row and one
// row of block scores.
inline size_t attn_scratch_floats(int64_t head_dim, int64_t n_rows) {
  return size_t(2 * kAttnBlock * head_dim + 2 * n_rows + kAttnBlock + 16);
}

struct KernelSet {
  const char* name;             // "scalar", "avx2", ...
  QuantizeActFn quantize_q8x32;
  QuantizeActFn quantize_q8k;
  GemmFn gemm[kMaxTypeId];      // indexed by ggml type id; nullptr = no kernel
  // Fast-path attention tile; SIMD sets may assume head_dim % 8 == 0 (the caller uses the scalar
  // kernel otherwise). nullptr = use kScalarKernels' kernel.
  AttnTileFn attn_tile;
  SiluMulFn silu_mul;  // nullptr = use kScalarKernels' kernel
  // Weights packed at load (edgellama/packed_layout.h): w = the first group of kPackRows rows, nr a
  // multiple of kPackRows; bit-identical to gemm[] on the same rows in the GGUF layout. The model
  // packs a matrix only if the active set has its entry. More than packed_max_tokens tokens (0 = no
  // limit): gemm_packed_many below, or if that is nullptr (or this is), matmul unpacks a few groups
  // at a time into scratch and calls gemm[].
  GemmFn gemm_packed[kMaxTypeId];
  int64_t packed_max_tokens;
  // Packed weights and more than packed_max_tokens tokens (prefill): a kernel that reads the packed
  // groups itself, called once for all the task's rows; same bits as gemm[]. nullptr = unpack.
  GemmFn gemm_packed_many[kMaxTypeId];
};

// The set picked at load (first call). Throws ArgumentError if EDGELLAMA_ISA names an unknown level
// or one this CPU / OS cannot run.
const KernelSet& active_kernels();
// A named set if this CPU can run it, else nullptr.
const KernelSet* kernels_for(const std::string& isa);
// Names this CPU can run, best last ("scalar" always first).
std::vector<std::string> available_isas();
// The set of the best level the CPU supports (ignoring EDGELLAMA_ISA).
std::string best_isa();

// Per-ISA sets, defined in cpp/kernels/<isa>/. Data only: referencing them executes no code of
// that ISA; only calling through them does, and dispatch only hands out sets the CPU supports.
extern const KernelSet kScalarKernels;
#if defined(EDGELLAMA_X86)
extern const KernelSet kAvx2Kernels;
// AVX-512 F/BW/VL/DQ/VNNI kernels (cpp/kernels/avx512/) for the types that have one; nullptr entries
// (and the quantizers, attention, SwiGLU) are taken from kAvx2Kernels when dispatch builds the
// "avx512" set. Not a complete set on its own: use kernels_for("avx512").
extern const KernelSet kAvx512Overrides;
#if defined(EDGELLAMA_HAVE_AVX_VNNI)
// AVX-VNNI (256-bit VEX vpdpbusd; cpp/kernels/avx_vnni/) rows8 kernels for the 32-value block
// formats; the rest is taken from kAvx2Kernels when dispatch builds the "avx_vnni" set. Not a
// complete set on its own: use kernels_for("avx_vnni").
extern const KernelSet kAvxVnniOverrides;
#endif
#endif
#if defined(EDGELLAMA_ARM64)
extern const KernelSet kNeonKernels;  // NEON + dot product (Armv8.2 SDOT); needs HWCAP_ASIMDDP
// NEON int8 matrix multiply (Armv8.6 SMMLA; cpp/kernels/neon/kernels_neon_i8mm.cpp) for the types that
// have one; the rest is taken from kNeonKernels when dispatch builds the "neon_i8mm" set. Needs
// HWCAP2_I8MM and dotprod. Not a complete set on its own: use kernels_for("neon_i8mm").
extern const KernelSet kNeonI8mmOverrides;
#endif

}  // namespace edgellama
