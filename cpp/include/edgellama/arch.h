// What distinguishes one supported architecture from another, in one place (cpp/model/arch_table.cpp).
// The loader and the forward pass read these fields and never test architecture names, so a new
// LLaMA-like family is a new table row plus whatever genuinely new operation it needs. The same table
// is exposed to Python as _core.architectures() (converter, `edgellama info`, tests).
#pragma once
#include <string>
#include <vector>

namespace edgellama {

enum class RopeStyle {
  Adjacent,   // ggml "normal" rope (llama): rotates pairs (x[2i], x[2i+1])
  HalfSplit,  // ggml "neox" rope (qwen2): rotates pairs (x[i], x[i + n_rot/2])
};

enum class Activation {
  SiLU,      // SwiGLU: silu(gate) * up
  GELUTanh,  // GeGLU (gemma): gelu_tanh(gate) * up
};

enum class QKNorm {
  None,
  PerHead,  // RMS norm of each head's head_dim values, one weight of head_dim (qwen3, gemma3)
  Whole,    // RMS norm over all heads at once, weight of n_head*head_dim (olmo2)
};

// Where a weight sits in the network. Policies that depend on the kind of weight (the residual
// activation pass in matmul.cpp, per-tensor quantization mixes) read this, never the tensor name.
enum class TensorRole {
  Other,
  TokenEmbd,
  Output,  // the logits projection (token_embd when tied)
  AttnQ,
  AttnK,
  AttnV,
  AttnOut,
  FfnGate,
  FfnUp,
  FfnDown,
};
const char* tensor_role_name(TensorRole r);  // GGUF name stem: "attn_q", "output", ...
// The role of an unfused GGUF tensor by its name ("blk.3.attn_k.weight" -> AttnK; unknown -> Other).
TensorRole tensor_role_from_name(const std::string& gguf_name);

struct ArchSpec {
  const char* name;  // general.architecture and the prefix of its metadata keys
  const char* hf_classes = "";  // Hugging Face config "architectures" entries that map here (", "-separated)
  RopeStyle rope_style = RopeStyle::Adjacent;
  double default_rope_base = 10000.0;  // when {arch}.rope.freq_base is absent

  // --- tensors per layer ---
  bool qkv_bias = false;       // attention projections may carry biases (blk.N.attn_{q,k,v}.bias)
  bool fused_qkv = false;      // one blk.N.attn_qkv.weight holding Q, K, V rows in that order (phi3)
  bool fused_gate_up = false;  // blk.N.ffn_up.weight holds the gate rows then the up rows (phi3)
  bool pre_norms = true;       // attn_norm / ffn_norm before each block (olmo2: none)
  bool post_norms = false;     // attn_post_norm / post_ffw_norm on each block's output before the residual add
  QKNorm qk_norm = QKNorm::None;  // attn_q_norm / attn_k_norm (before rope)

  // --- per-layer operations ---
  Activation activation = Activation::SiLU;
  bool embd_scale_sqrt = false;  // x = embed(token) * sqrt(n_embd) (gemma family)
  // Granite's multipliers come from metadata ({arch}.embedding_scale, .residual_scale,
  // .attention.scale, .logit_scale) for every architecture; this only documents who writes them.
  bool multipliers = false;
  // Attention scale: {arch}.attention.scale when present, else 1/sqrt(head_dim), except for the layer
  // count below: Gemma 2/3 27B scale queries by 1/sqrt(n_embd / n_head) (their query_pre_attn_scalar),
  // which their GGUF files do not record; llama.cpp recognises them by layer count, and so do we.
  int64_t embd_per_head_scale_n_layer = 0;  // 0 = none

  // --- attention pattern ---
  // Sliding-window layers: 0 = none. n > 0: layer il is windowed when il % n < n - 1 (llama.cpp's
  // rule; gemma2: 2 = every other layer starting with layer 0, gemma3: 6 = five local, one global),
  // when the file has {arch}.attention.sliding_window. {arch}.attention.sliding_window_pattern overrides n.
  int swa_pattern = 0;
  // Windowed layers use {arch}.rope.freq_base_swa (default below) and no rope scaling (gemma3).
  double default_rope_base_swa = 0.0;  // 0 = same base as the global layers
  // NoPE layers: every n-th layer (il + 1) % n == 0 skips rope (smollm3: 4). 0 = rope everywhere.
  int nope_every = 0;
  // Soft-capping read from {arch}.attn_logit_softcapping / .final_logit_softcapping when present.
  bool softcap = false;
};

// nullptr when the architecture is not supported.
const ArchSpec* find_arch(const std::string& name);
// Every supported architecture, in table order.
const std::vector<ArchSpec>& all_archs();
// "llama, qwen2, ..." for error messages.
std::string supported_arch_names();

}  // namespace edgellama
