// apply_token_mask: see edgellama/token_mask.h.
#include "edgellama/token_mask.h"

#include <limits>

namespace edgellama {

int32_t apply_token_mask(float* logits, int32_t n_vocab, const uint32_t* allowed) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const size_t n_words = token_mask_words(n_vocab);
  int32_t n_allowed = 0;
  for (size_t w = 0; w < n_words; ++w) {
    const int32_t base = int32_t(w * 32);
    const int32_t end = base + 32 < n_vocab ? base + 32 : n_vocab;
    uint32_t bits = allowed[w];
    // Grammars usually allow either almost nothing or almost everything: skip whole words fast.
    if (bits == 0xFFFFFFFFu && end - base == 32) {
      n_allowed += 32;
      continue;
    }
    for (int32_t i = base; i < end; ++i, bits >>= 1) {
      if (bits & 1u) {
        ++n_allowed;
      } else {
        logits[i] = kNegInf;
      }
    }
  }
  return n_allowed;
}

}  // namespace edgellama
