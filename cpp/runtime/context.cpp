// The LLaMA-family forward pass over a chunk of tokens:
//   x = embed(tokens) [* embd_scale]
//   per layer:  x += [residual_scale *] [post_norm] Wo · attention(rope(qk_norm(Wq·norm(x))), rope(qk_norm(Wk·norm(x))), Wv·norm(x))
//               x += [residual_scale *] [post_norm] Wdown · (act(Wgate·norm(x)) * Wup·norm(x))
//   logits = [softcap](Woutput · norm(x) [/ logit_scale])
// The bracketed steps, the activation and the attention variant (scale, soft-capping, sliding
// window, NoPE layers) come from the model's ArchSpec row and metadata (arch.h, model.h), never from
// the architecture's name. Matrix products go through matmul() (threads, quantized kernels);
// element-wise per-layer operations are in layer_ops.cpp.
#include "edgellama/context.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "edgellama/errors.h"
#include "edgellama/fp16.h"
#include "edgellama/kernels.h"
#include "kv_layout.h"
#include "layer_ops.h"

namespace edgellama {

namespace {

constexpr int64_t kMaxContext = int64_t(1) << 24;
constexpr int kMaxThreads = 1024;
// Query tokens per fast-path attention task: each converted K/V block is reused by this many tokens
// x the GQA group's query heads, and a 512-token prompt still makes 16 tasks per KV head.
constexpr int64_t kAttnTileTokens = 32;

// y[t][i] += bias[i] for each of n rows (no-op for an absent bias).
void add_bias(float* y, const std::vector<float>& bias, int64_t n) {
  const int64_t w = int64_t(bias.size());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < w; ++i) y[t * w + i] += bias[size_t(i)];
}

// Validates the parameters; runs in the member initializer list, *before* the thread pool starts
// params.n_threads threads (a huge n_threads must be an error, not 100000 threads).
const ContextParams& checked_params(const Model& model, const ContextParams& params) {
  if (model.vocab_only()) throw ArgumentError("cannot create an inference context for a vocab_only model");
  if (params.n_ctx <= 0 || params.n_ctx > kMaxContext)
    throw ArgumentError("n_ctx must be between 1 and " + std::to_string(kMaxContext) + ", got " +
                        std::to_string(params.n_ctx));
  if (params.n_threads < 0 || params.n_threads > kMaxThreads)
    throw ArgumentError("n_threads must be between 1 and " + std::to_string(kMaxThreads) +
                        " (or 0 for the default), got " + std::to_string(params.n_threads));
  if (params.n_batch <= 0) throw ArgumentError("n_batch must be > 0, got " + std::to_string(params.n_batch));
  if (params.n_seq <= 0 || params.n_seq > kMaxContext / params.n_ctx)
    throw ArgumentError("n_seq must be between 1 and " + std::to_string(kMaxContext / params.n_ctx) +
                        " for n_ctx=" + std::to_string(params.n_ctx) + ", got " + std::to_string(params.n_seq));
  if (!std::isfinite(params.rope_freq_base) || params.rope_freq_base < 0)
    throw ArgumentError("rope_freq_base must be > 0 (or 0 for the model's), got " + std::to_string(params.rope_freq_base));
  if (!std::isfinite(params.rope_freq_scale) || params.rope_freq_scale < 0)
    throw ArgumentError("rope_freq_scale must be > 0 (or 0 for the model's), got " + std::to_string(params.rope_freq_scale));
  return params;
}

}  // namespace

