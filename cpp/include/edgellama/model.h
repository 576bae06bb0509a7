// A loaded model: hyper-parameters read from GGUF metadata and weight views into the mapped file.
// Immutable after load and shared by any number of contexts.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edgellama/arch.h"
#include "edgellama/gguf.h"
#include "edgellama/tensor.h"
#include "edgellama/weight_arena.h"

namespace edgellama {

struct HParams {
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;   // per-head width of Q/K/V
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  int64_t n_rot = 0;      // rotated dims per head
  double rms_eps = 1e-5;
  double rope_base = 10000.0;
  double rope_linear_factor = 1.0;  // positions are divided by this ("linear" scaling)
  std::string rope_scaling_type = "none";
  // LongRoPE (Phi-3 128k / Phi-3.5): the pretraining context the short factors are for, and the
  // magnitude factor cos/sin are multiplied by (sqrt(1 + ln(s) / ln(n_ctx_orig)), written by the
  // converter; 1 for every other file).
  int64_t n_ctx_orig = 0;            // rope.scaling.original_context_length (default n_ctx_train)
  double rope_attn_factor = 1.0;     // rope.scaling.attn_factor

  // Architecture settings read from metadata (defaults: none of them applies).
  int64_t n_swa = 0;                 // sliding window (keys per query incl. itself) of windowed layers
  double rope_base_swa = 0.0;        // rope base of windowed layers (when the arch has one)
  double attn_scale = 0.0;           // score = attn_scale * q.k; 0 = 1/sqrt(head_dim)
  double attn_softcap = 0.0;         // score = c * tanh(score / c) when > 0
  double final_softcap = 0.0;        // logit = c * tanh(logit / c) when > 0
  double embd_scale = 1.0;           // x = embed(token) * embd_scale
  double residual_scale = 1.0;       // x += residual_scale * block(x)
  double logit_scale = 1.0;          // logits = output(x) / logit_scale
  std::vector<bool> layer_swa;       // per layer: windowed attention
  std::vector<bool> layer_rope;      // per layer: rope applied (false: NoPE layer)

  int64_t q_width() const { return n_head * head_dim; }
  int64_t kv_width() const { return n_head_kv * head_dim; }
};

struct LayerWeights {
  // Small vectors are converted to float at load; an empty vector = the arch has no such norm.
  std::vector<float> attn_norm, ffn_norm;            // before each block
  std::vector<float> attn_post_norm, ffn_post_norm;  // on each block's output (gemma2/3, olmo2)
  std::vector<float> q_norm, k_norm;                 // QK-norm (ArchSpec::qk_norm)
  // wq/wk/wv (w_gate/w_up) may be row ranges of one fused tensor (phi3's attn_qkv, ffn_up).
  WeightView wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;  // empty when the file has no biases
  WeightView w_gate, w_up, w_down;
};

class Model {
 public:
  // Maps the file, validates metadata and every tensor's presence, type and shape.
  // vocab_only: parse and validate the file but do not set up weights (tokenizer use only).
  static std::shared_ptr<Model> load(const std::string& path, bool vocab_only = false);
  // The same over an already parsed file (GGUFFile::from_bytes: fuzzing, tests).
  static std::shared_ptr<Model> load(std::shared_ptr<GGUFFile> file, bool vocab_only = false);

  const GGUFFile& file() const { return *file_; }
  std::shared_ptr<GGUFFile> file_ptr() const { return file_; }
  const ArchSpec& arch() const { return *arch_; }
  const HParams& hparams() const { return hp_; }
  bool vocab_only() const { return vocab_only_; }

  WeightView tok_embd;
  WeightView output;               // = tok_embd when the output projection is tied
  bool tied_output = false;
  std::vector<float> output_norm;
  std::vector<float> rope_freq_factors;  // Llama-3.1-style per-frequency divisors (empty: none)
  // LongRoPE per-frequency divisors (both empty, or both n_rot/2): a context chooses one set by its
  // n_ctx (long when n_ctx > n_ctx_orig), as llama.cpp does. rope_freq_factors, when present, wins.
  std::vector<float> rope_factors_long, rope_factors_short;
  std::vector<LayerWeights> layers;

 private:
  // Repacks the matrices the kernels have a packed kernel for (model_packing.cpp).
  void pack_weights();
  std::unique_ptr<WeightArena> packed_;  // the packed copies the views point into

  std::shared_ptr<GGUFFile> file_;
  const ArchSpec* arch_ = nullptr;
  HParams hp_;
  bool vocab_only_ = false;
};

}  // namespace edgellama
