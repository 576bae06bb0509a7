// An inference context: the KV cache, the scratch buffers and the thread pool for one model.
// decode() appends tokens to the cache and produces logits. All memory is sized at construction;
// nothing is allocated per token. Not thread-safe: one caller at a time (the Python layer locks).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "edgellama/batch.h"
#include "edgellama/kernels.h"
#include "edgellama/matmul.h"
#include "edgellama/model.h"
#include "edgellama/thread_pool.h"

namespace edgellama {

enum class KVType { F32, F16 };

struct ContextParams {
  int64_t n_ctx = 2048;      // positions per sequence
  int64_t n_seq = 1;         // sequences (slots), each with its own n_ctx KV region (batch.h)
  int n_threads = 0;         // 0 = physical cores
  int64_t n_batch = 512;     // tokens per forward chunk (prompt processing)
  KVType type_k = KVType::F16;
  KVType type_v = KVType::F16;
  MatmulPrecision precision = MatmulPrecision::Fast;
  // RoPE overrides (llama.cpp's rope_freq_base / rope_freq_scale): 0 = what the model file says.
  // Positions are multiplied by freq_scale (the file's linear scaling is 1 / factor).
  double rope_freq_base = 0.0;
  double rope_freq_scale = 0.0;
  // Sliding-window layers keep full n_ctx K/V regions (llama.cpp's swa_full) instead of a ring of
  // the last window + n_batch (+ one attention tile) positions. Same logits either way; the ring
  // saves memory but limits how far truncate() can roll back (can_truncate_seq).
  bool swa_full = false;
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

  // Multi-sequence form (batch.h): one forward pass over rows of several sequences. logits gets
  // one n_vocab row per row whose want_logits is set, in row order. Throws ArgumentError (state
  // unchanged) for a bad token/sequence id, a position that does not continue its sequence, or a
  // sequence whose context is full.
  void decode_batch(const BatchView& batch, float* logits);

  int64_t n_past() const { return seq_past_[0]; }  // sequence 0 (the single-sequence API)
  int64_t n_past_seq(int64_t seq) const;
  int64_t n_seq() const { return params_.n_seq; }
  // Forget sequence seq's cache entries from position n on (n <= n_past_seq(seq)); 0 clears it.
  // Throws ArgumentError (state unchanged) when can_truncate_seq(seq, n) is false.
  void truncate_seq(int64_t seq, int64_t n);
  // Whether the cache still holds what decoding from position n needs: always for n = 0 or n =
  // n_past, and for models without sliding-window layers; with a ring buffer (kv_ring_size() > 0)
  // only while the window before n has not been overwritten (a rollback of up to n_batch + 1
  // positions always works). Otherwise clear the sequence (truncate to 0) and re-evaluate.
  bool can_truncate_seq(int64_t seq, int64_t n) const;
  // Make sequence dst hold sequence src's first n positions (all layers, K and V), as if dst had
  // evaluated the same n tokens itself: the rows are the same bits (a row's K/V depend only on its
  // token, its position and the positions before it; positions are unchanged, so RoPE'd keys are
  // valid as they are). dst's previous entries are dropped; src is unchanged. The server's
  // cross-slot prompt-prefix sharing. Defined in context_seq_copy.cpp.
  // Throws ArgumentError (state unchanged) for a bad sequence id, n outside 0..n_past_seq(src), or
  // when can_truncate_seq(src, n) is false (src's sliding-window ring no longer holds the window
  // before n). src == dst is truncate_seq(dst, n).
  void copy_seq_prefix(int64_t src, int64_t dst, int64_t n);
  // Positions per sequence a sliding-window layer's ring keeps (0: no ring, every layer has n_ctx).
  int64_t kv_ring_size() const { return ring_; }
  // Bytes of K/V cache memory (all layers and sequences).
  size_t kv_bytes() const;
  int64_t n_ctx() const { return params_.n_ctx; }
  int n_threads() const { return pool_.size(); }
  const ContextParams& params() const { return params_; }
  const Model& model() const { return *model_; }
  // LongRoPE files: whether this context rotates with the long factor set (n_ctx > n_ctx_orig).
  bool rope_long_factors() const {
    return !model_->rope_factors_long.empty() && model_->rope_freq_factors.empty() &&
           params_.n_ctx > model_->hparams().n_ctx_orig;
  }
  // Forget cache entries from position n on (n <= n_past()).
  void truncate(int64_t n);

  // Final-norm hidden states instead of logits (embeddings): evaluates n tokens like decode() and
  // writes n * n_embd floats (no output projection is computed). Defined in context_embeddings.cpp.
  void decode_hidden(const int32_t* tokens, int64_t n, float* hidden);
  // decode_batch's form of it: the final-norm hidden states of every row (b.n * n_embd floats, in
  // row order; b.want_logits is ignored), for embeddings of several inputs in one forward pass.
  void decode_batch_hidden(const BatchView& b, float* hidden);

  // The KV cache as bytes (header + the first n_past() rows of every layer), and back. A state
  // loads only into a context of the same model shape and KV types with n_ctx >= its n_past.
  // Defined in context_state.cpp.
  size_t state_size() const;
  void save_state(uint8_t* out, size_t size) const;
  void load_state(const uint8_t* data, size_t size);