Context::Context(std::shared_ptr<const Model> model, const ContextParams& params)
    : model_(std::move(model)),
      params_(checked_params(*model_, params)),
      pool_(params.n_threads > 0 ? params.n_threads : physical_core_count()) {
  params_.n_threads = pool_.size();
  params_.n_batch = std::min(params.n_batch, params.n_ctx);

  const HParams& hp = model_->hparams();
  const int64_t nb = params_.n_batch;
  const int64_t n_ctx = params_.n_ctx;
  seq_past_.assign(size_t(params_.n_seq), 0);
  window_floor_.assign(size_t(params_.n_seq), 0);

  // Sliding-window layers: a ring of the last window + n_batch + one attention tile's reach
  // (kAttnTileTokens queries whose first key block starts up to kAttnBlock - 1 before the window)
  // positions holds everything one chunk's attention reads, plus a rollback of n_batch + 1
  // (can_truncate_seq). Only when the doubled ring is smaller than n_ctx.
  bool any_window = false;
  for (int64_t il = 0; il < hp.n_layer; ++il) any_window = any_window || hp.layer_swa[size_t(il)];
  if (any_window && hp.n_swa > 0 && !params_.swa_full) {
    // whole blocks of kAttnBlock rows: the caches' blocks (k_cache_index / v_cache_index) must not
    // straddle the ring's two copies
    const int64_t ring = whole_attn_blocks(hp.n_swa + nb + kAttnTileTokens + kAttnBlock);
    if (2 * ring < n_ctx) ring_ = ring;
  }

  // KV cache: check the size before allocating so an absurd n_ctx is an error, not an abort.
  double kv_rows_all = 0;
  for (int64_t il = 0; il < hp.n_layer; ++il) kv_rows_all += double(seq_rows(il)) * double(params_.n_seq);
  const double kv_bytes = kv_rows_all * double(hp.kv_width()) *
                          double(kv_value_bytes(params_.type_k) + kv_value_bytes(params_.type_v));
  try {
    k_cache_.resize(size_t(hp.n_layer));
    v_cache_.resize(size_t(hp.n_layer));
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const int64_t kv_rows = seq_rows(il) * params_.n_seq;
      k_cache_[il].assign(size_t(kv_rows * hp.kv_width()) * kv_value_bytes(params_.type_k), 0);
      v_cache_[il].assign(size_t(kv_rows * hp.kv_width()) * kv_value_bytes(params_.type_v), 0);
    }
    x_.assign(size_t(nb * hp.n_embd), 0.0f);
    xb_.assign(size_t(nb * std::max(hp.n_embd, hp.q_width())), 0.0f);
    q_.assign(size_t(nb * hp.q_width()), 0.0f);
    k_.assign(size_t(nb * hp.kv_width()), 0.0f);
    v_.assign(size_t(nb * hp.kv_width()), 0.0f);
    att_.assign(size_t(nb * hp.q_width()), 0.0f);
    gate_.assign(size_t(nb * hp.n_ff), 0.0f);
    up_.assign(size_t(nb * hp.n_ff), 0.0f);
    row_seq_.assign(size_t(nb), 0);
    row_pos_.assign(size_t(nb), 0);
    out_rows_.assign(size_t(nb), 0);
    runs_.reserve(size_t(nb));
    attn_units_.reserve(size_t(nb));
    rope_cos_.assign(size_t(nb * hp.n_rot / 2), 0.0f);
    rope_sin_.assign(size_t(nb * hp.n_rot / 2), 0.0f);
    if (hp.rope_base_swa > 0) {
      rope_cos_swa_.assign(size_t(nb * hp.n_rot / 2), 0.0f);
      rope_sin_swa_.assign(size_t(nb * hp.n_rot / 2), 0.0f);
    }
    att_scores_.assign(size_t(pool_.size()) * size_t(n_ctx), 0.0f);
    att_row_tmp_.assign(size_t(pool_.size()) * size_t(hp.head_dim), 0.0f);
    attn_scratch_stride_ = attn_scratch_floats(hp.head_dim, kAttnTileTokens * (hp.n_head / hp.n_head_kv));
    attn_scratch_.assign(size_t(pool_.size()) * attn_scratch_stride_, 0.0f);
    mm_scratch_.reserve(pool_.size(), std::max({hp.n_embd, hp.n_ff, hp.q_width()}), nb);
  } catch (const std::bad_alloc&) {
    throw ArgumentError("cannot allocate the context for n_ctx=" + std::to_string(n_ctx) + " x n_seq=" +
                        std::to_string(params_.n_seq) + " (KV cache " +
                        std::to_string(int64_t(kv_bytes / (1 << 20))) + " MiB): reduce n_ctx");
  }

  // Rotation frequency of each rotated pair: base^(-2i/n_rot), divided by the per-frequency factor
  // of Llama-3.1-style scaling when the file has one.
  inv_freq_.resize(size_t(hp.n_rot / 2));
  const double rope_base = params_.rope_freq_base > 0 ? params_.rope_freq_base : hp.rope_base;
  rope_pos_divisor_ = params_.rope_freq_scale > 0 ? 1.0 / params_.rope_freq_scale : hp.rope_linear_factor;
  // LongRoPE (Phi-3 128k / 3.5) picks its factor set once, by this context's size: the long set
  // when n_ctx > the pretraining context, as llama.cpp does (transformers picks by the current
  // sequence length instead; a cache cannot switch sets mid-sequence). docs/models.md says more.
  const std::vector<float>* factors = nullptr;
  if (!model_->rope_freq_factors.empty())
    factors = &model_->rope_freq_factors;
  else if (!model_->rope_factors_long.empty())
    factors = rope_long_factors() ? &model_->rope_factors_long : &model_->rope_factors_short;
  for (int64_t i = 0; i < hp.n_rot / 2; ++i) {
    double f = std::pow(rope_base, -2.0 * double(i) / double(hp.n_rot));
    if (factors) f /= double((*factors)[size_t(i)]);
    inv_freq_[size_t(i)] = f;
  }
  // Sliding-window layers with their own base (gemma3): plain base^(-2i/n_rot), no scaling.
  if (hp.rope_base_swa > 0) {
    inv_freq_swa_.resize(size_t(hp.n_rot / 2));
    for (int64_t i = 0; i < hp.n_rot / 2; ++i)
      inv_freq_swa_[size_t(i)] = std::pow(hp.rope_base_swa, -2.0 * double(i) / double(hp.n_rot));
  }
}

