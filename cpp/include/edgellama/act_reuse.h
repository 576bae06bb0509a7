#pragma once
// Reuse of a kernel's per-call activation rewrite across the tasks of one matmul call.
//
// Several AVX-512 prefill kernels first rewrite the call's activations once (act_u8: bytes + 128 for
// IQ4_XS / Q6_K; act_sub32_sums for Q4_K / Q5_K; act_q8_offsets for Q8_0 / IQ4_NL), a pass over all
// nt x n activation bytes. matmul splits one call into tasks of at most 256 rows (kMaxRowChunk), and
// each task calls the kernel again, so the rewrite ran once per task: 8 times for a 2048-row matrix,
// 22 for ffn_gate/up (TinyLlama IQ4_XS pp512, 1 thread: act_u8 alone was 2.3% of the samples).
//
// The runtime runs every task of a call inside an ActCallScope carrying an id unique to that call.
// Within a scope the activation bytes do not change, so a kernel may keep its rewrite of (id, pointer,
// stride, tokens, blocks) per thread and hand it out again. Outside any scope (id 0: a test or tool
// calling a kernel directly, whose buffer may hold new data at the same address) nothing is reused.
#include <cstdint>

namespace edgellama {

uint64_t new_act_call_id();      // a fresh id, never 0 (thread-safe)
uint64_t current_act_call_id();  // the id of the calling thread's innermost scope, or 0

class ActCallScope {
 public:
  explicit ActCallScope(uint64_t id);
  ~ActCallScope();
  ActCallScope(const ActCallScope&) = delete;
  ActCallScope& operator=(const ActCallScope&) = delete;

 private:
  uint64_t previous_;
};

}  // namespace edgellama
