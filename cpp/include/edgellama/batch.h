// A multi-sequence batch for Context::decode_batch: each row is one token of one sequence.
//
// The KV cache of a context with n_seq sequences is one region of n_ctx positions per sequence
// (a KV cache per slot, see context.h). A row (token, seq, pos) writes its K/V at position pos of
// its sequence's region and attends to positions 0..pos of that region only. The matmuls run over
// all rows of the batch at once, so the weights are read once per step for every sequence.
//
// Rows of one sequence must continue it: the i-th row of sequence s in the batch has position
// n_past(s) + i (rows of different sequences may interleave). Rolling a sequence back is
// Context::truncate_seq. A row's results (its logits, its K/V) do not depend on the other rows in
// the batch: the kernels give the same bits for any number of rows, and attention reads only the
// row's own sequence.
#pragma once
#include <cstdint>

namespace edgellama {

struct BatchView {
  const int32_t* tokens = nullptr;      // [n] token ids
  const int32_t* seq_ids = nullptr;     // [n] sequence of each row, 0..n_seq-1
  const int64_t* positions = nullptr;   // [n] position of each row; nullptr: append (n_past(s) + i)
  const uint8_t* want_logits = nullptr; // [n] nonzero: write this row's logits; nullptr: none
  int64_t n = 0;
};

}  // namespace edgellama