void Context::truncate(int64_t n) {
  if (n < 0 || n > seq_past_[0])
    throw ArgumentError("truncate: position " + std::to_string(n) + " is outside the cache (0.." +
                        std::to_string(seq_past_[0]) + ")");
  truncate_seq(0, n);
}

size_t Context::kv_bytes() const {
  size_t total = 0;
  for (size_t il = 0; il < k_cache_.size(); ++il) total += k_cache_[il].size() + v_cache_[il].size();
  return total;
}

void Context::decode(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  const HParams& hp = model_->hparams();
  if (n < 0) throw ArgumentError("decode: negative token count");
  if (n == 0) return;
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
      throw ArgumentError("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                          " is outside the vocabulary (0.." + std::to_string(hp.n_vocab - 1) + ")");
  }
  if (n > params_.n_ctx - seq_past_[0])
    throw ArgumentError("context window full: " + std::to_string(seq_past_[0]) + " tokens in the cache + " +
                        std::to_string(n) + " new tokens > n_ctx " + std::to_string(params_.n_ctx));
  for (int64_t start = 0; start < n; start += params_.n_batch) {
    const int64_t m = std::min(params_.n_batch, n - start);
    const bool last_chunk = start + m == n;
    float* out = !logits ? nullptr : all_logits ? logits + size_t(start) * size_t(hp.n_vocab) : (last_chunk ? logits : nullptr);
    for (int64_t t = 0; t < m; ++t) {
      row_seq_[size_t(t)] = 0;
      row_pos_[size_t(t)] = seq_past_[0] + t;
      out_rows_[size_t(t)] = t;
    }
    if (!out) {
      forward_chunk(tokens + start, m, nullptr, nullptr, 0);
    } else if (all_logits) {
      forward_chunk(tokens + start, m, out, out_rows_.data(), m);
    } else {
      out_rows_[0] = m - 1;
      forward_chunk(tokens + start, m, out, out_rows_.data(), 1);
    }
  }
}

void Context::record_stats(const WeightView& w, const float* x, int64_t n) {
  ActivationStats& s = stats_[w.name];
  const int64_t n_in = w.n_in();
  if (s.sum_sq.empty()) s.sum_sq.assign(size_t(n_in), 0.0);
  for (int64_t t = 0; t < n; ++t) {
    const float* row = x + t * n_in;
    for (int64_t i = 0; i < n_in; ++i) s.sum_sq[size_t(i)] += double(row[i]) * double(row[i]);
  }
  s.count += n;
}

void Context::project(const WeightView& w, const float* x, int64_t n, float* y) {
  if (collect_stats_) record_stats(w, x, n);
  matmul(w, x, n, y, pool_, mm_scratch_, params_.precision);
}

void Context::project_shared(std::initializer_list<MatmulOutput> outs, const float* x, int64_t n) {
  if (collect_stats_)
    for (const MatmulOutput& o : outs) record_stats(*o.w, x, n);
  matmul_shared_input(outs.begin(), int(outs.size()), x, n, pool_, mm_scratch_, params_.precision);
}

// Token ranges for the pool from this many tokens on: below it (decode, server steps) the work is
// too small to pay a hand-off. In prefill these ops were serial, ~5% of a 2-thread pp512 (the norm's
// sum of squares is a dependent chain of double adds, ~1 ms per 512 x 2048 rows).
constexpr int64_t kParallelTokensFrom = 16;

