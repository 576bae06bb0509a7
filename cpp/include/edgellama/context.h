// An inference context: the KV cache, the scratch buffers and the thread pool for one model.
// decode() appends tokens to the cache and produces logits. All memory is sized at construction;
// nothing is allocated per token. Not thread-safe: one caller at a time (the Python layer locks).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "edgellama/matmul.h"
#include "edgellama/model.h"
#include "edgellama/thread_pool.h"

namespace edgellama {

enum class KVType { F32, F16 };

struct ContextParams {
  int64_t n_ctx = 2048;
  int n_threads = 0;         // 0 = physical cores
  int64_t n_batch = 512;     // tokens per forward chunk (prompt processing)
  KVType type_k = KVType::F16;
  KVType type_v = KVType::F16;
  MatmulPrecision precision = MatmulPrecision::Fast;
};

// Mean squared input activation per column of one weight (for calibrated quantization).
struct ActivationStats {
  std::vector<double> sum_sq;
  int64_t count = 0;
};

class Context {
 public:
  Context(std::shared_ptr<const Model> model, const ContextParams& params);

  // Evaluate n tokens at positions n_past()..n_past()+n-1, appending them to the KV cache.
  // logits: n * n_vocab floats when all_logits, else n_vocab floats for the last token; nullptr
  // only fills the KV cache.
  // Throws ArgumentError (state unchanged) for an id outside the vocabulary or a full context.
  void decode(const int32_t* tokens, int64_t n, float* logits, bool all_logits);

  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return params_.n_ctx; }
  int n_threads() const { return pool_.size(); }
  const ContextParams& params() const { return params_; }
  const Model& model() const { return *model_; }
  // Forget cache entries from position n on (n <= n_past()).
  void truncate(int64_t n);

  void set_collect_activation_stats(bool on) { collect_stats_ = on; }
  const std::map<std::string, ActivationStats>& activation_stats() const { return stats_; }
  void clear_activation_stats() { stats_.clear(); }

 private:
  void forward_chunk(const int32_t* tokens, int64_t n, float* logits, bool all_logits);
  void attention(int64_t il, int64_t n);
  void attention_exact(int64_t il, int64_t n);
  void attention_fast(int64_t il, int64_t n);
  // Per-layer attention parameters (arch + metadata): score scale, soft-cap, sliding window.
  struct AttnVariant {
    float scale = 1.0f;
    float softcap = 0.0f;
    int64_t window = 0;
  };
  AttnVariant attn_variant(int64_t il) const;
  void ffn_activation(int64_t n);
  // swa_tables: the sliding-window layers' own rope tables (gemma3's local base).
  void rope(float* x, int64_t n, int64_t n_heads, bool swa_tables) const;
  void project(const WeightView& w, const float* x, int64_t n, float* y);
  // Several weights on the same input (Q/K/V, gate/up): activations quantized once, one job.
  void project_shared(std::initializer_list<MatmulOutput> outs, const float* x, int64_t n);
  void record_stats(const WeightView& w, const float* x, int64_t n);

  std::shared_ptr<const Model> model_;
  ContextParams params_;
  ThreadPool pool_;
  MatmulScratch mm_scratch_;
  int64_t n_past_ = 0;

  // KV cache: per layer [n_ctx][kv_width] of F32 or F16 values.
  std::vector<std::vector<uint8_t>> k_cache_, v_cache_;

  // Per-chunk scratch, sized for n_batch tokens.
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;  // [n_batch][n_rot/2]
  std::vector<double> inv_freq_;            // [n_rot/2]
  std::vector<float> rope_cos_swa_, rope_sin_swa_;  // windowed layers with their own base (else empty)
  std::vector<double> inv_freq_swa_;
  std::vector<float> att_scores_;           // per thread: n_ctx scores
  std::vector<float> att_row_tmp_;          // per thread: one K or V head row widened to float
  std::vector<float> attn_scratch_;         // fast attention: per thread, attn_scratch_stride_ floats
  size_t attn_scratch_stride_ = 0;

  bool collect_stats_ = false;
  std::map<std::string, ActivationStats> stats_;
};

}  // namespace edgellama