  void set_collect_activation_stats(bool on) { collect_stats_ = on; }
  const std::map<std::string, ActivationStats>& activation_stats() const { return stats_; }
  void clear_activation_stats() { stats_.clear(); }

 private:
  // The forward pass over n rows whose sequence and position are in row_seq_/row_pos_; logits of
  // the rows listed in out_rows (n_out of them) go to logits, n_vocab floats each.
  void forward_chunk(const int32_t* tokens, int64_t n, float* logits, const int64_t* out_rows, int64_t n_out);
  void check_seq(int64_t seq, const char* what) const;
  // Whether layer il keeps its K/V in a ring (a sliding-window layer when ring_ > 0).
  bool ring_layer(int64_t il) const { return ring_ > 0 && model_->hparams().layer_swa[size_t(il)]; }
  // Rows of layer il's cache per sequence: n_ctx rounded up to whole K blocks (kAttnBlock rows, see
  // k_cache_index in kernels.h: a sequence's keys start at a block boundary), or 2 * ring_ (ring_ is
  // whole blocks) for a ring layer (position p is in rows p % ring_ and p % ring_ + ring_, so any
  // ring_ consecutive positions are contiguous rows for the attention kernel).
  int64_t seq_rows(int64_t il) const {
    return ring_layer(il) ? 2 * ring_ : whole_attn_blocks(params_.n_ctx);
  }
  // First row of sequence seq's region in layer il's K/V cache.
  int64_t seq_base(int64_t il, int64_t seq) const { return seq * seq_rows(il); }
  // The row of position p of sequence seq in layer il (the first copy for a ring layer).
  int64_t kv_slot(int64_t il, int64_t seq, int64_t p) const {
    return seq_base(il, seq) + (ring_layer(il) ? p % ring_ : p);
  }
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
  // swa_tables: the sliding-window layers' own rope tables (gemma3's local base). Rows [t0, t1) of x.
  void rope(float* x, int64_t t0, int64_t t1, int64_t n_heads, bool swa_tables) const;
  // fn(t0, t1) over [0, n) in token ranges on the pool, or once inline for few tokens: the per-token
  // work between the matmuls (norms, biases, QK-norm, RoPE, KV-cache stores, residual adds). Each
  // token's arithmetic is the same either way, so the bits do not depend on the split.
  template <class Fn>
  void for_tokens(int64_t n, const Fn& fn);
  void project(const WeightView& w, const float* x, int64_t n, float* y);
  // Several weights on the same input (Q/K/V, gate/up): activations quantized once, one job.
  void project_shared(std::initializer_list<MatmulOutput> outs, const float* x, int64_t n);
  void record_stats(const WeightView& w, const float* x, int64_t n);

  std::shared_ptr<const Model> model_;
  ContextParams params_;
  ThreadPool pool_;
  MatmulScratch mm_scratch_;
  std::vector<int64_t> seq_past_;  // [n_seq] positions filled per sequence
  // Sliding-window ring (see seq_rows): positions per sequence, 0 = off. window_floor_[s]: the first
  // position whose K/V every sliding-window layer still holds for sequence s (positions before it
  // were overwritten by the ring or not restored by load_state); 0 without windowed layers.
  int64_t ring_ = 0;
  std::vector<int64_t> window_floor_;

  // The rows of the chunk being evaluated: sequence and position of each, and the runs of
  // consecutive rows of one sequence (attention runs per run, against that sequence's cache).
  struct RowRun {
    int64_t row0, n, seq, pos0;
  };
  std::vector<int64_t> row_seq_, row_pos_, out_rows_;
  std::vector<RowRun> runs_;
  std::vector<std::pair<int64_t, int64_t>> attn_units_;  // fast attention: (run, token block)

  // KV cache: per layer [n_seq * seq_rows(il)][kv_width] of F32 or F16 values; sequence s owns
  // rows s*seq_rows .. (s+1)*seq_rows-1. One fixed region per slot keeps each sequence's keys
  // contiguous, so the attention kernel reads them exactly as in the single-sequence case (same
  // bits); a ring layer's doubled ring keeps the window contiguous too.
  std::vector<std::vector<uint8_t>> k_cache_, v_cache_;

  // Per-chunk scratch, sized for n_batch tokens.
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;  // [n_batch][n_rot/2]
  std::vector<double> inv_freq_;            // [n_rot/2]
  double rope_pos_divisor_ = 1.0;           // position / this = the rotated position
  std::vector<float> rope_cos_swa_, rope_sin_swa_;  // windowed layers with their own base (else empty)
  std::vector<double> inv_freq_swa_;
  std::vector<float> att_scores_;           // per thread: n_ctx scores
  std::vector<float> att_row_tmp_;          // per thread: one K or V head row widened to float
  std::vector<float> attn_scratch_;         // fast attention: per thread, attn_scratch_stride_ floats
  size_t attn_scratch_stride_ = 0;

  float* hidden_out_ = nullptr;  // set by decode_hidden: forward_chunk writes final-norm rows here

  bool collect_stats_ = false;
  std::map<std::string, ActivationStats> stats_;
};

}  // namespace edgellama