template <class Fn>
void Context::for_tokens(int64_t n, const Fn& fn) {
  const int64_t n_tasks =
      n >= kParallelTokensFrom && pool_.size() > 1 ? std::min<int64_t>(n, 2 * int64_t(pool_.size())) : 1;
  if (n_tasks <= 1) {
    fn(int64_t(0), n);
    return;
  }
  pool_.parallel_for(n_tasks, [&](int64_t task, int) {
    int64_t t0, t1;
    split_range(n, task, n_tasks, &t0, &t1);
    fn(t0, t1);
  });
}

void Context::rope(float* x, int64_t t0, int64_t t1, int64_t n_heads, bool swa_tables) const {
  const HParams& hp = model_->hparams();
  const int64_t half = hp.n_rot / 2;
  const bool adjacent = model_->arch().rope_style == RopeStyle::Adjacent;
  const std::vector<float>& cos_t = swa_tables ? rope_cos_swa_ : rope_cos_;
  const std::vector<float>& sin_t = swa_tables ? rope_sin_swa_ : rope_sin_;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos_t.data() + t * half;
    const float* s = sin_t.data() + t * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * hp.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        // Pair i is (2i, 2i+1) in the GGUF llama layout, (i, i + n_rot/2) in the neox layout.
        const int64_t a = adjacent ? 2 * i : i;
        const int64_t b = adjacent ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c[i] - x1 * s[i];
        v[b] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

Context::AttnVariant Context::attn_variant(int64_t il) const {
  const HParams& hp = model_->hparams();
  AttnVariant v;
  v.scale = float(hp.attn_scale > 0 ? hp.attn_scale : 1.0 / std::sqrt(double(hp.head_dim)));
  v.softcap = float(hp.attn_softcap);
  v.window = hp.layer_swa[size_t(il)] ? hp.n_swa : 0;
  return v;
}

void Context::attention(int64_t il, int64_t n) {
  if (params_.precision == MatmulPrecision::Exact)
    attention_exact(il, n);
  else
    attention_fast(il, n);
}

// Fast path: tasks = (KV head, block of kAttnTileTokens query tokens), each one tile of the
// attention kernel (kernels.h, AttnTileArgs) for all query heads of the group. The kernel's result
// for a row does not depend on the tile, so any task split and any n_batch give the same bits.
void Context::attention_fast(int64_t il, int64_t /*n: the rows are described by runs_*/) {
  const HParams& hp = model_->hparams();
  const int64_t hd = hp.head_dim, qw = hp.q_width(), n_kv = hp.n_head_kv;
  const int64_t group = hp.n_head / hp.n_head_kv;
  const KVType tk = params_.type_k, tv = params_.type_v;
  const size_t k_block = size_t(hp.kv_width() * kAttnBlock) * kv_value_bytes(tk);
  const size_t v_block = size_t(hp.kv_width() * kAttnBlock) * kv_value_bytes(tv);
  const KernelSet& ks = active_kernels();
  const AttnTileFn tile = ks.attn_tile && hd % 8 == 0 ? ks.attn_tile : kScalarKernels.attn_tile;
  // Tasks: attn_units_ (built per chunk in forward_chunk) x KV heads.
  const int64_t n_tasks = n_kv * int64_t(attn_units_.size());
  const AttnVariant var = attn_variant(il);
  auto run_task = [&](int64_t task, int slot) {
    const auto [r, b] = attn_units_[size_t(task / n_kv)];
    const RowRun& run = runs_[size_t(r)];
    const int64_t g = task % n_kv;
    const int64_t t0 = run.row0 + b * kAttnTileTokens;  // first row of the block in the chunk
    const int64_t p0 = run.pos0 + b * kAttnTileTokens;  // its position in the sequence
    // A ring layer's keys are contiguous from any position on for ring_ rows (seq_rows): hand the
    // kernel the tile's first key block (a multiple of kAttnBlock, so the kernel's blocks and bits
    // are those of a full cache) as position 0.
    int64_t shift = 0;
    size_t base = size_t(seq_base(il, run.seq));
    if (ring_layer(il)) {
      shift = std::max<int64_t>(0, p0 + 1 - var.window) / kAttnBlock * kAttnBlock;
      base += size_t(shift % ring_);
    }
    AttnTileArgs a;
    a.head_dim = hd;
    a.n_tok = std::min(kAttnTileTokens, run.row0 + run.n - t0);
    a.group = group;
    a.q = q_.data() + t0 * qw + g * group * hd;
    a.out = att_.data() + t0 * qw + g * group * hd;
    a.tok_stride = qw;
    a.n_keys0 = p0 + 1 - shift;
    // base is a block boundary (seq_rows and shift are whole blocks): the head's runs start g * hd
    // runs into the block
    a.k = k_cache_[size_t(il)].data() + (base / kAttnBlock) * k_block + size_t(g * hd * kAttnBlock) * kv_value_bytes(tk);
    a.v = v_cache_[size_t(il)].data() + (base / kAttnBlock) * v_block + size_t(g * hd * kAttnBlock) * kv_value_bytes(tv);
    a.k_block_stride = k_block;
    a.v_block_stride = v_block;
    a.k_f16 = tk == KVType::F16;
    a.v_f16 = tv == KVType::F16;
    a.scale = var.scale;
    a.softcap = var.softcap;
    a.window = var.window;
    a.scratch = attn_scratch_.data() + size_t(slot) * attn_scratch_stride_;
    tile(a);
  };
  pool_.parallel_for(n_tasks, run_task);
}

// Exact path: causal grouped-query attention for the n tokens of this chunk, whose K/V are already
// in the cache. Work is split over (token, head) pairs; each pair's arithmetic is independent of
// the split and of the chunking, so results do not depend on n_threads or n_batch.
void Context::attention_exact(int64_t il, int64_t n) {
  const HParams& hp = model_->hparams();
  const int64_t hd = hp.head_dim, qw = hp.q_width(), kvw = hp.kv_width();
  const int64_t group = hp.n_head / hp.n_head_kv;
  const AttnVariant var = attn_variant(il);
  const KVType tk = params_.type_k, tv = params_.type_v;
  const size_t v_es = kv_value_bytes(tv);
  const uint8_t* K0 = k_cache_[size_t(il)].data();
  const uint8_t* V0 = v_cache_[size_t(il)].data();
  const float* f16 = fp16_table();
  // One task per (token, head): causal attention makes later tokens cost more, so contiguous shares
  // per thread would be unbalanced.
  pool_.parallel_for(n * hp.n_head, [&](int64_t w, int slot) {
    float* scores = att_scores_.data() + size_t(slot) * size_t(params_.n_ctx);
    float* tmp = att_row_tmp_.data() + size_t(slot) * size_t(hd);
    {
      const int64_t t = w / hp.n_head, h = w % hp.n_head;
      const int64_t kv_off = (h / group) * hd;
      const int64_t n_keys = row_pos_[size_t(t)] + 1;
      const int64_t p0 = var.window > 0 ? std::max<int64_t>(0, n_keys - var.window) : 0;  // sliding window
      const size_t base = size_t(seq_base(il, row_seq_[size_t(t)]));
      const int64_t ring = ring_layer(il) ? ring_ : std::numeric_limits<int64_t>::max();  // row of p: p % ring
      const float* qv = q_.data() + t * qw + h * hd;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t p = p0; p < n_keys; ++p) {
        const float* krow = k_values(K0, int64_t(base) + p % ring, kvw, kv_off, hd, tk, f16, tmp);
        scores[p] = dot_f32(qv, krow, hd) * var.scale;
        if (var.softcap > 0) scores[p] = var.softcap * std::tanh(scores[p] / var.softcap);
        mx = std::max(mx, scores[p]);
      }
      float sum = 0.0f;
      for (int64_t p = p0; p < n_keys; ++p) {
        scores[p] = std::exp(scores[p] - mx);
        sum += scores[p];
      }
      const float inv = 1.0f / sum;
      float* out = att_.data() + t * qw + h * hd;
      std::fill(out, out + hd, 0.0f);
      for (int64_t p = p0; p < n_keys; ++p) {
        const float* vrow = v_values(V0 + v_cache_index(int64_t(base) + p % ring, kv_off, kvw, hd) * v_es, hd, tv, f16, tmp);
        const float a = scores[p] * inv;
        for (int64_t i = 0; i < hd; ++i) out[i] += a * vrow[i];
      }
    }
  });
}

