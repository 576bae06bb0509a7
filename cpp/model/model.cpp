// Model loading: metadata -> HParams, tensors -> WeightViews, with every inconsistency between the
// metadata and the tensors reported as a FormatError naming the file, tensor and both shapes.
#include "edgellama/model.h"

#include <cmath>

#include "edgellama/errors.h"

namespace edgellama {

namespace {

// Upper bounds that no real model reaches; they keep crafted metadata from driving huge loops or
// allocations before a tensor check would catch it.
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 16384;
constexpr int64_t kMaxSlidingWindow = int64_t(1) << 26;

std::string shape_str(const int64_t* ne, int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

class Loader {
 public:
  Loader(const GGUFFile& f, const std::string& arch) : f_(f), arch_(arch) {}

  int64_t positive(const std::string& suffix, int64_t fallback, int64_t max_value) const {
    const std::string key = arch_ + "." + suffix;
    const int64_t v = f_.get_int(key, fallback);
    if (v <= 0) throw FormatError(f_.where() + "metadata '" + key + "' must be > 0, got " + std::to_string(v));
    if (v > max_value)
      throw FormatError(f_.where() + "metadata '" + key + "' = " + std::to_string(v) + " is absurdly large (max " +
                        std::to_string(max_value) + ")");
    return v;
  }
  int64_t required_positive(const std::string& suffix, int64_t max_value) const {
    const std::string key = arch_ + "." + suffix;
    if (!f_.find(key)) throw FormatError(f_.where() + "required metadata key '" + key + "' is missing");
    return positive(suffix, 0, max_value);
  }

  const GGUFTensorInfo& tensor(const std::string& name) const {
    const GGUFTensorInfo* t = f_.find_tensor(name);
    if (!t) throw FormatError(f_.where() + "tensor '" + name + "' is missing");
    return *t;
  }

  void check_shape(const GGUFTensorInfo& t, std::initializer_list<int64_t> expected) const {
    const int n = int(expected.size());
    bool ok = int(t.n_dims) == n;
    int i = 0;
    for (int64_t e : expected) ok = ok && i < 4 && t.ne[i++] == e;
    if (!ok) {
      std::vector<int64_t> exp(expected);
      throw FormatError(f_.where() + "tensor '" + t.name + "' has shape " + shape_str(t.ne, int(t.n_dims)) +
                        " but the metadata implies " + shape_str(exp.data(), n));
    }
  }

  void check_computable(const GGUFTensorInfo& t) const {
    if (!t.traits->to_float)
      throw UnsupportedError(f_.where() + "tensor '" + t.name + "' has type " + t.traits->name +
                             ", which edgellama does not support yet");
  }

  WeightView matrix(const std::string& name, int64_t n_in, int64_t n_out, TensorRole role) const {
    const GGUFTensorInfo& t = tensor(name);
    check_shape(t, {n_in, n_out});
    check_computable(t);
    WeightView w;
    w.name = name;
    w.role = role;
    w.traits = t.traits;
    for (int i = 0; i < 4; ++i) w.ne[i] = t.ne[i];
    w.data = t.data;
    row_size_checked(*t.traits, t.ne[0], &w.row_bytes);  // validated by the reader
    return w;
  }

  std::vector<float> vector(const std::string& name, int64_t n) const {
    const GGUFTensorInfo& t = tensor(name);
    check_shape(t, {n});
    check_computable(t);
    std::vector<float> out(static_cast<size_t>(n));
    t.traits->to_float(t.data, out.data(), n);
    return out;
  }

  // Non-negative float metadata {arch}.suffix (fallback when absent).
  double non_negative(const std::string& suffix, double fallback) const {
    const std::string key = arch_ + "." + suffix;
    const double v = f_.get_float(key, fallback);
    if (!(v >= 0 && std::isfinite(v))) throw FormatError(f_.where() + "metadata '" + key + "' must be a finite number >= 0");
    return v;
  }

  std::vector<float> optional_vector(const std::string& name, int64_t n) const {
    return f_.find_tensor(name) ? vector(name, n) : std::vector<float>();
  }

 private:
  const GGUFFile& f_;
  std::string arch_;
};

// Rows [r0, r0 + n) of a fused weight as a weight of its own (rows are contiguous in the file).
WeightView row_range(const WeightView& fused, int64_t r0, int64_t n, const std::string& name, TensorRole role) {
  WeightView w = fused;
  w.name = name;
  w.role = role;
  w.ne[1] = n;
  w.data = fused.row(r0);
  return w;
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path, bool vocab_only) {
  return load(GGUFFile::open(path), vocab_only);
}

std::shared_ptr<Model> Model::load(std::shared_ptr<GGUFFile> file, bool vocab_only) {
  std::shared_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  m->vocab_only_ = vocab_only;
  const GGUFFile& f = *m->file_;

  const std::string arch = f.get_string("general.architecture");
  if (vocab_only) {
    m->arch_ = find_arch(arch);  // may be nullptr: a vocabulary-only file needs no architecture
    return m;
  }
  m->arch_ = find_arch(arch);
  if (!m->arch_)
    throw UnsupportedError(f.where() + "architecture '" + arch + "' is not supported (supported: " +
                           supported_arch_names() + ")");

  const Loader L(f, arch);
  HParams& hp = m->hp_;
  hp.n_embd = L.required_positive("embedding_length", int64_t(1) << 20);
  hp.n_layer = L.required_positive("block_count", kMaxLayers);
  hp.n_head = L.required_positive("attention.head_count", kMaxHeads);
  hp.n_head_kv = L.positive("attention.head_count_kv", hp.n_head, kMaxHeads);
  hp.n_ff = L.required_positive("feed_forward_length", int64_t(1) << 24);
  hp.n_ctx_train = L.positive("context_length", 2048, int64_t(1) << 26);
  if (hp.n_head % hp.n_head_kv != 0)
    throw FormatError(f.where() + arch + ".attention.head_count_kv (" + std::to_string(hp.n_head_kv) +
                      ") must divide " + arch + ".attention.head_count (" + std::to_string(hp.n_head) + ")");
  if (f.find(arch + ".attention.key_length")) {
    hp.head_dim = L.positive("attention.key_length", 0, 1 << 16);
    const int64_t v_len = L.positive("attention.value_length", hp.head_dim, 1 << 16);
    if (v_len != hp.head_dim)
      throw UnsupportedError(f.where() + "attention.value_length != key_length is not supported");
  } else {
    if (hp.n_embd % hp.n_head != 0)
      throw FormatError(f.where() + arch + ".attention.head_count (" + std::to_string(hp.n_head) +
                        ") must divide " + arch + ".embedding_length (" + std::to_string(hp.n_embd) + ")");
    hp.head_dim = hp.n_embd / hp.n_head;
  }
  hp.n_rot = L.positive("rope.dimension_count", hp.head_dim, 1 << 16);
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
    throw FormatError(f.where() + arch + ".rope.dimension_count (" + std::to_string(hp.n_rot) +
                      ") must be even and at most the head size (" + std::to_string(hp.head_dim) + ")");
  hp.rms_eps = f.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5);
  if (!(hp.rms_eps > 0 && hp.rms_eps < 1))
    throw FormatError(f.where() + arch + ".attention.layer_norm_rms_epsilon must be in (0, 1)");
  hp.rope_base = f.get_float(arch + ".rope.freq_base", m->arch_->default_rope_base);
  if (!(hp.rope_base > 1 && std::isfinite(hp.rope_base)))
    throw FormatError(f.where() + arch + ".rope.freq_base must be a finite number > 1");
  hp.rope_scaling_type = f.get_string(arch + ".rope.scaling.type", "none");
  if (hp.rope_scaling_type == "linear") {
    double factor = f.get_float(arch + ".rope.scaling.factor", 0.0);
    if (factor == 0.0) factor = 1.0 / f.get_float(arch + ".rope.scale_linear", 1.0);  // older key
    if (!(factor > 0 && std::isfinite(factor)))
      throw FormatError(f.where() + arch + ".rope.scaling.factor must be a finite number > 0");
    hp.rope_linear_factor = factor;
  } else if (hp.rope_scaling_type != "none" && hp.rope_scaling_type != "longrope") {
    throw UnsupportedError(f.where() + "rope scaling type '" + hp.rope_scaling_type +
                           "' is not supported (supported: none, linear, longrope)");
  }
  // 0 (or absent) means the training context, as in llama.cpp.
  hp.n_ctx_orig = f.get_int(arch + ".rope.scaling.original_context_length", 0);
  if (hp.n_ctx_orig < 0 || hp.n_ctx_orig > (int64_t(1) << 26))
    throw FormatError(f.where() + arch + ".rope.scaling.original_context_length must be between 0 and 2^26, got " +
                      std::to_string(hp.n_ctx_orig));
  if (hp.n_ctx_orig == 0) hp.n_ctx_orig = hp.n_ctx_train;
  hp.rope_attn_factor = f.get_float(arch + ".rope.scaling.attn_factor", 1.0);
  if (!(hp.rope_attn_factor > 0 && std::isfinite(hp.rope_attn_factor)))
    throw FormatError(f.where() + arch + ".rope.scaling.attn_factor must be a finite number > 0");

  const ArchSpec& A = *m->arch_;
  // Attention pattern and multipliers (all optional metadata; see arch.h for who writes which).
  hp.attn_scale = L.non_negative("attention.scale", 0.0);
  if (hp.attn_scale == 0 && A.embd_per_head_scale_n_layer == hp.n_layer)
    hp.attn_scale = 1.0 / std::sqrt(double(hp.n_embd / hp.n_head));
  hp.embd_scale = A.embd_scale_sqrt ? std::sqrt(double(hp.n_embd)) : L.non_negative("embedding_scale", 1.0);
  hp.residual_scale = L.non_negative("residual_scale", 1.0);
  hp.logit_scale = L.non_negative("logit_scale", 1.0);
  if (hp.embd_scale == 0 || hp.residual_scale == 0 || hp.logit_scale == 0)
    throw FormatError(f.where() + arch + ": embedding_scale, residual_scale and logit_scale must be > 0");
  if (A.softcap) {
    hp.attn_softcap = L.non_negative("attn_logit_softcapping", 0.0);
    hp.final_softcap = L.non_negative("final_logit_softcapping", 0.0);
  }
  hp.layer_swa.assign(size_t(hp.n_layer), false);
  hp.layer_rope.assign(size_t(hp.n_layer), true);
  if (A.swa_pattern > 0 && f.find(arch + ".attention.sliding_window")) {
    hp.n_swa = L.positive("attention.sliding_window", 0, kMaxSlidingWindow);
    const int64_t pattern = L.positive("attention.sliding_window_pattern", A.swa_pattern, kMaxLayers);
    for (int64_t il = 0; il < hp.n_layer; ++il) hp.layer_swa[size_t(il)] = il % pattern < pattern - 1;
    hp.rope_base_swa = f.get_float(arch + ".rope.freq_base_swa", A.default_rope_base_swa);
    if (hp.rope_base_swa != 0 && !(hp.rope_base_swa > 1 && std::isfinite(hp.rope_base_swa)))
      throw FormatError(f.where() + arch + ".rope.freq_base_swa must be a finite number > 1");
  }
  if (A.nope_every > 0)
    for (int64_t il = 0; il < hp.n_layer; ++il) hp.layer_rope[size_t(il)] = (il + 1) % A.nope_every != 0;

  // Token embedding defines the vocabulary size; the tokenizer must agree (checked by Vocab).
  const GGUFTensorInfo& emb = L.tensor("token_embd.weight");
  if (emb.n_dims != 2 || emb.ne[0] != hp.n_embd)
    throw FormatError(f.where() + "tensor 'token_embd.weight' has shape " + shape_str(emb.ne, int(emb.n_dims)) +
                      " but the metadata implies [" + std::to_string(hp.n_embd) + ", n_vocab]");
  hp.n_vocab = emb.ne[1];
  m->tok_embd = L.matrix("token_embd.weight", hp.n_embd, hp.n_vocab, TensorRole::TokenEmbd);
  m->output_norm = L.vector("output_norm.weight", hp.n_embd);
  if (f.find_tensor("output.weight")) {
    m->output = L.matrix("output.weight", hp.n_embd, hp.n_vocab, TensorRole::Output);
  } else {
    m->output = m->tok_embd;
    m->output.role = TensorRole::Output;
    m->tied_output = true;
  }
  if (f.find_tensor("rope_freqs.weight")) m->rope_freq_factors = L.vector("rope_freqs.weight", hp.n_rot / 2);
  // LongRoPE (Phi-3 128k, Phi-3.5): short and long per-frequency divisors, always as a pair.
  const bool has_long = f.find_tensor("rope_factors_long.weight"), has_short = f.find_tensor("rope_factors_short.weight");
  if (has_long != has_short)
    throw FormatError(f.where() + "tensor '" + std::string(has_long ? "rope_factors_short.weight" : "rope_factors_long.weight") +
                      "' is missing (LongRoPE needs both rope_factors_long and rope_factors_short)");
  if (has_long) {
    m->rope_factors_long = L.vector("rope_factors_long.weight", hp.n_rot / 2);
    m->rope_factors_short = L.vector("rope_factors_short.weight", hp.n_rot / 2);
    for (const std::vector<float>* v : {&m->rope_factors_long, &m->rope_factors_short})
      for (float x : *v)
        if (!(x > 0 && std::isfinite(x)))
          throw FormatError(f.where() + "tensor '" +
                            std::string(v == &m->rope_factors_long ? "rope_factors_long" : "rope_factors_short") +
                            ".weight' has a factor " + std::to_string(x) + " (must be a finite number > 0)");
  }

  const int64_t qw = hp.q_width(), kvw = hp.kv_width(), E = hp.n_embd, F = hp.n_ff;
  m->layers.resize(size_t(hp.n_layer));
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& l = m->layers[size_t(il)];
    if (A.pre_norms) {
      l.attn_norm = L.vector(p + "attn_norm.weight", E);
      l.ffn_norm = L.vector(p + "ffn_norm.weight", E);
    }
    if (A.post_norms) {
      l.attn_post_norm = L.vector(p + "post_attention_norm.weight", E);
      l.ffn_post_norm = L.vector(p + "post_ffw_norm.weight", E);
    }
    if (A.qk_norm != QKNorm::None) {
      const bool whole = A.qk_norm == QKNorm::Whole;
      l.q_norm = L.vector(p + "attn_q_norm.weight", whole ? qw : hp.head_dim);
      l.k_norm = L.vector(p + "attn_k_norm.weight", whole ? kvw : hp.head_dim);
    }
    if (A.fused_qkv) {
      const WeightView qkv = L.matrix(p + "attn_qkv.weight", E, qw + 2 * kvw, TensorRole::Other);
      l.wq = row_range(qkv, 0, qw, p + "attn_q.weight", TensorRole::AttnQ);
      l.wk = row_range(qkv, qw, kvw, p + "attn_k.weight", TensorRole::AttnK);
      l.wv = row_range(qkv, qw + kvw, kvw, p + "attn_v.weight", TensorRole::AttnV);
    } else {
      l.wq = L.matrix(p + "attn_q.weight", E, qw, TensorRole::AttnQ);
      l.wk = L.matrix(p + "attn_k.weight", E, kvw, TensorRole::AttnK);
      l.wv = L.matrix(p + "attn_v.weight", E, kvw, TensorRole::AttnV);
    }
    l.wo = L.matrix(p + "attn_output.weight", qw, E, TensorRole::AttnOut);
    if (A.qkv_bias) {
      l.bq = L.optional_vector(p + "attn_q.bias", qw);
      l.bk = L.optional_vector(p + "attn_k.bias", kvw);
      l.bv = L.optional_vector(p + "attn_v.bias", kvw);
    }
    if (A.fused_gate_up) {
      const WeightView gate_up = L.matrix(p + "ffn_up.weight", E, 2 * F, TensorRole::Other);
      l.w_gate = row_range(gate_up, 0, F, p + "ffn_gate.weight", TensorRole::FfnGate);
      l.w_up = row_range(gate_up, F, F, p + "ffn_up.weight", TensorRole::FfnUp);
    } else {
      l.w_gate = L.matrix(p + "ffn_gate.weight", E, F, TensorRole::FfnGate);
      l.w_up = L.matrix(p + "ffn_up.weight", E, F, TensorRole::FfnUp);
    }
    l.w_down = L.matrix(p + "ffn_down.weight", F, E, TensorRole::FfnDown);
    for (WeightView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      w->layer = int(il);
      w->n_layers = int(hp.n_layer);
    }
  }
  // A file with more layers than block_count says is inconsistent too.
  const std::string next_layer = "blk." + std::to_string(hp.n_layer) + ".";
  bool extra_layer = false;
  for (const GGUFTensorInfo& t : f.tensors()) extra_layer = extra_layer || t.name.compare(0, next_layer.size(), next_layer) == 0;
  if (extra_layer)
    throw FormatError(f.where() + "the file has tensors for more layers than " + arch + ".block_count (" +
                      std::to_string(hp.n_layer) + ")");
  m->pack_weights();
  return m;
}

}  // namespace edgellama
