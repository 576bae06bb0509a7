// What distinguishes one supported architecture from another, in one place. The forward pass reads
// these fields instead of testing architecture names, so a new LLaMA-like family is a new row.
#pragma once
#include <string>

namespace edgellama {

enum class RopeStyle {
  Adjacent,   // ggml "normal" rope (llama): rotates pairs (x[2i], x[2i+1])
  HalfSplit,  // ggml "neox" rope (qwen2): rotates pairs (x[i], x[i + n_rot/2])
};

struct ArchSpec {
  const char* name;          // general.architecture and the prefix of its metadata keys
  RopeStyle rope_style;
  bool qkv_bias;             // attention projections may carry biases (blk.N.attn_{q,k,v}.bias)
  double default_rope_base;  // when {arch}.rope.freq_base is absent
};

// nullptr when the architecture is not supported.
const ArchSpec* find_arch(const std::string& name);
// "llama, qwen2" for error messages.
std::string supported_arch_names();

}  // namespace edgellama