// gate_ = act(gate_) * up_ for n tokens. SiLU, exact path: scalar std::exp as always; fast path:
// the KernelSet's kernel (vectorized exp), one task per token row (a row's bits do not depend on the
// split, see SiluMulFn). GELU-tanh (gemma): the scalar layer op on both paths, one task per row.
void Context::ffn_activation(int64_t n) {
  const int64_t F = model_->hparams().n_ff;
  float* gate = gate_.data();
  const float* up = up_.data();
  if (model_->arch().activation == Activation::GELUTanh) {
    if (n < 4 || pool_.size() == 1) {
      gelu_tanh_mul(gate, up, n * F);
      return;
    }
    pool_.parallel_for(n, [&](int64_t t, int) { gelu_tanh_mul(gate + t * F, up + t * F, F); });
    return;
  }
  if (params_.precision == MatmulPrecision::Exact) {
    for (int64_t i = 0; i < n * F; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    return;
  }
  const KernelSet& ks = active_kernels();
  const SiluMulFn f = ks.silu_mul ? ks.silu_mul : kScalarKernels.silu_mul;
  if (n < 4 || pool_.size() == 1) {
    for (int64_t t = 0; t < n; ++t) f(gate + t * F, up + t * F, F);
    return;
  }
  pool_.parallel_for(n, [&](int64_t t, int) { f(gate + t * F, up + t * F, F); });
}

void Context::forward_chunk(const int32_t* tokens, int64_t n, float* logits, const int64_t* out_rows,
                            int64_t n_out) {
  const Model& m = *model_;
  const HParams& hp = m.hparams();
  const int64_t E = hp.n_embd, kvw = hp.kv_width();
  float* x = x_.data();
  float* xb = xb_.data();

  for (int64_t t = 0; t < n; ++t) weight_row_to_float(m.tok_embd, tokens[t], x + t * E);
  if (hp.embd_scale != 1.0) scale_inplace(x, n * E, float(hp.embd_scale));

  // Runs of consecutive rows of one sequence with consecutive positions: the unit of attention.
  runs_.clear();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t s = row_seq_[size_t(t)], p = row_pos_[size_t(t)];
    if (!runs_.empty() && runs_.back().seq == s && runs_.back().pos0 + runs_.back().n == p)
      ++runs_.back().n;
    else
      runs_.push_back({t, 1, s, p});
  }
  // Fast attention's units of work: (run, block of kAttnTileTokens of its rows). Latest positions
  // first: causal attention makes them the longest, so they start early and the short ones fill
  // in at the end.
  attn_units_.clear();
  for (int64_t r = 0; r < int64_t(runs_.size()); ++r)
    for (int64_t b = (runs_[size_t(r)].n + kAttnTileTokens - 1) / kAttnTileTokens - 1; b >= 0; --b)
      attn_units_.push_back({r, b});
  std::stable_sort(attn_units_.begin(), attn_units_.end(), [&](const auto& u, const auto& v) {
    return runs_[size_t(u.first)].pos0 + u.second * kAttnTileTokens >
           runs_[size_t(v.first)].pos0 + v.second * kAttnTileTokens;
  });

  const int64_t half = hp.n_rot / 2;
  for (int64_t t = 0; t < n; ++t) {
    const double pos = double(row_pos_[size_t(t)]) / rope_pos_divisor_;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * inv_freq_[size_t(i)];
      rope_cos_[size_t(t * half + i)] = float(std::cos(angle) * hp.rope_attn_factor);
      rope_sin_[size_t(t * half + i)] = float(std::sin(angle) * hp.rope_attn_factor);
    }
    for (int64_t i = 0; i < int64_t(inv_freq_swa_.size()); ++i) {
      const double angle = double(row_pos_[size_t(t)]) * inv_freq_swa_[size_t(i)];
      rope_cos_swa_[size_t(t * half + i)] = float(std::cos(angle));
      rope_sin_swa_[size_t(t * half + i)] = float(std::sin(angle));
    }
  }

  const ArchSpec& A = m.arch();
  const float res_scale = float(hp.residual_scale);
  const int64_t qw = hp.q_width();
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const LayerWeights& L = m.layers[size_t(il)];

    // --- attention block ---
    // Rows [t0, t1) of the block's input and output norms and of its residual add.
    const auto norm_rows = [&](const float* in, const std::vector<float>& w, float* out) {
      for_tokens(n, [&](int64_t t0, int64_t t1) { rms_norm_rows(in + t0 * E, t1 - t0, E, w, hp.rms_eps, out + t0 * E); });
    };
    const auto add_rows = [&]() {
      for_tokens(n, [&](int64_t t0, int64_t t1) { add_scaled(x + t0 * E, xb + t0 * E, (t1 - t0) * E, res_scale); });
    };
    if (A.pre_norms)
      norm_rows(x, L.attn_norm, xb);
    else
      std::memcpy(xb, x, size_t(n * E) * sizeof(float));
    project_shared({{&L.wq, q_.data()}, {&L.wk, k_.data()}, {&L.wv, v_.data()}}, xb, n);
    // Per token: biases, QK-norm, RoPE, then the K/V cache stores (every token has its own cache rows).
    const bool rotate = hp.layer_rope[size_t(il)];
    const bool swa_tables = hp.layer_swa[size_t(il)] && !inv_freq_swa_.empty();
    uint8_t* K = k_cache_[size_t(il)].data();
    uint8_t* V = v_cache_[size_t(il)].data();
    for_tokens(n, [&](int64_t t0, int64_t t1) {
      const int64_t m = t1 - t0;
      float* q = q_.data() + t0 * qw;
      float* k = k_.data() + t0 * kvw;
      add_bias(q, L.bq, m);
      add_bias(k, L.bk, m);
      add_bias(v_.data() + t0 * kvw, L.bv, m);
      if (A.qk_norm == QKNorm::PerHead) {
        rms_norm_rows(q, m * hp.n_head, hp.head_dim, L.q_norm, hp.rms_eps, q);
        rms_norm_rows(k, m * hp.n_head_kv, hp.head_dim, L.k_norm, hp.rms_eps, k);
      } else if (A.qk_norm == QKNorm::Whole) {
        rms_norm_rows(q, m, qw, L.q_norm, hp.rms_eps, q);
        rms_norm_rows(k, m, kvw, L.k_norm, hp.rms_eps, k);
      }
      if (rotate) {
        rope(q_.data(), t0, t1, hp.n_head, swa_tables);
        rope(k_.data(), t0, t1, hp.n_head_kv, swa_tables);
      }
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t slot_row = kv_slot(il, row_seq_[size_t(t)], row_pos_[size_t(t)]);
        // the ring's second copy (seq_rows) too
        for (const int64_t row : {slot_row, ring_layer(il) ? slot_row + ring_ : int64_t(-1)}) {
          if (row < 0) continue;
          k_store(K, row, k_.data() + t * kvw, kvw, params_.type_k);
          v_store(V, row, v_.data() + t * kvw, kvw, hp.head_dim, params_.type_v);
        }
      }
    });
    attention(il, n);
    project(L.wo, att_.data(), n, xb);
    if (A.post_norms) norm_rows(xb, L.attn_post_norm, xb);
    add_rows();

    // --- feed-forward block (gated: SwiGLU / GeGLU) ---
    if (A.pre_norms)
      norm_rows(x, L.ffn_norm, xb);
    else
      std::memcpy(xb, x, size_t(n * E) * sizeof(float));
    project_shared({{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, xb, n);
    ffn_activation(n);
    project(L.w_down, gate_.data(), n, xb);
    if (A.post_norms) norm_rows(xb, L.ffn_post_norm, xb);
    add_rows();
  }
  for (int64_t t = 0; t < n; ++t) {
    const size_t s = size_t(row_seq_[size_t(t)]);
    seq_past_[s] = row_pos_[size_t(t)] + 1;
    if (ring_ > 0) window_floor_[s] = std::max(window_floor_[s], seq_past_[s] - ring_);  // overwritten
  }

  if (hidden_out_) {  // embeddings: the final-norm hidden states, no output projection
    rms_norm_rows(x, n, E, m.output_norm, hp.rms_eps, hidden_out_);
    hidden_out_ += n * E;
  }
  if (!logits || n_out == 0) return;
  // The normed rows that want logits, packed into xb for one projection.
  for (int64_t j = 0; j < n_out; ++j) rms_norm_rows(x + out_rows[j] * E, 1, E, m.output_norm, hp.rms_eps, xb + j * E);
  project(m.output, xb, n_out, logits);
  const int64_t n_logits = n_out * hp.n_vocab;
  if (hp.logit_scale != 1.0) scale_inplace(logits, n_logits, float(1.0 / hp.logit_scale));
  if (hp.final_softcap > 0) softcap_inplace(logits, n_logits, float(hp.final_softcap));
}

}  // namespace edgellama
