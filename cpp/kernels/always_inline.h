// EDGELLAMA_ALWAYS_INLINE: for kernel helpers that take or return register arrays by pointer. When GCC
// does not inline them (its heuristics gave up on step_q8 in the 1-token Q8_0 kernel, and on the asm
// integer cores of the 4-token decode and Q6_K pair tiles), the arrays go through the stack on every
// call: a store and a reload per vector.
#pragma once

// EDGELLAMA_ALWAYS_INLINE_LAMBDA goes after a lambda's parameter list (the per-block step a kernel
// walk calls with the block's integer sums).
#if defined(__GNUC__) || defined(__clang__)
#define EDGELLAMA_ALWAYS_INLINE __attribute__((always_inline)) inline
#define EDGELLAMA_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define EDGELLAMA_ALWAYS_INLINE __forceinline
#define EDGELLAMA_ALWAYS_INLINE_LAMBDA
#endif
