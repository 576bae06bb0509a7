// Allowed-token bitsets for constrained decoding (JSON Schema, grammars, tool calls).
//
// A grammar engine (llguidance, driven from Python) writes, before each sampling step, one bit per
// vocabulary entry: bit (id % 32) of word (id / 32) is 1 when token `id` may come next. The layout
// is llguidance's (and vLLM's / llama.cpp's): little-endian 32-bit words, ceil(n_vocab / 32) of
// them. The sampler applies it to its private copy of the logits, so no Python loop ever walks the
// vocabulary.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgellama {

// Number of 32-bit words a mask over n_vocab tokens has.
inline size_t token_mask_words(int32_t n_vocab) { return (size_t(n_vocab) + 31) / 32; }

// Sets logits[i] = -inf for every i in [0, n_vocab) whose bit in `allowed` is 0.
// `allowed` has token_mask_words(n_vocab) words. Returns how many tokens stay allowed.
int32_t apply_token_mask(float* logits, int32_t n_vocab, const uint32_t* allowed);

}  // namespace edgellama
